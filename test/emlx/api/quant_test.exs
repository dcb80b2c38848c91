defmodule EMLX.API.QuantTest do
  # quantize/3, dequantize/5 and quantized_matmul/4..7 (MLX's affine mode)
  # against an oracle in plain Elixir: the packed codes are unpacked by hand
  # (code k of a word sits in bits k*bits ... k*bits + bits - 1), turned back
  # into values with each group's scale and bias, and compared with the
  # original values (error at most half a step) and with MLX's own
  # dequantize; matmuls are checked against x · dequantized(w)ᵀ.
  use ExUnit.Case, async: true
  import Bitwise
  import EMLX.FusedOracle

  # The GPU computes the float32 product in TF32 (EMLX.TestDevice.tf32/2).
  defp product_tol, do: EMLX.TestDevice.tf32([atol: 1.0e-4], atol: 1.0e-2)[:atol]

  defp scaled(list, k), do: map_leaves(list, &(&1 * k))

  # Values from packed words, for bit widths that divide 32.
  defp unpack(words_row, bits) do
    per_word = div(32, bits)
    mask = (1 <<< bits) - 1
    Enum.flat_map(words_row, fn w -> for k <- 0..(per_word - 1), do: w >>> (k * bits) &&& mask end)
  end

  defp by_hand(wq, scales, biases, group_size, bits) do
    Enum.zip_with([wq, scales, biases], fn [words, s, b] ->
      words
      |> unpack(bits)
      |> Enum.with_index()
      |> Enum.map(fn {q, i} -> Enum.at(s, div(i, group_size)) * q + Enum.at(b, div(i, group_size)) end)
    end)
  end

  # The affine error bound, per group of `gs` values with step `scale`,
  # offset `bias` and 2^bits - 1 steps: a value x is first clipped to the
  # grid [bias, bias + (2^bits - 1) * scale]; the clipped value comes back
  # within half a step. MLX aligns the grid on the group's largest-magnitude
  # value, so clipping (at the opposite end) moves x by at most one step of
  # the unaligned grid, (max - min) / (2^bits - 1).
  defp assert_error_bound(deq, w, scales, biases, gs, bits, slack \\ 1.0e-6) do
    n = (1 <<< bits) - 1

    for {{d_row, w_row}, {s_row, b_row}} <- Enum.zip(Enum.zip(deq, w), Enum.zip(scales, biases)),
        {group, g} <- Enum.with_index(Enum.chunk_every(Enum.zip(d_row, w_row), gs)) do
      {scale, bias} = {Enum.at(s_row, g), Enum.at(b_row, g)}
      {lo, hi} = Enum.min_max([bias, bias + n * scale])
      xs = Enum.map(group, &elem(&1, 1))
      range_step = (Enum.max(xs) - Enum.min(xs)) / n

      for {d, x} <- group do
        clipped = x |> max(lo) |> min(hi)
        assert abs(clipped - x) <= range_step * 1.001 + slack, "#{x} is clipped to #{clipped}, more than one step away"
        assert abs(d - clipped) <= abs(scale) / 2 * 1.001 + slack, "#{d} is more than half a step from #{clipped}"
      end
    end
  end

  describe "quantize/3 and dequantize/5" do
    for bits <- [2, 3, 4, 5, 6, 8], group_size <- [32, 64, 128] do
      test "#{bits} bits, groups of #{group_size}: shapes, types, half-step error" do
        bits = unquote(bits)
        gs = unquote(group_size)
        w = scaled(rand({4, 256}, bits * 1000 + gs), 3.0)
        {wq, s, b} = EMLX.quantize(tensor(w), gs, bits)

        assert EMLX.scalar_type(wq) == :uint32
        assert EMLX.shape(wq) == {4, div(256 * bits, 32)}
        assert EMLX.shape(s) == {4, div(256, gs)}
        assert EMLX.shape(b) == {4, div(256, gs)}
        assert EMLX.scalar_type(s) == :float32

        deq = EMLX.dequantize(wq, s, b, gs, bits) |> to_list()
        assert_error_bound(deq, w, to_list(s), to_list(b), gs, bits)

        if rem(32, bits) == 0 do
          hand = by_hand(to_list(wq), to_list(s), to_list(b), gs, bits)
          assert_close(deq, hand, 1.0e-6)
        end
      end
    end

    test "values on the grid come back exactly" do
      row = for(i <- 0..15, do: i * 0.5) ++ for(i <- 15..0//-1, do: i * 0.5)
      w = [row, Enum.map(row, &(-&1))]
      {wq, s, b} = EMLX.quantize(tensor(w), 32, 4)
      assert EMLX.dequantize(wq, s, b, 32, 4) |> to_list() == w
    end

    test "a rank-3 tensor is quantized along its last axis" do
      w = rand({2, 3, 64}, 7)
      {wq, s, b} = EMLX.quantize(tensor(w), 32, 8)
      assert EMLX.shape(wq) == {2, 3, 16}
      assert EMLX.shape(s) == {2, 3, 2}
      deq = EMLX.dequantize(wq, s, b, 32, 8) |> to_list()
      [ss, bs] = Enum.map([s, b], &Enum.concat(to_list(&1)))
      assert_error_bound(Enum.concat(deq), Enum.concat(w), ss, bs, 32, 8)
    end

    test "bfloat16 weights give bfloat16 scales, biases and dequantized values" do
      w = rand({2, 64}, 8)
      {wq, s, b} = EMLX.quantize(tensor(w, :bfloat16), 64, 4)
      assert {EMLX.scalar_type(s), EMLX.scalar_type(b)} == {:bfloat16, :bfloat16}
      deq = EMLX.dequantize(wq, s, b, 64, 4)
      assert EMLX.scalar_type(deq) == :bfloat16
      # bf16 rounding of the products adds a little to the bound.
      assert_error_bound(to_list(deq), w, to_list(s), to_list(b), 64, 4, 1.0e-2)
    end

    test "a transposed input is quantized along its (logical) last axis" do
      w = rand({64, 2}, 9)
      {wq, s, b} = EMLX.quantize(EMLX.transpose(tensor(w), [1, 0]), 64, 8)
      deq = EMLX.dequantize(wq, s, b, 64, 8) |> to_list()
      assert_error_bound(deq, transpose(w), to_list(s), to_list(b), 64, 8)
    end
  end

  describe "quantized_matmul/4..7" do
    setup do
      w = rand({5, 128}, 11)
      {wq, s, b} = EMLX.quantize(tensor(w), 64, 4)
      deq = EMLX.dequantize(wq, s, b, 64, 4) |> to_list()
      %{wq: wq, s: s, b: b, deq: deq}
    end

    test "x · dequantize(w)ᵀ with the defaults (transpose, 64, 4)", c do
      x = rand({3, 128}, 12)
      expected = matmul(x, transpose(c.deq))
      assert_close(EMLX.quantized_matmul(tensor(x), c.wq, c.s, c.b) |> to_list(), expected, product_tol())
      assert_close(EMLX.quantized_matmul(tensor(x), c.wq, c.s, c.b, true) |> to_list(), expected, product_tol())
      assert_close(EMLX.quantized_matmul(tensor(x), c.wq, c.s, c.b, true, 64) |> to_list(), expected, product_tol())
      assert_close(EMLX.quantized_matmul(tensor(x), c.wq, c.s, c.b, true, 64, 4) |> to_list(), expected, product_tol())
    end

    test "batched activations {2, 3, in}", c do
      x = rand({2, 3, 128}, 13)
      out = EMLX.quantized_matmul(tensor(x), c.wq, c.s, c.b) |> to_list()
      assert_close(out, Enum.map(x, &matmul(&1, transpose(c.deq))), product_tol())
    end

    test "transpose: false multiplies by dequantize(w) itself" do
      w = rand({128, 64}, 14)
      {wq, s, b} = EMLX.quantize(tensor(w), 32, 8)
      deq = EMLX.dequantize(wq, s, b, 32, 8) |> to_list()
      x = rand({2, 128}, 15)
      out = EMLX.quantized_matmul(tensor(x), wq, s, b, false, 32, 8) |> to_list()
      assert_close(out, matmul(x, deq), product_tol())
    end

    test "2-bit weights in groups of 128" do
      w = rand({4, 256}, 16)
      {wq, s, b} = EMLX.quantize(tensor(w), 128, 2)
      deq = by_hand(to_list(wq), to_list(s), to_list(b), 128, 2)
      x = rand({1, 256}, 17)
      out = EMLX.quantized_matmul(tensor(x), wq, s, b, true, 128, 2) |> to_list()
      assert_close(out, matmul(x, transpose(deq)), 1.0e-4)
    end

    test "empty weights: no output features, or an empty inner axis (a sum of nothing)" do
      f32 = fn shape -> EMLX.full(0.5, shape, :float32, EMLX.TestDevice.device()) end
      {w, s, b} = EMLX.quantize(f32.({0, 64}), 64, 4)
      assert EMLX.shape(EMLX.dequantize(w, s, b, 64, 4)) == {0, 64}
      out = EMLX.quantized_matmul(f32.({2, 64}), w, s, b)
      assert {EMLX.shape(out), EMLX.to_blob(out)} == {{2, 0}, <<>>}

      {w, s, b} = EMLX.quantize(f32.({3, 0}), 32, 8)
      assert EMLX.shape(EMLX.dequantize(w, s, b, 32, 8)) == {3, 0}

      assert EMLX.quantized_matmul(f32.({2, 0}), w, s, b, true, 32, 8) |> to_list() == [
               [0.0, 0.0, 0.0],
               [0.0, 0.0, 0.0]
             ]
    end

    test "an empty batch of activations", c do
      x = EMLX.reshape(tensor([], :float32), {0, 128})
      out = EMLX.quantized_matmul(x, c.wq, c.s, c.b)
      assert EMLX.shape(out) == {0, 5}
    end
  end
end
