defmodule EMLX.GuidesTest.Blocks do
  @moduledoc false
  # The fenced ```elixir blocks of a markdown file (indented ones included).
  def elixir_blocks(path) do
    ~r/^([ \t]*)```elixir\n(.*?)^[ \t]*```/ms
    |> Regex.scan(File.read!(path), capture: :all_but_first)
    |> Enum.map(fn [indent, body] ->
      body |> String.split("\n") |> Enum.map_join("\n", &String.replace_prefix(&1, indent, ""))
    end)
  end
end

defmodule EMLX.GuidesTest do
  # Every Elixir example of the guides (docs/*.md, built by `mix docs`) and of
  # the README runs: `iex>` examples as doctests (the printed results are
  # the assertions; they need Nx, so they run where Nx is available), and
  # every other Elixir block is a config snippet or a deps list, evaluated
  # here, so no example goes unchecked.
  use ExUnit.Case, async: true

  import EMLX.GuidesTest.Blocks

  @files ["README.md" | Path.wildcard("docs/*.md")]

  # The application keys the docs may configure: read by lib/ (default
  # device, inspect) and by mix/emlx/build.ex (how the NIF is installed).
  @config_keys %{
    emlx: [:default_device, :inspect_device, :variant, :build_from_source, :precompiled_url],
    nx: [:default_backend, :default_defn_options]
  }

  test "the guides ex_doc builds are the docs/ files" do
    extras =
      Enum.map(Mix.Project.config()[:docs][:extras], fn
        {path, _opts} -> path
        path -> path
      end)

    assert Enum.sort(for f <- extras, String.starts_with?(f, "docs/"), do: f) == Enum.sort(tl(@files))
  end

  for file <- @files do
    test "every Elixir block of #{file} runs" do
      blocks = elixir_blocks(unquote(file))
      assert blocks != [] or unquote(file) == "docs/known_differences.md"

      for block <- blocks do
        cond do
          block =~ ~r/^iex> /m ->
            # run by the doctests below
            :ok

          String.starts_with?(block, "import Config") ->
            config = Config.Reader.eval!(unquote(file), block)
            assert config != []

            for {app, keys} <- config do
              assert Map.has_key?(@config_keys, app), "#{unquote(file)}: config of unknown app #{app}"
              assert Keyword.keys(keys) -- @config_keys[app] == [], "#{unquote(file)}: unknown keys in #{block}"
            end

          true ->
            {deps, _} = Code.eval_string(block)
            assert [{:emlx, requirement} | _] = deps, "#{unquote(file)}: a block that does not run:\n#{block}"
            assert Version.match?(Mix.Project.config()[:version], requirement)
        end
      end
    end
  end

  if Code.ensure_loaded?(Nx) do
    doctest_file("README.md", tags: [:nx])

    for file <- Path.wildcard("docs/*.md"), File.read!(file) =~ "iex> " do
      doctest_file(file, tags: [:nx])
    end
  end
end
