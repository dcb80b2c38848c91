defmodule EMLX.Build.Artifact do
  @moduledoc false
  # A precompiled artifact is the whole installed priv/ tree (the NIF, libmlx
  # and everything the source build put next to it) as a .tar.gz, written and
  # read with :erl_tar (no tar or gzip program needed). Checksums are kept in
  # `sha256sum` format ("<hex>  <name>" lines), so `sha256sum -c` checks them.

  # Written into priv/ after an install: which artifact is there.
  @marker ".emlx-artifact"

  def marker, do: @marker

  @doc """
  Packs every file under `priv` into the .tar.gz `dest`. Symbolic links that
  stay inside `priv` are kept as links; links that leave it would dangle on
  another machine, so they are left out and returned as `skipped`.
  """
  def pack!(priv, dest) do
    {entries, skipped} = walk(priv, "", {[], []})
    File.mkdir_p!(Path.dirname(dest))
    tmp = dest <> ".partial"

    files = for rel <- Enum.sort(entries), do: {String.to_charlist(rel), String.to_charlist(Path.join(priv, rel))}

    case :erl_tar.create(String.to_charlist(tmp), files, [:compressed]) do
      :ok -> File.rename!(tmp, dest)
      {:error, reason} -> Mix.raise("cannot write #{dest}: #{inspect(reason)}")
    end

    %{files: length(entries), skipped: Enum.sort(skipped)}
  end

  defp walk(root, rel, acc) do
    Enum.reduce(File.ls!(Path.join(root, rel)), acc, fn name, {keep, skip} ->
      rel_name = if rel == "", do: name, else: Path.join(rel, name)
      path = Path.join(root, rel_name)

      case File.lstat!(path).type do
        :directory -> walk(root, rel_name, {keep, skip})
        :symlink -> if link_inside?(root, rel_name), do: {[rel_name | keep], skip}, else: {keep, [rel_name | skip]}
        _ when name == @marker and rel == "" -> {keep, skip}
        _ -> {[rel_name | keep], skip}
      end
    end)
  end

  defp link_inside?(root, rel_name) do
    {:ok, target} = File.read_link(Path.join(root, rel_name))
    root = Path.expand(root)
    resolved = Path.expand(target, Path.join(root, Path.dirname(rel_name)))
    Path.type(target) == :relative and String.starts_with?(resolved, root <> "/")
  end

  @doc "Unpacks the .tar.gz `archive` into the directory `dest` (created)."
  def unpack!(archive, dest) do
    File.mkdir_p!(dest)

    case :erl_tar.extract(String.to_charlist(archive), [:compressed, {:cwd, String.to_charlist(dest)}]) do
      :ok -> :ok
      {:error, reason} -> Mix.raise("cannot unpack #{archive}: #{inspect(reason)}")
    end
  end

  @doc "The sha256 of a file, in lower-case hex, read in chunks."
  def sha256!(path) do
    # Mix keeps only the project's applications on the code path.
    Mix.ensure_application!(:crypto)

    path
    |> File.stream!(1_048_576)
    |> Enum.reduce(:crypto.hash_init(:sha256), &:crypto.hash_update(&2, &1))
    |> :crypto.hash_final()
    |> Base.encode16(case: :lower)
  end

  @doc "Parses checksum-file text into `%{name => hex}`."
  def parse_checksums(text) do
    for line <- String.split(text, "\n"),
        line = String.trim(line),
        line != "" and not String.starts_with?(line, "#"),
        into: %{} do
      case Regex.run(~r/^([0-9a-fA-F]{64}) [ *](\S+)$/, line) do
        [_, hex, name] -> {name, String.downcase(hex)}
        nil -> Mix.raise("malformed line in the EMLX checksum file: #{inspect(line)}")
      end
    end
  end

  @doc "Checksum-file text for `%{name => hex}`, sorted by name."
  def format_checksums(map) do
    Enum.map_join(Enum.sort(map), fn {name, hex} -> "#{hex}  #{name}\n" end)
  end

  @doc "Adds `entries` to the checksum file at `path` (created if missing)."
  def merge_checksums!(path, entries) do
    old = if File.regular?(path), do: parse_checksums(File.read!(path)), else: %{}
    File.write!(path, format_checksums(Map.merge(old, entries)))
  end
end
