defmodule Mix.Tasks.Compile.EmlxNative do
  @moduledoc false
  # The first compiler of the emlx project: puts the native library into
  # priv/, from a precompiled artifact or a source build (see EMLX.Build).

  use Mix.Task.Compiler

  alias EMLX.Build
  alias EMLX.Build.{Precompiled, RuntimeCheck, Source}

  @impl true
  def run(_args) do
    env = System.get_env()
    config = Application.get_all_env(:emlx)
    root = Build.root()
    priv = Build.priv_dir(root)
    target = Build.target()
    version = Mix.Project.config()[:version]

    case Build.mode(env, config, root) do
      :source ->
        # With MLX_DIR the user's MLX install decides; the variant only names a wheel.
        if env["MLX_DIR"] in [nil, ""], do: variant!(target, env, config)
        Source.build!(root: root, priv: priv, env: env, variant_env: variant_env(env, config))

      {:keep, name} ->
        wanted = Build.artifact_name(version, target, variant!(target, env, config))

        if name != wanted do
          Mix.raise(
            "emlx: priv/ holds the precompiled #{name}, not #{wanted}: set EMLX_PRECOMPILED_URL " <>
              "to install it, or EMLX_BUILD=true to build from source"
          )
        end

        Mix.shell().info("emlx: using the precompiled #{name} installed in priv/ (EMLX_BUILD=true builds from source)")

      {:precompiled, checksums} ->
        Precompiled.install!(
          root: root,
          version: version,
          target: target,
          variant: variant!(target, env, config),
          checksums: checksums,
          base_url: Build.base_url(env, config, version),
          cache_dir: Build.cache_dir(env),
          env: env
        )
    end

    RuntimeCheck.report(priv)
    Mix.Project.build_structure()
    {:ok, []}
  end

  @doc false
  def variant!(target, env, config) do
    case Build.variant(target, env, config) do
      {:ok, variant} -> variant
      {:error, message} -> Mix.raise("emlx: #{message}")
    end
  end

  # build.rs reads EMLX_MLX_VARIANT from the environment; a variant chosen in
  # config reaches it the same way.
  @doc false
  def variant_env(env, config) do
    if env["EMLX_MLX_VARIANT"] in [nil, ""] and config[:variant], do: to_string(config[:variant])
  end
end
