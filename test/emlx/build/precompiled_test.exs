# The http:// tests serve files with inets' httpd, and the fake artifacts
# are random bytes from :crypto; Mix keeps only the project's applications
# on the code path, and :crypto was not there in the GPU kit's install
# (bin/gpu-session) unless named.
Enum.each([:crypto, :inets], &Mix.ensure_application!/1)

defmodule EMLX.Build.PrecompiledTest do
  # Packing, checksums and installs of precompiled artifacts (mix/emlx/build/),
  # on small artifacts made here. Oracles: the files put in, compared byte for
  # byte after the round trip; `sha256sum`/`shasum` (coreutils, not our code)
  # for the checksum files.
  use ExUnit.Case, async: true

  alias EMLX.Build.{Artifact, Precompiled}

  @name "emlx-0.0.1-x86_64-linux-gnu-cpu.tar.gz"

  setup do
    dir = Path.join(System.tmp_dir!(), "emlx-precompiled-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)

    shell = Mix.shell()
    Mix.shell(Mix.Shell.Process)
    on_exit(fn -> Mix.shell(shell) end)
    %{dir: dir}
  end

  # A priv/ tree like an install: the NIF, a library, a nested folder, a link
  # inside the tree, a link out of it, and the marker of an earlier install.
  defp fake_priv(dir) do
    priv = Path.join(dir, "priv")
    File.mkdir_p!(Path.join(priv, "mlx/lib"))
    File.mkdir_p!(Path.join(priv, "mlx/include/cuda/std"))
    File.write!(Path.join(priv, "libemlx.so"), :crypto.strong_rand_bytes(70_000))
    File.chmod!(Path.join(priv, "libemlx.so"), 0o755)
    File.write!(Path.join(priv, "mlx/lib/libmlx.so.0.32.4"), :crypto.strong_rand_bytes(5000))
    File.write!(Path.join(priv, "mlx/include/cuda/std/tuple"), "// header\n")
    File.ln_s!("libmlx.so.0.32.4", Path.join(priv, "mlx/lib/libmlx.so"))
    File.ln_s!("/usr/lib", Path.join(priv, "nvidia"))
    File.write!(Path.join(priv, Artifact.marker()), "old 00\n")
    priv
  end

  defp publish(dir, priv) do
    dist = Path.join(dir, "dist")
    Artifact.pack!(priv, Path.join(dist, @name))
    sha = Artifact.sha256!(Path.join(dist, @name))
    Artifact.merge_checksums!(Path.join(dist, "checksums.sha256"), %{@name => sha})
    {dist, sha}
  end

  defp install!(dir, dist, checksums, base_url \\ nil) do
    Precompiled.install!(
      root: Path.join(dir, "project"),
      version: "0.0.1",
      target: "x86_64-linux-gnu",
      variant: "cpu",
      checksums: checksums,
      base_url: base_url || "file://" <> dist,
      cache_dir: Path.join(dir, "cache"),
      env: %{}
    )
  end

  defp tamper!(path) do
    bytes = File.read!(path)
    at = div(byte_size(bytes), 2)
    <<head::binary-size(at), byte, rest::binary>> = bytes
    File.write!(path, <<head::binary, Bitwise.bxor(byte, 1), rest::binary>>)
  end

  test "pack and unpack keep every file, its mode and inner links; outer links and the marker stay out",
       %{dir: dir} do
    priv = fake_priv(dir)
    archive = Path.join(dir, "a.tar.gz")
    assert %{files: 4, skipped: ["nvidia"]} = Artifact.pack!(priv, archive)

    out = Path.join(dir, "out")
    Artifact.unpack!(archive, out)

    for rel <- ["libemlx.so", "mlx/lib/libmlx.so.0.32.4", "mlx/include/cuda/std/tuple"] do
      assert File.read!(Path.join(out, rel)) == File.read!(Path.join(priv, rel)), rel
    end

    assert Bitwise.band(File.stat!(Path.join(out, "libemlx.so")).mode, 0o777) == 0o755
    assert File.read_link!(Path.join(out, "mlx/lib/libmlx.so")) == "libmlx.so.0.32.4"
    refute File.exists?(Path.join(out, "nvidia"))
    refute File.exists?(Path.join(out, Artifact.marker()))
  end

  test "checksum files are in sha256sum format, checked by the system's tool", %{dir: dir} do
    {dist, sha} = publish(dir, fake_priv(dir))
    assert File.read!(Path.join(dist, "checksums.sha256")) == "#{sha}  #{@name}\n"

    {cmd, args} =
      cond do
        System.find_executable("sha256sum") -> {"sha256sum", ["-c", "checksums.sha256"]}
        System.find_executable("shasum") -> {"shasum", ["-a", "256", "-c", "checksums.sha256"]}
      end

    assert {out, 0} = System.cmd(cmd, args, cd: dist)
    assert out =~ "#{@name}: OK"

    # merging keeps other entries and sorts by name
    Artifact.merge_checksums!(Path.join(dist, "checksums.sha256"), %{"a.tar.gz" => String.duplicate("ab", 32)})

    assert Artifact.parse_checksums(File.read!(Path.join(dist, "checksums.sha256"))) ==
             %{@name => sha, "a.tar.gz" => String.duplicate("ab", 32)}

    assert_raise Mix.Error, ~r/malformed line/, fn -> Artifact.parse_checksums("abc  x.tar.gz\n") end
  end

  test "installs from a file:// folder, then is up to date", %{dir: dir} do
    priv = fake_priv(dir)
    {dist, sha} = publish(dir, priv)
    checksums = {:file, Path.join(dist, "checksums.sha256")}

    assert install!(dir, dist, checksums) == :installed
    installed = Path.join(dir, "project/priv")
    assert File.read!(Path.join(installed, "libemlx.so")) == File.read!(Path.join(priv, "libemlx.so"))
    assert Precompiled.installed(installed) == {@name, sha}
    assert File.read!(Path.join(dir, "cache/#{@name}")) == File.read!(Path.join(dist, @name))

    assert install!(dir, dist, checksums) == :up_to_date
  end

  test "a tampered artifact is refused, naming the checksum, and priv/ is left as it was", %{dir: dir} do
    {dist, sha} = publish(dir, fake_priv(dir))
    tamper!(Path.join(dist, @name))
    bad = Artifact.sha256!(Path.join(dist, @name))

    project_priv = Path.join(dir, "project/priv")
    File.mkdir_p!(project_priv)
    File.write!(Path.join(project_priv, "keep"), "earlier install")

    error =
      assert_raise Mix.Error, fn -> install!(dir, dist, {:file, Path.join(dist, "checksums.sha256")}) end

    assert error.message =~ "checksum mismatch for #{@name}"
    assert error.message =~ "its sha256 is #{bad}"
    assert error.message =~ "says #{sha}"
    assert error.message =~ "EMLX_BUILD=true"
    assert File.ls!(project_priv) == ["keep"]
    assert File.ls!(Path.join(dir, "cache")) == []
  end

  test "a damaged cached copy is replaced by a fresh download", %{dir: dir} do
    {dist, _sha} = publish(dir, fake_priv(dir))
    File.mkdir_p!(Path.join(dir, "cache"))
    File.write!(Path.join(dir, "cache/#{@name}"), "truncated")

    assert install!(dir, dist, {:file, Path.join(dist, "checksums.sha256")}) == :installed
    assert File.read!(Path.join(dir, "cache/#{@name}")) == File.read!(Path.join(dist, @name))
  end

  test "without a checksum file, the checksums published at the named location are used", %{dir: dir} do
    {dist, sha} = publish(dir, fake_priv(dir))
    assert install!(dir, dist, {:url, "file://" <> dist}) == :installed
    assert Precompiled.installed(Path.join(dir, "project/priv")) == {@name, sha}
    assert_received {:mix_shell, :info, [msg]} when is_binary(msg)
    assert msg =~ "carries no checksums.sha256"
  end

  test "a platform the checksum file does not list says what exists and how to build", %{dir: dir} do
    {dist, _} = publish(dir, fake_priv(dir))
    File.write!(Path.join(dist, "checksums.sha256"), "")

    error = assert_raise Mix.Error, fn -> install!(dir, dist, {:file, Path.join(dist, "checksums.sha256")}) end
    assert error.message =~ "no precompiled artifact #{@name}"
    assert error.message =~ "lists: nothing"
    assert error.message =~ "EMLX_BUILD=true"
  end

  describe "over http://" do
    setup %{dir: dir} do
      {dist, sha} = publish(dir, fake_priv(dir))
      {:ok, _} = Application.ensure_all_started(:inets)

      {:ok, pid} =
        :inets.start(:httpd,
          port: 0,
          server_name: ~c"localhost",
          bind_address: {127, 0, 0, 1},
          server_root: String.to_charlist(dir),
          document_root: String.to_charlist(dist)
        )

      on_exit(fn -> :inets.stop(:httpd, pid) end)
      %{dist: dist, sha: sha, base: "http://127.0.0.1:#{:httpd.info(pid)[:port]}"}
    end

    test "downloads with :httpc and installs", %{dir: dir, dist: dist, sha: sha, base: base} do
      assert install!(dir, dist, {:url, base}, base) == :installed
      assert Precompiled.installed(Path.join(dir, "project/priv")) == {@name, sha}
    end

    test "an HTTP error is reported with its status", %{dir: dir, dist: dist, base: base} do
      error = assert_raise Mix.Error, fn -> install!(dir, dist, {:url, base <> "/missing"}, base) end
      assert error.message =~ "answered HTTP 404"
    end
  end
end
