defmodule EMLX.Ops.Elementwise do
  @moduledoc false
  # Element-wise unary and binary ops; docs and doctests come from the lists.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/elementwise.cc.

  # Each entry also says what the op is to Nx, `{implementation, class}`;
  # EMLX.Backend's callbacks, the defn compiler's element-wise reducers and
  # the differential fuzzer (test/support/fuzz) all take their op lists
  # from here (nx_ops/0), so a new op is declared here and in the C++ table
  # only. Implementation of the Nx callback of the same name:
  #   :plain    the operand(s) in the output type, then this MLX op
  #   {:nx, n}  the same, for the Nx callback named n
  #   :precise  like :plain, but float64 on the CPU takes the C library's
  #             function (EMLX.precise_unary/2)
  #   :special  a composition of its own in EMLX.Backend.Elementwise
  #   :block    an Nx.block/4 (EMLX.Backend.Block), not a callback
  # Class (how the fuzzer draws and compares it): :approx (float math, MLX's
  # rounding), :rounded (correctly rounded), :exact, :integer (integers
  # only), :arith, :float (float binary math), :compare, :logical, :none
  # (complex only: not fuzzed).

  # name => {what it computes, doctest: {mlx type, input, expected item}, nx}
  @unary [
    abs: {"absolute value", {:float32, -1.5, 1.5}, {:special, :exact}},
    acos: {"inverse cosine", {:float32, 1.0, 0.0}, {:plain, :approx}},
    acosh: {"inverse hyperbolic cosine", {:float32, 1.0, 0.0}, {:plain, :approx}},
    asin: {"inverse sine", {:float32, 0.0, 0.0}, {:plain, :approx}},
    asinh: {"inverse hyperbolic sine", {:float32, 0.0, 0.0}, {:plain, :approx}},
    atan: {"inverse tangent", {:float32, 0.0, 0.0}, {:plain, :approx}},
    atanh: {"inverse hyperbolic tangent", {:float32, 0.0, 0.0}, {:plain, :approx}},
    bitwise_not: {"bitwise complement (integers)", {:int32, 0, -1}, {:plain, :integer}},
    ceil: {"ceiling", {:float32, 1.25, 2.0}, {:special, :exact}},
    conjugate: {"complex conjugate", {:float32, 2.0, 2.0}, {:plain, :none}},
    cos: {"cosine", {:float32, 0.0, 1.0}, {:precise, :approx}},
    cosh: {"hyperbolic cosine", {:float32, 0.0, 1.0}, {:plain, :approx}},
    erf: {"error function", {:float32, 0.0, 0.0}, {:precise, :approx}},
    erf_inv: {"inverse error function", {:float32, 0.0, 0.0}, {:precise, :approx}},
    exp: {"exponential", {:float32, 0.0, 1.0}, {:precise, :approx}},
    expm1: {"`exp(x) - 1`", {:float32, 0.0, 0.0}, {:plain, :approx}},
    floor: {"floor", {:float32, 1.75, 1.0}, {:special, :exact}},
    imag: {"imaginary part", {:complex64, 2.5, 0.0}, {:special, :none}},
    is_infinity: {"test for positive or negative infinity", {:float32, :infinity, true}, {:special, :exact}},
    is_nan: {"test for NaN", {:float32, :nan, true}, {:special, :exact}},
    log: {"natural logarithm", {:float32, 1.0, 0.0}, {:plain, :approx}},
    log1p: {"`log(1 + x)`", {:float32, 0.0, 0.0}, {:precise, :approx}},
    logical_not: {"logical negation", {:int32, 0, true}, {:block, :exact}},
    negate: {"negation", {:float32, 2.0, -2.0}, {:plain, :exact}},
    real: {"real part", {:complex64, 2.5, 2.5}, {:special, :none}},
    round: {"rounding half to even", {:float32, 2.5, 2.0}, {:special, :exact}},
    rsqrt: {"reciprocal square root", {:float32, 4.0, 0.5}, {:plain, :approx}},
    sigmoid: {"logistic sigmoid", {:float32, 0.0, 0.5}, {:precise, :approx}},
    sign: {"sign (-1, 0 or 1)", {:float32, -3.0, -1.0}, {:special, :exact}},
    sin: {"sine", {:float32, 0.0, 0.0}, {:precise, :approx}},
    sinh: {"hyperbolic sine", {:float32, 0.0, 0.0}, {:plain, :approx}},
    sqrt: {"square root", {:float32, 4.0, 2.0}, {:plain, :rounded}},
    tan: {"tangent", {:float32, 0.0, 0.0}, {:plain, :approx}},
    tanh: {"hyperbolic tangent", {:float32, 0.0, 0.0}, {:plain, :approx}}
  ]

  # name => {what it computes, doctest: {mlx type, a, b, expected item}, nx}
  @binary [
    add: {"sum", {:int32, 1, 2, 3}, {:plain, :arith}},
    subtract: {"difference", {:int32, 5, 3, 2}, {:plain, :arith}},
    multiply: {"product", {:int32, 2, 3, 6}, {:plain, :arith}},
    divide: {"true division (floating-point result)", {:float32, 1.0, 4.0, 0.25}, {:plain, :arith}},
    pow: {"power", {:int32, 2, 10, 1024}, {:plain, :float}},
    remainder: {"remainder with the sign of the divisor (Python's `%`)", {:int32, 7, 3, 1}, {:special, :float}},
    atan2: {"two-argument arc tangent", {:float32, 0.0, 1.0, 0.0}, {:plain, :float}},
    bitwise_and: {"bitwise and", {:int32, 12, 10, 8}, {:plain, :integer}},
    bitwise_or: {"bitwise or", {:int32, 12, 10, 14}, {:plain, :integer}},
    bitwise_xor: {"bitwise xor", {:int32, 12, 10, 6}, {:plain, :integer}},
    left_shift: {"left shift", {:int32, 1, 4, 16}, {:plain, :integer}},
    right_shift: {"right shift", {:int32, 16, 2, 4}, {:plain, :integer}},
    minimum: {"minimum", {:int32, 2, 3, 2}, {{:nx, :min}, :exact}},
    maximum: {"maximum", {:int32, 2, 3, 3}, {{:nx, :max}, :exact}},
    quotient: {"integer division truncated toward zero", {:int32, -7, 2, -3}, {:plain, :integer}},
    equal: {"equality test", {:int32, 2, 2, true}, {:plain, :compare}},
    not_equal: {"inequality test", {:int32, 2, 3, true}, {:plain, :compare}},
    greater: {"`a > b` test", {:int32, 3, 2, true}, {:plain, :compare}},
    greater_equal: {"`a >= b` test", {:int32, 2, 2, true}, {:plain, :compare}},
    less: {"`a < b` test", {:int32, 2, 3, true}, {:plain, :compare}},
    less_equal: {"`a <= b` test", {:int32, 3, 2, false}, {:plain, :compare}},
    logical_and: {"logical and", {:int32, 1, 0, false}, {:plain, :logical}},
    logical_or: {"logical or", {:int32, 1, 0, true}, {:plain, :logical}},
    logical_xor: {"logical exclusive or", {:int32, 1, 1, false}, {:plain, :logical}}
  ]

  # Nx element-wise callbacks no MLX op of the same name computes:
  # EMLX.Backend.Elementwise composes them. name => {arity, class}.
  @nx_only [
    cbrt: {1, :approx},
    erfc: {1, :approx},
    count_leading_zeros: {1, :integer},
    population_count: {1, :integer}
  ]

  @doc false
  # Every element-wise op as Nx sees it: `{nx name, arity, implementation
  # (:plain, :precise, :special, :block), class, MLX op or nil}`.
  def nx_ops do
    entry = fn {name, {_what, _doc, {impl, class}}}, arity ->
      case impl do
        {:nx, nx_name} -> {nx_name, arity, :plain, class, name}
        impl -> {name, arity, impl, class, name}
      end
    end

    Enum.map(@unary, &entry.(&1, 1)) ++
      Enum.map(@binary, &entry.(&1, 2)) ++
      for({name, {arity, class}} <- @nx_only, do: {name, arity, :special, class, nil})
  end

  @doc false
  # The Nx names of the element-wise ops of `arity` whose entry matches.
  def nx_names(arity, fun) do
    for {name, ^arity, impl, class, mlx} <- nx_ops(), fun.(impl, class, mlx), do: name
  end

  # Integer corner cases the native ops define (elementwise.cc) instead of
  # leaving them to the hardware; appended to those ops' docs. Each rule
  # applies in the type the op computes in (the operands' promoted type).
  @integer_notes [
    quotient: """
    Integer corner cases are defined: dividing by zero gives -1 (all bits
    set, so the largest value of an unsigned type), and `MIN / -1` wraps
    to `MIN`. Floats divide as IEEE 754 does and round the quotient down.

        iex> int32 = &EMLX.scalar_tensor(&1, :int32, :cpu)
        iex> EMLX.quotient(int32.(7), int32.(0)) |> EMLX.item()
        -1
        iex> EMLX.quotient(int32.(-2_147_483_648), int32.(-1)) |> EMLX.item()
        -2147483648
        iex> uint8 = &EMLX.scalar_tensor(&1, :uint8, :cpu)
        iex> EMLX.quotient(uint8.(7), uint8.(0)) |> EMLX.item()
        255
    """,
    remainder: """
    The result is 0 or has the divisor's sign (`-7 % 3` is 2). Integer
    corner cases are defined: the remainder of a division by zero is the
    dividend (XLA's convention), and `MIN % -1` is 0. Floats follow
    IEEE 754 (NaN for a zero divisor).

        iex> int32 = &EMLX.scalar_tensor(&1, :int32, :cpu)
        iex> EMLX.remainder(int32.(-7), int32.(3)) |> EMLX.item()
        2
        iex> EMLX.remainder(int32.(-7), int32.(0)) |> EMLX.item()
        -7
        iex> EMLX.remainder(int32.(-2_147_483_648), int32.(-1)) |> EMLX.item()
        0
    """,
    pow: """
    A negative integer exponent gives the real result truncated toward
    zero: 1 for base 1, 1 or -1 for base -1 (by the exponent's parity), 0
    for any other base. Floats follow IEEE 754.

        iex> int32 = &EMLX.scalar_tensor(&1, :int32, :cpu)
        iex> EMLX.pow(int32.(-1), int32.(-3)) |> EMLX.item()
        -1
        iex> EMLX.pow(int32.(1), int32.(-2)) |> EMLX.item()
        1
        iex> EMLX.pow(int32.(2), int32.(-1)) |> EMLX.item()
        0
    """,
    left_shift: """
    Shifting by a negative amount or by the bit width (of the operands'
    promoted type) or more shifts every bit out and gives 0. Booleans shift
    as `:uint8`.

        iex> int32 = &EMLX.scalar_tensor(&1, :int32, :cpu)
        iex> EMLX.left_shift(int32.(1), int32.(31)) |> EMLX.item()
        -2147483648
        iex> EMLX.left_shift(int32.(1), int32.(32)) |> EMLX.item()
        0
        iex> EMLX.left_shift(int32.(1), int32.(-1)) |> EMLX.item()
        0
    """,
    right_shift: """
    Signed types shift arithmetically (the sign fills in). Shifting by a
    negative amount or by the bit width (of the operands' promoted type) or
    more shifts every bit out and gives 0, or -1 for a negative signed
    number. Booleans shift as `:uint8`.

        iex> int32 = &EMLX.scalar_tensor(&1, :int32, :cpu)
        iex> EMLX.right_shift(int32.(-8), int32.(1)) |> EMLX.item()
        -4
        iex> EMLX.right_shift(int32.(-8), int32.(40)) |> EMLX.item()
        -1
        iex> EMLX.right_shift(int32.(8), int32.(-1)) |> EMLX.item()
        0
    """
  ]

  def table do
    unary =
      for {name, {what, {type, input, expected}, _nx}} <- @unary do
        {name, [tensor: :tensor],
         """
         Element-wise #{what}.

             iex> EMLX.scalar_tensor(#{inspect(input)}, #{inspect(type)}, :cpu) |> EMLX.#{name}() |> EMLX.item()
             #{inspect(expected)}
         """, []}
      end

    binary =
      for {name, {what, {type, a, b, expected}, _nx}} <- @binary do
        {name, [tensorA: :tensor, tensorB: :tensor],
         """
         Element-wise #{what}, with broadcasting.

             iex> a = EMLX.scalar_tensor(#{inspect(a)}, #{inspect(type)}, :cpu)
             iex> b = EMLX.scalar_tensor(#{inspect(b)}, #{inspect(type)}, :cpu)
             iex> EMLX.#{name}(a, b) |> EMLX.item()
             #{inspect(expected)}
         """ <> integer_notes(name), []}
      end

    unary ++ binary ++ selection()
  end

  defp integer_notes(name) do
    case Keyword.fetch(@integer_notes, name) do
      {:ok, notes} -> "\n" <> notes
      :error -> ""
    end
  end

  defp selection do
    [
      {:clip, [tensor: :tensor, tensor_min: :tensor, tensor_max: :tensor],
       """
       Limits the elements to `[tensor_min, tensor_max]` (tensors that broadcast
       against `tensor`); either bound may be `nil`, not both.

           iex> t = EMLX.arange(0, 5, 1, true, :cpu)
           iex> lo = EMLX.scalar_tensor(1, :int64, :cpu)
           iex> hi = EMLX.scalar_tensor(3, :int64, :cpu)
           iex> EMLX.clip(t, lo, hi) |> EMLX.to_blob()
           <<1::64-native, 1::64-native, 2::64-native, 3::64-native, 3::64-native>>
       """, []},
      {:where, [tensorPred: :tensor, tensorTrue: :tensor, tensorFalse: :tensor],
       """
       Element-wise `tensorTrue` where `tensorPred` is non-zero, else
       `tensorFalse`, with broadcasting.

           iex> pred = EMLX.from_blob(<<1, 0>>, {2}, :bool, :cpu)
           iex> a = EMLX.full(1, {2}, :int32, :cpu)
           iex> b = EMLX.full(2, {2}, :int32, :cpu)
           iex> EMLX.where(pred, a, b) |> EMLX.to_blob()
           <<1::32-native, 2::32-native>>
       """, []},
      {:isclose, [tensorA: :tensor, tensorB: :tensor, rtol: :float, atol: :float, equal_nan: :bool],
       """
       Element-wise `abs(a - b) <= atol + rtol * abs(b)`, as booleans; NaNs
       compare equal only when `equal_nan` is true.

           iex> a = EMLX.scalar_tensor(1.0, :float32, :cpu)
           iex> b = EMLX.scalar_tensor(1.05, :float32, :cpu)
           iex> EMLX.isclose(a, b, 0.1, 0.0, false) |> EMLX.item()
           true
       """, []},
      {:allclose, [tensorA: :tensor, tensorB: :tensor, rtol: :float, atol: :float, equal_nan: :bool],
       """
       A boolean 0-d tensor: whether `isclose/5` holds for every element.

           iex> a = EMLX.full(1.0, {3}, :float32, :cpu)
           iex> b = EMLX.full(1.5, {3}, :float32, :cpu)
           iex> EMLX.allclose(a, b, 1.0e-5, 1.0e-8, false) |> EMLX.item()
           false
       """, []}
    ]
  end
end
