defmodule EMLX.API.FastNormTest do
  # fast_rms_norm/3, fast_layer_norm/4, fast_layer_norm_no_bias/3 against
  # the formulas computed in plain Elixir.
  use ExUnit.Case, async: true
  import EMLX.FusedOracle

  defp rms(row, w, eps) do
    r = :math.sqrt(mean(Enum.map(row, &(&1 * &1))) + eps)
    Enum.zip_with(row, w, &(&1 / r * &2))
  end

  defp layer(row, w, b, eps) do
    mu = mean(row)
    var = mean(Enum.map(row, &((&1 - mu) * (&1 - mu))))
    r = :math.sqrt(var + eps)
    [row, w, b] |> Enum.zip_with(fn [x, wi, bi] -> (x - mu) / r * wi + bi end)
  end

  describe "fast_rms_norm/3" do
    test "matches x / sqrt(mean(x^2) + eps) * weight over the last axis" do
      x = rand({3, 8}, 1)
      w = rand({8}, 2)
      out = EMLX.fast_rms_norm(tensor(x), tensor(w), 1.0e-5) |> to_list()
      assert_close(out, map_rows(x, &rms(&1, w, 1.0e-5)))
    end

    test "hand-computed case: [3, 4] has rms sqrt(12.5)" do
      out = EMLX.fast_rms_norm(tensor([[3.0, 4.0]]), tensor([1.0, 2.0]), 0.0) |> to_list()
      r = :math.sqrt(12.5)
      assert_close(out, [[3 / r, 8 / r]])
    end

    test "eps enters under the square root" do
      x = [[1.0, 1.0]]
      out = EMLX.fast_rms_norm(tensor(x), tensor([1.0, 1.0]), 3.0) |> to_list()
      assert_close(out, [[0.5, 0.5]])
    end

    test "rank 1 and rank 3 inputs normalise the last axis" do
      x1 = rand({6}, 3)
      w = rand({6}, 4)
      assert_close(EMLX.fast_rms_norm(tensor(x1), tensor(w), 1.0e-6) |> to_list(), rms(x1, w, 1.0e-6))

      x3 = rand({2, 3, 6}, 5)
      out = EMLX.fast_rms_norm(tensor(x3), tensor(w), 1.0e-6) |> to_list()
      assert_close(out, map_rows(x3, &rms(&1, w, 1.0e-6)))
    end

    test "a transposed (non-contiguous) input" do
      x = rand({5, 4}, 6)
      w = rand({5}, 7)
      xt = EMLX.transpose(tensor(x), [1, 0])
      out = EMLX.fast_rms_norm(xt, tensor(w), 1.0e-5) |> to_list()
      assert_close(out, map_rows(transpose(x), &rms(&1, w, 1.0e-5)))
    end

    test "bfloat16 and float16 keep their type, within their precision" do
      x = rand({2, 16}, 8)
      w = rand({16}, 9)
      expected = map_rows(x, &rms(&1, w, 1.0e-5))

      for type <- [:bfloat16, :float16] do
        out = EMLX.fast_rms_norm(tensor(x, type), tensor(w, type), 1.0e-5)
        assert EMLX.scalar_type(out) == type
        assert_close(to_list(out), expected, if(type == :bfloat16, do: 3.0e-2, else: 4.0e-3))
      end
    end

    test "a float32 weight promotes a float16 input" do
      out = EMLX.fast_rms_norm(tensor([[1.0, 2.0]], :float16), tensor([1.0, 1.0]), 0.0)
      assert EMLX.scalar_type(out) == :float32
    end

    test "an empty batch gives an empty result" do
      x = EMLX.reshape(tensor([], :float32), {0, 4})
      out = EMLX.fast_rms_norm(x, tensor([1.0, 1.0, 1.0, 1.0]), 1.0e-5)
      assert EMLX.shape(out) == {0, 4}
      assert EMLX.to_blob(out) == <<>>
    end
  end

  describe "fast_layer_norm/4 and fast_layer_norm_no_bias/3" do
    test "match (x - mean) / sqrt(var + eps) * weight (+ bias)" do
      x = rand({4, 10}, 11)
      w = rand({10}, 12)
      b = rand({10}, 13)
      zero = List.duplicate(0.0, 10)

      out = EMLX.fast_layer_norm(tensor(x), tensor(w), tensor(b), 1.0e-5) |> to_list()
      assert_close(out, map_rows(x, &layer(&1, w, b, 1.0e-5)))

      out = EMLX.fast_layer_norm_no_bias(tensor(x), tensor(w), 1.0e-5) |> to_list()
      assert_close(out, map_rows(x, &layer(&1, w, zero, 1.0e-5)))
    end

    test "hand-computed case: [1, 3] normalises to [-1, 1]" do
      out = EMLX.fast_layer_norm(tensor([[1.0, 3.0]]), tensor([2.0, 3.0]), tensor([0.5, 0.5]), 0.0)
      assert_close(to_list(out), [[-1.5, 3.5]])
    end

    test "a constant row normalises to the bias (eps avoids 0/0)" do
      out = EMLX.fast_layer_norm(tensor([[7.0, 7.0, 7.0]]), tensor([1.0, 1.0, 1.0]), tensor([1.0, 2.0, 3.0]), 1.0e-5)
      assert_close(to_list(out), [[1.0, 2.0, 3.0]])
    end

    test "rank 3, transposed input, bfloat16" do
      x = rand({2, 6, 3}, 14)
      w = rand({6}, 15)
      b = rand({6}, 16)
      xt = EMLX.transpose(tensor(x), [0, 2, 1])
      expected = x |> Enum.map(&transpose/1) |> map_rows(&layer(&1, w, b, 1.0e-5))
      assert_close(EMLX.fast_layer_norm(xt, tensor(w), tensor(b), 1.0e-5) |> to_list(), expected)

      xb = Enum.map(x, &transpose/1)
      out = EMLX.fast_layer_norm(tensor(xb, :bfloat16), tensor(w, :bfloat16), tensor(b, :bfloat16), 1.0e-5)
      assert EMLX.scalar_type(out) == :bfloat16
      assert_close(to_list(out), expected, 5.0e-2)
    end
  end
end
