defmodule EMLX.API.ElementwiseTest do
  # clip, where, isclose, allclose against hand-computed values.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  describe "clip" do
    test "both bounds, one bound, tensor bounds that broadcast" do
      t = tensor([-3, 0, 2, 7], :int32)
      assert to_list(EMLX.clip(t, tensor(-1, :int32), tensor(5, :int32))) == [-1, 0, 2, 5]
      assert to_list(EMLX.clip(t, nil, tensor(1, :int32))) == [-3, 0, 1, 1]
      assert to_list(EMLX.clip(t, tensor(1, :int32), nil)) == [1, 1, 2, 7]

      m = tensor([[1, 9], [5, 5]], :int8)
      lo = tensor([2, 0], :int8)
      hi = tensor([[3], [4]], :int8)
      assert to_list(EMLX.clip(m, lo, hi)) == [[2, 3], [4, 4]]
    end

    test "floats keep NaN, infinities are clipped; 0-d, empty and transposed inputs" do
      t = tensor([:nan, :infinity, :neg_infinity, 0.5], :float32)
      assert to_list(EMLX.clip(t, tensor(0.0, :float32), tensor(1.0, :float32))) == [:nan, 1.0, 0.0, 0.5]
      assert to_list(EMLX.clip(tensor(2.5, :bfloat16), tensor(0.0, :bfloat16), tensor(1.0, :bfloat16))) == 1.0
      assert to_list(EMLX.clip(tensor([], :float64), tensor(0.0, :float64), nil)) == []

      t = EMLX.transpose(tensor([[1, 5], [9, 3]], :uint8), [1, 0])
      assert to_list(EMLX.clip(t, tensor(2, :uint8), tensor(4, :uint8))) == [[2, 4], [4, 3]]
    end
  end

  describe "where" do
    test "selects with a boolean or numeric predicate, broadcasting" do
      pred = tensor([true, false, true], :bool)
      assert to_list(EMLX.where(pred, tensor([1, 2, 3], :int32), tensor(0, :int32))) == [1, 0, 3]

      pred = tensor([[0], [2]], :int64)
      out = EMLX.where(pred, tensor([1.5, 2.5], :float32), tensor(-1.0, :float32))
      assert to_list(out) == [[-1.0, -1.0], [1.5, 2.5]]
    end

    test "promotes the branch types; 0-d, empty and transposed inputs" do
      out = EMLX.where(tensor(true, :bool), tensor(1, :int32), tensor(0.5, :float32))
      assert EMLX.scalar_type(out) == :float32
      assert to_list(out) == 1.0

      assert to_list(EMLX.where(tensor([], :bool), tensor([], :int16), tensor([], :int16))) == []

      pred = EMLX.transpose(tensor([[true, false], [false, false]], :bool), [1, 0])
      out = EMLX.where(pred, tensor(1, :int8), tensor(0, :int8))
      assert to_list(out) == [[1, 0], [0, 0]]
    end

    test "complex branches" do
      out =
        EMLX.where(tensor([true, false], :bool), tensor([{1.0, 2.0}, {3.0, 4.0}], :complex64), tensor(0.0, :complex64))

      assert to_list(out) == [{1.0, 2.0}, {0.0, 0.0}]
    end
  end

  test "strided (sliced with a step) inputs" do
    t = EMLX.slice(tensor([-5, 0, 2, 0, 9, 0], :int32), [0], [6], [2])
    assert to_list(EMLX.clip(t, tensor(0, :int32), tensor(4, :int32))) == [0, 2, 4]
    pred = EMLX.slice(tensor([true, false, false, true, true, false], :bool), [0], [6], [2])
    assert to_list(EMLX.where(pred, t, tensor(0, :int32))) == [-5, 0, 9]
    assert to_list(EMLX.isclose(t, tensor([-5, 3, 9], :int32), 0.0, 0.5, false)) == [true, false, true]
  end

  describe "isclose and allclose" do
    test "|a - b| <= atol + rtol * |b|, element-wise" do
      a = tensor([1.0, 1.0, 100.0, 0.0], :float32)
      b = tensor([1.05, 1.2, 101.0, 1.0e-9], :float32)
      # 0.05 <= 0.1 * 1.05; 0.2 > 0.12; 1 <= 10.1; 1e-9 <= 1e-8
      assert to_list(EMLX.isclose(a, b, 0.1, 1.0e-8, false)) == [true, false, true, true]
      # with rtol 0 only atol counts
      assert to_list(EMLX.isclose(a, b, 0.0, 0.1, false)) == [true, false, false, true]
    end

    test "NaN and infinities" do
      a = tensor([:nan, :infinity, :neg_infinity, :infinity], :float64)
      b = tensor([:nan, :infinity, :neg_infinity, :neg_infinity], :float64)
      assert to_list(EMLX.isclose(a, b, 1.0e-5, 1.0e-8, false)) == [false, true, true, false]
      assert to_list(EMLX.isclose(a, b, 1.0e-5, 1.0e-8, true)) == [true, true, true, false]
    end

    test "integers, broadcasting, transposed inputs" do
      assert to_list(EMLX.isclose(tensor([1, 2, 3], :int32), tensor(2, :int32), 0.0, 1.0, false)) == [true, true, true]
      assert to_list(EMLX.isclose(tensor([1, 4], :int32), tensor(2, :int32), 0.0, 1.0, false)) == [true, false]

      t = EMLX.transpose(tensor([[1.0, 2.0], [3.0, 4.0]], :float32), [1, 0])
      u = tensor([[1.0, 3.0], [2.0, 4.0]], :float32)
      assert to_list(EMLX.allclose(t, u, 0.0, 0.0, false)) == true
    end

    test "allclose reduces to one boolean; empty tensors are all close" do
      a = tensor([1.0, 2.0], :float16)
      assert to_list(EMLX.allclose(a, tensor([1.0, 2.001], :float16), 1.0e-2, 0.0, false)) == true
      assert to_list(EMLX.allclose(a, tensor([1.0, 2.5], :float16), 1.0e-2, 0.0, false)) == false
      assert EMLX.shape(EMLX.allclose(a, a, 0.0, 0.0, false)) == {}
      assert to_list(EMLX.allclose(tensor([], :float32), tensor([], :float32), 0.0, 0.0, false)) == true
      assert to_list(EMLX.allclose(tensor(:nan, :float32), tensor(:nan, :float32), 0.0, 0.0, true)) == true
    end
  end
end
