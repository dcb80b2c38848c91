if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.WindowTest do
    use EMLX.BackendCase, async: true

    @options [
      [],
      [strides: [2, 1]],
      [padding: :same],
      [padding: [{1, 2}, {0, 1}], strides: [1, 2]],
      [window_dilations: [2, 1]],
      [padding: [{2, 0}, {1, 1}], strides: [2, 2], window_dilations: [1, 2]]
    ]

    for type <- [{:s, 32}, {:u, 8}, {:f, 32}, {:f, 64}, {:bf, 16}] do
      test "window_sum, window_product, window_max, window_min on #{inspect(type)}" do
        x = random({5, 6}, unquote(type))
        tol = if float?(unquote(type)), do: [atol: 0.1, rtol: 0.02], else: []

        for op <- [:window_sum, :window_product, :window_max, :window_min], opts <- @options do
          op_tol = if op in [:window_sum, :window_product], do: tol, else: []
          check(&apply(Nx, op, [&1, {2, 3}, opts]), [x], op_tol)
        end
      end
    end

    test "rank 1 and rank 3 windows" do
      check(&Nx.window_sum(&1, {3}), [random({7}, {:s, 16})])
      check(&Nx.window_max(&1, {1, 2, 2}, strides: [1, 2, 1]), [random({2, 4, 3}, {:f, 32})])
    end

    test "window_reduce with a function (through Nx.BinaryBackend)" do
      x = random({4, 5}, {:s, 32})
      check(&Nx.window_reduce(&1, 0, {2, 2}, fn a, b -> Nx.add(a, b) end), [x])
      check(&Nx.window_reduce(&1, -100, {2, 3}, [strides: [2, 1], padding: :same], fn a, b -> Nx.max(a, b) end), [x])
    end

    describe "window_scatter_max and window_scatter_min" do
      test "the selected position gets the source values" do
        t = bin([[7, 2, 5, 3, 10, 2], [3, 8, 9, 3, 4, 2], [1, 5, 7, 5, 6, 1], [0, 6, 2, 7, 2, 8]])
        source = bin([[2, 6], [3, 1]])

        for op <- [:window_scatter_max, :window_scatter_min] do
          check(&apply(Nx, op, [&1, &2, 0, {2, 3}, [strides: [2, 3], padding: :valid]]), [t, source])
        end
      end

      test "ties go to the last candidate, padding and floats" do
        t = bin([[1.0, 1.0, 2.0], [2.0, 0.5, 0.5], [3.0, 3.0, -1.0]])
        source = bin([[1.0, 2.0], [3.0, 4.0]])

        for op <- [:window_scatter_max, :window_scatter_min] do
          check(&apply(Nx, op, [&1, &2, 0.0, {2, 2}, [strides: [1, 1], padding: :valid]]), [t, source])
          check(&apply(Nx, op, [&1, &2, 0.5, {3, 3}, [strides: [2, 2], padding: :same]]), [t, source])
        end
      end
    end
  end
end
