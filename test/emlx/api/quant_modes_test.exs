defmodule EMLX.API.QuantModesTest do
  # MLX's microscaled quantization modes (mxfp4, mxfp8, nvfp4) through
  # quantize/4, dequantize/6,7 and quantized_matmul/8, against an oracle in
  # plain Elixir: the packed codes are decoded by hand (E2M1 for the 4-bit
  # modes, E4M3 for mxfp8; scales E8M0 = 2^(s - 127) for mx*, E4M3 for
  # nvfp4), every value must be its original divided by the group's scale
  # rounded to the nearest point of the format's grid (clipped to its
  # largest value), and the matmuls must be x · dequantized(w)ᵀ.
  use ExUnit.Case, async: true
  import Bitwise
  import EMLX.FusedOracle

  # {mode, group_size, bits, grid max, worst error as a fraction of the
  # group's largest magnitude}
  @modes [{"mxfp4", 32, 4, 6.0, 0.5}, {"mxfp8", 32, 8, 448.0, 0.125}, {"nvfp4", 16, 4, 6.0, 0.25}]

  @e2m1 [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]

  defp e2m1(code), do: if(code >= 8, do: -Enum.at(@e2m1, code - 8), else: Enum.at(@e2m1, code))

  # E4M3 (the "fn" variant: no infinities, 0x7F/0xFF are NaN).
  defp e4m3(byte) do
    sign = if byte >= 128, do: -1.0, else: 1.0
    e = byte >>> 3 &&& 0xF
    m = byte &&& 0x7

    cond do
      e == 15 and m == 7 -> :nan
      e == 0 -> sign * m / 8 * :math.pow(2, -6)
      true -> sign * (1 + m / 8) * :math.pow(2, e - 7)
    end
  end

  # Every finite value of the element format, non-negative half.
  defp grid(4), do: @e2m1
  defp grid(8), do: for(b <- 0..126, do: e4m3(b))

  defp scale_of("nvfp4", byte), do: e4m3(byte)
  defp scale_of(_mx, byte), do: :math.pow(2, byte - 127)

  defp element(4, code), do: e2m1(code)
  defp element(8, code), do: e4m3(code)

  defp codes(words_row, bits) do
    mask = (1 <<< bits) - 1
    Enum.flat_map(words_row, fn w -> for k <- 0..(div(32, bits) - 1), do: w >>> (k * bits) &&& mask end)
  end

  defp by_hand(mode, wq, scales, gs, bits) do
    Enum.zip_with(wq, scales, fn words, s ->
      words
      |> codes(bits)
      |> Enum.with_index()
      |> Enum.map(fn {c, i} -> scale_of(mode, Enum.at(s, div(i, gs))) * element(bits, c) end)
    end)
  end

  # x / scale rounded to the grid: d / scale must be a grid point no farther
  # from x / scale than the grid's nearest point (ties either way).
  defp assert_nearest(deq, w, scales, mode, gs, bits, grid_max, worst) do
    points = grid(bits)

    for {{d_row, w_row}, s_row} <- Enum.zip(Enum.zip(deq, w), scales),
        {group, g} <- Enum.with_index(Enum.chunk_every(Enum.zip(d_row, w_row), gs)) do
      scale = scale_of(mode, Enum.at(s_row, g))
      amax = group |> Enum.map(&abs(elem(&1, 1))) |> Enum.max()

      for {d, x} <- group do
        target = min(abs(x) / scale, grid_max)
        best = points |> Enum.map(&abs(&1 - target)) |> Enum.min()
        got = abs(d) / scale
        assert got in points, "#{d} is not a grid point times the scale #{scale}"
        assert abs(got - target) <= best + 1.0e-6, "#{x} came back as #{d}, not the nearest grid point"
        assert d == 0.0 or d > 0 == x > 0
        assert abs(d - x) <= worst * amax + 1.0e-7, "#{x} came back as #{d}: more than #{worst} of #{amax}"
      end
    end
  end

  for {mode, gs, bits, grid_max, worst} <- @modes do
    describe "#{mode}" do
      test "quantize/4: shapes, uint8 scales, no biases; values are the nearest grid points" do
        {mode, gs, bits} = {unquote(mode), unquote(gs), unquote(bits)}
        w = rand({4, 128}, 300 + bits + gs) |> map_leaves(&(&1 * 3.0))
        {wq, s, nil} = EMLX.quantize(tensor(w), gs, bits, mode)
        assert {EMLX.scalar_type(wq), EMLX.shape(wq)} == {:uint32, {4, div(128 * bits, 32)}}
        assert {EMLX.scalar_type(s), EMLX.shape(s)} == {:uint8, {4, div(128, gs)}}

        deq = EMLX.dequantize(wq, s, nil, gs, bits, mode) |> to_list()
        assert deq == by_hand(mode, to_list(wq), to_list(s), gs, bits)
        assert_nearest(deq, w, to_list(s), mode, gs, bits, unquote(grid_max), unquote(worst))
      end

      test "dequantize/7 picks the dense type; bfloat16 weights round-trip" do
        {mode, gs, bits} = {unquote(mode), unquote(gs), unquote(bits)}
        w = rand({2, 64}, 400 + bits + gs)
        {wq, s, nil} = EMLX.quantize(tensor(w, :bfloat16), gs, bits, mode)
        deq = EMLX.dequantize(wq, s, nil, gs, bits, mode, :bfloat16)
        assert EMLX.scalar_type(deq) == :bfloat16
        as_f32 = EMLX.dequantize(wq, s, nil, gs, bits, mode) |> to_list()
        assert_close(to_list(deq), as_f32, 1.0e-2)
      end

      test "quantized_matmul/8 is x · dequantize(w)ᵀ (and x · dequantize(w) without transpose)" do
        {mode, gs, bits} = {unquote(mode), unquote(gs), unquote(bits)}
        w = rand({5, 64}, 500 + bits + gs)
        {wq, s, nil} = EMLX.quantize(tensor(w), gs, bits, mode)
        deq = EMLX.dequantize(wq, s, nil, gs, bits, mode) |> to_list()
        x = rand({2, 3, 64}, 501)
        out = EMLX.quantized_matmul(tensor(x), wq, s, nil, true, gs, bits, mode)
        assert EMLX.scalar_type(out) == :float32
        # The GPU computes the float32 product in TF32 (EMLX.TestDevice.tf32/2).
        assert_close(to_list(out), Enum.map(x, &matmul(&1, transpose(deq))), EMLX.TestDevice.tf32(atol: 1.0e-4)[:atol])

        v = rand({64, 32}, 502)
        {vq, vs, nil} = EMLX.quantize(tensor(v), gs, bits, mode)
        vdeq = EMLX.dequantize(vq, vs, nil, gs, bits, mode) |> to_list()
        y = rand({3, 64}, 503)
        out = EMLX.quantized_matmul(tensor(y), vq, vs, nil, false, gs, bits, mode) |> to_list()
        assert_close(out, matmul(y, vdeq), EMLX.TestDevice.tf32(atol: 1.0e-4)[:atol])
      end
    end
  end

  test "mode parameters are checked" do
    w = tensor(rand({2, 64}, 600))

    assert_raise ArgumentError, ~r/mode "mxfp4" needs group_size 32 and bits 4, got 64 and 4/, fn ->
      EMLX.quantize(w, 64, 4, "mxfp4")
    end

    assert_raise ArgumentError, ~r/mode "nvfp4" needs group_size 16 and bits 4, got 16 and 8/, fn ->
      EMLX.quantize(w, 16, 8, "nvfp4")
    end

    assert_raise ArgumentError, ~r/mode must be "affine", "mxfp4", "mxfp8" or "nvfp4", got "int4"/, fn ->
      EMLX.quantize(w, 32, 4, "int4")
    end

    {wq, s, nil} = EMLX.quantize(w, 32, 4, "mxfp4")
    assert_raise ArgumentError, ~r/has no biases: pass nil/, fn -> EMLX.dequantize(wq, s, s, 32, 4, "mxfp4") end

    {aq, as, ab} = EMLX.quantize(w, 32, 4, "affine")
    assert_raise ArgumentError, ~r/needs the :uint8 scales/, fn -> EMLX.dequantize(aq, as, nil, 32, 4, "mxfp4") end

    assert_raise ArgumentError, ~r/the affine mode needs biases/, fn ->
      EMLX.dequantize(aq, as, nil, 32, 4, "affine")
    end

    # The affine mode of quantize/4 is quantize/3.
    {bq, bs, bb} = EMLX.quantize(w, 32, 4)
    assert Enum.map([aq, as, ab], &EMLX.to_blob/1) == Enum.map([bq, bs, bb], &EMLX.to_blob/1)
  end
end
