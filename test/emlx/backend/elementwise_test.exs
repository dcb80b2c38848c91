if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.ElementwiseTest do
    use EMLX.BackendCase, async: true

    @int_types [{:s, 8}, {:s, 16}, {:s, 32}, {:s, 64}, {:u, 8}, {:u, 16}, {:u, 32}, {:u, 64}]
    @float_types [{:f, 16}, {:bf, 16}, {:f, 32}, {:f, 64}]

    # Unary math that MLX computes with its own rounding in f16/bf16/f32
    # (compared within a tolerance there; exactly in f64, where EMLX uses
    # the C library or MLX matches it).
    @math [:exp, :expm1, :log1p, :sigmoid, :cos, :sin, :tan, :cosh, :sinh, :tanh, :atan, :asinh, :sqrt, :rsqrt] ++
            [:cbrt, :erf, :erfc]

    describe "unary math" do
      for op <- @math, type <- [{:f, 32}, {:f, 64}, {:s, 32}] do
        test "#{op} on #{inspect(type)}" do
          x = if unquote(type) == {:s, 32}, do: bin([1, 2, 3, 0, 7], type: :s32), else: random({3, 4}, unquote(type))
          x = if unquote(op) in [:sqrt, :rsqrt, :log1p], do: Nx.add(Nx.abs(x), 1), else: x
          tol = if unquote(type) == {:f, 64}, do: [atol: 1.0e-15, rtol: 1.0e-14], else: [atol: 1.0e-6, rtol: 1.0e-5]
          check(&apply(Nx, unquote(op), [&1]), [x], tol)
        end
      end

      test "log, acosh on positive inputs; asin, acos, atanh, erf_inv inside (-1, 1)" do
        pos = bin([0.5, 1.0, 2.5, 10.0, 1.0e-3])
        unit = bin([-0.9, -0.5, 0.0, 0.1, 0.75])

        for op <- [:log, :acosh], type <- [:f32, :f64] do
          x = if op == :acosh, do: Nx.add(pos, 1), else: pos
          check(&apply(Nx, op, [&1]), [Nx.as_type(x, type)], atol: 1.0e-6, rtol: 1.0e-5)
        end

        for op <- [:asin, :acos, :atanh, :erf_inv], type <- [:f32, :f64] do
          check(&apply(Nx, op, [&1]), [Nx.as_type(unit, type)], atol: 1.0e-6, rtol: 1.0e-5)
        end
      end

      test "float64 results are exact to the last bit where Nx's are the C library's" do
        x = bin([0.1, 0.5, 1.0, 2.0, 3.0, -1.5], type: :f64)

        for op <- [:exp, :sin, :cos, :erf, :erfc, :sigmoid, :cbrt, :sqrt, :tan, :tanh, :log] do
          input = if op in [:log, :sqrt], do: Nx.abs(x), else: x
          check(&apply(Nx, op, [&1]), [input])
        end

        # Nx's log1p is log(1 + x): equal where 1 + x is exact, and EMLX's is
        # the more accurate one elsewhere (log1p(0.1) = 0.0953101798043248600...).
        check(&Nx.log1p/1, [bin([1.0, 2.0, 0.5, 0.25, -0.5, 1.0e10], type: :f64)])
        assert [0.09531017980432487] == Nx.to_flat_list(Nx.log1p(emlx(bin([0.1], type: :f64))))

        check(&Nx.erf_inv/1, [bin([0.1, 0.5, 0.9, -0.3], type: :f64)])
      end

      test "half-precision math stays in its type" do
        for type <- [:f16, :bf16], op <- [:exp, :sin, :sqrt, :cbrt, :erfc] do
          check(&apply(Nx, op, [&1]), [Nx.abs(random({5}, Nx.Type.normalize!(type)))], atol: 1.0e-2, rtol: 1.0e-2)
        end
      end

      test "non-finite inputs" do
        x = bin([:nan, :infinity, :neg_infinity, 0.0, -0.0])

        for op <- [:exp, :sin, :cbrt, :erfc, :sigmoid, :abs, :negate] do
          check(&apply(Nx, op, [&1]), [x])
          check(&apply(Nx, op, [&1]), [Nx.as_type(x, :f64)])
        end

        # sign(±Inf) = tanh(±Inf) = ±1 (Nx.BinaryBackend gives NaN).
        assert Nx.to_flat_list(Nx.sign(emlx(x))) == [:nan, 1.0, -1.0, 0.0, -0.0]
        assert Nx.to_flat_list(Nx.tanh(emlx(x))) == [:nan, 1.0, -1.0, 0.0, -0.0]

        # (Nx.BinaryBackend raises for these.)
        for op <- [:floor, :ceil, :round] do
          assert Nx.to_flat_list(apply(Nx, op, [emlx(x)])) == [:nan, :infinity, :neg_infinity, 0.0, 0.0]
        end
      end
    end

    describe "exact unary ops" do
      for type <- @int_types ++ @float_types do
        test "abs, negate, sign, floor, ceil, round on #{inspect(type)}" do
          x = random({2, 5}, unquote(type))

          for op <- [:abs, :negate, :sign, :floor, :ceil, :round, :is_nan, :is_infinity] do
            check(&apply(Nx, op, [&1]), [x])
          end
        end
      end

      test "round goes half away from zero" do
        check(&Nx.round/1, [bin([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, -0.49999997, 3.7])])
        # A zero result is +0.0, as Nx's integer rounding gives.
        assert <<0, 0, 0, 0>> == Nx.to_binary(Nx.round(emlx(bin([-0.49999997]))))
        check(&Nx.round/1, [bin([-2.5, -0.5, 0.5, 2.5, 4_503_599_627_370_495.5], type: :f64)])
      end

      for type <- @int_types do
        test "bitwise_not, population_count, count_leading_zeros on #{inspect(type)}" do
          x = random({6}, unquote(type))
          x = Nx.concatenate([x, bin(edges(unquote(type)), type: unquote(type))])

          for op <- [:bitwise_not, :population_count, :count_leading_zeros] do
            check(&apply(Nx, op, [&1]), [x])
          end
        end
      end

      test "bit counts of 2- and 4-bit integers count their own bits" do
        s4 = Nx.tensor([-8, -1, 0, 1, 7, 3], type: :s4)
        u2 = Nx.tensor([0, 1, 2, 3], type: :u2)
        assert Nx.to_flat_list(Nx.population_count(emlx(s4))) == [1, 4, 0, 1, 3, 2]
        assert Nx.to_flat_list(Nx.count_leading_zeros(emlx(s4))) == [0, 0, 4, 3, 1, 2]
        assert Nx.to_flat_list(Nx.count_leading_zeros(emlx(u2))) == [2, 1, 0, 0]
      end

      test "complex: abs, conjugate, real, imag, negate, sign, exp" do
        z = random({4}, {:c, 64})

        for op <- [:abs, :conjugate, :real, :imag, :negate, :is_nan] do
          check(&apply(Nx, op, [&1]), [z])
        end

        # sign(z) = z / |z| (Nx.BinaryBackend answers 1 for every complex).
        expected = Nx.divide(z, Nx.abs(z))
        assert_same(Nx.sign(emlx(z)), expected, atol: 1.0e-6)
        assert Nx.to_flat_list(Nx.sign(emlx(bin([Complex.new(0, 0)])))) == [Complex.new(0.0, 0.0)]
        check(&Nx.exp/1, [z], atol: 1.0e-5, rtol: 1.0e-5)
        check(&Nx.phase/1, [z], atol: 1.0e-6)
        check(&Nx.conjugate/1, [bin([1.0, -2.0])])
      end
    end

    describe "binary ops" do
      @arith [:add, :subtract, :multiply, :min, :max, :equal, :not_equal, :greater, :less, :greater_equal] ++
               [:less_equal, :logical_and, :logical_or, :logical_xor]

      for type <- @int_types ++ @float_types do
        test "arithmetic and comparisons on #{inspect(type)}" do
          a = random({3, 4}, unquote(type), 1)
          b = random({3, 4}, unquote(type), 2)
          # bf16: MLX rounds to nearest, Nx.BinaryBackend truncates: 1 ulp apart.
          tol = if unquote(type) == {:bf, 16}, do: [atol: 0.04, rtol: 0.01], else: []
          for op <- @arith, do: check(&apply(Nx, op, [&1, &2]), [a, b], tol)

          div_tol =
            if unquote(type) in [{:bf, 16}, {:f, 16}], do: [atol: 0.02, rtol: 0.01], else: [atol: 1.0e-6, rtol: 1.0e-5]

          check(&Nx.divide/2, [a, Nx.add(Nx.abs(b), 1)], div_tol)
        end
      end

      test "broadcasting and mixed types follow Nx's promotion" do
        pairs = [{:u8, :s8}, {:s32, :f32}, {:u64, :s64}, {:f16, :bf16}, {:u8, :f16}, {:s64, :f64}, {:u32, :c64}]

        for {ta, tb} <- pairs,
            op <- [:add, :multiply, :subtract, :max, :less],
            not (tb == :c64 and op in [:max, :less]) do
          a = random({2, 1, 3}, Nx.Type.normalize!(ta), 3)
          b = random({4, 1}, Nx.Type.normalize!(tb), 4)
          tol = if :bf16 in [ta, tb], do: [atol: 0.1, rtol: 0.01], else: []
          check(&apply(Nx, op, [&1, &2]), [a, b], tol)
        end

        check(&Nx.add(&1, 1), [bin([1, 2], type: :u8)])
        check(&Nx.multiply(&1, 0.5), [bin([1, 2], type: :s32)])
        check(&Nx.add(&1, Complex.new(0, 1)), [bin([1.0, 2.0])])
      end

      test "integer overflow wraps as in Nx" do
        check(&Nx.add/2, [bin([120, -120], type: :s8), bin([10, -10], type: :s8)])
        check(&Nx.multiply/2, [bin([200], type: :u8), bin([3], type: :u8)])
        check(&Nx.negate/1, [bin([1, 0, 255], type: :u8)])
      end

      test "quotient and remainder truncate toward zero, remainder has the dividend's sign" do
        for type <- [:s8, :s32, :s64, :u8, :u32] do
          a = bin([7, 9, 100, 3], type: type)
          b = bin([2, 4, 7, 5], type: type)
          check(&Nx.quotient/2, [a, b])
          check(&Nx.remainder/2, [a, b])
        end

        a = bin([-7, 7, -7, 7, -1, 5], type: :s32)
        b = bin([2, -2, -2, 2, 3, -3], type: :s32)
        check(&Nx.quotient/2, [a, b])
        check(&Nx.remainder/2, [a, b])
        check(&Nx.remainder/2, [bin([-7.5, 7.5, -7.5, 2.0]), bin([2.0, -2.0, -2.0, 0.5])])
        check(&Nx.remainder/2, [bin([-7.5, 7.5, 1.0e10], type: :f64), bin([2.0, -2.0, 3.0], type: :f64)])
      end

      # The fuzzer found these rounded: a float remainder is exact (C's fmod).
      test "float remainder of operands of opposite signs is exact" do
        for type <- [:f32, :f64, :f16, :bf16] do
          a = bin([0.317, 2.925, -0.317, -5.5, 7.0, 0.0], type: type)
          big = if type == :f16, do: -6.0e4, else: -3.0e38
          b = bin([-0.999, big, 0.999, 2.0, -0.75, -3.0], type: type)
          expected = Nx.remainder(a, b)
          got = Nx.remainder(emlx(a), emlx(b))
          assert Nx.to_binary(Nx.backend_copy(got, Nx.BinaryBackend)) == Nx.to_binary(expected), inspect(type)
        end
      end

      test "integer division by zero and MIN / -1 are defined and never trap" do
        a = Nx.tensor([7, -7, 0, -2_147_483_648], type: :s32) |> emlx()
        zero = Nx.tensor([0, 0, 0, -1], type: :s32) |> emlx()
        assert Nx.to_flat_list(Nx.quotient(a, zero)) == [-1, -1, -1, -2_147_483_648]
        assert Nx.to_flat_list(Nx.remainder(a, zero)) == [7, -7, 0, 0]
        u = Nx.tensor([5, 0], type: :u8) |> emlx()
        assert Nx.to_flat_list(Nx.quotient(u, Nx.tensor([0, 0], type: :u8))) == [255, 255]
        assert Nx.to_flat_list(Nx.remainder(u, Nx.tensor([0, 0], type: :u8))) == [5, 0]
      end

      test "integer corner cases in s8, s16, s64 and u64 (now defined by the native ops)" do
        # {type, MIN, MAX, bits}
        for {type, min, max, bits} <- [
              {:s8, -128, 127, 8},
              {:s16, -32_768, 32_767, 16},
              {:s64, -9_223_372_036_854_775_808, 9_223_372_036_854_775_807, 64}
            ] do
          a = emlx(Nx.tensor([7, -7, min, min, max], type: type))
          b = Nx.tensor([0, 0, -1, 0, -1], type: type)
          assert Nx.to_flat_list(Nx.quotient(a, b)) == [-1, -1, min, -1, -max]
          # Nx's remainder has the dividend's sign.
          assert Nx.to_flat_list(Nx.remainder(a, b)) == [7, -7, 0, min, 0]

          assert Nx.to_flat_list(Nx.remainder(emlx(Nx.tensor([-7, 7], type: type)), Nx.tensor([3, -3], type: type))) ==
                   [-1, 1]

          pow = Nx.pow(emlx(Nx.tensor([1, -1, -1, 2], type: type)), Nx.tensor([min, -3, min, -1], type: type))
          assert Nx.to_flat_list(pow) == [1, -1, 1, 0]

          x = emlx(Nx.tensor([3, -3], type: type))
          n = Nx.tensor([-1, bits], type: type)
          assert Nx.to_flat_list(Nx.left_shift(x, n)) == [0, 0]
          assert Nx.to_flat_list(Nx.right_shift(x, n)) == [0, -1]
        end

        max = 18_446_744_073_709_551_615
        u = emlx(Nx.tensor([7, max, 3], type: :u64))
        assert Nx.to_flat_list(Nx.quotient(u, Nx.tensor([0, 0, 2], type: :u64))) == [max, max, 1]
        assert Nx.to_flat_list(Nx.remainder(u, Nx.tensor([0, 0, 2], type: :u64))) == [7, max, 1]

        assert Nx.to_flat_list(Nx.left_shift(u, Nx.tensor([64, 200, 63], type: :u64))) == [
                 0,
                 0,
                 9_223_372_036_854_775_808
               ]

        assert Nx.to_flat_list(Nx.right_shift(u, Nx.tensor([64, max, 1], type: :u64))) == [0, 0, 1]
      end

      test "pow: integers, negative integer exponents, floats, complex" do
        check(&Nx.pow/2, [bin([2, 3, -2, 0, 5], type: :s32), bin([10, 3, 3, 0, 1], type: :s32)])
        check(&Nx.pow/2, [bin([2, 3], type: :u8), bin([7, 5], type: :u8)])
        check(&Nx.pow/2, [bin([1.5, 2.0, 0.5]), bin([2.0, -1.0, 0.5])], atol: 1.0e-6)
        check(&Nx.pow/2, [bin([1.5, 2.0], type: :f64), bin([2.5, -1.0], type: :f64)])
        neg = Nx.pow(emlx(Nx.tensor([1, -1, -1, 2, 0], type: :s32)), Nx.tensor([-3, -3, -2, -1, -2], type: :s32))
        assert Nx.to_flat_list(neg) == [1, -1, 1, 0, 0]
      end

      test "atan2 and bitwise ops" do
        check(&Nx.atan2/2, [random({6}, {:f, 32}, 1), random({6}, {:f, 32}, 2)], atol: 1.0e-6)
        check(&Nx.atan2/2, [random({6}, {:f, 64}, 1), random({6}, {:f, 64}, 2)])

        for type <- @int_types, op <- [:bitwise_and, :bitwise_or, :bitwise_xor] do
          check(&apply(Nx, op, [&1, &2]), [random({5}, type, 1), random({5}, type, 2)])
        end
      end

      test "shifts, including amounts outside the bit width" do
        for type <- [:s8, :s32, :s64, :u8, :u32, :u64] do
          check(&Nx.left_shift/2, [bin([1, 3, 5, 100], type: type), bin([0, 1, 2, 3], type: type)])
          check(&Nx.right_shift/2, [bin([1, 64, 5, 100], type: type), bin([0, 1, 2, 3], type: type)])
        end

        check(&Nx.right_shift/2, [bin([-64, -1, -100], type: :s32), bin([1, 5, 2], type: :s32)])
        x = emlx(Nx.tensor([1, -8, 7], type: :s32))
        big = Nx.tensor([32, 40, 100], type: :s32)
        assert Nx.to_flat_list(Nx.left_shift(x, big)) == [0, 0, 0]
        assert Nx.to_flat_list(Nx.right_shift(x, big)) == [0, -1, 0]
      end

      # A one-element amount whose value is computed is read while the op is
      # built (no range guard in the graph when it is in range).
      test "shifts by a computed one-element amount, in and out of range" do
        for {type, width} <- [s8: 8, s32: 32, u8: 8, u32: 32, s64: 64] do
          x = bin([1, -3, 5, 127], type: type)

          for n <- [0, 1, width - 1, width, width + 3], amount <- [bin(n, type: type), bin([n], type: type)] do
            check(&Nx.left_shift/2, [x, amount])
            check(&Nx.right_shift/2, [x, amount])
          end

          # A negative amount shifts every bit out (Nx.BinaryBackend refuses it).
          if type in [:s8, :s32, :s64] do
            minus_one = emlx(bin(-1, type: type))
            assert Nx.to_flat_list(Nx.left_shift(emlx(x), minus_one)) == [0, 0, 0, 0]
            assert Nx.to_flat_list(Nx.right_shift(emlx(x), minus_one)) == [0, -1, 0, 0]
          end
        end
      end

      # add, subtract, multiply, bitwise ops and shifts of integers of one
      # signedness and different widths take no conversion op: MLX widens.
      test "mixed integer widths of one signedness compute in the wider type" do
        pairs = [{:u8, :u32}, {:u32, :u8}, {:u16, :u64}, {:s8, :s32}, {:s64, :s16}, {:s8, :s64}]

        for {ta, tb} <- pairs,
            op <- [:add, :subtract, :multiply, :bitwise_and, :bitwise_or, :bitwise_xor, :left_shift, :right_shift] do
          {ma, mb} =
            {Nx.Constants.max_finite(ta), Nx.Constants.max_finite(tb)}
            |> then(fn {a, b} -> {Nx.to_number(a), Nx.to_number(b)} end)

          a = bin([ma, 1, 0, 7], type: ta)
          b = bin(if(op in [:left_shift, :right_shift], do: [1, 3, 7, 2], else: [mb, 255, 1, 3]), type: tb)
          check(&apply(Nx, op, [&1, &2]), [a, b])
        end
      end

      test "min and max propagate NaN" do
        a = bin([:nan, 1.0, :infinity, 2.0])
        b = bin([1.0, :nan, 3.0, :neg_infinity])
        check(&Nx.min/2, [a, b])
        check(&Nx.max/2, [a, b])
      end

      test "logical ops read any non-zero value as true" do
        a = bin([0.0, 0.5, -1.0, :nan])
        b = bin([1, 0, 2, 0], type: :s8)
        for op <- [:logical_and, :logical_or, :logical_xor], do: check(&apply(Nx, op, [&1, &2]), [a, b])
        check(&Nx.logical_not/1, [a])
      end
    end

    describe "as_type and bitcast" do
      test "between every pair of types" do
        # Values every type holds (out-of-range conversions: see below).
        x = bin([4, 1, 2, 7, 3, 5])
        types = @int_types ++ @float_types ++ [{:c, 64}, {:f, 8}, {:s, 4}, {:u, 4}]

        for from <- types, to <- types do
          check(&Nx.as_type(&1, to), [Nx.as_type(x, from)])
        end
      end

      # Computed integer tensors of up to 64 elements are converted on the
      # host while the op is built; larger ones by MLX's kernel: the same
      # wrapping either way (both against Nx.BinaryBackend).
      test "integers wrap into narrower and other-signed integer types" do
        small = bin([-1, 255, 256, -129, 70_000, -2_147_483_648, 2_147_483_647, 0], type: :s64)
        large = Nx.tile(small, [16])

        for x <- [small, large], from <- [:s64, :s32, :u32, :s8, :u8], to <- [:s8, :u8, :s16, :u16, :s32, :u32, :s64] do
          check(&Nx.as_type(&1, to), [Nx.as_type(x, from)])
        end
      end

      test "floats to integers truncate; NaN, Inf and out-of-range values as documented" do
        x = bin([1.7, -1.7, 0.5, -0.5, 255.9, -128.9])
        for type <- [:s8, :u8, :s32, :u64], do: check(&Nx.as_type(&1, type), [Nx.clip(x, 0, 100)])
        check(&Nx.as_type(&1, :s32), [x])

        non_finite = emlx(Nx.tensor([:nan, :infinity, :neg_infinity, 1.0e10, -1.0e10, 300.0, -5.0]))

        assert Nx.to_flat_list(Nx.as_type(non_finite, :s32)) == [
                 0,
                 2_147_483_647,
                 -2_147_483_648,
                 2_147_483_647,
                 -2_147_483_648,
                 300,
                 -5
               ]

        assert Nx.to_flat_list(Nx.as_type(non_finite, :u8)) == [0, 255, 0, 255, 0, 255, 0]

        # through float64, which lives on the CPU
        via_f64 = non_finite |> Nx.backend_copy({EMLX.Backend, device: :cpu}) |> Nx.as_type(:f64)

        assert Nx.to_flat_list(Nx.as_type(via_f64, :s64)) ==
                 [0, 9_223_372_036_854_775_807, -9_223_372_036_854_775_808, 10_000_000_000, -10_000_000_000, 300, -5]
      end

      test "complex to real keeps the real part" do
        z = bin([Complex.new(1.5, 2), Complex.new(-3.7, 1)])
        for type <- [:f32, :f64, :s32, :s8, :f16], do: check(&Nx.as_type(&1, type), [z])
        # Below the range of u8: saturates (see "out-of-range values" above).
        assert Nx.to_flat_list(Nx.as_type(emlx(z), :u8)) == [1, 0]
      end

      test "bitcast" do
        check(&Nx.bitcast(&1, :s32), [bin([1.0, -2.5, :nan])])
        check(&Nx.bitcast(&1, :f16), [bin([15360, 1], type: :u16)])
        check(&Nx.bitcast(&1, :u64), [bin([1.0, -0.0], type: :f64)])
      end
    end

    describe "select and clip" do
      test "select with broadcasting and mixed types" do
        pred = bin([[1, 0, 2], [0, 0, 1]], type: :u8)
        check(&Nx.select/3, [pred, bin([[1, 2, 3], [4, 5, 6]]), bin(0.5)])
        check(&Nx.select/3, [pred, bin(7, type: :s8), bin([[1, 2, 3], [4, 5, 6]], type: :u16)])
        check(&Nx.select/3, [bin([1.0, 0.0, :nan]), bin([1, 2, 3]), bin([4, 5, 6])])
      end

      test "clip" do
        for type <- [:s8, :u32, :f32, :f64, :bf16] do
          check(&Nx.clip(&1, 2, 50), [random({8}, Nx.Type.normalize!(type))])
        end

        check(&Nx.clip/3, [bin([1.0, :nan, 5.0]), bin(2.0), bin(4.0)])
      end
    end

    # The extreme values and neighbours of zero of an integer type.
    defp edges({:s, bits}), do: [0, -1, 1, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1]
    defp edges({:u, bits}), do: [0, 1, 2 ** bits - 1, 2 ** (bits - 1)]
  end
end
