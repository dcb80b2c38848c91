if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz.Gen do
    @moduledoc false
    # A seeded generator of random Nx programs for the differential fuzzer.
    #
    # A program is a list of steps over numbered values: fresh inputs
    # (EMLX.Fuzz.Values) and the outputs of earlier steps, so later steps
    # consume earlier results. Operands are often given through a view (a
    # transpose, strided slice, reverse or broadcast of a fresh input) so the
    # backend under test sees non-contiguous inputs. Every step is run on
    # Nx.BinaryBackend while it is generated: a step Nx refuses is dropped,
    # and the reference results come for free.
    #
    # Each step carries a tolerance class for the comparison (EMLX.Fuzz.Compare)
    # and whether its output is `exact` — equal on any correct backend,
    # bit for bit. Ops that are discontinuous (floor, comparisons, sorting,
    # float-to-integer casts...) only take exact operands, so a last-bit
    # difference upstream cannot turn into a false mismatch.

    import EMLX.Fuzz.Values, only: [pick: 1, chance: 1, int_in: 2]

    alias EMLX.Fuzz.{Exec, Values}

    # The element-wise ops, by class, from their one declaration
    # (EMLX.Ops.Elementwise.nx_ops/0).
    import EMLX.Ops.Elementwise, only: [nx_names: 2]
    @approx nx_names(1, fn _, class, _ -> class == :approx end)
    @exact_unary nx_names(1, fn _, class, _ -> class == :exact end)
    @int_unary nx_names(1, fn _, class, _ -> class == :integer end)
    @arith nx_names(2, fn _, class, _ -> class == :arith end)
    @int_binary nx_names(2, fn _, class, _ -> class == :integer end)
    @compare nx_names(2, fn _, class, _ -> class == :compare end)
    @logical nx_names(2, fn _, class, _ -> class == :logical end)
    # sqrt (:rounded) and the float and exact binary ops have weights and
    # generators of their own below.
    @discontinuous [:sign, :ceil, :floor, :round, :remainder, :argmax, :argmin, :sort, :argsort] ++
                     [:top_k, :as_type, :logical_not, :clip, :select] ++ @compare ++ @logical

    # {op, weight}: how often each op is picked.
    @ops Enum.map(@approx, &{&1, 1}) ++
           Enum.map(@exact_unary ++ @int_unary, &{&1, 1}) ++
           [sqrt: 2, pow: 3, remainder: 2, atan2: 1, min: 2, max: 2] ++
           Enum.map(@arith, &{&1, 4}) ++
           Enum.map(@int_binary ++ @compare ++ @logical, &{&1, 1}) ++
           [sum: 4, product: 2, reduce_max: 2, reduce_min: 2, all: 1, any: 1, argmax: 2, argmin: 2] ++
           [cumulative_sum: 2, cumulative_product: 1, cumulative_max: 1, cumulative_min: 1] ++
           [reshape: 2, transpose: 3, squeeze: 1, new_axis: 1, broadcast: 2, slice: 3] ++
           [dynamic_slice: 2, put_slice: 2, concatenate: 2, stack: 1, reverse: 2, pad: 2, tile: 1] ++
           [as_type: 6, bitcast: 1, select: 3, clip: 2, take: 2, take_along_axis: 2, gather: 2] ++
           [indexed_add: 2, indexed_put: 2, sort: 2, argsort: 2, top_k: 1, dot: 5, outer: 1] ++
           [window_sum: 1, window_max: 1, window_min: 1, window_product: 1, conv: 2, iota: 1, eye: 1]

    @total Enum.sum(Enum.map(@ops, &elem(&1, 1)))

    def ops, do: Enum.map(@ops, &elem(&1, 0))

    ## Programs

    @doc "The program of `seed`: %{seed, values, steps}; values are the references."
    def program(seed, max_steps \\ 4) do
      # Hashed: :rand's own seeding from small integers leaves neighbouring
      # seeds' programs nearly identical.
      :rand.seed(:exsss, {:erlang.phash2({seed, 1}), :erlang.phash2({seed, 2}), :erlang.phash2({seed, 3})})
      Process.put(:fuzz, %{values: %{}, exact: %{}, steps: []})
      first = fresh(Values.type(), Values.shape())
      Process.put(:fuzz_last, first)

      for _ <- 1..int_in(1, max_steps), do: step(8)

      %{values: values, steps: steps} = Process.get(:fuzz)
      %{seed: seed, values: values, steps: Enum.reverse(steps)}
    end

    # Tries up to `tries` random ops until Nx accepts one.
    defp step(0), do: :ok

    defp step(tries) do
      saved = Process.get(:fuzz)
      op = weighted_op()

      with {args, opts, tol} <- safe_gen(op),
           step = %{op: op, args: args, opts: opts, tol: tol},
           {:ok, out} <- reference(step) do
        record(step, out)
      else
        _ ->
          Process.put(:fuzz, saved)
          step(tries - 1)
      end
    end

    defp safe_gen(op) do
      gen(op)
    rescue
      _ -> :skip
    catch
      :skip -> :skip
    end

    defp weighted_op do
      n = :rand.uniform(@total)

      Enum.reduce_while(@ops, n, fn {op, w}, left ->
        if left <= w, do: {:halt, op}, else: {:cont, left - w}
      end)
    end

    defp reference(step) do
      values = values_tuple()
      {:ok, Exec.run(step, values, Nx.BinaryBackend)}
    rescue
      _ -> :error
    end

    def values_tuple do
      %{values: values} = Process.get(:fuzz)
      values |> Enum.sort() |> Enum.map(&elem(&1, 1)) |> List.to_tuple()
    end

    defp record(step, out) do
      st = Process.get(:fuzz)
      step = lossy_promotion(step, out, st)
      exact? = exact_op?(step) and Enum.all?(refs(step.args), &Map.fetch!(st.exact, &1))

      outs = if is_tuple(out), do: Tuple.to_list(out), else: [out]

      {st, ids} =
        Enum.reduce(outs, {st, []}, fn t, {st, ids} ->
          i = map_size(st.values)
          {%{st | values: Map.put(st.values, i, t), exact: Map.put(st.exact, i, exact?)}, [i | ids]}
        end)

      step = Map.merge(step, %{out: Enum.reverse(ids), exact?: exact?})
      Process.put(:fuzz, %{st | steps: [step | st.steps]})
      Process.put(:fuzz_last, {:v, hd(ids)})
    end

    def refs(args) do
      Enum.flat_map(args, fn
        {:v, i} -> [i]
        {:view, inner, _} -> refs([inner])
        {:list, items} -> refs(items)
        {:num, _} -> []
      end)
    end

    # Operands of mixed types are converted to the result type (Nx's type
    # promotion): s32 or f32 values into a bf16 result, say, are rounded,
    # which Nx.BinaryBackend does by truncation and MLX to nearest. Such a
    # step is compared as :rounded and is not exact.
    defp lossy_promotion(%{op: op, tol: :exact} = step, out, st) when op not in [:as_type, :bitcast] do
      out_type = if(is_tuple(out), do: elem(out, 0), else: out).type
      in_types = Enum.map(refs(converted(op, step.args)), &Map.fetch!(st.values, &1).type)

      if float?(out_type) and Enum.any?(in_types, &lossy?(&1, out_type)),
        do: %{step | tol: :rounded},
        else: step
    end

    defp lossy_promotion(step, _out, _st), do: step

    # The operands whose values go into the result (not indices or predicates).
    defp converted(op, [t | _]) when op in [:take, :take_along_axis, :gather, :dynamic_slice], do: [t]
    defp converted(op, [t, _idx, upd]) when op in [:indexed_add, :indexed_put], do: [t, upd]
    defp converted(:select, [_pred | values]), do: values
    defp converted(_op, args), do: args

    defp lossy?(same, same), do: false
    defp lossy?({:s, b}, out), do: b - 1 > mantissa(out) + 1
    defp lossy?({:u, b}, out), do: b > mantissa(out) + 1
    defp lossy?(_float, {:f, 64}), do: false
    defp lossy?(from, {:f, 32}), do: from not in [{:f, 16}, {:bf, 16}]
    defp lossy?(_float, _narrow), do: true

    defp mantissa({:f, 64}), do: 52
    defp mantissa({:f, 32}), do: 23
    defp mantissa({:f, 16}), do: 10
    defp mantissa({:bf, 16}), do: 7

    # Bit-for-bit reproducible ops: no rounding that may legitimately differ.
    defp exact_op?(%{op: op, tol: tol}), do: tol == :exact and op not in @approx

    ## Values and operands

    defp fresh(type, shape) do
      t = Values.tensor(type, shape)
      st = Process.get(:fuzz)
      i = map_size(st.values)
      Process.put(:fuzz, %{st | values: Map.put(st.values, i, t), exact: Map.put(st.exact, i, true)})
      {:v, i}
    end

    # A constant operand (index tensors): a value of the program like an input.
    defp const(%Nx.Tensor{} = t) do
      st = Process.get(:fuzz)
      i = map_size(st.values)
      t = Nx.backend_copy(t, Nx.BinaryBackend)
      Process.put(:fuzz, %{st | values: Map.put(st.values, i, t), exact: Map.put(st.exact, i, true)})
      {:v, i}
    end

    defp value(arg), do: Exec.arg(arg, values_tuple(), Nx.BinaryBackend)
    defp exact?(arg), do: Enum.all?(refs([arg]), &Map.fetch!(Process.get(:fuzz).exact, &1))

    # The first operand: usually the latest result (programs chain), else a
    # fresh input. `accept` filters by type; discontinuous ops need it exact.
    defp primary(op, accept \\ fn _ -> true end) do
      last = Process.get(:fuzz_last)
      t = value(last)

      if chance(0.7) and accept.(t.type) and (op not in @discontinuous or exact?(last)) do
        maybe_view(last, t.shape)
      else
        type = Enum.find(Stream.repeatedly(&Values.type/0) |> Enum.take(30), Values.float_type(), &accept.(norm(&1)))
        operand(type, Values.shape())
      end
    end

    defp norm({:u, 8, :pred}), do: {:u, 8}
    defp norm(type), do: type

    # An operand of exactly `shape`: a fresh input, or a view of one laid out
    # differently (transposed, strided, reversed, broadcast).
    defp operand(type, shape) do
      dims = Tuple.to_list(shape)
      rank = length(dims)

      case :rand.uniform(20) do
        n when n <= 3 and rank >= 2 ->
          perm = Enum.shuffle(Enum.to_list(0..(rank - 1)))
          src = fresh(type, List.to_tuple(Enum.map(perm, &Enum.at(dims, &1))))
          {:view, src, [{:transpose, inverse(perm)}]}

        n when n <= 6 and rank >= 1 ->
          strides = Enum.map(dims, fn _ -> pick([1, 1, 2, 3]) end)
          offsets = Enum.map(dims, fn _ -> pick([0, 0, 1]) end)
          lengths = Enum.zip_with(dims, strides, fn d, s -> (d - 1) * s + 1 end)
          src = fresh(type, List.to_tuple(Enum.zip_with(lengths, offsets, &(&1 + &2))))
          {:view, src, [{:slice, offsets, lengths, strides}]}

        n when n <= 8 and rank >= 1 ->
          src = fresh(type, shape)
          {:view, src, [{:reverse, Enum.filter(0..(rank - 1), fn _ -> chance(0.5) end)}]}

        n when n <= 10 and rank >= 1 ->
          src = fresh(type, List.to_tuple(Enum.map(dims, fn d -> if chance(0.5), do: 1, else: d end)))
          {:view, src, [{:broadcast, shape}]}

        _ ->
          fresh(type, shape)
      end
    end

    defp maybe_view(arg, shape) do
      rank = tuple_size(shape)

      if rank >= 2 and chance(0.2) do
        perm = Enum.shuffle(Enum.to_list(0..(rank - 1)))
        {:view, arg, [{:transpose, perm}]}
      else
        arg
      end
    end

    defp inverse(perm), do: perm |> Enum.with_index() |> Enum.sort() |> Enum.map(&elem(&1, 1))

    defp shape_of(arg), do: value(arg).shape
    defp type_of(arg), do: value(arg).type
    defp int?({k, _}), do: k in [:s, :u]
    defp float?({k, _}), do: k in [:f, :bf]

    # A shape `shape` broadcasts to: some dimensions 1, some leading ones dropped.
    defp broadcastable(shape) do
      dims = Tuple.to_list(shape)
      dims = Enum.drop(dims, int_in(0, length(dims)) |> min(if(chance(0.7), do: 0, else: length(dims))))
      List.to_tuple(Enum.map(dims, fn d -> if chance(0.2), do: 1, else: d end))
    end

    defp axes_subset(rank), do: Enum.filter(0..(rank - 1)//1, fn _ -> chance(0.5) end)

    ## Ops: each returns {args, opts, tolerance class}

    # Nx.BinaryBackend's atanh raises outside (-1, 1): its operand is drawn there.
    defp gen(:atanh) do
      t = Values.tensor(Values.float_type(), Values.shape()) |> Nx.tanh() |> Nx.multiply(0.99)
      {[const(t)], [], :approx}
    end

    defp gen(op) when op in @approx, do: {[primary(op)], [], :approx}
    defp gen(:sqrt), do: {[primary(:sqrt)], [], :rounded}
    defp gen(op) when op in @exact_unary, do: {[primary(op)], [], :exact}
    defp gen(op) when op in @int_unary, do: {[primary(op, &int?/1)], [], :exact}

    defp gen(op) when op in @arith or op in [:remainder, :atan2, :min, :max] or op in @compare or op in @logical do
      a = primary(op)
      {args, shape_b} = {[a], if(chance(0.7), do: shape_of(a), else: broadcastable(shape_of(a)))}
      type_b = if chance(0.8), do: type_of(a), else: Values.type()
      b = operand(type_b, shape_b)
      args = if chance(0.5), do: args ++ [b], else: [b | args]

      tol =
        cond do
          op in [:min, :max] or op in @compare or op in @logical -> :exact
          op == :atan2 -> :approx
          op == :remainder -> :exact
          true -> :rounded
        end

      {args, [], tol}
    end

    # Shift amounts mostly within the width, some beyond it (and negative).
    defp gen(op) when op in [:left_shift, :right_shift] do
      a = primary(op, &int?/1)
      {_, bits} = type = type_of(a)
      {lo, _} = Values.range(elem(type, 0), bits)
      amount = index_arg(broadcastable(shape_of(a)), max(lo, -2), bits + 2)
      {[a, cast(amount, type)], [], :exact}
    end

    defp gen(op) when op in @int_binary do
      a = primary(op, &int?/1)
      b = operand(type_of(a), if(chance(0.8), do: shape_of(a), else: broadcastable(shape_of(a))))
      {[a, b], [], :exact}
    end

    # Integer powers with small exponents (Nx.BinaryBackend computes exact
    # big integers before wrapping: a huge exponent would never finish).
    defp gen(:pow) do
      a = primary(:pow)

      if int?(type_of(a)) and chance(0.8) do
        {[a, cast(index_arg(broadcastable(shape_of(a)), 0, 9), type_of(a))], [], :exact}
      else
        b = operand(if(int?(type_of(a)), do: Values.float_type(), else: type_of(a)), broadcastable(shape_of(a)))
        {[a, b], [], :approx}
      end
    end

    defp gen(op) when op in [:sum, :product, :reduce_max, :reduce_min, :all, :any] do
      a = primary(op)
      rank = tuple_size(shape_of(a))
      opts = [axes: axes_subset(rank), keep_axes: chance(0.3)]
      opts = if chance(0.2), do: Keyword.delete(opts, :axes), else: opts
      {[a], opts, reduce_tol(op, a, opts[:axes])}
    end

    defp gen(op) when op in [:argmax, :argmin] do
      a = primary(op)
      rank = tuple_size(shape_of(a))
      axis = if rank > 0 and chance(0.8), do: [axis: int_in(0, rank - 1)], else: []
      {[a], axis ++ [tie_break: pick([:low, :high]), keep_axis: chance(0.2) and axis != []], :exact}
    end

    defp gen(op) when op in [:cumulative_sum, :cumulative_product, :cumulative_max, :cumulative_min] do
      a = primary(op)
      rank = tuple_size(shape_of(a))
      if rank == 0, do: throw(:skip)
      axis = int_in(0, rank - 1)
      {[a], [axis: axis, reverse: chance(0.3)], reduce_tol(op, a, [axis])}
    end

    defp gen(:reshape) do
      a = primary(:reshape)
      dims = Tuple.to_list(shape_of(a))
      n = Enum.product(dims)
      shape = if n > 0 and chance(0.6), do: factor(n), else: List.to_tuple(Enum.reverse(dims))
      {[a], [shape: shape], :exact}
    end

    defp gen(:transpose) do
      a = primary(:transpose)
      {[a], [axes: Enum.shuffle(Enum.to_list(0..(tuple_size(shape_of(a)) - 1)//1))], :exact}
    end

    defp gen(:squeeze) do
      a = primary(:squeeze)
      ones = for {1, i} <- Enum.with_index(Tuple.to_list(shape_of(a))), do: i
      {[a], [axes: Enum.filter(ones, fn _ -> chance(0.7) end)], :exact}
    end

    defp gen(:new_axis) do
      a = primary(:new_axis)
      {[a], [axis: int_in(0, tuple_size(shape_of(a)))], :exact}
    end

    defp gen(:broadcast) do
      a = primary(:broadcast)
      dims = Tuple.to_list(shape_of(a))
      lead = for _ <- 1..int_in(0, 2)//1, do: int_in(1, 3)

      shape =
        List.to_tuple(
          lead ++
            Enum.map(dims, fn
              1 -> int_in(1, 3)
              d -> d
            end)
        )

      {[a], [shape: shape], :exact}
    end

    defp gen(:slice) do
      a = primary(:slice)
      dims = Tuple.to_list(shape_of(a))
      starts = Enum.map(dims, &int_in(0, max(&1 - 1, 0)))
      lengths = Enum.zip_with(dims, starts, fn d, s -> int_in(1, d - s) end)
      strides = Enum.map(dims, fn _ -> pick([1, 1, 2, 3]) end)
      {[a], [starts: starts, lengths: lengths, strides: strides], :exact}
    end

    # Start indices as tensors, possibly out of range: Nx clamps them.
    defp gen(:dynamic_slice) do
      a = primary(:dynamic_slice)
      dims = Tuple.to_list(shape_of(a))
      lengths = Enum.map(dims, &int_in(1, &1))
      starts = Enum.map(dims, fn d -> const(Nx.tensor(int_in(-2, d + 2), type: Values.int_type())) end)
      {[a | starts], [lengths: lengths], :exact}
    end

    defp gen(:put_slice) do
      a = primary(:put_slice)
      dims = Tuple.to_list(shape_of(a))
      slice_shape = List.to_tuple(Enum.map(dims, &int_in(1, &1)))
      starts = Enum.map(dims, &int_in(-1, &1 + 1))
      {[a, operand(type_of(a), slice_shape)], [starts: starts], :exact}
    end

    defp gen(op) when op in [:concatenate, :stack] do
      a = primary(op)
      shape = shape_of(a)
      rank = tuple_size(shape)
      if op == :concatenate and rank == 0, do: throw(:skip)
      axis = int_in(0, if(op == :stack, do: rank, else: rank - 1))

      others =
        for _ <- 1..int_in(1, 3) do
          s = if op == :concatenate, do: put_elem(shape, axis, int_in(1, 3)), else: shape
          operand(if(chance(0.8), do: type_of(a), else: Values.type()), s)
        end

      {[{:list, [a | others]}], [axis: axis], :exact}
    end

    defp gen(:reverse) do
      a = primary(:reverse)
      {[a], [axes: axes_subset(tuple_size(shape_of(a)))], :exact}
    end

    defp gen(:pad) do
      a = primary(:pad)
      config = for d <- Tuple.to_list(shape_of(a)), do: {int_in(-min(d, 2), 2), int_in(-min(d, 2), 2), int_in(0, 2)}
      {[a, operand(type_of(a), {})], [config: config], :exact}
    end

    defp gen(:tile) do
      a = primary(:tile)
      reps = for _ <- 1..(tuple_size(shape_of(a)) + int_in(0, 1))//1, do: int_in(1, 3)
      {[a], [reps: reps], :exact}
    end

    defp gen(:as_type) do
      target = Values.type() |> norm()
      a = primary(:as_type)
      from = type_of(a)

      # Into a float type that cannot hold every value of the source type,
      # values are rounded (Nx.BinaryBackend truncates to bf16, MLX rounds).
      tol = if float?(target) and lossy?(from, target), do: :rounded, else: :exact

      {[a], [type: target], tol}
    end

    defp gen(:bitcast) do
      a = primary(:bitcast)
      {_, b} = type_of(a)
      same = Enum.filter(Values.float_types() ++ Values.int_types(), &(elem(&1, 1) == b))
      {[a], [type: pick(same)], :exact}
    end

    defp gen(:select) do
      a = primary(:select)
      shape = shape_of(a)
      pred = operand(pick([{:u, 8, :pred}, {:u, 8, :pred}, Values.type()]), broadcastable(shape))
      b = operand(if(chance(0.8), do: type_of(a), else: norm(Values.type())), broadcastable(shape))
      {[pred, a, b], [], :exact}
    end

    defp gen(:clip) do
      a = primary(:clip)
      lo = operand(type_of(a), {})
      hi = operand(type_of(a), {})
      {[a, lo, hi], [], :exact}
    end

    defp gen(:take) do
      a = primary(:take)
      shape = shape_of(a)
      if tuple_size(shape) == 0, do: throw(:skip)
      axis = int_in(0, tuple_size(shape) - 1)
      d = elem(shape, axis)
      if d == 0, do: throw(:skip)
      idx = index_arg(Values.shape(2), 0, d - 1)
      {[a, idx], [axis: axis], :exact}
    end

    defp gen(:take_along_axis) do
      a = primary(:take_along_axis)
      shape = shape_of(a)
      if tuple_size(shape) == 0, do: throw(:skip)
      axis = int_in(0, tuple_size(shape) - 1)
      d = elem(shape, axis)
      if d == 0, do: throw(:skip)
      idx = index_arg(put_elem(shape, axis, int_in(1, 4)), 0, d - 1)
      {[a, idx], [axis: axis], :exact}
    end

    defp gen(:gather) do
      a = primary(:gather)
      shape = shape_of(a)
      rank = tuple_size(shape)
      if rank == 0 or Enum.any?(Tuple.to_list(shape), &(&1 == 0)), do: throw(:skip)
      axes = Enum.filter(0..(rank - 1), fn _ -> chance(0.6) end)
      axes = if axes == [], do: [0], else: axes
      n = int_in(1, 4)
      idx = index_columns(n, Enum.map(axes, &elem(shape, &1)))
      {[a, idx], [axes: axes], :exact}
    end

    defp gen(op) when op in [:indexed_add, :indexed_put] do
      a = primary(op)
      shape = shape_of(a)
      rank = tuple_size(shape)
      if rank == 0 or Enum.any?(Tuple.to_list(shape), &(&1 == 0)), do: throw(:skip)
      # Full indices; distinct for indexed_put (which duplicate wins is unspecified).
      all = for i <- 0..(Values.size(shape) - 1), do: unravel(i, shape)
      rows = Enum.take(Enum.shuffle(all), int_in(1, min(6, length(all))))
      rows = if op == :indexed_add and chance(0.3), do: rows ++ [hd(rows)], else: rows
      idx = const(Nx.tensor(rows, type: Values.int_type()))
      upd = operand(type_of(a), {length(rows)})
      tol = if op == :indexed_add and float?(type_of(a)), do: {:sum, 3}, else: :exact
      {[a, idx, upd], [], tol}
    end

    defp gen(op) when op in [:sort, :argsort] do
      a = primary(op)
      rank = tuple_size(shape_of(a))
      if rank == 0, do: throw(:skip)
      opts = [axis: int_in(0, rank - 1), direction: pick([:asc, :desc])]
      {[a], if(op == :argsort, do: opts ++ [stable: true], else: opts), :exact}
    end

    defp gen(:top_k) do
      a = primary(:top_k)
      shape = shape_of(a)
      if tuple_size(shape) == 0 or elem(shape, tuple_size(shape) - 1) == 0, do: throw(:skip)
      {[a], [k: int_in(1, elem(shape, tuple_size(shape) - 1))], :exact}
    end

    defp gen(:dot) do
      {ka, kb} = {int_in(0, 2), int_in(0, 2)}
      batch = if chance(0.3), do: [int_in(1, 3)], else: []
      contract = for _ <- 1..int_in(0, 2)//1, do: int_in(1, 4)
      free_a = for _ <- 1..ka//1, do: int_in(1, 4)
      free_b = for _ <- 1..kb//1, do: int_in(1, 4)
      ta = Values.type() |> norm()
      tb = if chance(0.8), do: ta, else: norm(Values.type())
      # Layout: batch axes first, then free axes and contraction axes mixed.
      {a, ca, ba} = dot_operand(ta, batch, free_a, contract)
      {b, cb, bb} = dot_operand(tb, batch, free_b, contract)
      n = Enum.product(contract)
      tol = if float?(ta) or float?(tb), do: {:contraction, max(n, 1)}, else: :exact
      {[a, b], [contract_a: ca, batch_a: ba, contract_b: cb, batch_b: bb], tol}
    end

    defp gen(:outer) do
      a = primary(:outer)
      {[a, operand(type_of(a), Values.shape(2))], [], :rounded}
    end

    defp gen(op) when op in [:window_sum, :window_max, :window_min, :window_product] do
      a = primary(op)
      dims = Tuple.to_list(shape_of(a))
      window = Enum.map(dims, &int_in(1, max(&1, 1)))
      strides = Enum.map(dims, fn _ -> int_in(1, 2) end)
      padding = pick([:valid, :same, Enum.map(dims, fn _ -> {int_in(0, 1), int_in(0, 1)} end)])
      n = Enum.product(window)

      tol =
        cond do
          op in [:window_max, :window_min] or not float?(type_of(a)) -> :exact
          op == :window_sum -> {:sum, n}
          true -> {:product, n}
        end

      {[a], [window: List.to_tuple(window), strides: strides, padding: padding], tol}
    end

    defp gen(:conv) do
      spatial = for _ <- 1..int_in(1, 2), do: int_in(1, 5)
      {batch, cin, cout} = {int_in(1, 2), int_in(1, 3), int_in(1, 3)}
      kernel = Enum.map(spatial, &int_in(1, &1))
      t = Values.float_type()
      x = operand(t, List.to_tuple([batch, cin | spatial]))
      k = operand(t, List.to_tuple([cout, cin | kernel]))
      padding = pick([:valid, :same])
      n = cin * Enum.product(kernel)
      {[x, k], [padding: padding, strides: int_in(1, 2)], {:contraction, n}}
    end

    defp gen(:iota) do
      shape = Values.shape()
      axis = if tuple_size(shape) > 0 and chance(0.5), do: [axis: int_in(0, tuple_size(shape) - 1)], else: []
      type = norm(Values.type())
      # Counts past a half type's integer range (bf16 above 256) are rounded.
      tol = if float?(type), do: :rounded, else: :exact
      {[], [shape: shape, type: type] ++ axis, tol}
    end

    defp gen(:eye) do
      shape = List.to_tuple(for _ <- 1..int_in(2, 3), do: int_in(1, 4))
      {[], [shape: shape, type: norm(Values.type())], :exact}
    end

    ## Helpers

    defp reduce_tol(op, arg, axes) do
      shape = shape_of(arg)
      axes = axes || Enum.to_list(0..(tuple_size(shape) - 1)//1)
      n = axes |> Enum.map(&elem(shape, &1)) |> Enum.product()

      cond do
        not float?(type_of(arg)) -> :exact
        op in [:sum, :cumulative_sum] -> {:sum, max(n, 1)}
        op in [:product, :cumulative_product] -> {:product, max(n, 1)}
        true -> :exact
      end
    end

    # A random factorisation of n into up to 3 dimensions.
    defp factor(n) do
      divisors = for d <- 1..n, rem(n, d) == 0, do: d
      a = pick(divisors)
      b = pick(for d <- divisors, rem(div(n, a), d) == 0, do: d)
      Enum.shuffle([a, b, div(n, a * b)]) |> Enum.take(pick([2, 3])) |> then(&fix_product(&1, n))
    end

    defp fix_product(dims, n) do
      rest = div(n, Enum.product(Enum.drop(dims, -1)))
      List.to_tuple(Enum.drop(dims, -1) ++ [rest])
    end

    defp unravel(i, shape) do
      {idx, _} =
        shape
        |> Tuple.to_list()
        |> Enum.reverse()
        |> Enum.reduce({[], i}, fn d, {acc, rest} -> {[rem(rest, d) | acc], div(rest, d)} end)

      idx
    end

    # An index-like value re-typed (the reference computes the cast).
    defp cast({:v, i}, type) do
      %{values: values} = Process.get(:fuzz)
      const(Nx.as_type(Map.fetch!(values, i), type))
    end

    defp index_arg(shape, lo, hi), do: const(Values.indices(Values.int_type(), shape, lo, hi))

    defp index_columns(n, dims) do
      rows = for _ <- 1..n, do: Enum.map(dims, &int_in(0, &1 - 1))
      const(Nx.tensor(rows, type: Values.int_type()))
    end

    defp dot_operand(type, batch, free, contract) do
      axes =
        Enum.shuffle(Enum.map(free, &{:free, &1}) ++ Enum.map(Enum.with_index(contract), fn {d, i} -> {{:c, i}, d} end))

      layout = Enum.map(batch, &{:batch, &1}) ++ axes
      shape = List.to_tuple(Enum.map(layout, &elem(&1, 1)))

      contract_axes =
        for i <- 0..(length(contract) - 1)//1,
            do: Enum.find_index(layout, &match?({{:c, ^i}, _}, &1))

      {operand(type, shape), contract_axes, Enum.to_list(0..(length(batch) - 1)//1)}
    end
  end
end
