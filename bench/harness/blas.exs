defmodule Bench.Blas do
  @moduledoc """
  The BLAS on/off comparison's reference: the EMLX NIF built from this
  checkout with `EMLX_NO_OPENBLAS=1` (MLX then runs its GEMM on the
  reference BLAS bundled with its wheel), loaded in a second BEAM that
  bench/harness/blas_child.exs turns into a driver (see Bench.Driver).

  Everything it builds lives outside the repository, under the EMLX cache
  directory (`$EMLX_CACHE_DIR`, else `~/.cache/emlx`) in `bench-noblas/`:
  `target/` (its own CARGO_TARGET_DIR, so the normal build is untouched)
  and `lib/emlx/{ebin,priv}`, an application directory whose priv/ holds
  the OpenBLAS-free NIF next to the same libmlx as the main build.
  """

  @key {__MODULE__, :driver}

  @doc "Builds (incrementally) and starts the driver once per run."
  def start do
    case Process.get(@key) do
      nil ->
        result = build_and_start()
        Process.put(@key, result)
        result

      result ->
        result
    end
  end

  def stop do
    case Process.delete(@key) do
      {:ok, driver} -> Bench.Driver.stop(driver)
      _ -> :ok
    end
  end

  defp build_and_start do
    root = Path.expand("../..", __DIR__)
    base = Path.join(Bench.Python.cache_dir(), "bench-noblas")
    target = Path.join(base, "target")
    app = Path.join(base, "lib/emlx")

    IO.puts("Building the NIF without OpenBLAS into #{target} (the first time takes a few minutes)")

    {out, status} =
      System.cmd("cargo", ["build", "--release", "--manifest-path", Path.join(root, "Cargo.toml")],
        cd: root,
        env: [{"CARGO_TARGET_DIR", target}, {"EMLX_NO_OPENBLAS", "1"}],
        stderr_to_stdout: true
      )

    if status == 0 do
      install(app, Path.join(target, "release/libemlx.so"))
      spawn_child(app)
    else
      {:skip, "cargo build with EMLX_NO_OPENBLAS=1 failed: #{String.slice(out, -300, 300)}"}
    end
  end

  # An application directory beside the real one: the same compiled Elixir
  # code, a priv/ with the OpenBLAS-free NIF and the same libmlx layout.
  defp install(app, nif) do
    ebin = Path.join(app, "ebin")
    priv = Path.join(app, "priv")
    File.rm_rf!(ebin)
    File.mkdir_p!(priv)
    File.cp_r!(Path.join(:code.lib_dir(:emlx), "ebin"), ebin)
    real_priv = :code.priv_dir(:emlx) |> to_string()

    for entry <- File.ls!(real_priv), entry == "mlx" or String.ends_with?(entry, ".libs") do
      File.rm_rf!(Path.join(priv, entry))
      File.cp_r!(Path.join(real_priv, entry), Path.join(priv, entry))
    end

    # Replace rather than overwrite: a VM may still map the old file.
    File.cp!(nif, Path.join(priv, "libemlx.so.tmp"))
    File.rename!(Path.join(priv, "libemlx.so.tmp"), Path.join(priv, "libemlx.so"))
  end

  defp spawn_child(app) do
    elixir = System.find_executable("elixir")
    own = :code.lib_dir(:emlx) |> Path.join("ebin")

    # Elixir's own paths come with the `elixir` command; the dependencies
    # (Nx, complex, telemetry where present) come from this build.
    deps =
      for path <- :code.get_path(),
          path = to_string(path),
          String.starts_with?(path, Mix.Project.build_path()),
          Path.expand(path) != Path.expand(own),
          do: ["-pa", path]

    args = ["-pa", Path.join(app, "ebin")] ++ List.flatten(deps) ++ [Path.join(__DIR__, "blas_child.exs")]

    case Bench.Driver.start("noblas", elixir, args, [], &encode/1) do
      {:ok, driver} ->
        if driver.info =~ "blas=none",
          do: {:ok, driver},
          else: {:skip, "the EMLX_NO_OPENBLAS=1 build still loaded OpenBLAS (#{driver.info})"}

      {:error, reason} ->
        {:skip, "could not start the OpenBLAS-free VM: #{reason}"}
    end
  end

  defp encode(%{cmd: "setup", key: key, n: n}), do: "setup #{key} #{n}"
  defp encode(%{cmd: "run", key: key, inner: inner}), do: "run #{key} #{inner}"
  defp encode(%{cmd: cmd}), do: cmd
end
