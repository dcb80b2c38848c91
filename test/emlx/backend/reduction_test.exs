if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.ReductionTest do
    use EMLX.BackendCase, async: true

    @types [{:s, 8}, {:u, 8}, {:s, 32}, {:u, 64}, {:f, 16}, {:bf, 16}, {:f, 32}, {:f, 64}]

    describe "aggregates" do
      for type <- @types do
        test "sum, product, reduce_max, reduce_min, all, any on #{inspect(type)}" do
          x = random({2, 3, 4}, unquote(type))
          tol = if float?(unquote(type)), do: [atol: 0.05, rtol: 0.01], else: []

          for op <- [:sum, :product, :reduce_max, :reduce_min, :all, :any],
              opts <- [[], [axes: [1]], [axes: [0, 2]], [axes: [2], keep_axes: true], [keep_axes: true]] do
            opts_tol = if op in [:sum, :product], do: tol, else: []
            check(&apply(Nx, op, [&1, opts]), [x], opts_tol)
          end
        end
      end

      test "sum and product promote small integers as Nx does" do
        check(&Nx.sum/1, [bin([200, 100, 50], type: :u8)])
        check(&Nx.sum/1, [bin([-100, -100, -100], type: :s8)])
        check(&Nx.product/1, [bin([200, 100], type: :u16)])
      end

      test "complex sum and product; NaN in max and min" do
        z = random({3, 2}, {:c, 64})
        check(&Nx.sum(&1, axes: [0]), [z], atol: 1.0e-5)
        check(&Nx.product(&1, axes: [1]), [z], atol: 1.0e-4)
        check(&Nx.reduce_max/1, [bin([1.0, :nan, 3.0])])
        check(&Nx.reduce_min(&1, axes: [0]), [bin([[1.0, 2.0], [:nan, -1.0]])])
      end
    end

    describe "argmax and argmin" do
      for type <- @types do
        test "with ties, axes and tie_break on #{inspect(type)}" do
          x = Nx.as_type(bin([[3, 1, 3, 0], [2, 2, 1, 2], [0, 5, 5, 1]]), unquote(type))

          for op <- [:argmax, :argmin],
              opts <- [
                [],
                [axis: 0],
                [axis: 1],
                [axis: 1, keep_axis: true],
                [tie_break: :high],
                [axis: 1, tie_break: :high]
              ] do
            check(&apply(Nx, op, [&1, opts]), [x])
          end
        end
      end

      test "a NaN wins" do
        x = bin([[1.0, :nan, 3.0], [:nan, 2.0, 0.0], [1.0, 2.0, 3.0]])
        check(&Nx.argmax(&1, axis: 1), [x])
        check(&Nx.argmin(&1, axis: 1), [x])
        check(&Nx.argmax/1, [bin([1.0, :nan, 3.0])])
        check(&Nx.argmax(&1, type: :u8), [bin([1.0, 3.0, 2.0])])
      end
    end

    describe "reduce with a function (through Nx.BinaryBackend)" do
      test "sum, max, custom function and accumulator types" do
        x = random({3, 4}, {:s, 32})
        check(&Nx.reduce(&1, 0, fn a, b -> Nx.add(a, b) end), [x])
        check(&Nx.reduce(&1, 1, [axes: [1]], fn a, b -> Nx.multiply(a, b) end), [x])
        check(&Nx.reduce(&1, 0, [axes: [0], keep_axes: true], fn a, b -> Nx.max(a, b) end), [x])

        f = random({2, 5}, {:f, 32})
        check(&Nx.reduce(&1, 0.0, [axes: [1]], fn a, acc -> Nx.add(Nx.abs(a), acc) end), [f])
        result = Nx.reduce(emlx(f), 0, fn a, b -> Nx.add(a, b) end)
        assert %EMLX.Backend{} = result.data
      end
    end

    describe "sort and argsort" do
      for type <- @types do
        test "both directions, stable, along every axis, on #{inspect(type)}" do
          x = random({4, 6}, unquote(type))
          # Repeated values, so that stability matters.
          x = Nx.concatenate([x, x], axis: 1)

          for axis <- [0, 1], direction <- [:asc, :desc] do
            check(&Nx.sort(&1, axis: axis, direction: direction), [x])
            check(&Nx.argsort(&1, axis: axis, direction: direction, stable: true), [x])
          end

          check(&Nx.argsort(&1, type: :s64, stable: true), [x])
        end
      end

      test "NaN and infinities in Nx's order" do
        x = bin([:nan, :neg_infinity, 0.0, :infinity, 1.0, :nan, -0.0])

        for direction <- [:asc, :desc] do
          check(&Nx.sort(&1, direction: direction), [x])
          check(&Nx.argsort(&1, direction: direction, stable: true), [x])
        end
      end

      test "top_k" do
        x = Nx.concatenate([random({3, 5}, {:f, 32}), random({3, 5}, {:f, 32})], axis: 1)
        check(&Nx.top_k(&1, k: 3), [x])
        check(&Nx.top_k(&1, k: 1), [bin([1, 3, 3, 2], type: :s16)])
      end
    end

    describe "all_close (a native block)" do
      test "tolerances, NaN handling and mixed types" do
        a = bin([1.0, 2.0, :nan, 1.0e10])
        b = bin([1.0, 2.00001, :nan, 1.00001e10])
        check(&Nx.all_close(&1, &2), [a, b])
        check(&Nx.all_close(&1, &2, equal_nan: true), [a, b])
        check(&Nx.all_close(&1, &2, equal_nan: true, rtol: 1.0e-7, atol: 0.0), [a, b])
        check(&Nx.all_close(&1, &2), [bin([1, 2, 3]), bin([1.0, 2.0, 3.0], type: :f64)])
        check(&Nx.all_close(&1, &2), [bin([Complex.new(1, 1)]), bin([Complex.new(1, 1.0000001)])])
      end
    end

    describe "cumulative ops" do
      for type <- [{:s, 32}, {:u, 8}, {:f, 32}, {:f, 64}, {:bf, 16}] do
        test "on #{inspect(type)}" do
          x = random({3, 4}, unquote(type))
          # bf16 rounds every partial result to 8 bits (and Nx truncates instead).
          tol =
            case unquote(type) do
              {:bf, _} -> [atol: 0.1, rtol: 0.05]
              {:f, _} -> [atol: 1.0e-4, rtol: 1.0e-5]
              _ -> []
            end

          for op <- [:cumulative_sum, :cumulative_product, :cumulative_min, :cumulative_max],
              opts <- [[], [axis: 1], [reverse: true], [axis: 1, reverse: true]] do
            check(&apply(Nx, op, [&1, opts]), [x], tol)
          end
        end
      end
    end
  end
end
