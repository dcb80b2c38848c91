defmodule EMLX.Build do
  @moduledoc false
  # Mix-time code (loaded by mix.exs, not part of the application): decides
  # how `mix compile` puts the native library into priv/.
  #
  # - `:source`: cargo builds the NIF, libmlx comes from MLX's wheel (build.rs).
  # - `:precompiled`: the artifact for this platform and variant is downloaded,
  #   checked against the checksum file and unpacked into priv/.
  #
  # Every function takes the environment (a map) and the `:emlx` application
  # config (a keyword list) as arguments, so the rules are tested as data.

  @checksum_file "checksums.sha256"
  @source_url "https://github.com/elixir-nx/emlx"

  # target => variants with a release artifact (the release workflow's matrix)
  @targets %{
    "aarch64-apple-darwin" => ["metal"],
    "x86_64-linux-gnu" => ["cpu", "cuda"],
    "aarch64-linux-gnu" => ["cpu"]
  }

  @doc "The project root (where mix.exs lives)."
  def root, do: Path.expand("../..", __DIR__)

  def priv_dir(root \\ root()), do: Path.join(root, "priv")

  @doc "The checksum file the Hex package carries (absent in a git checkout)."
  def checksum_file_name, do: @checksum_file
  def checksum_path(root \\ root()), do: Path.join(root, @checksum_file)

  def source_url, do: @source_url

  @doc "Every `{target, variant}` the release workflow publishes."
  def published, do: for({t, vs} <- Enum.sort(@targets), v <- vs, do: {t, v})

  @doc """
  How to install: `:source`, `{:precompiled, checksums}` where `checksums`
  is `{:file, path}` (the package's checksum file) or `{:url, base}` (the
  checksum file published next to the artifacts, used only when the user
  names the location and the project carries none, as in a git checkout),
  or `{:keep, name}`: a checkout where an artifact was installed earlier and
  nothing asks for another install (so `mix test` after
  `EMLX_PRECOMPILED_URL=... mix compile` needs no Rust either).
  """
  def mode(env, config, root \\ root()) do
    cond do
      truthy?(env["EMLX_BUILD"]) or config[:build_from_source] == true -> :source
      File.regular?(checksum_path(root)) -> {:precompiled, {:file, checksum_path(root)}}
      url = explicit_url(env, config) -> {:precompiled, {:url, url}}
      installed = EMLX.Build.Precompiled.installed(priv_dir(root)) -> {:keep, elem(installed, 0)}
      true -> :source
    end
  end

  defp truthy?(value), do: value in ["1", "true", "TRUE", "yes"]

  defp explicit_url(env, config) do
    case env["EMLX_PRECOMPILED_URL"] || config[:precompiled_url] do
      url when url in [nil, ""] -> nil
      url -> String.trim_trailing(url, "/")
    end
  end

  @doc "Where artifacts are downloaded from: a `file://`, `http://` or `https://` base."
  def base_url(env, config, version) do
    explicit_url(env, config) || "#{@source_url}/releases/download/v#{version}"
  end

  @doc """
  This machine's target, from Erlang's system architecture string
  (`x86_64-pc-linux-gnu`, `aarch64-apple-darwin23.4.0`, ...).
  """
  def target(arch \\ to_string(:erlang.system_info(:system_architecture))) do
    parts = String.split(arch, "-")
    cpu = normalize_cpu(hd(parts))

    cond do
      Enum.any?(parts, &String.starts_with?(&1, "darwin")) -> "#{cpu}-apple-darwin"
      "linux" in parts and Enum.any?(parts, &String.starts_with?(&1, "musl")) -> "#{cpu}-linux-musl"
      "linux" in parts -> "#{cpu}-linux-gnu"
      true -> "#{cpu}-#{List.last(parts)}"
    end
  end

  defp normalize_cpu("arm64"), do: "aarch64"
  defp normalize_cpu("amd64"), do: "x86_64"
  defp normalize_cpu(cpu), do: cpu

  @doc """
  The MLX variant: `EMLX_MLX_VARIANT`, else `config :emlx, variant: ...`, else
  the platform's default (Metal on macOS, the CPU on Linux). Returns
  `{:ok, variant}` or `{:error, message}` for a choice this platform cannot run.
  """
  def variant(target, env, config) do
    chosen =
      case env["EMLX_MLX_VARIANT"] do
        v when v in [nil, ""] -> config[:variant] && to_string(config[:variant])
        v -> v
      end

    macos? = String.ends_with?(target, "-apple-darwin")
    variant = chosen || if(macos?, do: "metal", else: "cpu")

    cond do
      variant not in ["cpu", "metal", "cuda"] ->
        {:error,
         "unknown MLX variant #{inspect(variant)} (EMLX_MLX_VARIANT or config :emlx, :variant): use cpu, metal or cuda"}

      macos? and variant != "metal" ->
        {:error,
         "MLX on macOS is the metal variant (Apple GPU and CPU); #{variant} is for Linux: unset EMLX_MLX_VARIANT"}

      not macos? and variant == "metal" ->
        {:error, "the metal variant needs macOS on Apple silicon; on Linux use cpu (the default) or cuda"}

      variant == "cuda" and target != "x86_64-linux-gnu" ->
        {:error, "the cuda variant (MLX's mlx-cuda-13 build) exists for x86-64 Linux only, not #{target}"}

      true ->
        {:ok, variant}
    end
  end

  @doc "The artifact's file name."
  def artifact_name(version, target, variant), do: "emlx-#{version}-#{target}-#{variant}.tar.gz"

  @doc "Where downloaded artifacts are kept (the same cache build.rs uses for wheels)."
  def cache_dir(env) do
    cond do
      env["EMLX_CACHE_DIR"] not in [nil, ""] -> env["EMLX_CACHE_DIR"]
      env["XDG_CACHE_HOME"] not in [nil, ""] -> Path.join(env["XDG_CACHE_HOME"], "emlx")
      env["HOME"] not in [nil, ""] -> Path.join(env["HOME"], ".cache/emlx")
      true -> Path.join(System.tmp_dir!(), "emlx-cache")
    end
    |> Path.join("precompiled")
  end
end
