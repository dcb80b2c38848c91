# Needs Nx (and EMLX.Backend): compiled only where Nx is available.
if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Reliability.FuzzTest do
    # The differential fuzzer (test/support/fuzz*): random Nx programs run on
    # EMLX.Backend and on Nx.BinaryBackend, compared step by step.
    #
    #   mix test                                  # short mode: 300 programs
    #   EMLX_FUZZ=10000 mix test --only fuzz      # long mode
    #   EMLX_FUZZ_SEED=42 EMLX_FUZZ_ONLY=17 mix test --only fuzz   # one program
    #
    # The seed is ExUnit's (`mix test --seed N`) unless EMLX_FUZZ_SEED is set;
    # a failure prints the seed, the program and a reproducer.
    use ExUnit.Case, async: true

    @moduletag :nx
    @moduletag :fuzz
    @moduletag timeout: :infinity

    alias EMLX.Fuzz
    alias EMLX.Fuzz.{Compare, Gen, Repro, Values}

    @backend if Code.ensure_loaded?(EMLX.Backend), do: EMLX.Backend

    describe "EMLX.Backend against Nx.BinaryBackend" do
      if @backend == nil do
        @tag skip: "EMLX.Backend is not part of this build yet"
      end

      test "random programs agree" do
        seed = env_int("EMLX_FUZZ_SEED") || ExUnit.configuration()[:seed]
        count = env_int("EMLX_FUZZ") || 300

        report =
          case env_int("EMLX_FUZZ_ONLY") do
            nil ->
              Fuzz.run(count, seed: seed, backend: @backend)

            i ->
              r = Fuzz.check(Gen.program({seed, i, 7919}), @backend)

              %{
                programs: 1,
                steps: 0,
                ops: %{},
                known: Enum.frequencies(r.known),
                mismatches: Enum.map(r.mismatches, &Map.put(&1, :program, {seed, i}))
              }
          end

        IO.puts(
          "\nfuzz (seed #{seed}): #{report.programs} programs, #{report.steps} steps, " <>
            "#{length(report.mismatches)} mismatches, known differences: #{inspect(report.known)}"
        )

        failures = report.mismatches |> Enum.take(10) |> Enum.map_join("\n", &Fuzz.describe/1)
        assert report.mismatches == [], "#{length(report.mismatches)} mismatches, the first ones:\n\n" <> failures
      end
    end

    describe "the harness" do
      test "a program is a function of its seed" do
        for i <- 0..20 do
          a = Gen.program({7, i, 7919})
          b = Gen.program({7, i, 7919})
          assert a.steps == b.steps
          assert Map.keys(a.values) == Map.keys(b.values)
          assert Enum.all?(Map.keys(a.values), &(a.values[&1] == b.values[&1]))
        end
      end

      test "over many programs every op, every input type and non-contiguous operands appear" do
        programs = for i <- 0..1499, do: Gen.program({11, i, 7919})
        steps = Enum.flat_map(programs, & &1.steps)
        assert Gen.ops() -- Enum.map(steps, & &1.op) == []

        types = programs |> Enum.flat_map(&Map.values(&1.values)) |> Enum.map(& &1.type) |> Enum.uniq()
        assert Enum.sort(types) == Enum.sort(Enum.uniq(Values.float_types() ++ Values.int_types()))

        views = for s <- steps, {:view, _, [{kind, _} | _]} <- s.args, do: kind
        views = views ++ for(s <- steps, {:view, _, [{kind, _, _, _} | _]} <- s.args, do: kind)
        assert Enum.sort(Enum.uniq(views)) == [:broadcast, :reverse, :slice, :transpose]

        values = programs |> Enum.flat_map(&Map.values(&1.values)) |> Enum.flat_map(&Nx.to_flat_list/1)
        assert :nan in values and :infinity in values and :neg_infinity in values
        assert Enum.any?(steps, &(Enum.any?(Gen.refs(&1.args), fn i -> i > 0 end) and &1.exact?))
      end

      test "Nx.BinaryBackend against itself: no mismatch" do
        report = Fuzz.run(150, seed: 3, backend: Nx.BinaryBackend)
        assert report.programs == 150
        assert report.mismatches == []
      end

      test "a planted bug is found, with the seed and a reproducer that runs" do
        # subtract computes an add on the tested side only.
        report =
          Fuzz.run(150, seed: 5, backend: Nx.BinaryBackend, override: %{subtract: fn [a, b], _ -> Nx.add(a, b) end})

        assert [m | _] = report.mismatches
        assert Enum.all?(report.mismatches, &(&1.op == :subtract))
        text = Fuzz.describe(m)
        assert text =~ "seed 5" and text =~ "EMLX_FUZZ_ONLY="

        # The reproducer is Nx code that rebuilds the inputs and the call; run
        # as is, it gives the expected (reference) result.
        {program_seed, i} = m.program
        step = Enum.at(Gen.program({program_seed, i, 7919}).steps, m.step)
        ref = Gen.program({program_seed, i, 7919}).values
        {got, _} = Code.eval_string(m.repro)
        assert got == Map.fetch!(ref, hd(step.out))
      end

      test "every known-difference rule has its section in docs/known_differences.md" do
        doc = File.read!(Path.expand("../../../docs/known_differences.md", __DIR__))
        for rule <- EMLX.Fuzz.Known.sections(), do: assert(doc =~ "[`#{rule}`]", "#{rule} is not documented")
      end

      test "literals rebuild NaN, infinities, -0.0 and every type bit for bit" do
        for type <- Values.float_types() ++ Values.int_types() do
          t = Values.tensor(type, {3, 4})
          {back, _} = Code.eval_string(Repro.literal(t))
          assert Nx.to_binary(back) == Nx.to_binary(t) and back.type == t.type and back.shape == t.shape
        end

        t = Nx.tensor([:nan, :infinity, :neg_infinity, -0.0, 1.5], type: :bf16)
        {back, _} = Code.eval_string(Repro.literal(t))
        assert Nx.to_binary(back) == Nx.to_binary(t)
      end
    end

    describe "comparison" do
      defp f32(list), do: Nx.tensor(list, type: :f32)

      test "NaN meets only NaN, an infinity only the same infinity, -0.0 equals 0.0" do
        ok = [{[:nan], [:nan]}, {[:infinity], [:infinity]}, {[-0.0], [0.0]}, {[:neg_infinity], [:neg_infinity]}]
        bad = [{[:nan], [1.0]}, {[1.0], [:nan]}, {[:infinity], [:neg_infinity]}, {[:infinity], [3.4e38]}]

        for tol <- [:exact, :rounded, :approx, {:sum, 4}] do
          for {r, g} <- ok, do: assert(Compare.compare(f32(r), f32(g), tol, 1.0) == :ok)
          for {r, g} <- bad, do: assert({:mismatch, _} = Compare.compare(f32(r), f32(g), tol, 1.0))
        end
      end

      test "tolerances are counted in ulps of the output type" do
        # 1 + 2^-23 is one f32 ulp above 1.0.
        one_up = f32([1.0 + :math.pow(2, -23)])
        assert {:mismatch, _} = Compare.compare(f32([1.0]), one_up, :exact, 1.0)
        assert :ok = Compare.compare(f32([1.0]), one_up, :rounded, 1.0)
        assert {:mismatch, _} = Compare.compare(f32([1.0]), f32([1.001]), :approx, 1.0)

        # bf16 (8 bits of precision): 1.0 and 1.0078125 are one ulp apart.
        bf = &Nx.tensor(&1, type: :bf16)
        assert :ok = Compare.compare(bf.([1.0]), bf.([1.0078125]), :rounded, 1.0)
        assert {:mismatch, _} = Compare.compare(bf.([1.0]), bf.([1.0625]), :rounded, 1.0)

        # Integers are exact whatever the class.
        assert {:mismatch, _} = Compare.compare(Nx.tensor([7]), Nx.tensor([8]), {:sum, 100}, 1.0)
      end

      test "types and shapes must be equal" do
        assert {:mismatch, "type" <> _} = Compare.compare(f32([1.0]), Nx.tensor([1.0], type: :f64), :approx, 1.0)
        assert {:mismatch, "shape" <> _} = Compare.compare(f32([1.0, 2.0]), f32([[1.0, 2.0]]), :approx, 1.0)
      end
    end

    defp env_int(name) do
      case System.get_env(name) do
        nil -> nil
        "" -> nil
        v -> v |> String.replace("_", "") |> String.to_integer()
      end
    end
  end
end
