defmodule EMLX.API.ReductionTest do
  # argmax, argmin (both arities), sort, argsort against hand-worked values.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  @m [[3, 9, 1], [7, 9, 0]]

  describe "argmax and argmin" do
    test "over all elements: the first extreme in row-major order" do
      for type <- [:int8, :uint16, :int64, :float16, :bfloat16, :float32, :float64] do
        t = tensor(@m, type)
        assert to_list(EMLX.argmax(t, false)) == 1
        assert to_list(EMLX.argmin(t, false)) == 5
        assert EMLX.scalar_type(EMLX.argmax(t, false)) == :uint32
      end
    end

    test "keep_axes keeps size-1 axes" do
      t = tensor(@m, :int32)
      assert EMLX.shape(EMLX.argmax(t, true)) == {1, 1}
      assert to_list(EMLX.argmax(t, true)) == [[1]]
      assert EMLX.shape(EMLX.argmin(t, 1, true)) == {2, 1}
    end

    test "along an axis, negative axes count from the end, ties pick the first" do
      t = tensor(@m, :int32)
      assert to_list(EMLX.argmax(t, 0, false)) == [1, 0, 0]
      assert to_list(EMLX.argmax(t, 1, false)) == [1, 1]
      assert to_list(EMLX.argmax(t, -1, false)) == [1, 1]
      assert to_list(EMLX.argmin(t, 0, false)) == [0, 0, 1]
      assert to_list(EMLX.argmin(t, 1, false)) == [2, 2]
      assert to_list(EMLX.argmax(tensor([2, 5, 5, 5], :int32), 0, false)) == 1
      assert to_list(EMLX.argmin(tensor([2.0, 1.0, 1.0], :float32), 0, false)) == 1
    end

    test "transposed input, 0-d input, booleans" do
      t = EMLX.transpose(tensor(@m, :float32), [1, 0])
      # [[3, 7], [9, 9], [1, 0]]
      assert to_list(EMLX.argmax(t, 1, false)) == [1, 0, 0]
      assert to_list(EMLX.argmin(t, false)) == 5
      assert to_list(EMLX.argmax(tensor(4.0, :float32), false)) == 0
      assert to_list(EMLX.argmax(tensor([false, true, true], :bool), 0, false)) == 1
    end

    test "an empty axis raises, an empty other axis gives an empty result" do
      assert_raise ArgumentError, ~r/argmax/, fn -> EMLX.argmax(tensor([], :float32), false) end
      assert_raise ArgumentError, ~r/argmin/, fn -> EMLX.argmin(iota({2, 0}, :float32), 1, false) end
    end
  end

  describe "sort and argsort" do
    test "ascending along an axis; argsort gives the permutation" do
      t = tensor([[3, 1, 2], [0, -5, 5]], :int32)
      assert to_list(EMLX.sort(t, 1)) == [[1, 2, 3], [-5, 0, 5]]
      assert to_list(EMLX.sort(t, 0)) == [[0, -5, 2], [3, 1, 5]]
      assert to_list(EMLX.sort(t, -1)) == [[1, 2, 3], [-5, 0, 5]]
      assert to_list(EMLX.argsort(t, 1)) == [[1, 2, 0], [1, 0, 2]]
      assert EMLX.scalar_type(EMLX.argsort(t, 1)) == :uint32
    end

    test "argsort is stable; NaNs sort last" do
      assert to_list(EMLX.argsort(tensor([2, 1, 2, 1, 2], :int8), 0)) == [1, 3, 0, 2, 4]
      t = tensor([:nan, 1.0, :neg_infinity, :infinity, -0.5], :float32)
      assert to_list(EMLX.sort(t, 0)) == [:neg_infinity, -0.5, 1.0, :infinity, :nan]
      assert to_list(EMLX.argsort(t, 0)) == [2, 4, 1, 3, 0]
    end

    test "strided (sliced with a step) inputs" do
      t = EMLX.slice(tensor([5, 0, 3, 0, 9, 0, 1], :int16), [0], [7], [2])
      assert to_list(EMLX.sort(t, 0)) == [1, 3, 5, 9]
      assert to_list(EMLX.argsort(t, 0)) == [3, 1, 0, 2]
      assert to_list(EMLX.argmax(t, 0, false)) == 2
    end

    test "other dtypes, transposed and empty inputs" do
      for type <- [:uint8, :int64, :float16, :bfloat16, :float64] do
        assert to_list(EMLX.astype(EMLX.sort(tensor([4, 0, 2], type), 0), :int32)) == [0, 2, 4]
      end

      assert to_list(EMLX.sort(tensor([true, false, true], :bool), 0)) == [false, true, true]
      t = EMLX.transpose(tensor([[3, 1], [2, 4]], :int32), [1, 0])
      # [[3, 2], [1, 4]]
      assert to_list(EMLX.sort(t, 1)) == [[2, 3], [1, 4]]
      assert to_list(EMLX.argsort(t, 0)) == [[1, 0], [0, 1]]
      assert to_list(EMLX.sort(tensor([], :float32), 0)) == []
      assert EMLX.shape(EMLX.argsort(iota({0, 3}, :int32), 1)) == {0, 3}
    end
  end
end
