if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.DotLayoutTest do
    # EMLX.Defn.DotLayout: which transposed dot products the compiler lowers
    # as the swapped dot (checked on traced graphs), and that compiled
    # functions with such products, gradients included, agree with
    # Nx.BinaryBackend.
    use ExUnit.Case, async: true

    alias EMLX.Defn.DotLayout

    defp trace(fun, args), do: apply(Nx.Defn.debug_expr(fun), args)

    defp swap_of(fun, args) do
      %Nx.Tensor{data: %Nx.Defn.Expr{op: :transpose, args: [dot, axes]}} = out = trace(fun, args)
      DotLayout.swapped(dot, axes, DotLayout.uses(out))
    end

    defp t(shape, seed) do
      n = Tuple.product(shape)
      Nx.iota({n}, type: :f32) |> Nx.multiply(0.37 + seed) |> Nx.sin() |> Nx.reshape(shape)
    end

    # The oracle: the Evaluator on Nx.BinaryBackend. The compiled side runs
    # on the suite's device (f32 products are TF32 on the GPU).
    defp check(fun, args) do
      oracle = Enum.map(args, &Nx.backend_copy(&1, Nx.BinaryBackend))
      expected = Nx.Defn.jit_apply(fun, oracle, compiler: Nx.Defn.Evaluator)
      inputs = Enum.map(args, &Nx.backend_copy(&1, EMLX.TestDevice.backend()))
      actual = Nx.Defn.jit_apply(fun, inputs, compiler: EMLX, device: EMLX.TestDevice.device())
      tol = EMLX.TestDevice.tf32(atol: 1.0e-4, rtol: 1.0e-5)

      Enum.zip(Nx.Defn.Composite.flatten_list([actual]), Nx.Defn.Composite.flatten_list([expected]))
      |> Enum.each(fn {a, e} ->
        assert a.shape == e.shape

        assert Nx.all_close(Nx.backend_copy(a, Nx.BinaryBackend), e, tol) == Nx.tensor(1, type: :u8)
      end)
    end

    test "a transposed product read once is the swapped product" do
      a = t({3, 4}, 1)
      b = t({3, 5}, 2)

      assert {%{shape: {3, 5}}, [0], %{shape: {3, 4}}, [0]} =
               swap_of(&(Nx.dot(&1, [0], &2, [0]) |> Nx.transpose()), [a, b])

      # Several free axes on each side, moved as blocks.
      a3 = t({2, 3, 4}, 3)
      b3 = t({4, 5, 6}, 4)
      swap = &(Nx.dot(&1, [2], &2, [0]) |> Nx.transpose(axes: [2, 3, 0, 1]))
      assert {%{shape: {4, 5, 6}}, [0], %{shape: {2, 3, 4}}, [2]} = swap_of(swap, [a3, b3])
    end

    test "other transposes, and products read elsewhere too, stay as they are" do
      a3 = t({2, 3, 4}, 3)
      b3 = t({4, 5, 6}, 4)
      # Not a swap of the two blocks.
      assert swap_of(&(Nx.dot(&1, [2], &2, [0]) |> Nx.transpose(axes: [3, 2, 0, 1])), [a3, b3]) == nil
      assert swap_of(&(Nx.dot(&1, [2], &2, [0]) |> Nx.transpose(axes: [1, 0, 2, 3])), [a3, b3]) == nil

      # The product is also an output, or read by another node.
      a = t({3, 4}, 1)
      b = t({3, 5}, 2)

      both =
        trace(
          fn a, b ->
            d = Nx.dot(a, [0], b, [0])
            {Nx.transpose(d), d}
          end,
          [a, b]
        )

      {%{data: %{args: [dot, axes]}}, _} = both
      assert DotLayout.swapped(dot, axes, DotLayout.uses(both)) == nil

      twice =
        trace(
          fn a, b ->
            d = Nx.dot(a, [0], b, [0])
            Nx.add(Nx.transpose(d), Nx.sum(d))
          end,
          [a, b]
        )

      %{data: %{args: [%{data: %{op: :transpose, args: [dot, axes]}}, _]}} = twice
      assert DotLayout.swapped(dot, axes, DotLayout.uses(twice)) == nil

      # Batched products.
      ab = t({2, 3, 4}, 5)
      bb = t({2, 3, 5}, 6)
      batched = trace(&(Nx.dot(&1, [1], [0], &2, [1], [0]) |> Nx.transpose(axes: [0, 2, 1])), [ab, bb])
      %{data: %{args: [dot, axes]}} = batched
      assert DotLayout.swapped(dot, axes, DotLayout.uses(batched)) == nil
    end

    test "compiled transposed products agree with Nx.BinaryBackend" do
      check(&(Nx.dot(&1, [0], &2, [0]) |> Nx.transpose()), [t({64, 33}, 1), t({64, 17}, 2)])
      check(&(Nx.dot(&1, [2], &2, [0]) |> Nx.transpose(axes: [2, 3, 0, 1])), [t({2, 3, 4}, 3), t({4, 5, 6}, 4)])
      check(&(Nx.dot(&1, [1], &2, [1]) |> Nx.transpose()), [t({7, 9}, 5), t({11, 9}, 6)])
      # Read twice: lowered as written.
      check(
        fn a, b ->
          d = Nx.dot(a, [0], b, [0])
          {Nx.transpose(d), Nx.multiply(d, 2)}
        end,
        [t({5, 3}, 7), t({5, 4}, 8)]
      )
    end

    test "the gradients of a two-layer network agree with Nx.BinaryBackend" do
      loss = fn {w1, w2}, x -> x |> Nx.dot(w1) |> Nx.tanh() |> Nx.dot(w2) |> Nx.sum() end
      grad = fn w1, w2, x -> Nx.Defn.grad({w1, w2}, &loss.(&1, x)) end
      w1 = t({12, 8}, 1) |> Nx.multiply(0.3)
      w2 = t({8, 3}, 2)
      x = t({16, 12}, 3)
      # The gradient of w1 is such a product.
      grads = trace(grad, [w1, w2, x])
      assert %{data: %{op: :transpose, args: [dot, axes]}} = elem(grads, 0)
      assert DotLayout.swapped(dot, axes, DotLayout.uses(grads)) != nil
      check(grad, [w1, w2, x])
    end
  end
end
