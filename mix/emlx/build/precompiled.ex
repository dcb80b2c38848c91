defmodule EMLX.Build.Precompiled do
  @moduledoc false
  # Installs a precompiled artifact into priv/: find its checksum, take it from
  # the cache or download it, verify its sha256, unpack it next to priv/ and
  # swap it in. Nothing reaches priv/ before its checksum matched.

  alias EMLX.Build
  alias EMLX.Build.{Artifact, Download}

  @doc """
  `opts`: `:root`, `:version`, `:target`, `:variant`, `:checksums`
  (`{:file, path}` or `{:url, base}`), `:base_url`, `:cache_dir`, `:env`.
  Returns `:installed` or `:up_to_date`; raises `Mix.Error` otherwise.
  """
  def install!(opts) do
    name = Build.artifact_name(opts[:version], opts[:target], opts[:variant])
    checksums = load_checksums!(opts[:checksums], opts[:env])
    expected = Map.get(checksums, name) || Mix.raise(no_entry(name, opts, checksums))
    priv = Build.priv_dir(opts[:root])

    if installed(priv) == {name, expected} do
      :up_to_date
    else
      url = "#{opts[:base_url]}/#{name}"

      with {:url, base} <- opts[:checksums] do
        Mix.shell().info(
          "emlx: this project carries no #{Build.checksum_file_name()} (a git checkout): " <>
            "using the checksums published at #{base}"
        )
      end

      artifact = cached_or_download!(name, url, expected, opts)
      swap_in!(artifact, priv, name, expected)
      Mix.shell().info("emlx: installed the precompiled #{name} (sha256 #{expected}) into #{priv}")
      :installed
    end
  end

  @doc "`{name, sha256}` of the artifact installed in `priv`, or nil."
  def installed(priv) do
    with {:ok, text} <- File.read(Path.join(priv, Artifact.marker())),
         [name, hex] <- String.split(String.trim(text), " ", parts: 2),
         true <- File.regular?(Path.join(priv, "libemlx.so")) do
      {name, hex}
    else
      _ -> nil
    end
  end

  defp load_checksums!({:file, path}, _env), do: Artifact.parse_checksums(File.read!(path))

  defp load_checksums!({:url, base}, env) do
    tmp = Path.join(System.tmp_dir!(), "emlx-checksums-#{System.unique_integer([:positive])}")
    url = "#{base}/#{Build.checksum_file_name()}"

    try do
      case Download.fetch(url, tmp, env) do
        :ok -> Artifact.parse_checksums(File.read!(tmp))
        {:error, msg} -> Mix.raise("emlx: cannot get the checksum file: #{msg}")
      end
    after
      File.rm(tmp)
    end
  end

  defp no_entry(name, opts, checksums) do
    available = checksums |> Map.keys() |> Enum.sort() |> Enum.join(", ")

    "emlx: no precompiled artifact #{name} for this platform (#{opts[:target]}, variant " <>
      "#{opts[:variant]}); the checksum file lists: #{if available == "", do: "nothing", else: available}. " <>
      "Choose another variant with EMLX_MLX_VARIANT, or build from source with EMLX_BUILD=true " <>
      "(needs Rust's cargo and a C++20 compiler)."
  end

  defp cached_or_download!(name, url, expected, opts) do
    cached = Path.join(opts[:cache_dir], name)

    if File.regular?(cached) and Artifact.sha256!(cached) == expected do
      cached
    else
      File.rm(cached)
      Mix.shell().info("emlx: downloading #{url}")
      tmp = "#{cached}.partial-#{System.unique_integer([:positive])}"

      case Download.fetch(url, tmp, opts[:env]) do
        :ok -> :ok
        {:error, msg} -> Mix.raise("emlx: #{msg}. #{fallback()}")
      end

      case Artifact.sha256!(tmp) do
        ^expected ->
          File.rename!(tmp, cached)
          cached

        got ->
          File.rm(tmp)
          Mix.raise(mismatch(name, url, expected, got, opts[:checksums]))
      end
    end
  end

  defp mismatch(name, url, expected, got, checksums) do
    from =
      case checksums do
        {:file, path} -> path
        {:url, base} -> "#{base}/#{Build.checksum_file_name()}"
      end

    "emlx: checksum mismatch for #{name} downloaded from #{url}: its sha256 is #{got}, " <>
      "but the checksum file #{from} says #{expected}. The file is damaged or was tampered " <>
      "with, and was not installed. Try again, check EMLX_PRECOMPILED_URL, or #{fallback()}"
  end

  defp fallback, do: "build from source with EMLX_BUILD=true (needs Rust's cargo and a C++20 compiler)"

  # Unpacks beside priv/ and renames, so an interrupted install never leaves a
  # half-written priv/ (a VM that mapped the old library keeps its copy).
  defp swap_in!(artifact, priv, name, sha) do
    tag = System.unique_integer([:positive])
    staging = "#{priv}.partial-#{tag}"
    old = "#{priv}.old-#{tag}"
    File.rm_rf!(staging)
    Artifact.unpack!(artifact, staging)

    unless File.regular?(Path.join(staging, "libemlx.so")) do
      File.rm_rf!(staging)
      Mix.raise("emlx: #{name} holds no libemlx.so: it is not an EMLX artifact")
    end

    File.write!(Path.join(staging, Artifact.marker()), "#{name} #{sha}\n")
    if File.exists?(priv), do: File.rename!(priv, old)
    File.rename!(staging, priv)
    File.rm_rf!(old)
  end
end
