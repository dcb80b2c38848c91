if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Defn.GradTest do
    # Nx.Defn.grad of every differentiable op, compiled with `compiler: EMLX`,
    # against Nx.Defn.Evaluator on Nx.BinaryBackend. The loss is
    # sum(f(x) * w) with a fixed w, so no gradient is trivially all ones.
    use EMLX.BackendCase, async: true

    import Nx.Defn

    @opts [compiler: EMLX, device: :cpu]

    # Inputs inside each op's domain.
    @any {:any, {3, 4}}
    @positive {:positive, {3, 4}}
    @unit {:unit, {3, 4}}
    @above_one {:above_one, {3, 4}}

    @unary [
      exp: @any,
      expm1: @any,
      log: @positive,
      log1p: @positive,
      sigmoid: @any,
      sin: @any,
      cos: @any,
      tan: @unit,
      sinh: @any,
      cosh: @any,
      tanh: @any,
      asin: @unit,
      acos: @unit,
      atan: @any,
      asinh: @any,
      acosh: @above_one,
      atanh: @unit,
      sqrt: @positive,
      rsqrt: @positive,
      cbrt: @positive,
      erf: @any,
      erfc: @any,
      erf_inv: @unit,
      abs: @any,
      negate: @any,
      floor: @any,
      ceil: @any,
      round: @any,
      sign: @any
    ]

    @composite [
      add: {quote(do: &Nx.add(&1, Nx.cos(&1))), @any},
      subtract: {quote(do: &Nx.subtract(Nx.sin(&1), &1)), @any},
      multiply: {quote(do: &Nx.multiply(&1, Nx.exp(&1))), @any},
      divide: {quote(do: &Nx.divide(Nx.sin(&1), Nx.add(&1, 5))), @positive},
      pow: {quote(do: &Nx.pow(&1, Nx.cos(&1))), @positive},
      atan2: {quote(do: &Nx.atan2(Nx.sin(&1), Nx.add(&1, 2))), @positive},
      min: {quote(do: &Nx.min(&1, Nx.cos(&1))), @any},
      max: {quote(do: &Nx.max(&1, Nx.cos(&1))), @any},
      remainder: {quote(do: &Nx.remainder(Nx.multiply(&1, 3), 1.7)), @positive},
      select: {quote(do: &Nx.select(Nx.greater(&1, 0), Nx.exp(&1), Nx.sin(&1))), @any},
      clip: {quote(do: &Nx.clip(&1, -1, 1)), @any},
      sum: {quote(do: &Nx.sum(Nx.sin(&1), axes: [1])), @any},
      product: {quote(do: &Nx.product(&1, axes: [0])), @any},
      reduce_max: {quote(do: &Nx.reduce_max(&1, axes: [1])), @any},
      reduce_min: {quote(do: &Nx.reduce_min(&1, axes: [0])), @any},
      mean: {quote(do: &Nx.mean(Nx.exp(&1))), @any},
      logsumexp: {quote(do: &Nx.logsumexp(&1, axes: [1])), @any},
      cumulative_sum: {quote(do: &Nx.cumulative_sum(&1, axis: 1)), @any},
      cumulative_product: {quote(do: &Nx.cumulative_product(&1, axis: 1)), @any},
      cumulative_max: {quote(do: &Nx.cumulative_max(&1, axis: 0)), @any},
      reshape: {quote(do: &Nx.reshape(Nx.sin(&1), {4, 3})), @any},
      transpose: {quote(do: &Nx.transpose(Nx.exp(&1))), @any},
      slice: {quote(do: &Nx.slice(&1, [1, 1], [2, 2])), @any},
      put_slice: {quote(do: &Nx.put_slice(&1, [0, 1], Nx.multiply(Nx.slice(&1, [1, 0], [2, 2]), 3))), @any},
      pad: {quote(do: &Nx.pad(&1, 0.5, [{1, 0, 1}, {0, 2, 0}])), @any},
      concatenate: {quote(do: &Nx.concatenate([&1, Nx.sin(&1)], axis: 1)), @any},
      stack: {quote(do: &Nx.stack([&1, Nx.cos(&1)])), @any},
      reverse: {quote(do: &Nx.reverse(&1, axes: [1])), @any},
      broadcast: {quote(do: &Nx.broadcast(Nx.sum(&1, axes: [0]), {2, 4})), @any},
      squeeze: {quote(do: &Nx.squeeze(Nx.slice(&1, [0, 0], [1, 4]))), @any},
      as_type: {quote(do: &Nx.as_type(Nx.multiply(&1, 2), :f64)), @any},
      gather: {quote(do: &Nx.gather(&1, Nx.tensor([[0, 1], [2, 3], [1, 1]]))), @any},
      take: {quote(do: &Nx.take(&1, Nx.tensor([2, 0, 2]), axis: 0)), @any},
      take_along_axis: {quote(do: &Nx.take_along_axis(&1, Nx.tensor([[0, 3], [1, 1], [2, 0]]), axis: 1)), @any},
      indexed_add:
        {quote(
           do: &Nx.indexed_add(&1, Nx.tensor([[0, 0], [2, 3]]), Nx.sin(Nx.slice(&1, [1, 0], [1, 2]) |> Nx.reshape({2})))
         ), @any},
      indexed_put:
        {quote(
           do: &Nx.indexed_put(&1, Nx.tensor([[0, 0], [2, 3]]), Nx.exp(Nx.slice(&1, [1, 0], [1, 2]) |> Nx.reshape({2})))
         ), @any},
      sort: {quote(do: &Nx.sort(&1, axis: 1)), @any},
      dot: {quote(do: &Nx.dot(&1, Nx.transpose(Nx.sin(&1)))), @any},
      dot_batched:
        {quote(do: &Nx.dot(Nx.reshape(&1, {3, 2, 2}), [2], [0], Nx.reshape(Nx.cos(&1), {3, 2, 2}), [1], [0])), @any},
      conv:
        {quote(do: &Nx.conv(Nx.reshape(&1, {1, 1, 3, 4}), Nx.reshape(Nx.tensor([1.0, -1.0, 0.5, 2.0]), {1, 1, 2, 2}))),
         @any},
      conv_padded_strided:
        {quote(
           do:
             &Nx.conv(Nx.reshape(&1, {1, 2, 2, 3}), Nx.reshape(Nx.sin(Nx.slice(&1, [0, 0], [1, 4])), {2, 2, 1, 1}),
               padding: [{1, 1}, {0, 1}],
               strides: [2, 1]
             )
         ), @any},
      window_sum: {quote(do: &Nx.window_sum(&1, {2, 2}, strides: [1, 2])), @any},
      window_max: {quote(do: &Nx.window_max(&1, {2, 2}, padding: :same)), @any},
      window_min: {quote(do: &Nx.window_min(&1, {1, 3})), @any},
      window_mean: {quote(do: &Nx.window_mean(&1, {2, 1})), @any},
      triangular_solve:
        {quote(
           do:
             &Nx.LinAlg.triangular_solve(
               Nx.add(Nx.tril(Nx.slice(&1, [0, 0], [3, 3])), Nx.multiply(Nx.eye(3), 4)),
               Nx.slice(&1, [0, 3], [3, 1]) |> Nx.reshape({3})
             )
         ), @any},
      solve:
        {quote(
           do:
             &Nx.LinAlg.solve(Nx.add(Nx.slice(&1, [0, 0], [3, 3]), Nx.multiply(Nx.eye(3), 5)), Nx.iota({3}, type: :f32))
         ), @any},
      determinant:
        {quote(do: &Nx.LinAlg.determinant(Nx.add(Nx.slice(&1, [0, 0], [3, 3]), Nx.multiply(Nx.eye(3), 3)))), @any},
      cholesky:
        {quote(
           do:
             &Nx.LinAlg.cholesky(
               Nx.add(Nx.dot(Nx.slice(&1, [0, 0], [3, 3]), [1], Nx.slice(&1, [0, 0], [3, 3]), [1]), Nx.eye(3))
             )
         ), @any},
      qr: {quote(do: &(Nx.LinAlg.qr(Nx.slice(&1, [0, 0], [3, 3])) |> then(fn {q, r} -> Nx.add(q, r) end))), @positive},
      invert: {quote(do: &Nx.LinAlg.invert(Nx.add(Nx.slice(&1, [0, 0], [3, 3]), Nx.multiply(Nx.eye(3), 4)))), @any},
      softmax_like: {quote(do: &Nx.divide(Nx.exp(&1), Nx.sum(Nx.exp(&1), axes: [1], keep_axes: true))), @any},
      while_loop: {quote(do: &EMLX.Defn.GradTest.loop/1), @any}
    ]

    defn loop(x) do
      {x, _i} =
        while {x, i = 0}, i < 3 do
          {Nx.sin(x * 1.1), i + 1}
        end

      x
    end

    defp input({domain, shape}, seed) do
      x = random(shape, {:f, 32}, seed)

      case domain do
        :any -> x
        :positive -> Nx.add(Nx.abs(x), 0.5)
        :unit -> Nx.divide(x, 4.5)
        :above_one -> Nx.add(Nx.abs(x), 1.5)
      end
    end

    defp weights(shape), do: random(shape, {:f, 32}, 99)

    defp check_grad(fun, domain) do
      x = input(domain, 3)
      shape = Nx.with_default_backend(Nx.BinaryBackend, fn -> Nx.shape(fun.(x)) end)
      w = weights(shape)
      grad = fn x, w -> Nx.Defn.grad(x, &Nx.sum(Nx.multiply(fun.(&1), w))) end

      expected =
        Nx.with_default_backend(Nx.BinaryBackend, fn ->
          Nx.Defn.jit_apply(grad, [x, w], compiler: Nx.Defn.Evaluator)
        end)

      actual = Nx.Defn.jit_apply(grad, [emlx(x), emlx(w)], @opts)
      assert_same(actual, expected, atol: 1.0e-4, rtol: 1.0e-3)
    end

    for {op, domain} <- @unary do
      test "grad of #{op}" do
        check_grad(&apply(Nx, unquote(op), [&1]), unquote(Macro.escape(domain)))
      end
    end

    for {name, {fun, domain}} <- @composite do
      test "grad of #{name}" do
        check_grad(unquote(fun), unquote(Macro.escape(domain)))
      end
    end

    test "value_and_grad of a two-layer network" do
      x = random({4, 3}, {:f, 32}, 1)
      w1 = random({3, 5}, {:f, 32}, 2)
      w2 = random({5, 2}, {:f, 32}, 3)

      loss = fn x, w1, w2 ->
        Nx.Defn.value_and_grad({w1, w2}, fn {w1, w2} ->
          x |> Nx.dot(w1) |> Nx.tanh() |> Nx.dot(w2) |> Nx.pow(2) |> Nx.mean()
        end)
      end

      expected =
        Nx.with_default_backend(Nx.BinaryBackend, fn ->
          Nx.Defn.jit_apply(loss, [x, w1, w2], compiler: Nx.Defn.Evaluator)
        end)

      actual = Nx.Defn.jit_apply(loss, Enum.map([x, w1, w2], &emlx/1), @opts)
      assert_same(actual, expected, atol: 1.0e-5, rtol: 1.0e-4)
    end
  end
end
