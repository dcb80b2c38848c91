if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz do
    @moduledoc false
    # The differential fuzzer: random Nx programs (EMLX.Fuzz.Gen) run on a
    # backend under test and compared with Nx.BinaryBackend, step by step.
    #
    # Each step is checked three times:
    # - isolated: its operands are the reference values, copied to the
    #   backend and laid out by the step's views, so a difference is the
    #   op's own (no error carried in from earlier steps);
    # - compiled: the same, through `Nx.Defn.jit(..., compiler: EMLX)`;
    # - chained: the whole program runs on the backend, each step consuming
    #   the backend's own earlier results (lazy graphs, views of views);
    #   compared only where every value upstream is exact.
    # Then the whole program runs once more as one compiled function (its
    # inputs the parameters, every step's results the outputs), compared
    # like the chained run.
    #
    # A mismatch carries the seed, the step and a reproducer: the op with its
    # inputs as Nx literals. Known, documented differences
    # (EMLX.Fuzz.Known, docs/known_differences.md) are counted, not failed.

    alias EMLX.Fuzz.{Compare, Exec, Gen, Known}

    @doc """
    Runs `count` programs. Options: `:seed` (integer), `:backend`,
    `:override` (%{op => fun(args, opts)} replacing an op on the tested side:
    the harness's own test plants a bug with it).
    """
    def run(count, opts) do
      seed = Keyword.fetch!(opts, :seed)
      backend = Keyword.fetch!(opts, :backend)
      override = Keyword.get(opts, :override, %{})

      Enum.reduce(0..(count - 1)//1, empty(), fn i, acc ->
        program = Gen.program({seed, i, 7919})
        report = check(program, backend, override)

        %{
          acc
          | programs: acc.programs + 1,
            steps: acc.steps + length(program.steps),
            ops: Enum.reduce(program.steps, acc.ops, &Map.update(&2, &1.op, 1, fn n -> n + 1 end)),
            mismatches: acc.mismatches ++ Enum.map(report.mismatches, &Map.put(&1, :program, {seed, i})),
            known: Enum.reduce(report.known, acc.known, &Map.update(&2, &1, 1, fn n -> n + 1 end))
        }
      end)
    end

    defp empty, do: %{programs: 0, steps: 0, ops: %{}, mismatches: [], known: %{}}

    @doc "Checks one program; `%{mismatches: [...], known: [reason]}`."
    def check(%{values: values, steps: steps}, backend, override \\ %{}) do
      ref = values |> Enum.sort() |> Enum.map(&elem(&1, 1)) |> List.to_tuple()
      chain = copy_inputs(ref, steps, backend)

      {found, _chain} =
        steps
        |> Enum.with_index()
        |> Enum.reduce({[], chain}, fn {step, k}, {found, chain} ->
          isolated = judge(step, k, :isolated, run_step(step, ref, backend, override), ref)
          compiled = if override == %{}, do: judge(step, k, :compiled, run_compiled(step, ref, backend), ref), else: []
          isolated = if isolated == [], do: compiled, else: isolated
          chained_out = run_step(step, chain, backend, override)
          # The chained run is compared where its inputs are exact, and adds a
          # report only when the isolated run passed (else it is the same one).
          chained = if step.exact?, do: judge(step, k, :chained, chained_out, ref), else: []
          chained = if isolated == [], do: chained, else: []
          # Downstream of a difference the chain goes on from the reference
          # value, so one difference is reported once.
          failed? = isolated != [] or chained != []
          chain = keep(chain, step, if(failed?, do: :failed, else: chained_out), ref, backend)
          {found ++ isolated ++ chained, chain}
        end)

      # The program compiled as a whole; reported only where no step failed
      # on its own (else it is the same difference again).
      found = if found == [], do: judge_program(steps, ref, chain, backend), else: found

      {known, mismatches} = Enum.split_with(found, & &1.known)
      %{mismatches: mismatches, known: Enum.map(known, & &1.known)}
    end

    @compiled [compiler: EMLX, device: :cpu]

    # The step's op as a compiled function of its (already laid out) tensor
    # operands.
    defp run_compiled(step, values, backend) do
      args = Enum.map(step.args, &Exec.arg(&1, values, backend))
      {params, rebuild} = Exec.params(args)

      out =
        Nx.Defn.jit_apply(
          fn params -> Exec.apply_op(step.op, rebuild.(params), step.opts, nil) end,
          [params],
          @compiled
        )

      outs = if is_tuple(out), do: Tuple.to_list(out), else: [out]
      {:ok, outs, read_back(outs)}
    rescue
      e -> {:raised, e}
    end

    # Every step of the program in one compiled function of the program's
    # inputs; each exact step's results compared with the reference.
    defp judge_program(steps, ref, chain, backend) do
      inputs = for i <- 0..(tuple_size(chain) - 1)//1, elem(chain, i) != nil, do: i
      produced = steps |> Enum.flat_map(& &1.out) |> MapSet.new()
      inputs = Enum.reject(inputs, &(&1 in produced))
      params = inputs |> Enum.map(&Nx.backend_copy(elem(ref, &1), backend)) |> List.to_tuple()

      program = fn params ->
        values =
          inputs |> Enum.zip(Tuple.to_list(params)) |> Enum.reduce(ref, fn {i, t}, acc -> put_elem(acc, i, t) end)

        {values, outs} =
          Enum.reduce(steps, {values, []}, fn step, {values, outs} ->
            out = Exec.apply_op(step.op, Enum.map(step.args, &Exec.arg(&1, values, nil)), step.opts, nil)
            out = if is_tuple(out), do: Tuple.to_list(out), else: [out]
            values = step.out |> Enum.zip(out) |> Enum.reduce(values, fn {i, t}, acc -> put_elem(acc, i, t) end)
            {values, [out | outs]}
          end)

        _ = values
        outs |> Enum.reverse() |> List.flatten() |> List.to_tuple()
      end

      result =
        try do
          {:ok, Nx.Defn.jit_apply(program, [params], @compiled)}
        rescue
          e -> {:raised, e}
        end

      case result do
        {:raised, e} ->
          [
            %{
              step: :program,
              op: :program,
              mode: :compiled_program,
              known: nil,
              repro: "(the whole program)",
              reason: "raised #{inspect(e.__struct__)}: #{Exception.message(e) |> String.slice(0, 300)}"
            }
          ]

        {:ok, outs} ->
          mine = by_step(steps, Tuple.to_list(outs))

          found =
            for {step, k, outs} <- mine,
                step.exact?,
                m <- judge(step, k, :compiled_program, {:ok, outs, read_back(outs)}, ref),
                do: m

          explain_rewrites(found, steps, program, params, mine, ref)
      end
    end

    # A whole program's outputs split by step: [{step, k, its outputs}].
    defp by_step(steps, outs) do
      {split, []} =
        steps
        |> Enum.with_index()
        |> Enum.map_reduce(outs, fn {step, k}, outs ->
          {its, rest} = Enum.split(outs, length(step.out))
          {{step, k, its}, rest}
        end)

      split
    end

    defp read_back(outs), do: Enum.map(outs, &Nx.backend_copy(&1, Nx.BinaryBackend))

    # Nx's expression builder rewrites some compositions of ops as it
    # records them (docs/known_differences.md, `nx_expression_rewrite`), so
    # a whole compiled program can differ from running its steps one by one
    # on any compiler. An unexplained difference whose value Nx's own
    # Evaluator on Nx.BinaryBackend reproduces, from the same inputs and the
    # same defn, is that rewrite: it is counted as known.
    defp explain_rewrites(found, steps, program, params, mine, ref) do
      with false <- Enum.all?(found, & &1.known),
           {:ok, oracle} <- evaluator_outputs(program, params) do
        theirs = by_step(steps, oracle)
        Enum.map(found, &explain_rewrite(&1, mine, theirs, ref))
      else
        _ -> found
      end
    end

    defp explain_rewrite(%{known: nil, step: k} = m, mine, theirs, ref) when is_integer(k) do
      {step, ^k, got} = Enum.at(mine, k)
      {_, ^k, expected} = Enum.at(theirs, k)
      scale = Compare.step_scale(step.op, Enum.map(Gen.refs(step.args), &elem(ref, &1)))

      same? =
        Enum.zip(expected, read_back(got)) |> Enum.all?(fn {e, g} -> Compare.compare(e, g, step.tol, scale) == :ok end)

      if same?, do: %{m | known: :nx_expression_rewrite}, else: m
    end

    defp explain_rewrite(m, _mine, _theirs, _ref), do: m

    defp evaluator_outputs(program, params) do
      params = params |> Tuple.to_list() |> read_back() |> List.to_tuple()

      Nx.with_default_backend(Nx.BinaryBackend, fn ->
        outs = Nx.Defn.jit_apply(program, [params], compiler: Nx.Defn.Evaluator)
        {:ok, outs |> Tuple.to_list() |> read_back()}
      end)
    rescue
      _ -> :error
    end

    # {:ok, outputs on the backend, the same read back} or {:raised, e}:
    # reading back is where a lazy backend evaluates, so it is inside too.
    defp run_step(%{op: op} = step, values, backend, override) do
      out =
        case override do
          %{^op => fun} -> fun.(Enum.map(step.args, &Exec.arg(&1, values, backend)), step.opts)
          _ -> Exec.run(step, values, backend)
        end

      outs = if is_tuple(out), do: Tuple.to_list(out), else: [out]
      {:ok, outs, read_back(outs)}
    rescue
      e -> {:raised, e}
    end

    # Program inputs live on the backend; step outputs are filled in by the chained run.
    defp copy_inputs(ref, steps, backend) do
      produced = steps |> Enum.flat_map(& &1.out) |> MapSet.new()

      ref
      |> Tuple.to_list()
      |> Enum.with_index()
      |> Enum.map(fn {t, i} -> if i in produced, do: nil, else: Nx.backend_copy(t, backend) end)
      |> List.to_tuple()
    end

    defp keep(chain, step, {:ok, outs, _read}, _ref, _backend),
      do: Enum.zip(step.out, outs) |> Enum.reduce(chain, fn {i, t}, c -> put_elem(c, i, t) end)

    # A failed chained step leaves the reference value in its place.
    defp keep(chain, step, _failed, ref, backend),
      do: Enum.reduce(step.out, chain, &put_elem(&2, &1, Nx.backend_copy(elem(ref, &1), backend)))

    defp judge(step, k, mode, result, ref) do
      inputs = Enum.map(Gen.refs(step.args), &elem(ref, &1))
      expected = Enum.map(step.out, &elem(ref, &1))

      problems =
        case result do
          {:raised, e} ->
            ["raised #{inspect(e.__struct__)}: #{Exception.message(e) |> String.slice(0, 300)}"]

          {:ok, _outs, outs} ->
            scale = Compare.step_scale(step.op, inputs)

            Enum.zip(expected, outs)
            |> Enum.map(fn {r, g} -> Compare.compare(r, g, step.tol, scale) end)
            |> Enum.flat_map(fn
              :ok -> []
              {:mismatch, why} -> [why]
            end)
        end

      got =
        case result do
          {:ok, _outs, read} -> read
          {:raised, e} -> {:raised, Exception.message(e)}
        end

      for why <- problems do
        %{
          step: k,
          op: step.op,
          mode: mode,
          reason: why,
          known: Known.classify(step, ref, expected, got),
          repro: EMLX.Fuzz.Repro.format(step, ref)
        }
      end
    end

    @doc "A failure report for humans."
    def describe(%{program: {seed, i}} = m) do
      """
      program #{i} of seed #{seed} (rerun: EMLX_FUZZ_SEED=#{seed} EMLX_FUZZ_ONLY=#{i} mix test --only fuzz),
      step #{m.step} (#{m.mode}): #{m.op}: #{m.reason}
      reproducer (expected on Nx.BinaryBackend, compare with EMLX.Backend):
      #{m.repro}
      """
    end
  end
end
