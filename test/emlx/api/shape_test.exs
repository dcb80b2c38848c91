defmodule EMLX.API.ShapeTest do
  # as_strided, pad, slice, slice_update, concatenate, stack: values worked
  # out by hand from the definitions.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  describe "as_strided" do
    test "overlapping windows over a row-major input" do
      # element [i, j] = offset + i * 1 + j * 1
      out = EMLX.as_strided(iota({4}, :int32), {3, 2}, [1, 1], 0)
      assert to_list(out) == [[0, 1], [1, 2], [2, 3]]
    end

    test "zero strides repeat, negative strides walk backwards" do
      assert to_list(EMLX.as_strided(tensor([7, 8], :int64), {3}, [0], 1)) == [8, 8, 8]
      assert to_list(EMLX.as_strided(iota({4}, :float32), {4}, [-1], 3)) == [3.0, 2.0, 1.0, 0.0]
    end

    test "reads the logical row-major order of a transposed (non-contiguous) input" do
      t = EMLX.transpose(iota({2, 3}, :int32), [1, 0])
      EMLX.eval(t)
      # transposed: [[0, 3], [1, 4], [2, 5]]
      assert to_list(EMLX.as_strided(t, {6}, [1], 0)) == [0, 3, 1, 4, 2, 5]
    end

    test "0-d results, empty results and several dtypes" do
      assert to_list(EMLX.as_strided(iota({5}, :int16), {}, [], 4)) == 4
      assert EMLX.shape(EMLX.as_strided(iota({2}, :int16), {0, 9}, [1000, 1000], 0)) == {0, 9}

      for type <- [:uint8, :float16, :bfloat16, :float64, :bool] do
        out = EMLX.as_strided(iota({2, 2}, type), {2}, [3], 0)
        assert EMLX.scalar_type(out) == type
        assert to_list(EMLX.astype(out, :int32)) == if(type == :bool, do: [0, 1], else: [0, 3])
      end
    end
  end

  describe "pad" do
    test "low and high padding on chosen axes" do
      t = tensor([[1, 2], [3, 4]], :int32)
      out = EMLX.pad(t, [1], [1], [2], tensor(0, :int32))
      assert to_list(out) == [[0, 1, 2, 0, 0], [0, 3, 4, 0, 0]]

      out = EMLX.pad(t, [0, 1], [0, 1], [1, 0], tensor(9, :int32))
      assert to_list(out) == [[9, 1, 2], [9, 3, 4], [9, 9, 9]]
    end

    test "float, bool and empty inputs; a transposed input" do
      assert to_list(EMLX.pad(tensor([1.5], :float32), [0], [1], [1], tensor(:nan, :float32))) == [:nan, 1.5, :nan]
      assert to_list(EMLX.pad(tensor([true], :bool), [0], [0], [1], tensor(false, :bool))) == [true, false]
      assert to_list(EMLX.pad(tensor([], :float32), [0], [1], [1], tensor(2.0, :float32))) == [2.0, 2.0]

      t = EMLX.transpose(tensor([[1, 2], [3, 4]], :int8), [1, 0])
      assert to_list(EMLX.pad(t, [0], [1], [0], tensor(0, :int8))) == [[0, 0], [1, 3], [2, 4]]
    end

    test "no axes leaves a 0-d tensor as it is" do
      assert to_list(EMLX.pad(tensor(5, :int64), [], [], [], tensor(0, :int64))) == 5
    end
  end

  describe "slice" do
    test "starts, stops and strides per axis" do
      t = iota({3, 4}, :int32)
      assert to_list(EMLX.slice(t, [0, 1], [3, 4], [2, 2])) == [[1, 3], [9, 11]]
      assert to_list(EMLX.slice(t, [1, 0], [2, 4], [1, 1])) == [[4, 5, 6, 7]]
    end

    test "negative starts count from the end, out-of-range bounds clamp, negative strides reverse" do
      t = iota({5}, :int64)
      assert to_list(EMLX.slice(t, [-2], [5], [1])) == [3, 4]
      assert to_list(EMLX.slice(t, [-100], [100], [1])) == [0, 1, 2, 3, 4]
      assert to_list(EMLX.slice(t, [4], [0], [-2])) == [4, 2]
      assert to_list(EMLX.slice(t, [3], [1], [1])) == []
    end

    test "slices of transposed and of empty tensors" do
      t = EMLX.transpose(iota({2, 3}, :float32), [1, 0])
      assert to_list(EMLX.slice(t, [1, 0], [3, 2], [1, 1])) == [[1.0, 4.0], [2.0, 5.0]]
      assert EMLX.shape(EMLX.slice(iota({0, 3}, :float32), [0, 1], [0, 3], [1, 1])) == {0, 2}
    end
  end

  describe "slice_update" do
    test "replaces a window, broadcasting the update" do
      t = iota({3, 3}, :int32)
      out = EMLX.slice_update(t, tensor([[-1, -2]], :int32), [1, 1], [3, 3])
      assert to_list(out) == [[0, 1, 2], [3, -1, -2], [6, -1, -2]]

      out = EMLX.slice_update(tensor([0.5, 0.5, 0.5], :float16), tensor(2.0, :float16), [0], [2])
      assert to_list(out) == [2.0, 2.0, 0.5]
    end

    test "on a transposed target and with an empty window" do
      t = EMLX.transpose(iota({2, 2}, :int64), [1, 0])
      assert to_list(EMLX.slice_update(t, tensor([[9]], :int64), [0, 1], [1, 2])) == [[0, 9], [1, 3]]
      assert to_list(EMLX.slice_update(iota({2}, :int64), tensor([], :int64), [1], [1])) == [0, 1]
    end
  end

  describe "concatenate" do
    test "along each axis, negative axes count from the end" do
      a = tensor([[1, 2]], :int32)
      b = tensor([[3, 4], [5, 6]], :int32)
      assert to_list(EMLX.concatenate([a, b], 0)) == [[1, 2], [3, 4], [5, 6]]
      assert to_list(EMLX.concatenate([a, a], -1)) == [[1, 2, 1, 2]]
    end

    test "promotes types, accepts empty and transposed inputs, and a single tensor" do
      out = EMLX.concatenate([tensor([1], :int32), tensor([2.5], :float32)], 0)
      assert EMLX.scalar_type(out) == :float32
      assert to_list(out) == [1.0, 2.5]

      assert to_list(EMLX.concatenate([tensor([], :int8), tensor([7], :int8)], 0)) == [7]
      t = EMLX.transpose(tensor([[1, 2], [3, 4]], :uint16), [1, 0])
      assert to_list(EMLX.concatenate([t, t], 1)) == [[1, 3, 1, 3], [2, 4, 2, 4]]
      assert to_list(EMLX.concatenate([tensor([true], :bool)], 0)) == [true]
    end
  end

  describe "stack" do
    test "stacks along a new axis" do
      a = tensor([1, 2], :int64)
      b = tensor([3, 4], :int64)
      assert to_list(EMLX.stack([a, b], 0)) == [[1, 2], [3, 4]]
      assert to_list(EMLX.stack([a, b], 1)) == [[1, 3], [2, 4]]
      assert to_list(EMLX.stack([a, b], -1)) == [[1, 3], [2, 4]]
    end

    test "0-d, empty and bfloat16 tensors" do
      assert to_list(EMLX.stack([tensor(1.5, :bfloat16), tensor(-2.0, :bfloat16)], 0)) == [1.5, -2.0]
      assert EMLX.shape(EMLX.stack([tensor([], :float32), tensor([], :float32)], 1)) == {0, 2}
    end
  end
end
