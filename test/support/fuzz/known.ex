if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fuzz.Known do
    @moduledoc false
    # Differences between EMLX.Backend and Nx.BinaryBackend that are
    # understood and documented in docs/known_differences.md; each rule is
    # named after its section there. A mismatch is "known" only if one rule
    # explains *every* differing element, usually by checking the backend's
    # value against an independent expectation (the saturated integer, the
    # C99/IEEE value, a NaN at the returned index). Everything else fails the
    # fuzz test.

    alias EMLX.Fuzz.{Compare, Exec}

    import EMLX.Ops.Elementwise, only: [nx_names: 2]
    @float_functions nx_names(1, fn _, class, _ -> class in [:approx, :rounded] end)
    @float_binary [:divide | nx_names(2, fn _, class, _ -> class == :float end)]
    @accumulating [:dot, :conv, :outer, :sum, :product, :cumulative_sum, :cumulative_product] ++
                    [:window_sum, :window_product, :indexed_add]

    @doc "The section of docs/known_differences.md that explains the mismatch, or nil."
    def classify(step, _ref, _expected, {:raised, message}), do: raised(step, message)

    def classify(step, ref, expected, got) do
      operands = Enum.map(step.args, &Exec.arg(&1, ref, Nx.BinaryBackend))
      inputs = Enum.map(EMLX.Fuzz.Gen.refs(step.args), &elem(ref, &1))
      scale = Compare.step_scale(step.op, inputs)

      reasons =
        for {e, g} <- Enum.zip(expected, got),
            idx = Compare.differing(e, g, step.tol, scale),
            idx != [] do
          ctx = %{step: step, operands: operands, expected: e, got: g, idx: idx}
          Enum.find(rules(), &safe_explains?(&1, ctx))
        end

      if reasons != [] and Enum.all?(reasons), do: hd(reasons)
    end

    # A rule that cannot even be evaluated on this step does not explain it.
    defp safe_explains?(rule, ctx) do
      explains?(rule, ctx)
    rescue
      _ -> false
    end

    defp rules,
      do: [
        :float_to_integer_range,
        :rounding_to_infinity,
        :operands_converted_first,
        :signed_zero_bits,
        :integer_arguments_of_float_functions,
        :binary_backend_non_ieee,
        :argmax_with_nan,
        :float32_accumulation_overflow
      ]

    ## Sections

    # as_type from floats to integers (and all/any with axes: [], which Nx
    # turns into as_type): EMLX saturates, Nx.BinaryBackend wraps.
    defp explains?(:float_to_integer_range, %{step: step, operands: [src]} = ctx) do
      no_axes? = step.opts[:axes] == [] or src.shape == {}
      cast? = step.op == :as_type or (step.op in [:all, :any] and no_axes?)
      {kind, bits} = ctx.got.type

      cast? and float?(src.type) and kind in [:s, :u] and
        each(ctx, [src], fn [x], g, _e ->
          {lo, hi} = EMLX.Fuzz.Values.range(kind, bits)
          is_float(x) and (trunc(x) < lo or trunc(x) > hi) and g == trunc(x) |> max(lo) |> min(hi)
        end)
    end

    # Nx casts the operands of a binary op to their common type before the
    # op; EMLX does so (a u64 above 2^63 becomes a negative s64, an f32 beyond
    # f16's range becomes Inf), Nx.BinaryBackend computes on the exact values.
    # Oracle: the op recomputed on operands cast first (Nx.as_type on
    # Nx.BinaryBackend) gives EMLX's values.
    defp explains?(:operands_converted_first, %{step: %{op: op} = step, operands: [a, b]} = ctx) do
      common = Nx.Type.merge(a.type, b.type)

      if op in Exec.binary() and (a.type != common or b.type != common) do
        converted = [Nx.as_type(a, common), Nx.as_type(b, common)]
        flat = Nx.to_flat_list(Exec.apply_op(op, converted, step.opts, Nx.BinaryBackend))

        # Where a converted operand is not finite, C99 gives the value.
        each(ctx, converted, fn xs, g, _e ->
          case c99(op, xs) do
            :finite -> close_enough?(g, Enum.at(flat, Process.get(:fuzz_known_index)), ctx.got.type)
            v -> same?(g, v)
          end
        end)
      else
        false
      end
    end

    # A zero's sign, which the comparison ignores (-0.0 == 0.0), seen by a
    # later bitcast: the bits differ only in the sign bit.
    defp explains?(:signed_zero_bits, %{step: %{op: :bitcast}, operands: [src]} = ctx) do
      {kind, bits} = ctx.got.type
      sign = if kind == :s, do: -Integer.pow(2, bits - 1), else: Integer.pow(2, bits - 1)
      float?(src.type) and each(ctx, [src], fn [x], g, e -> x == 0 and {g, e} in [{sign, 0}, {0, sign}] end)
    end

    # Rounding to a narrower float type just above its largest finite value:
    # MLX rounds to nearest, which overflows to ±Inf (as IEEE 754 says);
    # Nx.BinaryBackend truncates (bf16) to the largest finite value.
    defp explains?(:rounding_to_infinity, %{step: %{tol: :rounded}} = ctx) do
      max = max_finite(ctx.got.type)

      float?(ctx.got.type) and
        each(ctx, [], fn [], g, e -> g in [:infinity, :neg_infinity] and is_float(e) and abs(e) >= max * 0.99 end)
    end

    # A float function of an integer beyond the float type's exact range:
    # Nx.BinaryBackend evaluates it on the exact integer, EMLX on the integer
    # converted to the result type first.
    defp explains?(:integer_arguments_of_float_functions, %{step: step} = ctx) do
      float_result? = step.op in @float_functions or step.op in @float_binary

      if float_result? and float?(ctx.got.type) do
        limit = Integer.pow(2, mantissa(ctx.got.type) + 1)
        each(ctx, ctx.operands, fn xs, _g, _e -> Enum.any?(xs, &(is_integer(&1) and abs(&1) > limit)) end)
      else
        false
      end
    end

    # Nx.BinaryBackend's values for infinities and NaN that C99/IEEE define
    # otherwise; EMLX must give the C99 value.
    defp explains?(:binary_backend_non_ieee, %{step: step} = ctx) do
      step.op in [:sign, :tanh, :atan2, :pow, :divide] and
        each(ctx, ctx.operands, fn xs, g, _e ->
          v = c99(step.op, xs)
          v != :finite and same?(g, v)
        end)
    end

    # Nx documents that argmax/argmin return the index of any NaN; EMLX's
    # index must point at a NaN.
    defp explains?(:argmax_with_nan, %{step: step, operands: [x], got: g, idx: idx}) do
      step.op in [:argmax, :argmin] and float?(x.type) and
        Enum.all?(idx, &(Enum.at(picked(x, Nx.backend_copy(g, Nx.BinaryBackend), step.opts), &1) == :nan))
    end

    # Sums and products in float32 (or narrower) overflow where
    # Nx.BinaryBackend, accumulating in float64, does not: the results differ
    # only where an operand is infinite, NaN or large enough to overflow.
    defp explains?(:float32_accumulation_overflow, %{step: step} = ctx) do
      step.op in @accumulating and float?(ctx.got.type) and
        overflow_regime?(step.op, List.flatten(ctx.operands), max_finite(ctx.got.type)) and
        each(ctx, [], fn [], g, e -> not is_number(g) or not is_number(e) end)
    end

    defp explains?(_rule, _ctx), do: false

    # No error is a known difference.
    defp raised(_step, _message), do: nil

    # Operands that can overflow the accumulator: a non-finite one, or (sums,
    # dot products) one beyond the square root of the largest finite value,
    # or (products) magnitudes whose product exceeds it.
    defp overflow_regime?(op, operands, max) do
      values = for %Nx.Tensor{} = t <- operands, x <- Nx.to_flat_list(t), do: x
      huge = :math.sqrt(max)

      Enum.any?(values, &(is_atom(&1) or abs(&1) >= huge)) or
        (op in [:product, :cumulative_product, :window_product] and
           Enum.sum(for x <- values, abs(x) > 1, do: :math.log(abs(x))) > :math.log(max))
    end

    ## Element-wise checks

    # Calls `fun.(operand values at i, got at i, expected at i)` for every
    # differing index (operands broadcast to the output shape).
    defp each(ctx, operands, fun) do
      shape = ctx.got.shape
      flats = Enum.map(operands, &(&1 |> Nx.broadcast(shape) |> Nx.to_flat_list()))
      got = ctx.got |> Nx.backend_copy(Nx.BinaryBackend) |> Nx.to_flat_list()
      exp = Nx.to_flat_list(ctx.expected)

      Enum.all?(ctx.idx, fn i ->
        xs = Enum.map(flats, &Enum.at(&1, i))
        Process.put(:fuzz_known_index, i)
        fun.(xs, Enum.at(got, i), Enum.at(exp, i))
      end)
    rescue
      _ -> false
    end

    # The input values at the indices argmax/argmin returned.
    defp picked(x, g, opts) do
      case opts[:axis] do
        nil ->
          [Nx.to_number(Nx.take(Nx.flatten(x), g))]

        axis ->
          i = if opts[:keep_axis], do: g, else: Nx.new_axis(g, axis)
          x |> Nx.take_along_axis(Nx.as_type(i, {:s, 64}), axis: axis) |> Nx.to_flat_list()
      end
    end

    defp close_enough?(g, v, _type) when is_atom(g) or is_atom(v) or is_integer(g), do: g == v

    defp close_enough?(g, v, type),
      do: EMLX.Fuzz.Compare.compare(Nx.tensor([v], type: type), Nx.tensor([g], type: type), :rounded, 1.0) == :ok

    defp same?(g, v) when is_atom(g) or is_atom(v), do: g == v
    defp same?(g, v), do: abs(g - v) <= 1.0e-2 * abs(v) + 1.0e-6

    # The C99 (Annex F) value where an operand is non-finite, :finite otherwise.
    defp c99(:sign, [:nan]), do: :nan
    defp c99(:sign, [:infinity]), do: 1.0
    defp c99(:sign, [:neg_infinity]), do: -1.0
    defp c99(:tanh, [:nan]), do: :nan
    defp c99(:tanh, [:infinity]), do: 1.0
    defp c99(:tanh, [:neg_infinity]), do: -1.0
    defp c99(:atan2, [y, x]) when y == :nan or x == :nan, do: :nan
    defp c99(:atan2, [y, :infinity]) when is_number(y), do: 0.0
    defp c99(:atan2, [y, :neg_infinity]) when is_number(y), do: if(negative?(y), do: -:math.pi(), else: :math.pi())
    defp c99(:atan2, [:infinity, x]), do: quarter(x)
    defp c99(:atan2, [:neg_infinity, x]), do: -quarter(x)
    defp c99(:pow, [x, y]) when x == 1 or x == 1.0 or y == 0 or y == 0.0, do: 1.0
    defp c99(:pow, [x, y]) when x == :nan or y == :nan, do: :nan
    defp c99(:pow, [x, :infinity]) when is_number(x), do: if(abs(x) < 1, do: 0.0, else: pow_inf(x))
    defp c99(:pow, [x, :neg_infinity]) when is_number(x), do: if(abs(x) < 1, do: :infinity, else: pow_inf(x, 0.0))

    defp c99(:divide, [x, y]) when x != :nan and is_float(y) and y == 0 and x != 0 do
      negative? = negative?(x) != negative?(y)
      if negative?, do: :neg_infinity, else: :infinity
    end

    defp c99(_op, _xs), do: :finite

    # The sign bit, -0.0 included.
    defp negative?(:neg_infinity), do: true
    defp negative?(x) when is_atom(x), do: false
    defp negative?(x), do: match?(<<1::1, _::63>>, <<x * 1.0::float-64>>)

    defp quarter(:infinity), do: :math.pi() / 4
    defp quarter(:neg_infinity), do: 3 * :math.pi() / 4
    defp quarter(_finite), do: :math.pi() / 2

    defp pow_inf(x, big \\ :infinity), do: if(abs(x) == 1, do: 1.0, else: big)

    defp float?({k, _}), do: k in [:f, :bf]
    defp mantissa({:f, 64}), do: 52
    defp mantissa({:f, 32}), do: 23
    defp mantissa({:f, 16}), do: 10
    defp mantissa({:bf, 16}), do: 7

    defp max_finite({:f, 16}), do: 65504.0
    defp max_finite({:f, 64}), do: 1.7976931348623157e308
    defp max_finite({:bf, 16}), do: 3.3895313892515355e38
    defp max_finite(_), do: 3.4028234663852886e38

    @doc false
    # Every reason a report may carry: the rules above, and the one the
    # whole-program check gives (EMLX.Fuzz, `explain_rewrites`).
    def sections, do: rules() ++ [:nx_expression_rewrite]
  end
end
