defmodule Mix.Tasks.Compile.EmlxNative do
  @moduledoc false
  # Builds the Rust NIF with cargo and installs it, with libmlx and the
  # libraries libmlx loads (in the wheel's relative layout), under priv/.
  use Mix.Task.Compiler

  @root __DIR__

  @impl true
  def run(_args) do
    profile = System.get_env("EMLX_CARGO_PROFILE", "release")
    target = System.get_env("CARGO_TARGET_DIR", Path.join(@root, "target"))

    {_, status} =
      System.cmd("cargo", ["build", "--profile", profile, "--manifest-path", Path.join(@root, "Cargo.toml")],
        cd: @root,
        into: IO.stream(:stdio, :line),
        stderr_to_stdout: true,
        env: [{"CARGO_TARGET_DIR", target}]
      )

    if status != 0 do
      Mix.raise("cargo build of the EMLX NIF failed (exit #{status}); see the output above")
    end

    out_dir = Path.join(target, if(profile == "dev", do: "debug", else: profile))
    priv = Path.join(@root, "priv")
    File.mkdir_p!(Path.join(priv, "mlx/lib"))

    nif = Enum.find(["libemlx.so", "libemlx.dylib"], &File.exists?(Path.join(out_dir, &1)))
    nif || Mix.raise("cargo did not produce libemlx in #{out_dir}")
    copy_if_changed(Path.join(out_dir, nif), Path.join(priv, "libemlx.so"))
    install_mlx(File.read!(Path.join(out_dir, "emlx-mlx-dir")), priv)
    install_blas(Path.join(out_dir, "emlx-blas"), Path.join(priv, "blas"))

    Mix.Project.build_structure()
    {:ok, []}
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

defmodule EMLX.MixProject do
  use Mix.Project

  @version "0.1.0"

  def project do
    [
      app: :emlx,
      version: @version,
      elixir: "~> 1.17",
      start_permanent: Mix.env() == :prod,
      compilers: [:emlx_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: deps(),
      description: "Nx backend for Apple's MLX, with a Rust native layer",
      package: [
        licenses: ["Apache-2.0"],
        files: ~w(lib native build Cargo.toml Cargo.lock build.rs mix.exs README.md CHANGELOG.md)
      ]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {EMLX.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  # Hex dependencies. For offline work, EMLX_DEPS_DIR names a directory
  # holding local checkouts: every dependency (transitive ones included)
  # that has a sub-directory of the same name there is taken from it.
  # EMLX_NO_NX=1 builds without Nx: only the EMLX function API (no backend).
  defp deps do
    hex =
      if System.get_env("EMLX_NO_NX") in ["1", "true"] do
        []
      else
        [{:nx, "~> 0.13"}, {:telemetry, "~> 1.0", optional: true}]
      end

    local_overrides(hex)
  end

  @transitive [:complex, :telemetry]

  defp local_overrides(deps) do
    case System.get_env("EMLX_DEPS_DIR") do
      dir when dir in [nil, ""] ->
        deps

      dir ->
        # A checkout of a rebar3 project (telemetry) builds with Debian's rebar3
        # when Mix has none of its own (it would fetch one from Hex).
        rebar3 = System.find_executable("rebar3")
        if rebar3 && !System.get_env("MIX_REBAR3"), do: System.put_env("MIX_REBAR3", rebar3)

        names = Enum.uniq(Enum.map(deps, &elem(&1, 0)) ++ if(deps == [], do: [], else: @transitive))

        for name <- names do
          path = Path.join(Path.expand(dir), Atom.to_string(name))
          declared = List.keyfind(deps, name, 0)

          cond do
            File.dir?(path) -> {name, path: path, override: true}
            declared -> declared
            true -> nil
          end
        end
        |> Enum.reject(&is_nil/1)
    end
  end
end
