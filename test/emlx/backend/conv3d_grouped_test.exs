if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Conv3dGroupedTest do
    # Grouped 3-D convolutions (depthwise, separable, grouped, batch-grouped),
    # which MLX cannot group itself, against Nx.BinaryBackend: values, and
    # the gradients Nx.Defn.grad takes through them (which are grouped and
    # batch-grouped convolutions again); check/3 runs each eagerly and
    # compiled with compiler: EMLX.
    use EMLX.BackendCase, async: true

    @tol [atol: 1.0e-4, rtol: 1.0e-4]

    defp conv(opts), do: fn x, k -> Nx.conv(x, k, opts) end

    test "depthwise: one kernel per channel, and a channel multiplier" do
      x = random({2, 4, 5, 6, 5}, {:f, 32}, 1)
      check(conv(feature_group_size: 4), [x, random({4, 1, 3, 2, 3}, {:f, 32}, 2)], @tol)
      check(conv(feature_group_size: 4, padding: :same), [x, random({8, 1, 2, 2, 2}, {:f, 32}, 3)], @tol)
    end

    test "grouped, with strides, padding and dilations on every axis" do
      x = random({1, 4, 7, 6, 5}, {:f, 32}, 4)
      k = random({6, 2, 2, 3, 2}, {:f, 32}, 5)

      opts = [
        feature_group_size: 2,
        strides: [2, 1, 2],
        padding: [{1, 2}, {0, 1}, {1, 0}],
        kernel_dilation: [2, 1, 1],
        input_dilation: [1, 2, 1]
      ]

      check(conv(opts), [x, k], @tol)
      check(conv(Keyword.put(opts, :input_dilation, [2, 1, 1])), [x, k], @tol)
      # Negative padding crops.
      check(conv(feature_group_size: 2, padding: [{-1, 1}, {1, -1}, {0, 0}]), [x, k], @tol)
    end

    test "separable: depthwise then pointwise, channels-last input as Axon lays it out" do
      x = random({2, 5, 4, 6, 3}, {:f, 32}, 6)
      depthwise = random({3, 1, 2, 3, 2}, {:f, 32}, 7)
      pointwise = random({4, 3, 1, 1, 1}, {:f, 32}, 8)

      separable = fn x, dk, pk ->
        x
        |> Nx.conv(dk, feature_group_size: 3, input_permutation: [0, 4, 1, 2, 3], output_permutation: [0, 4, 1, 2, 3])
        |> Nx.conv(pk, input_permutation: [0, 4, 1, 2, 3], output_permutation: [0, 4, 1, 2, 3])
      end

      # Two convolutions in a row: TF32 on the GPU (EMLX.TestDevice.tf32/2).
      check(separable, [x, depthwise, pointwise], EMLX.TestDevice.tf32(@tol, atol: 0.1, rtol: 2.0e-3))
    end

    test "batch groups" do
      x = random({4, 2, 4, 4, 3}, {:f, 32}, 9)
      check(conv(batch_group_size: 2), [x, random({4, 2, 2, 2, 2}, {:f, 32}, 10)], @tol)
    end

    test "bfloat16, and a kernel as deep as the input" do
      x = random({1, 2, 3, 4, 4}, {:bf, 16}, 11)
      check(conv(feature_group_size: 2), [x, random({2, 1, 2, 2, 2}, {:bf, 16}, 12)], atol: 0.1, rtol: 0.02)
      check(conv(feature_group_size: 2), [x, random({4, 1, 3, 2, 2}, {:bf, 16}, 13)], atol: 0.1, rtol: 0.02)
    end

    test "gradients with respect to input and kernel agree with Nx.BinaryBackend's" do
      x = random({2, 4, 4, 5, 4}, {:f, 32}, 14)
      k = random({8, 2, 2, 3, 2}, {:f, 32}, 15)
      opts = [feature_group_size: 2, strides: [1, 2, 1], padding: [{1, 0}, {0, 1}, {1, 1}], kernel_dilation: [1, 1, 2]]
      out = Nx.conv(x, k, opts)
      w = random(Nx.shape(out), {:f, 32}, 16)

      # (w is differentiated too, so that no tensor is captured by the closure.)
      grads = fn x, k, w ->
        {gx, gk, _} = Nx.Defn.grad({x, k, w}, fn {x, k, w} -> Nx.conv(x, k, opts) |> Nx.multiply(w) |> Nx.sum() end)
        {gx, gk}
      end

      check(grads, [x, k, w], EMLX.TestDevice.tf32([atol: 1.0e-3, rtol: 1.0e-4], atol: 0.2, rtol: 2.0e-3))

      depthwise = fn x, k, w ->
        {gx, gk, _} =
          Nx.Defn.grad({x, k, w}, fn {x, k, w} -> Nx.conv(x, k, feature_group_size: 4) |> Nx.multiply(w) |> Nx.sum() end)

        {gx, gk}
      end

      dk = random({4, 1, 2, 2, 2}, {:f, 32}, 17)
      dw = random(Nx.shape(Nx.conv(x, dk, feature_group_size: 4)), {:f, 32}, 18)
      check(depthwise, [x, dk, dw], atol: 1.0e-3, rtol: 1.0e-4)

      # Both gradients in one evaluation, eagerly. On CUDA, MLX took one of
      # these 2-D convolutions of strided operands for a kernel gradient and
      # gave a wrong gk (errors of 20-30) unless EMLX hands it contiguous
      # operands.
      expected = apply(depthwise, Enum.map([x, dk, dw], &Nx.backend_copy(&1, Nx.BinaryBackend)))
      backend = EMLX.TestDevice.backend()

      {gx, gk} =
        Nx.with_default_backend(backend, fn ->
          apply(depthwise, Enum.map([x, dk, dw], &Nx.backend_copy(&1, backend)))
        end)

      EMLX.Native.eval([gx.data.ref, gk.data.ref])
      assert_same({gx, gk}, expected, atol: 1.0e-3, rtol: 1.0e-4)
    end
  end
end
