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

    @float_functions [:exp, :expm1, :log, :log1p, :sqrt, :rsqrt, :cbrt, :sin, :cos, :tan, :asin] ++
                       [:acos, :atan, :sinh, :cosh, :tanh, :asinh, :acosh, :atanh, :erf, :erfc] ++
                       [:erf_inv, :sigmoid]
    @float_binary [:divide, :pow, :remainder, :atan2]
    @accumulating [:dot, :conv, :outer, :sum, :product, :cumulative_sum, :cumulative_product] ++
                    [:window_sum, :window_product, :indexed_add]

    @doc "The section of docs/known_differences.md that explains the mismatch, or nil."
    def classify(step, _ref, _expected, {:raised, message}), do: raised(step, message)

    def classify(step, ref, expected, got) do
      operands = Enum.map(step.args, &Exec.arg(&1, ref, Nx.BinaryBackend))
      scale = EMLX.Fuzz.Compare.scale(Enum.filter(List.flatten(operands), &is_struct(&1, Nx.Tensor)))

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
        :integer_arguments_of_float_functions,
        :binary_backend_non_ieee,
        :argmax_with_nan,
        :float32_accumulation_overflow,
        :open_remainder_rounding,
        :open_u64_slice_start
      ]

    ## Sections

    # as_type from floats to integers (and all/any with axes: [], which Nx
    # turns into as_type): EMLX saturates, Nx.BinaryBackend wraps.
    defp explains?(:float_to_integer_range, %{step: step, operands: [src]} = ctx) do
      cast? = step.op == :as_type or (step.op in [:all, :any] and step.opts[:axes] == [])
      {kind, bits} = ctx.got.type

      cast? and float?(src.type) and kind in [:s, :u] and
        each(ctx, [src], fn [x], g ->
          {lo, hi} = EMLX.Fuzz.Values.range(kind, bits)
          is_float(x) and (trunc(x) < lo or trunc(x) > hi) and g == trunc(x) |> max(lo) |> min(hi)
        end)
    end

    # A float function of an integer beyond the float type's exact range:
    # Nx.BinaryBackend evaluates it on the exact integer, EMLX on the integer
    # converted to the result type first.
    defp explains?(:integer_arguments_of_float_functions, %{step: step} = ctx) do
      float_result? = step.op in @float_functions or step.op in @float_binary

      if float_result? and float?(ctx.got.type) do
        limit = Integer.pow(2, mantissa(ctx.got.type) + 1)
        each(ctx, ctx.operands, fn xs, _g -> Enum.any?(xs, &(is_integer(&1) and abs(&1) > limit)) end)
      else
        false
      end
    end

    # Nx.BinaryBackend's values for infinities and NaN that C99/IEEE define
    # otherwise; EMLX must give the C99 value.
    defp explains?(:binary_backend_non_ieee, %{step: step} = ctx) do
      step.op in [:sign, :tanh, :atan2, :pow] and
        each(ctx, ctx.operands, fn xs, g ->
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
      huge = :math.sqrt(max_finite(ctx.got.type))

      step.op in @accumulating and float?(ctx.got.type) and
        Enum.any?(List.flatten(ctx.operands), fn t ->
          is_struct(t, Nx.Tensor) and
            Enum.any?(Nx.to_flat_list(t), &(is_atom(&1) or abs(&1) >= huge))
        end) and
        each(ctx, [], fn [], g -> not is_number(g) end, fn e -> not is_number(e) end)
    end

    # Open bug (reported): Nx.remainder on floats whose operands have
    # opposite signs goes through MLX's floor-style remainder and back,
    # losing precision (0.317 rem -0.999 gives 0.31699997; 2.925 rem
    # -3.4e38 gives 0.0).
    defp explains?(:open_remainder_rounding, %{step: %{op: :remainder}} = ctx) do
      float?(ctx.got.type) and
        each(ctx, ctx.operands, fn [a, b], _g -> is_number(a) and is_number(b) and a * b < 0 end)
    end

    # Open bug (reported): a u64 start index of Nx.slice at or above 2^63 is
    # read as a negative int64 and clamped to 0 instead of to the end.
    defp explains?(:open_u64_slice_start, %{step: %{op: :dynamic_slice}, operands: [_ | starts]}) do
      Enum.any?(starts, &(&1.type == {:u, 64} and Nx.to_number(&1) >= Integer.pow(2, 63)))
    end

    defp explains?(_rule, _ctx), do: false

    # Open bug (reported): window reductions and convolutions view their
    # input through MLX's as_strided, which refuses (at evaluation) an input
    # that is itself a strided view.
    defp raised(%{op: op, args: args}, message) do
      windowed? = op in [:window_sum, :window_product, :window_max, :window_min, :conv]
      view? = Enum.any?(args, &match?({:view, _, _}, &1))

      if windowed? and view? and message =~ "AsStrided must be used with row contiguous arrays",
        do: :open_as_strided_on_views
    end

    ## Element-wise checks

    # Calls `fun.(operand values at i, got at i)` for every differing index
    # (operands broadcast to the output shape); `expected_ok` may also
    # constrain the expected value.
    defp each(ctx, operands, fun, expected_ok \\ fn _ -> true end) do
      shape = ctx.got.shape
      flats = Enum.map(operands, &(&1 |> Nx.broadcast(shape) |> Nx.to_flat_list()))
      got = ctx.got |> Nx.backend_copy(Nx.BinaryBackend) |> Nx.to_flat_list()
      exp = Nx.to_flat_list(ctx.expected)

      Enum.all?(ctx.idx, fn i ->
        xs = Enum.map(flats, &Enum.at(&1, i))
        fun.(xs, Enum.at(got, i)) and expected_ok.(Enum.at(exp, i))
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
    defp c99(:atan2, [y, :neg_infinity]) when is_number(y), do: if(y < 0, do: -:math.pi(), else: :math.pi())
    defp c99(:atan2, [:infinity, x]), do: quarter(x)
    defp c99(:atan2, [:neg_infinity, x]), do: -quarter(x)
    defp c99(:pow, [x, y]) when x == 1 or x == 1.0 or y == 0 or y == 0.0, do: 1.0
    defp c99(:pow, [x, y]) when x == :nan or y == :nan, do: :nan
    defp c99(:pow, [x, :infinity]) when is_number(x), do: if(abs(x) < 1, do: 0.0, else: pow_inf(x))
    defp c99(:pow, [x, :neg_infinity]) when is_number(x), do: if(abs(x) < 1, do: :infinity, else: pow_inf(x, 0.0))
    defp c99(_op, _xs), do: :finite

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
    defp max_finite(_), do: 3.4028234663852886e38

    @doc false
    def sections, do: rules() ++ [:open_as_strided_on_views]
  end
end
