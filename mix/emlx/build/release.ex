defmodule EMLX.Build.Release do
  @moduledoc false
  # Guards `mix hex.build` / `mix hex.publish`: the package must carry a
  # checksum file listing an artifact for every platform the release workflow
  # builds, or its users would silently fall back to building from source.

  alias EMLX.Build
  alias EMLX.Build.Artifact

  def check_checksums!(_args) do
    version = Mix.Project.config()[:version]
    path = Build.checksum_path()

    unless File.regular?(path) do
      Mix.raise(
        "#{Build.checksum_file_name()} is missing: download it from the v#{version} release " <>
          "(the release workflow publishes it with the artifacts) into #{Path.dirname(path)}"
      )
    end

    case missing(Artifact.parse_checksums(File.read!(path)), version) do
      [] -> :ok
      names -> Mix.raise("#{path} lists no checksum for: #{Enum.join(names, ", ")}")
    end
  end

  @doc "The artifacts of `version` that `checksums` lacks."
  def missing(checksums, version) do
    for {target, variant} <- Build.published(),
        name = Build.artifact_name(version, target, variant),
        not Map.has_key?(checksums, name),
        do: name
  end
end
