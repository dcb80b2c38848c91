# Mix-time code (the native-library compiler, `mix emlx.precompile` and the
# rules they share) lives in mix/: it runs before lib/ is compiled.
for file <- Path.wildcard(Path.join(__DIR__, "mix/**/*.ex")), do: Code.require_file(file)

defmodule EMLX.MixProject do
  use Mix.Project

  @version "0.1.0"
  @source_url EMLX.Build.source_url()

  def project do
    [
      app: :emlx,
      name: "EMLX",
      version: @version,
      elixir: "~> 1.17",
      start_permanent: Mix.env() == :prod,
      compilers: [:emlx_native] ++ Mix.compilers(),
      elixirc_paths: elixirc_paths(Mix.env()),
      deps: deps(),
      aliases: aliases(),
      description: "Nx backend for Apple's MLX, with a Rust native layer",
      source_url: @source_url,
      docs: docs(),
      package: [
        licenses: ["Apache-2.0"],
        links: %{"GitHub" => @source_url},
        # Sources only: the NIF is downloaded (checked against checksums.sha256)
        # or built from these at `mix compile`.
        files:
          ~w(lib mix native build Cargo.toml Cargo.lock build.rs mix.exs .formatter.exs README.md CHANGELOG.md) ++
            [EMLX.Build.checksum_file_name()]
      ]
    ]
  end

  # hex.publish builds the docs too, so it runs where ex_doc is.
  def cli, do: [preferred_envs: [docs: :docs, "hex.publish": :docs]]

  defp docs do
    [
      main: "getting_started",
      source_ref: "v#{@version}",
      extras: [
        "docs/getting_started.md",
        "docs/backend.md",
        "docs/known_differences.md",
        "docs/command_queues.md",
        "docs/llm_inference.md",
        "docs/performance.md",
        "docs/size_limits.md",
        "docs/thread_checking.md",
        {"bench/RESULTS.md", title: "Benchmark results"},
        "docs/migrating_from_0_4.md",
        "CHANGELOG.md"
      ],
      groups_for_extras: [Guides: ~r{^docs/}, Reference: ["bench/RESULTS.md", "CHANGELOG.md"]],
      # EMLX.Backend's moduledoc names its internal sections (hidden modules).
      skip_code_autolink_to:
        ~w(Creation Elementwise Shape Indexing Reduction Window Linalg Conv Block)
        |> Enum.map(&"EMLX.Backend.#{&1}")
        |> Kernel.++(["EMLX.Backend.block/4"]),
      groups_for_modules: [
        "Nx backend": [EMLX.Backend, EMLX.Quantization, EMLX.Quantization.Config],
        "MLX functions": [EMLX, EMLX.Fast, EMLX.Types, EMLX.NIFError],
        "Queues and telemetry": [EMLX.CommandQueue, EMLX.Telemetry]
      ]
    ]
  end

  def application do
    [extra_applications: [:logger], mod: {EMLX.Application, []}]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  # A package without the checksum file would make every user build from
  # source: refuse to build or publish one.
  defp aliases do
    [
      "hex.build": [&EMLX.Build.Release.check_checksums!/1, "hex.build"],
      "hex.publish": [&EMLX.Build.Release.check_checksums!/1, "hex.publish"]
    ]
  end

  # Hex dependencies. For offline work, EMLX_DEPS_DIR names directories (a
  # PATH-style list) holding local checkouts: every dependency (transitive ones
  # included) that has a sub-directory of the same name there is taken from it.
  # EMLX_NO_NX=1 builds without Nx: only the EMLX function API (no backend).
  # ex_doc (`mix docs`) is declared only where it can be had: from Hex or a checkout.
  defp deps do
    nx =
      if System.get_env("EMLX_NO_NX") in ["1", "true"] do
        []
      else
        [{:nx, "~> 0.13"}, {:telemetry, "~> 1.0", optional: true}]
      end

    # Offline (EMLX_DEPS_DIR), only a local checkout of ex_doc is used.
    docs? = local_checkout(:ex_doc) || (local_dirs() == [] and Code.ensure_loaded?(Hex))
    docs = if docs?, do: [{:ex_doc, "~> 0.40", only: :docs, runtime: false}], else: []

    local_overrides(nx ++ docs)
  end

  # Dependencies of each declared one that a checkout must provide too.
  @transitive %{
    nx: [:complex, :telemetry],
    ex_doc: [:earmark_parser, :makeup, :makeup_elixir, :makeup_erlang, :nimble_parsec]
  }

  defp local_dirs do
    case System.get_env("EMLX_DEPS_DIR") do
      dirs when dirs in [nil, ""] -> []
      dirs -> dirs |> String.split(":", trim: true) |> Enum.map(&Path.expand/1)
    end
  end

  defp local_checkout(name) do
    Enum.find_value(local_dirs(), fn dir ->
      path = Path.join(dir, Atom.to_string(name))
      File.dir?(path) && path
    end)
  end

  defp local_overrides(deps) do
    if local_dirs() == [] do
      deps
    else
      # A checkout of a rebar3 project (telemetry) builds with Debian's rebar3
      # when Mix has none of its own (it would fetch one from Hex).
      rebar3 = System.find_executable("rebar3")
      if rebar3 && !System.get_env("MIX_REBAR3"), do: System.put_env("MIX_REBAR3", rebar3)

      # A transitive checkout is needed in the environments of the dependency that brings it.
      named =
        for {name, _, _} = dep <- Enum.map(deps, &with_opts/1),
            entry <- [{name, dep} | for(t <- Map.get(@transitive, name, []), do: {t, dep})],
            uniq: true,
            do: entry

      named
      |> Enum.uniq_by(&elem(&1, 0))
      |> Enum.map(fn {name, {parent, _req, opts}} ->
        only = Keyword.take(opts, [:only, :runtime])

        case local_checkout(name) do
          nil -> if name == parent, do: List.keyfind(deps, name, 0)
          path -> {name, [path: path, override: true] ++ only}
        end
      end)
      |> Enum.reject(&is_nil/1)
    end
  end

  defp with_opts({name, req}), do: {name, req, []}
  defp with_opts({name, req, opts}), do: {name, req, opts}
end
