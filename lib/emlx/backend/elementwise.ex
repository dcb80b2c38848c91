if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Elementwise do
    @moduledoc false
    # Element-wise callbacks of EMLX.Backend, generated from the tables
    # below, plus as_type, bitcast, select and clip.
    #
    # Operands are converted to the type Nx computed (`out.type`, or the
    # merged input type for comparisons) before the MLX op runs, so MLX's
    # own type promotion never decides a result type.
    #
    # Integer corner cases MLX leaves to the hardware (quotient and
    # remainder by 0 and MIN / -1, pow with a negative exponent, shifts out
    # of range) are defined by the native ops themselves, with the
    # semantics Nx's backend needs (see EMLX.quotient/2, EMLX.remainder/2,
    # EMLX.pow/2, EMLX.left_shift/2, EMLX.right_shift/2). Only remainder's
    # sign differs here: Nx's follows the dividend.

    alias Nx.Tensor, as: T
    alias EMLX.Backend, as: B
    alias EMLX.Backend.Convert

    import Bitwise

    # The op lists come from the one declaration of the element-wise ops,
    # EMLX.Ops.Elementwise (see nx_ops/0 there).
    import EMLX.Ops.Elementwise, only: [nx_names: 2, nx_ops: 0]

    # Unary ops whose operand is converted to out.type and given to the
    # EMLX function of the same name.
    @plain_unary nx_names(1, fn impl, _, _ -> impl == :plain end)

    # Unary ops MLX computes for float64 with float32 accuracy on the CPU:
    # float64 tensors on the CPU go to EMLX.precise_unary/2 (the C library,
    # in double precision), others to the MLX op of the same name.
    @precise_f64_unary nx_names(1, fn impl, _, _ -> impl == :precise end)

    # Unary ops with an implementation of their own below.
    @special_unary nx_names(1, fn impl, _, _ -> impl == :special end)

    # Binary ops computed in out.type: {nx name, EMLX function}.
    @arith_binary for {name, 2, :plain, class, mlx} <- nx_ops(), class not in [:compare, :logical], do: {name, mlx}

    # Integer ops whose MLX version widens mixed-width operands of one
    # signedness to the wider type, exactly as Nx types the result.
    @widening [:add, :subtract, :multiply, :bitwise_and, :bitwise_or, :bitwise_xor, :left_shift, :right_shift]

    # Comparisons, computed in the merged input type; the result is u8.
    @compare_binary nx_names(2, fn impl, class, _ -> impl == :plain and class == :compare end)

    # Logical ops: MLX reads any non-zero as true; the result is u8.
    @logical_binary nx_names(2, fn impl, class, _ -> impl == :plain and class == :logical end)

    # Binary ops with an implementation of their own below.
    @special_binary nx_names(2, fn impl, _, _ -> impl == :special end)

    @doc false
    def unary_ops, do: @plain_unary ++ @precise_f64_unary ++ @special_unary

    @doc false
    def binary_ops,
      do: Keyword.keys(@arith_binary) ++ @compare_binary ++ @logical_binary ++ @special_binary

    ## Generated callbacks

    # The first clause of each generated callback is the common case: EMLX
    # tensors of out.type (and, for binary ops, on one device), whose arrays
    # need no conversion; the second converts.
    for name <- @plain_unary do
      def unquote(name)(%T{type: type} = out, %T{type: type, data: %B{quantization_config: nil, ref: x}}),
        do: x |> EMLX.unquote(name)() |> Convert.to_nx_elementwise(out)

      def unquote(name)(%T{type: type} = out, tensor) do
        tensor |> operand(type) |> EMLX.unquote(name)() |> Convert.to_nx_elementwise(out)
      end
    end

    for name <- @precise_f64_unary do
      def unquote(name)(%T{type: type} = out, tensor) do
        x = operand(tensor, type)

        if type == {:f, 64} and elem(x, 0) == :cpu,
          do: x |> EMLX.precise_unary(unquote(Atom.to_string(name))) |> Convert.to_nx_elementwise(out),
          else: x |> EMLX.unquote(name)() |> Convert.to_nx_elementwise(out)
      end
    end

    for {name, fun} <- @arith_binary do
      def unquote(name)(
            %T{type: type} = out,
            %T{type: type, data: %B{quantization_config: nil, ref: {device, _} = l}},
            %T{type: type, data: %B{quantization_config: nil, ref: {device, _} = r}}
          ),
          do: EMLX.unquote(fun)(l, r) |> Convert.to_nx_elementwise(out)

      if name in @widening do
        # Integers of out's signedness, one of them of out's width: MLX
        # widens the other operand itself (as Nx does), so no conversion op.
        def unquote(name)(
              %T{type: {kind, bits}} = out,
              %T{type: {kind, lb}, data: %B{quantization_config: nil, ref: {device, _} = l}},
              %T{type: {kind, rb}, data: %B{quantization_config: nil, ref: {device, _} = r}}
            )
            when kind in [:s, :u] and lb >= 8 and rb >= 8 and lb <= bits and rb <= bits and (lb == bits or rb == bits),
            do: EMLX.unquote(fun)(l, r) |> Convert.to_nx_elementwise(out)
      end

      def unquote(name)(%T{type: type} = out, left, right) do
        {l, r} = operands(left, right, type)
        EMLX.unquote(fun)(l, r) |> Convert.to_nx_elementwise(out)
      end
    end

    for name <- @compare_binary do
      def unquote(name)(out, %T{type: lt} = left, %T{type: rt} = right) do
        {l, r} = operands(left, right, Nx.Type.merge(lt, rt))
        EMLX.unquote(name)(l, r) |> bool_result(out)
      end
    end

    for name <- @logical_binary do
      def unquote(name)(out, left, right) do
        {l, r} = operands(left, right, nil)
        EMLX.unquote(name)(l, r) |> bool_result(out)
      end
    end

    # A comparison's or logical op's MLX result (bool, of the broadcast
    # shape Nx computed) as out, a u8 tensor.
    defp bool_result(array, %T{type: {:u, 8}} = out), do: array |> EMLX.astype(:uint8) |> Convert.to_nx_same(out)

    ## Operands

    # The MLX array of `t` converted to the storage type of `type` (nil:
    # as stored).
    defp operand(t, type, device \\ nil) do
      device = device || Convert.first_device([t])
      if type, do: Convert.from_nx(t, device, type), else: Convert.from_nx(t, device)
    end

    defp operands(left, right, type) do
      device = Convert.first_device([left, right])
      {operand(left, type, device), operand(right, type, device)}
    end

    defp scalar_like({device, _} = ref, number), do: EMLX.scalar_tensor(number, EMLX.scalar_type(ref), device)

    ## Special unary ops

    # MLX has no cbrt or erfc: on the CPU they come from the C library
    # (EMLX.precise_unary/2), elsewhere from other MLX ops.
    def cbrt(%T{type: type} = out, tensor) do
      x = operand(tensor, type)

      if precise?(x, type) do
        x |> EMLX.precise_unary("cbrt") |> Convert.to_nx(out)
      else
        # pow(|x|, 1/3) with the sign, then one Newton step toward the
        # correctly rounded root; 0, ±Inf and NaN pass through.
        y = EMLX.multiply(EMLX.sign(x), EMLX.pow(EMLX.abs(x), scalar_like(x, 1 / 3)))
        step = EMLX.divide(EMLX.subtract(y, EMLX.divide(x, EMLX.multiply(y, y))), scalar_like(x, 3))
        non_finite = EMLX.logical_or(EMLX.is_nan(y), EMLX.is_infinity(y))
        keep = EMLX.logical_or(EMLX.equal(y, scalar_like(x, 0)), non_finite)
        EMLX.where(keep, y, EMLX.subtract(y, step)) |> Convert.to_nx(out)
      end
    end

    def erfc(%T{type: type} = out, tensor) do
      x = operand(tensor, type)

      if precise?(x, type),
        do: x |> EMLX.precise_unary("erfc") |> Convert.to_nx(out),
        else: EMLX.subtract(scalar_like(x, 1), EMLX.erf(x)) |> Convert.to_nx(out)
    end

    defp precise?({device, _}, {kind, _}), do: device == :cpu and kind in [:f, :bf]

    def abs(%T{type: {:u, _}} = out, tensor), do: tensor |> operand(out.type) |> Convert.to_nx(out)
    def abs(out, %T{type: {:c, _}} = tensor), do: tensor |> operand(nil) |> EMLX.abs() |> Convert.to_nx(out)
    def abs(%T{type: type} = out, tensor), do: tensor |> operand(type) |> EMLX.abs() |> Convert.to_nx(out)

    for name <- [:ceil, :floor] do
      def unquote(name)(%T{type: {kind, _} = type} = out, tensor) when kind in [:s, :u] do
        tensor |> operand(type) |> Convert.to_nx(out)
      end

      def unquote(name)(%T{type: type} = out, tensor) do
        tensor |> operand(type) |> EMLX.unquote(name)() |> Convert.to_nx(out)
      end
    end

    # Nx rounds half away from zero (MLX rounds half to even).
    def round(%T{type: {kind, _} = type} = out, tensor) when kind in [:s, :u] do
      tensor |> operand(type) |> Convert.to_nx(out)
    end

    def round(%T{type: type} = out, tensor) do
      x = operand(tensor, type)
      zero = scalar_like(x, 0)
      truncated = EMLX.where(EMLX.less(x, zero), EMLX.ceil(x), EMLX.floor(x))
      # x - trunc(x) is exact, so the half-way test is too.
      half = EMLX.greater_equal(EMLX.abs(EMLX.subtract(x, truncated)), scalar_like(x, 0.5))
      rounded = EMLX.where(half, EMLX.add(truncated, EMLX.sign(x)), truncated)
      # + 0.0: a result of zero is +0.0, as Nx's integer rounding gives.
      EMLX.add(rounded, zero) |> Convert.to_nx(out)
    end

    def sign(%T{type: {:u, _} = type} = out, tensor) do
      x = operand(tensor, type)
      EMLX.greater(x, scalar_like(x, 0)) |> Convert.to_nx(out)
    end

    def sign(%T{type: {:c, _} = type} = out, tensor) do
      # z / |z|, and 0 for 0.
      x = operand(tensor, type)
      magnitude = x |> EMLX.abs() |> EMLX.astype(EMLX.scalar_type(x))
      zero = EMLX.equal(magnitude, scalar_like(x, 0))
      EMLX.where(zero, x, EMLX.divide(x, magnitude)) |> Convert.to_nx(out)
    end

    def sign(%T{type: {:s, _} = type} = out, tensor), do: tensor |> operand(type) |> EMLX.sign() |> Convert.to_nx(out)

    # MLX's sign of NaN is 0; Nx's is NaN.
    def sign(%T{type: type} = out, tensor) do
      x = operand(tensor, type)
      EMLX.where(EMLX.is_nan(x), x, EMLX.sign(x)) |> Convert.to_nx(out)
    end

    def real(out, tensor), do: tensor |> operand(nil) |> EMLX.real() |> Convert.to_nx(out)
    def imag(out, tensor), do: tensor |> operand(nil) |> EMLX.imag() |> Convert.to_nx(out)

    for name <- [:is_nan, :is_infinity] do
      def unquote(name)(%T{shape: shape} = out, %T{type: {kind, _}} = tensor) when kind in [:s, :u] do
        device = Convert.first_device([tensor])
        EMLX.full(0, shape, :uint8, device) |> Convert.to_nx(out)
      end

      def unquote(name)(out, tensor) do
        tensor |> operand(nil) |> EMLX.unquote(name)() |> Convert.to_nx(out)
      end
    end

    ## Bit counting (SWAR on the unsigned view of the integers)

    def population_count(out, %T{type: {_, bits}} = tensor) do
      {x, width} = unsigned_view(tensor, bits)
      x |> popcount(width) |> Convert.to_nx(out)
    end

    def count_leading_zeros(out, %T{type: {_, bits}} = tensor) do
      {x, width} = unsigned_view(tensor, bits)

      # Smear the highest set bit into every lower one; the zeros left
      # above it are the leading zeros (of the storage width).
      smeared =
        Enum.reduce(Stream.iterate(1, &(&1 * 2)) |> Enum.take_while(&(&1 < width)), x, fn shift, acc ->
          EMLX.bitwise_or(acc, EMLX.right_shift(acc, scalar_like(acc, shift)))
        end)

      leading = EMLX.subtract(scalar_like(x, width), popcount(smeared, width))
      # A narrow type stored in 8 bits has (8 - bits) fewer leading zeros.
      leading = if width > bits, do: EMLX.subtract(leading, scalar_like(leading, width - bits)), else: leading
      Convert.to_nx(leading, out)
    end

    # The integers' bits as the unsigned MLX type of the storage width,
    # masked to `bits` for narrow types.
    defp unsigned_view(tensor, bits) do
      ref = operand(tensor, nil)
      unsigned = ref |> EMLX.scalar_type() |> to_unsigned()
      width = EMLX.Types.nx_type(unsigned) |> elem(1)
      x = EMLX.view(ref, unsigned)
      x = if width > bits, do: EMLX.bitwise_and(x, scalar_like(x, (1 <<< bits) - 1)), else: x
      {x, width}
    end

    defp to_unsigned(mlx) when mlx in [:int8, :uint8, :bool], do: :uint8
    defp to_unsigned(mlx) when mlx in [:int16, :uint16], do: :uint16
    defp to_unsigned(mlx) when mlx in [:int32, :uint32], do: :uint32
    defp to_unsigned(mlx) when mlx in [:int64, :uint64], do: :uint64

    defp popcount(x, width) do
      mask = fn byte -> scalar_like(x, repeat_byte(byte, width)) end
      shift = fn v, n -> EMLX.right_shift(v, scalar_like(x, n)) end

      x = EMLX.subtract(x, EMLX.bitwise_and(shift.(x, 1), mask.(0x55)))
      x = EMLX.add(EMLX.bitwise_and(x, mask.(0x33)), EMLX.bitwise_and(shift.(x, 2), mask.(0x33)))
      x = EMLX.bitwise_and(EMLX.add(x, shift.(x, 4)), mask.(0x0F))

      # Sum the bytes into the top byte (the multiply wraps, as intended).
      if width == 8, do: x, else: shift.(EMLX.multiply(x, mask.(0x01)), width - 8)
    end

    defp repeat_byte(byte, width), do: Enum.reduce(1..div(width, 8), 0, fn _, acc -> (acc <<< 8) + byte end)

    ## Special binary ops

    # Nx's remainder takes the sign of the dividend (C's fmod / Erlang's
    # rem); EMLX.remainder/2 takes the sign of the divisor. For floats the
    # remainder of the magnitudes is exact (no rounding, whatever the
    # operands' scales), and gets the dividend's sign; correcting a
    # divisor-signed remainder by adding the divisor would round.
    def remainder(%T{type: {kind, _} = type} = out, left, right) when kind in [:f, :bf] do
      {a, b} = operands(left, right, type)
      r = EMLX.remainder(EMLX.abs(a), EMLX.abs(b))
      EMLX.where(EMLX.less(a, scalar_like(r, 0)), EMLX.negate(r), r) |> Convert.to_nx(out)
    end

    # Integers: the corner cases (x % 0 = x, MIN % -1 = 0) are the same in
    # both, and the correction is exact.
    def remainder(%T{type: type} = out, left, right) do
      {a, b} = operands(left, right, type)
      r = EMLX.remainder(a, b)
      zero = scalar_like(r, 0)
      wrong = EMLX.logical_and(EMLX.not_equal(r, zero), EMLX.not_equal(EMLX.less(r, zero), EMLX.less(a, zero)))
      EMLX.where(wrong, EMLX.subtract(r, b), r) |> Convert.to_nx(out)
    end

    ## Types

    def as_type(%T{type: type} = out, %T{type: type} = tensor) do
      tensor |> operand(nil) |> Convert.to_nx_moved(out)
    end

    def as_type(%T{type: {kind, _} = type} = out, %T{type: {from, _}} = tensor)
        when kind in [:s, :u] and from in [:f, :bf, :c, :f8_e4m3fn] do
      x = operand(tensor, nil)
      x = if from == :c, do: EMLX.real(x), else: x
      float_to_int(x, type) |> Convert.to_nx(out)
    end

    def as_type(%T{type: {kind, _} = type} = out, %T{type: {:c, _}} = tensor) when kind != :c do
      tensor |> operand(nil) |> EMLX.real() |> EMLX.astype(Convert.mlx_type(type)) |> Convert.to_nx(out)
    end

    def as_type(%T{type: type} = out, tensor) do
      tensor |> operand(type) |> Convert.to_nx(out)
    end

    # Truncation toward zero; NaN -> 0, values at or beyond the integer range
    # (Inf included) saturate to its ends.
    defp float_to_int(x, {kind, bits} = type) do
      {min, max} = int_range(kind, bits)
      mlx = Convert.mlx_type(type)
      # The range ends as floats of x's type; they may round outward, so
      # compare with >= / <= and saturate rather than convert.
      too_big = EMLX.greater_equal(x, scalar_like(x, max))
      too_small = EMLX.less_equal(x, scalar_like(x, min))
      nan = EMLX.is_nan(x)
      zero = scalar_like(x, 0)
      safe = EMLX.where(EMLX.logical_or(EMLX.logical_or(too_big, too_small), nan), zero, x)
      converted = EMLX.astype(safe, mlx)
      {device, _} = converted

      converted
      |> then(&EMLX.where(too_big, EMLX.scalar_tensor(max, mlx, device), &1))
      |> then(&EMLX.where(too_small, EMLX.scalar_tensor(min, mlx, device), &1))
    end

    defp int_range(:s, bits), do: {-(1 <<< (bits - 1)), (1 <<< (bits - 1)) - 1}
    defp int_range(:u, bits), do: {0, (1 <<< bits) - 1}

    def bitcast(%T{type: type} = out, tensor) do
      tensor |> operand(nil) |> EMLX.view(Convert.mlx_type(type)) |> Convert.to_nx(out)
    end

    ## Selection

    def select(%T{type: type} = out, pred, on_true, on_false) do
      device = Convert.first_device([pred, on_true, on_false])
      p = operand(pred, nil, device)
      t = operand(on_true, type, device)
      f = operand(on_false, type, device)
      EMLX.where(p, t, f) |> Convert.to_nx(out)
    end

    def clip(%T{type: type} = out, tensor, min, max) do
      device = Convert.first_device([tensor, min, max])
      x = operand(tensor, type, device)
      lo = operand(min, type, device)
      hi = operand(max, type, device)
      # As Nx.BinaryBackend compares: x if x > lo, else lo; then that if it
      # is < hi, else hi (so NaN becomes lo).
      above = EMLX.where(EMLX.greater(x, lo), x, lo)
      EMLX.where(EMLX.less(above, hi), above, hi) |> Convert.to_nx(out)
    end
  end
end
