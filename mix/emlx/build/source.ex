defmodule EMLX.Build.Source do
  @moduledoc false
  # Builds the Rust NIF with cargo and installs it, with libmlx and the
  # libraries libmlx loads (in the wheel's relative layout), under priv/.

  alias EMLX.Build.Artifact

  @doc """
  `opts`: `:root`, `:priv` (where to install), `:env`, and `:variant_env`
  (an `EMLX_MLX_VARIANT` value for build.rs when it came from config, else nil).
  """
  def build!(opts) do
    root = opts[:root]
    priv = opts[:priv]
    env = opts[:env]
    profile = env["EMLX_CARGO_PROFILE"] || "release"
    target = env["CARGO_TARGET_DIR"] || Path.join(root, "target")

    cargo =
      System.find_executable("cargo") ||
        Mix.raise(
          "emlx: building from source needs Rust's cargo (https://rustup.rs), which is not on PATH. " <>
            "Without EMLX_BUILD=true, a Hex install of emlx downloads a precompiled NIF instead."
        )

    cargo_env = [{"CARGO_TARGET_DIR", target}] ++ if(v = opts[:variant_env], do: [{"EMLX_MLX_VARIANT", v}], else: [])

    {_, status} =
      System.cmd(cargo, ["build", "--profile", profile, "--manifest-path", Path.join(root, "Cargo.toml")],
        cd: root,
        into: IO.stream(:stdio, :line),
        stderr_to_stdout: true,
        env: cargo_env
      )

    if status != 0 do
      Mix.raise("cargo build of the EMLX NIF failed (exit #{status}); see the output above")
    end

    out_dir = Path.join(target, if(profile == "dev", do: "debug", else: profile))
    File.rm(Path.join(priv, Artifact.marker()))
    File.mkdir_p!(Path.join(priv, "mlx/lib"))

    nif = Enum.find(["libemlx.so", "libemlx.dylib"], &File.exists?(Path.join(out_dir, &1)))
    nif || Mix.raise("cargo did not produce libemlx in #{out_dir}")
    copy_if_changed(Path.join(out_dir, nif), Path.join(priv, "libemlx.so"))
    install_mlx(File.read!(Path.join(out_dir, "emlx-mlx-dir")), priv)
    install_blas(Path.join(out_dir, "emlx-blas"), Path.join(priv, "blas"))
    :ok
  end

  # The BLAS build.rs staged (build/blas.rs), next to the NIF's $ORIGIN/blas
  # rpath; none staged (system or no OpenBLAS): none installed.
  defp install_blas(staged, installed) do
    if File.dir?(staged) do
      File.mkdir_p!(installed)
      for file <- File.ls!(staged), do: copy_if_changed(Path.join(staged, file), Path.join(installed, file))
    else
      File.rm_rf!(installed)
    end
  end

  # `prefix` is an MLX prefix (include/, lib/). From a wheel it is `<root>/mlx`
  # and libmlx finds its BLAS/LAPACK in `<root>/<name>.libs` through its
  # `$ORIGIN/../../<name>.libs` rpath, so those folders come along.
  defp install_mlx(prefix, priv) do
    for file <- File.ls!(Path.join(prefix, "lib")),
        String.starts_with?(file, "libmlx") or String.ends_with?(file, ".metallib") do
      copy_if_changed(Path.join([prefix, "lib", file]), Path.join([priv, "mlx/lib", file]))
    end

    if Path.basename(prefix) == "mlx" do
      root = Path.dirname(prefix)

      for dir <- File.ls!(root), String.ends_with?(dir, ".libs") do
        File.cp_r!(Path.join(root, dir), Path.join(priv, dir))
      end
    end

    if EMLX.Build.Cuda.cuda?(prefix), do: EMLX.Build.Cuda.install(prefix, priv)
  end

  defp copy_if_changed(from, to) do
    unless File.exists?(to) and File.stat!(to).mtime >= File.stat!(from).mtime and
             File.stat!(to).size == File.stat!(from).size do
      # Replace rather than overwrite: the old file may be mapped by a VM.
      tmp = to <> ".tmp"
      File.cp!(from, tmp)
      File.rename!(tmp, to)
    end
  end
end
