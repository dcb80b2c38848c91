defmodule EMLX.API.IntegerCornerTest do
  # Integer corner cases the native ops define (MLX leaves them to the
  # hardware): division by zero and MIN / -1, negative exponents, shifts by
  # negative or too large amounts. Expected values are worked out by hand
  # from the documented rules; a case that still trapped would kill the VM
  # and with it the whole test run.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  # {MIN, MAX} of each type, written out.
  @limits %{
    int8: {-128, 127},
    int16: {-32_768, 32_767},
    int32: {-2_147_483_648, 2_147_483_647},
    int64: {-9_223_372_036_854_775_808, 9_223_372_036_854_775_807},
    uint8: {0, 255},
    uint64: {0, 18_446_744_073_709_551_615}
  }

  # Bit width and the value with only the top bit set (as stored).
  @high_bit %{
    int8: {8, -128},
    int16: {16, -32_768},
    int32: {32, -2_147_483_648},
    int64: {64, -9_223_372_036_854_775_808},
    uint8: {8, 128},
    uint64: {64, 9_223_372_036_854_775_808}
  }

  @signed [:int8, :int16, :int32, :int64]
  @unsigned [:uint8, :uint64]

  defp check(result, type, expected) do
    assert EMLX.scalar_type(result) == type
    assert to_list(result) == expected
  end

  describe "quotient and remainder" do
    for type <- @signed do
      test "#{type}: zero divisors, MIN / -1, and ordinary signs" do
        type = unquote(type)
        {min, max} = @limits[type]
        a = tensor([7, -7, 0, min, min, max, min, 7, -7], type)
        b = tensor([0, 0, 0, 0, -1, -1, 1, -2, 2], type)

        # x / 0 = -1; MIN / -1 wraps to MIN; MAX / -1 = -MAX; truncation.
        check(EMLX.quotient(a, b), type, [-1, -1, -1, -1, min, -max, min, -3, -3])
        # x % 0 = x; x % -1 = 0; otherwise the divisor's sign (7 % -2 = -1).
        check(EMLX.remainder(a, b), type, [7, -7, 0, min, 0, 0, 0, -1, 1])
      end
    end

    for type <- @unsigned do
      test "#{type}: zero divisors" do
        type = unquote(type)
        {0, max} = @limits[type]
        a = tensor([7, 0, max, max, 7], type)
        b = tensor([0, 0, 0, 1, 2], type)
        # -1 in an unsigned type is MAX (all bits set).
        check(EMLX.quotient(a, b), type, [max, max, max, max, 3])
        check(EMLX.remainder(a, b), type, [7, 0, max, 0, 1])
      end
    end

    test "a zero divisor that broadcasts, and a 2-d one" do
      a = tensor([[5, -6], [7, 8]], :int32)
      check(EMLX.quotient(a, tensor(0, :int32)), :int32, [[-1, -1], [-1, -1]])
      check(EMLX.remainder(a, tensor(0, :int32)), :int32, [[5, -6], [7, 8]])
      b = tensor([[0, 3], [-1, 0]], :int32)
      check(EMLX.quotient(a, b), :int32, [[-1, -2], [-7, -1]])
      check(EMLX.remainder(a, b), :int32, [[5, 0], [0, 8]])
    end

    test "mixed types are guarded in the promoted type" do
      # int8 MIN / int32 -1 is computed in int32: 128, no wrap.
      check(EMLX.quotient(tensor([-128], :int8), tensor([-1], :int32)), :int32, [128])
      check(EMLX.remainder(tensor([-128], :int8), tensor([-1], :int32)), :int32, [0])
      # int8 / uint8 is computed in int16.
      check(EMLX.quotient(tensor([-128, 5], :int8), tensor([0, 2], :uint8)), :int16, [-1, 2])
      check(EMLX.remainder(tensor([-128, 5], :int8), tensor([0, 2], :uint8)), :int16, [-128, 1])
    end

    test "booleans: dividing by false gives all bits set (true) and the dividend" do
      a = tensor([true, false, true], :bool)
      b = tensor([false, false, true], :bool)
      check(EMLX.quotient(a, b), :bool, [true, true, true])
      check(EMLX.remainder(a, b), :bool, [true, false, false])
    end

    test "floats keep IEEE semantics" do
      a = tensor([1.0, -1.0, 0.0], :float32)
      zero = tensor(0.0, :float32)
      # quotient of floats floors a / b: floor(±Inf) = ±Inf, 0 / 0 = NaN.
      check(EMLX.quotient(a, zero), :float32, [:infinity, :neg_infinity, :nan])
      check(EMLX.remainder(a, zero), :float32, [:nan, :nan, :nan])
    end

    test "divide promotes integers to floats, so a zero divisor gives IEEE results" do
      for type <- [:int8, :int32, :int64, :uint8, :uint64] do
        a = tensor([1, 0], type)
        check(EMLX.divide(a, tensor([0, 0], type)), :float32, [:infinity, :nan])
      end

      check(EMLX.divide(tensor([-1], :int32), tensor([0], :int32)), :float32, [:neg_infinity])
    end
  end

  describe "pow" do
    for type <- @signed do
      test "#{type}: negative exponents give the truncated real result" do
        type = unquote(type)
        {min, max} = @limits[type]
        base = tensor([1, -1, -1, 2, 0, -2, 3, min, max, -1, 1, 1, -1], type)
        exp = tensor([-3, -3, -2, -1, -2, -1, 2, -1, -1, min, min, 0, 0], type)
        # 1^n = 1; (-1)^n = ±1 by parity (MIN is even); |base| > 1 or 0: 0.
        check(EMLX.pow(base, exp), type, [1, -1, 1, 0, 0, 0, 9, 0, 0, 1, 1, 1, 1])
      end
    end

    for type <- @unsigned do
      test "#{type}: exponents up to MAX" do
        type = unquote(type)
        {0, max} = @limits[type]
        base = tensor([2, 3, 0, 1, 2, 0], type)
        exp = tensor([7, 2, 0, max, max, max], type)
        # 2^MAX wraps to 0 (a multiple of 2^bits).
        check(EMLX.pow(base, exp), type, [128, 9, 1, 1, 0, 0])
      end
    end

    test "mixed types: a negative int32 exponent of an int8 base" do
      check(EMLX.pow(tensor([-1, 1, 2], :int8), tensor([-3], :int32)), :int32, [-1, 1, 0])
    end

    test "floats keep IEEE semantics" do
      check(EMLX.pow(tensor([2.0, 0.0, -2.0], :float32), tensor(-1.0, :float32)), :float32, [0.5, :infinity, -0.5])
    end
  end

  describe "left_shift and right_shift" do
    for type <- @signed do
      test "#{type}: amounts -1, 0, 1, bits - 1, bits and beyond" do
        type = unquote(type)
        {bits, min} = @high_bit[type]
        # 200 does not fit in int8: its largest amount is 127.
        big = unquote(if type == :int8, do: 127, else: 200)
        n = tensor([-1, 0, 1, bits - 1, bits, big], type)
        a = tensor([[3], [-3]], type)

        # Bit 0 of 3 and of -3 (...11101) lands in the sign bit at bits - 1.
        check(EMLX.left_shift(a, n), type, [[0, 3, 6, min, 0, 0], [0, -3, -6, min, 0, 0]])
        # Arithmetic shift: every bit out leaves the sign, 0 or -1.
        check(EMLX.right_shift(a, n), type, [[0, 3, 1, 0, 0, 0], [-1, -3, -2, -1, -1, -1]])
      end
    end

    for type <- @unsigned do
      test "#{type}: amounts MAX (the bits of -1), 0, 1, bits - 1, bits and 200" do
        type = unquote(type)
        {bits, high} = @high_bit[type]
        {0, max} = @limits[type]
        n = tensor([max, 0, 1, bits - 1, bits, 200], type)
        # max - 2 is ...11101, as -3 is in the signed types.
        a = tensor([[3], [max - 2]], type)

        check(EMLX.left_shift(a, n), type, [[0, 3, 6, high, 0, 0], [0, max - 2, max - 5, high, 0, 0]])
        # Logical shift: ...11101 >> 1 is 0111...10.
        check(EMLX.right_shift(a, n), type, [[0, 3, 1, 0, 0, 0], [0, max - 2, high - 2, 1, 0, 0]])
      end
    end

    test "the width is that of the promoted type" do
      # int8 shifted by an int32 amount is computed in int32.
      n = tensor([8, 31, 32], :int32)
      check(EMLX.left_shift(tensor([3], :int8), n), :int32, [768, -2_147_483_648, 0])
      check(EMLX.right_shift(tensor([-128], :int8), n), :int32, [-1, -1, -1])
    end

    test "booleans shift as uint8" do
      a = tensor([true, true], :bool)
      check(EMLX.left_shift(a, tensor([true, false], :bool)), :uint8, [2, 1])
      check(EMLX.left_shift(a, tensor([7, 8], :uint8)), :uint8, [128, 0])
    end
  end

  test "the VM is still alive after all the above" do
    still_alive!()
  end
end
