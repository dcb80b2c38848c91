defmodule EMLX.Build.RulesTest do
  # The install rules of `mix compile` (mix/emlx/build.ex), as data: which
  # platform, which variant, source or precompiled. Expected values are the
  # documented rules written out by hand.
  use ExUnit.Case, async: true

  alias EMLX.Build

  describe "target/1" do
    test "normalizes Erlang's system architecture" do
      assert Build.target("x86_64-pc-linux-gnu") == "x86_64-linux-gnu"
      assert Build.target("aarch64-unknown-linux-gnu") == "aarch64-linux-gnu"
      assert Build.target("aarch64-apple-darwin23.4.0") == "aarch64-apple-darwin"
      assert Build.target("arm64-apple-darwin22.1.0") == "aarch64-apple-darwin"
      assert Build.target("x86_64-pc-linux-musl") == "x86_64-linux-musl"
      assert Build.target("x86_64-alpine-linux-musl") == "x86_64-linux-musl"
    end

    test "this machine's target is one Erlang reports" do
      arch = to_string(:erlang.system_info(:system_architecture))
      assert Build.target() == Build.target(arch)
    end
  end

  describe "variant/3" do
    test "the platform default: metal on macOS, cpu on Linux" do
      assert Build.variant("aarch64-apple-darwin", %{}, []) == {:ok, "metal"}
      assert Build.variant("x86_64-linux-gnu", %{}, []) == {:ok, "cpu"}
      assert Build.variant("aarch64-linux-gnu", %{}, []) == {:ok, "cpu"}
    end

    test "config picks a variant, the environment variable wins over config" do
      assert Build.variant("x86_64-linux-gnu", %{}, variant: :cuda) == {:ok, "cuda"}
      assert Build.variant("x86_64-linux-gnu", %{"EMLX_MLX_VARIANT" => "cpu"}, variant: :cuda) == {:ok, "cpu"}
      assert Build.variant("x86_64-linux-gnu", %{"EMLX_MLX_VARIANT" => ""}, variant: "cuda") == {:ok, "cuda"}
    end

    test "a choice the platform cannot run is refused with what to do" do
      assert {:error, msg} = Build.variant("x86_64-linux-gnu", %{"EMLX_MLX_VARIANT" => "metal"}, [])
      assert msg =~ "macOS" and msg =~ "cpu"
      assert {:error, msg} = Build.variant("aarch64-apple-darwin", %{}, variant: :cuda)
      assert msg =~ "metal" and msg =~ "unset EMLX_MLX_VARIANT"
      assert {:error, msg} = Build.variant("aarch64-linux-gnu", %{"EMLX_MLX_VARIANT" => "cuda"}, [])
      assert msg =~ "x86-64 Linux only"
      assert {:error, msg} = Build.variant("x86_64-linux-gnu", %{"EMLX_MLX_VARIANT" => "rocm"}, [])
      assert msg =~ ~s("rocm") and msg =~ "cpu, metal or cuda"
    end
  end

  describe "mode/3" do
    setup do
      root = Path.join(System.tmp_dir!(), "emlx-mode-#{System.unique_integer([:positive])}")
      File.mkdir_p!(root)
      on_exit(fn -> File.rm_rf!(root) end)
      %{root: root}
    end

    test "a checkout (no checksum file, no URL) builds from source", %{root: root} do
      assert Build.mode(%{}, [], root) == :source
    end

    test "the package's checksum file means precompiled", %{root: root} do
      File.write!(Path.join(root, "checksums.sha256"), "")
      assert Build.mode(%{}, [], root) == {:precompiled, {:file, Path.join(root, "checksums.sha256")}}
    end

    test "EMLX_BUILD=true or config builds from source even with a checksum file", %{root: root} do
      File.write!(Path.join(root, "checksums.sha256"), "")
      assert Build.mode(%{"EMLX_BUILD" => "true"}, [], root) == :source
      assert Build.mode(%{"EMLX_BUILD" => "1"}, [], root) == :source
      assert Build.mode(%{}, [build_from_source: true], root) == :source
      assert {:precompiled, _} = Build.mode(%{"EMLX_BUILD" => "false"}, [], root)
    end

    test "a checkout that installed an artifact keeps it until told otherwise", %{root: root} do
      File.mkdir_p!(Path.join(root, "priv"))
      File.write!(Path.join(root, "priv/.emlx-artifact"), "emlx-0.1.0-x86_64-linux-gnu-cpu.tar.gz abc\n")
      assert Build.mode(%{}, [], root) == :source, "a marker without the NIF is no install"
      File.write!(Path.join(root, "priv/libemlx.so"), "")
      assert Build.mode(%{}, [], root) == {:keep, "emlx-0.1.0-x86_64-linux-gnu-cpu.tar.gz"}
      assert Build.mode(%{"EMLX_BUILD" => "true"}, [], root) == :source
      assert {:precompiled, {:url, _}} = Build.mode(%{"EMLX_PRECOMPILED_URL" => "file:///d"}, [], root)
    end

    test "a named location without a checksum file uses the checksums published there", %{root: root} do
      env = %{"EMLX_PRECOMPILED_URL" => "file:///srv/emlx/"}
      assert Build.mode(env, [], root) == {:precompiled, {:url, "file:///srv/emlx"}}

      assert Build.mode(%{}, [precompiled_url: "https://example.org/v1"], root) ==
               {:precompiled, {:url, "https://example.org/v1"}}
    end
  end

  test "base_url/3: the named location, else the version's release" do
    assert Build.base_url(%{"EMLX_PRECOMPILED_URL" => "file:///d/"}, [], "1.2.3") == "file:///d"
    assert Build.base_url(%{}, [], "1.2.3") == Build.source_url() <> "/releases/download/v1.2.3"
  end

  test "artifact names carry version, target and variant" do
    assert Build.artifact_name("0.1.0", "x86_64-linux-gnu", "cuda") == "emlx-0.1.0-x86_64-linux-gnu-cuda.tar.gz"
  end

  test "cache_dir/1 follows EMLX_CACHE_DIR, then XDG_CACHE_HOME, then HOME (as build.rs)" do
    assert Build.cache_dir(%{"EMLX_CACHE_DIR" => "/c", "HOME" => "/h"}) == "/c/precompiled"
    assert Build.cache_dir(%{"XDG_CACHE_HOME" => "/x", "HOME" => "/h"}) == "/x/emlx/precompiled"
    assert Build.cache_dir(%{"HOME" => "/h"}) == "/h/.cache/emlx/precompiled"
  end

  test "the release publishes the four platform/variant pairs of the issue" do
    assert Enum.sort(Build.published()) == [
             {"aarch64-apple-darwin", "metal"},
             {"aarch64-linux-gnu", "cpu"},
             {"x86_64-linux-gnu", "cpu"},
             {"x86_64-linux-gnu", "cuda"}
           ]

    names = for {t, v} <- Build.published(), do: Build.artifact_name("9.9.9", t, v)
    checksums = Map.new(tl(names), &{&1, String.duplicate("0", 64)})
    assert EMLX.Build.Release.missing(checksums, "9.9.9") == [hd(names)]
    assert EMLX.Build.Release.missing(Map.new(names, &{&1, ""}), "9.9.9") == []
  end

  describe "RuntimeCheck" do
    alias EMLX.Build.RuntimeCheck

    test "reads the libraries ldd could not find, and says what provides them" do
      ldd = """
      \tlinux-vdso.so.1 (0x00007ffd)
      \tlibopenblas.so.0 => not found
      \tlibmlx.so => /x/priv/mlx/lib/libmlx.so (0x00007f)
      \tlibcuda.so.1 => not found
      \tlibcublasLt.so.13 => not found
      \tlibcuda.so.1 => not found
      """

      assert RuntimeCheck.missing_libraries(ldd) == ["libopenblas.so.0", "libcuda.so.1", "libcublasLt.so.13"]
      assert RuntimeCheck.advice("libopenblas.so.0") =~ "apt-get install libopenblas0-pthread"
      assert RuntimeCheck.advice("libcuda.so.1") =~ "NVIDIA driver"
      assert RuntimeCheck.advice("libcuda.so.1") =~ "unset EMLX_MLX_VARIANT"
      assert RuntimeCheck.advice("libnvrtc.so.13") =~ "CUDA 13 libraries"
      assert RuntimeCheck.advice("libfoo.so.2") =~ "libfoo.so.2 not found"
    end

    test "the NIF this suite loaded resolves every library it needs" do
      # The suite runs on the loaded NIF, so the loader found all of them.
      assert EMLX.NIF.load_error() == nil
      assert RuntimeCheck.warnings(to_string(:code.priv_dir(:emlx))) == []
    end
  end
end
