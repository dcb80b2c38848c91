if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.QuantizedTest do
    # EMLX.Backend with quantized weights (EMLX.Quantization): Nx.dot reads
    # them through MLX's quantized matmul; other ops refuse them.
    use EMLX.BackendCase, async: true

    @backend EMLX.TestDevice.backend()

    setup do
      w = random({8, 64}, {:f, 32}, 1) |> Nx.divide(4) |> Nx.backend_transfer(@backend)
      x = random({3, 64}, {:f, 32}, 2) |> Nx.backend_transfer(@backend)
      %{w: w, x: x, qw: EMLX.Quantization.quantize(w, type: {:s, 8}, group_size: 64)}
    end

    test "Nx.dot with a quantized right operand is the quantized matmul", %{x: x, qw: qw, w: w} do
      expected = EMLX.Quantization.quantized_matmul(x, qw)
      product = Nx.dot(x, [1], qw, [1])
      assert product.shape == {3, 8}
      assert_same(product, Nx.backend_copy(expected, Nx.BinaryBackend))
      # Close to the dense product (8-bit codes).
      dense = Nx.dot(x, [1], w, [1])
      assert Nx.to_number(Nx.all_close(product, dense, atol: 0.05, rtol: 0.05)) == 1
      # Contracting the first axis of the weight multiplies without transposing.
      x8 = random({2, 8}, {:f, 32}, 3) |> Nx.backend_transfer(@backend)
      assert Nx.to_number(Nx.all_close(Nx.dot(x8, [1], qw, [0]), Nx.dot(x8, [1], w, [0]), atol: 0.05, rtol: 0.05)) == 1
    end

    test "other uses raise, copies keep the quantization, inspect says what it holds", %{x: x, qw: qw} do
      assert_raise ArgumentError, ~r/quantized tensor/, fn -> Nx.add(qw, 1) end
      assert_raise ArgumentError, ~r/right operand/, fn -> Nx.dot(qw, [1], x, [1]) end
      copy = Nx.backend_copy(qw, @backend)
      assert EMLX.Quantization.quantized?(copy)
      assert_same(Nx.dot(x, [1], copy, [1]), Nx.backend_copy(Nx.dot(x, [1], qw, [1]), Nx.BinaryBackend))
      assert inspect(qw) =~ "quantized: 8-bit affine codes in groups of 64"
    end
  end
end
