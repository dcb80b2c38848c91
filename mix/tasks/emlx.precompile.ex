defmodule Mix.Tasks.Emlx.Precompile do
  use Mix.Task

  @shortdoc "Writes this machine's precompiled EMLX artifact and its checksum into a directory"

  @moduledoc """
  Builds the NIF from source and writes the precompiled artifact for this
  machine's platform and MLX variant into `DIR`:

      mix emlx.precompile DIR
      EMLX_MLX_VARIANT=cuda mix emlx.precompile DIR

  `DIR` receives `emlx-<version>-<target>-<variant>.tar.gz` (the whole
  installed `priv/` tree: the NIF, libmlx and the libraries next to it), its
  `.sha256` file, and an entry in `DIR/checksums.sha256`. A project that has
  that checksum file (the Hex package carries it) or names `DIR` with
  `EMLX_PRECOMPILED_URL=file:///path/to/DIR` installs from it at `mix compile`
  without Rust. The release workflow (`.github/workflows/release.yml`) runs
  this task on each platform.
  """

  alias EMLX.Build
  alias EMLX.Build.{Artifact, Source}
  alias Mix.Tasks.Compile.EmlxNative

  @impl true
  def run([dir]) do
    env = System.get_env()
    config = Application.get_all_env(:emlx)
    root = Build.root()
    target = Build.target()
    variant = EmlxNative.variant!(target, env, config)

    # A fresh install tree, so nothing left in priv/ by another variant's
    # build comes along.
    staging = Path.join(root, "target/emlx-precompile/priv")
    File.rm_rf!(staging)
    Source.build!(root: root, priv: staging, env: env, variant_env: EmlxNative.variant_env(env, config))

    name = Build.artifact_name(Mix.Project.config()[:version], target, variant)
    dest = Path.join(Path.expand(dir), name)
    %{files: files, skipped: skipped} = Artifact.pack!(staging, dest)
    sha = Artifact.sha256!(dest)
    File.write!(dest <> ".sha256", Artifact.format_checksums(%{name => sha}))
    Artifact.merge_checksums!(Path.join(Path.dirname(dest), Build.checksum_file_name()), %{name => sha})

    for link <- skipped do
      Mix.shell().error("emlx.precompile: left out priv/#{link}: a link to outside priv/")
    end

    Mix.shell().info("emlx.precompile: wrote #{dest} (#{files} files, sha256 #{sha})")
  end

  def run(_), do: Mix.raise("usage: mix emlx.precompile DIR")
end
