defmodule EMLX.API.FastRopeTest do
  # The rotary-embedding ops against the rotation formula, computed in
  # plain Elixir: pair i of the first `dims` features turns by
  # position * scale * inv_freq(i).
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  @tol 2.0e-4

  defp inv_freqs(dims, base), do: for(i <- 0..(div(dims, 2) - 1), do: :math.pow(base, -2 * i / dims))

  # Rotates one feature vector at `pos`.
  defp rotate(x, pos, dims, traditional, scale, inv) do
    half = div(dims, 2)
    thetas = Enum.map(inv, &(pos * scale * &1))
    {head, tail} = Enum.split(x, dims)

    pairs =
      if traditional,
        do: for(i <- 0..(half - 1), do: {Enum.at(head, 2 * i), Enum.at(head, 2 * i + 1)}),
        else: Enum.zip(Enum.take(head, half), Enum.drop(head, half))

    turned =
      Enum.zip_with(pairs, thetas, fn {a, b}, t ->
        {a * :math.cos(t) - b * :math.sin(t), a * :math.sin(t) + b * :math.cos(t)}
      end)

    rotated =
      if traditional,
        do: Enum.flat_map(turned, &Tuple.to_list/1),
        else: Enum.map(turned, &elem(&1, 0)) ++ Enum.map(turned, &elem(&1, 1))

    rotated ++ tail
  end

  # {B, T, D} data, position of (b, t) given by pos.(b, t).
  defp expected_btd(x, pos, dims, trad, scale, inv) do
    for {row, b} <- Enum.with_index(x) do
      for {vec, t} <- Enum.with_index(row), do: rotate(vec, pos.(b, t), dims, trad, scale, inv)
    end
  end

  # {B, T, H, D} data: every head of token (b, t) at pos.(b, t).
  defp expected_bthd(x, pos, dims, trad, scale, inv) do
    for {row, b} <- Enum.with_index(x) do
      for {heads, t} <- Enum.with_index(row) do
        Enum.map(heads, &rotate(&1, pos.(b, t), dims, trad, scale, inv))
      end
    end
  end

  defp ints(list, type \\ :int32), do: tensor(list, type)

  describe "fast_rope/6 (sequence on axis -2, scalar offset)" do
    test "split halves and adjacent pairs, full and partial dims, offset and scale" do
      x = rand({2, 3, 8}, 21)

      for trad <- [false, true], dims <- [8, 4], scale <- [1.0, 0.5] do
        out = EMLX.fast_rope(tensor(x), dims, trad, 10_000.0, scale, 5) |> to_list()
        expected = expected_btd(x, fn _b, t -> 5 + t end, dims, trad, scale, inv_freqs(dims, 10_000.0))
        assert_close(out, expected, @tol)
      end
    end

    test "a rank-4 {B, H, T, D} input rotates along T, the same for every head" do
      x = rand({1, 2, 3, 4}, 22)
      out = EMLX.fast_rope(tensor(x), 4, false, 100.0, 1.0, 2) |> to_list()
      inv = inv_freqs(4, 100.0)

      expected =
        for b <- x, do: for(h <- b, do: for({v, t} <- Enum.with_index(h), do: rotate(v, 2 + t, 4, false, 1.0, inv)))

      assert_close(out, expected, @tol)
    end

    test "hand-computed quarter turn: base 1 makes every pair turn by the position" do
      # dims 2, base 1: inv_freq = 1, so position pi/2 (via scale) maps (1, 0) to (0, 1).
      out = EMLX.fast_rope(tensor([[[1.0, 0.0]]]), 2, false, 1.0, :math.pi() / 2, 1) |> to_list()
      assert_close(out, [[[0.0, 1.0]]], 1.0e-6)
    end

    test "bfloat16 keeps its type" do
      x = rand({1, 4, 8}, 23)
      out = EMLX.fast_rope(tensor(x, :bfloat16), 8, false, 10_000.0, 1.0, 0)
      assert EMLX.scalar_type(out) == :bfloat16
      assert_close(to_list(out), expected_btd(x, fn _, t -> t end, 8, false, 1.0, inv_freqs(8, 10_000.0)), 3.0e-2)
    end
  end

  describe "fast_rope_ids/6 (one start per batch row)" do
    test "{B, T, H, D}: every head of token t is at offset[b] + t" do
      x = rand({2, 3, 4, 8}, 24)
      offset = ints([0, 7])

      for trad <- [false, true] do
        out = EMLX.fast_rope_ids(tensor(x), 8, trad, 10_000.0, 1.0, offset) |> to_list()
        expected = expected_bthd(x, fn b, t -> Enum.at([0, 7], b) + t end, 8, trad, 1.0, inv_freqs(8, 10_000.0))
        assert_close(out, expected, @tol)
      end
    end

    test "{B, T, D} with int64 offsets, partial dims and a scale" do
      x = rand({2, 4, 6}, 25)
      out = EMLX.fast_rope_ids(tensor(x), 4, false, 500.0, 0.25, ints([3, 1], :int64)) |> to_list()
      expected = expected_btd(x, fn b, t -> Enum.at([3, 1], b) + t end, 4, false, 0.25, inv_freqs(4, 500.0))
      assert_close(out, expected, @tol)
    end

    test "a scalar offset applies to every row" do
      x = rand({2, 2, 1, 4}, 26)
      out = EMLX.fast_rope_ids(tensor(x), 4, false, 10_000.0, 1.0, ints(4)) |> to_list()
      assert_close(out, expected_bthd(x, fn _, t -> 4 + t end, 4, false, 1.0, inv_freqs(4, 10_000.0)), @tol)
    end
  end

  describe "fast_rope_positions/6 (a position per token)" do
    test "arbitrary positions, both pair conventions, {B, T, H, D}" do
      x = rand({2, 3, 2, 8}, 27)
      ids = [[3, 1, 4], [0, 0, 9]]

      for trad <- [false, true] do
        out = EMLX.fast_rope_positions(tensor(x), 8, trad, 10_000.0, 1.0, ints(ids, :int64)) |> to_list()

        expected =
          expected_bthd(x, fn b, t -> ids |> Enum.at(b) |> Enum.at(t) end, 8, trad, 1.0, inv_freqs(8, 10_000.0))

        assert_close(out, expected, @tol)
      end
    end

    test "{B, T, D} input, partial dims" do
      x = rand({1, 3, 6}, 28)
      ids = [[5, 2, 2]]
      out = EMLX.fast_rope_positions(tensor(x), 2, false, 10.0, 2.0, ints(ids)) |> to_list()
      expected = expected_btd(x, fn _, t -> Enum.at(hd(ids), t) end, 2, false, 2.0, inv_freqs(2, 10.0))
      assert_close(out, expected, @tol)
    end

    test "sequential positions agree with fast_rope_ids/6" do
      x = tensor(rand({2, 4, 3, 8}, 29))
      ids = ints([[2, 3, 4, 5], [9, 10, 11, 12]])
      a = EMLX.fast_rope_positions(x, 8, false, 10_000.0, 1.0, ids) |> to_list()
      b = EMLX.fast_rope_ids(x, 8, false, 10_000.0, 1.0, ints([2, 9])) |> to_list()
      assert_close(a, b, 1.0e-6)
    end
  end

  describe "fast_rope_with_freqs/6" do
    test "pair i turns by position * scale / freqs[i]" do
      x = rand({2, 3, 2, 8}, 30)
      freqs = [1.0, 2.5, 10.0, 40.0]
      inv = Enum.map(freqs, &(1 / &1))

      for trad <- [false, true] do
        out = EMLX.fast_rope_with_freqs(tensor(x), 8, trad, 0.5, ints([1, 6]), tensor(freqs)) |> to_list()
        expected = expected_bthd(x, fn b, t -> Enum.at([1, 6], b) + t end, 8, trad, 0.5, inv)
        assert_close(out, expected, @tol)
      end
    end

    test "freqs = base^(2i/dims) reproduces fast_rope_ids/6" do
      x = tensor(rand({1, 5, 8}, 31))
      freqs = for i <- 0..3, do: :math.pow(10_000.0, 2 * i / 8)
      a = EMLX.fast_rope_with_freqs(x, 8, false, 1.0, ints([3]), tensor(freqs)) |> to_list()
      b = EMLX.fast_rope_ids(x, 8, false, 10_000.0, 1.0, ints([3])) |> to_list()
      assert_close(a, b, 1.0e-4)
    end
  end
end
