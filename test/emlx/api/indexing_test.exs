defmodule EMLX.API.IndexingTest do
  # take, take_along_axis, gather, scatter, scatter_add and the window
  # scatters, against hand-worked values, including wildly out-of-range and
  # negative indices (reads clamp, writes drop: never outside the tensor).
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  @huge 4_611_686_018_427_387_904

  describe "take" do
    test "along each axis, with indices of any integer type and rank" do
      t = tensor([[10, 11, 12], [20, 21, 22]], :int32)
      assert to_list(EMLX.take(t, tensor([1, 0, 1], :int32), 0)) == [[20, 21, 22], [10, 11, 12], [20, 21, 22]]
      assert to_list(EMLX.take(t, tensor([[2], [0]], :uint8), 1)) == [[[12], [10]], [[22], [20]]]
      assert to_list(EMLX.take(t, tensor(2, :int64), -1)) == [12, 22]
    end

    test "out-of-range indices clamp: negative to 0, too large to the last" do
      t = tensor([10, 11, 12], :float32)

      for type <- [:int8, :int16, :int32, :int64] do
        idx = tensor([-1, -128, 3, 127], type)
        assert to_list(EMLX.take(t, idx, 0)) == [10.0, 10.0, 12.0, 12.0]
      end

      assert to_list(EMLX.take(t, tensor([@huge, -@huge], :int64), 0)) == [12.0, 10.0]
      assert to_list(EMLX.take(t, tensor([18_446_744_073_709_551_615], :uint64), 0)) == [12.0]
      assert to_list(EMLX.take(t, tensor([4_294_967_295, 255], :uint32), 0)) == [12.0, 12.0]
    end

    test "transposed input, empty indices, empty axis" do
      t = EMLX.transpose(tensor([[1, 2], [3, 4]], :int16), [1, 0])
      assert to_list(EMLX.take(t, tensor([1], :int32), 0)) == [[2, 4]]
      assert EMLX.shape(EMLX.take(t, tensor([], :int32), 0)) == {0, 2}
      assert EMLX.shape(EMLX.take(iota({0, 2}, :float32), tensor([], :int32), 0)) == {0, 2}

      assert_raise ArgumentError, ~r/take: cannot read from axis 0, which has size 0/, fn ->
        EMLX.take(iota({0, 2}, :float32), tensor([0], :int32), 0)
      end
    end
  end

  test "strided (sliced with a step) tensors and indices" do
    # every other element of 10..19: [10, 12, 14, 16, 18]
    t = EMLX.slice(EMLX.arange(10, 20, 1, true, dev()), [0], [10], [2])
    i = EMLX.slice(tensor([4, 9, -3, 9, 1, 9], :int32), [0], [6], [2])
    # indices [4, -3, 1] -> clamp [4, 0, 1]
    assert to_list(EMLX.take(t, i, 0)) == [18, 10, 12]
    out = EMLX.gather(EMLX.reshape(t, {5, 1}), [i], [0], [1, 1])
    assert to_list(EMLX.reshape(out, {3})) == [18, 10, 12]
    upd = EMLX.reshape(tensor([1, 2, 3], :int64), {3, 1})
    assert to_list(EMLX.scatter_add(t, [i], upd, [0])) == [10, 15, 14, 16, 19]
  end

  describe "take_along_axis" do
    test "picks per row, broadcasting the other axes" do
      t = tensor([[10, 11, 12], [20, 21, 22]], :int64)
      assert to_list(EMLX.take_along_axis(t, tensor([[2, 0], [1, 1]], :int32), 1)) == [[12, 10], [21, 21]]
      assert to_list(EMLX.take_along_axis(t, tensor([[1, 0, 1]], :int32), 0)) == [[20, 11, 22]]
      assert to_list(EMLX.take_along_axis(t, tensor([[0]], :int32), 0)) == [[10, 11, 12]]
    end

    test "out-of-range indices clamp; transposed input; argsort round trip" do
      t = tensor([[10, 11, 12], [20, 21, 22]], :bfloat16)
      assert to_list(EMLX.take_along_axis(t, tensor([[-5], [99]], :int32), 1)) == [[10.0], [22.0]]
      assert to_list(EMLX.take_along_axis(t, tensor([[@huge, -@huge, 1]], :int64), 0)) == [[20.0, 11.0, 22.0]]

      u = EMLX.transpose(tensor([[3, 1], [2, 4]], :int32), [1, 0])
      assert to_list(EMLX.take_along_axis(u, EMLX.argsort(u, 1), 1)) == to_list(EMLX.sort(u, 1))
    end

    test "an empty axis raises unless there is nothing to take" do
      assert EMLX.shape(EMLX.take_along_axis(iota({0, 2}, :int32), tensor([[]], :int32) |> EMLX.reshape({0, 2}), 0)) ==
               {0, 2}

      assert_raise ArgumentError, ~r/take_along_axis: cannot read from axis 1/, fn ->
        EMLX.take_along_axis(iota({2, 0}, :int32), tensor([[1], [0]], :int32), 1)
      end
    end
  end

  describe "gather" do
    test "rows, and points over two axes" do
      t = tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]], :int32)
      assert to_list(EMLX.gather(t, [tensor([2, 0], :int32)], [0], [1, 3])) == [[[7, 8, 9]], [[1, 2, 3]]]

      out = EMLX.gather(t, [tensor([0, 2], :int32), tensor([1, 2], :int32)], [0, 1], [1, 1])
      assert to_list(EMLX.reshape(out, {2})) == [2, 9]

      # a 2x2 window starting at (1, 1)
      out = EMLX.gather(t, [tensor([1], :int32), tensor([1], :int32)], [0, 1], [2, 2])
      assert to_list(out) == [[[5, 6], [8, 9]]]
    end

    test "starts clamp so that the whole slice fits" do
      t = tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]], :float32)
      # a 2x2 window can start at 0 or 1 on each axis
      out = EMLX.gather(t, [tensor([-7, 99], :int64), tensor([@huge, -1], :int64)], [0, 1], [2, 2])
      assert to_list(out) == [[[2.0, 3.0], [5.0, 6.0]], [[4.0, 5.0], [7.0, 8.0]]]

      out = EMLX.gather(t, [tensor([255], :uint8)], [1], [3, 1])
      assert to_list(out) == [[[3.0], [6.0], [9.0]]]
    end

    test "broadcast indices, transposed tensor, zero-size slices" do
      t = EMLX.transpose(tensor([[1, 2], [3, 4]], :int8), [1, 0])
      # t = [[1, 3], [2, 4]]
      out = EMLX.gather(t, [tensor([[0], [1]], :int32), tensor([1, 0], :int32)], [0, 1], [1, 1])
      assert to_list(EMLX.reshape(out, {2, 2})) == [[3, 1], [4, 2]]
      assert EMLX.shape(EMLX.gather(iota({0, 2}, :int8), [tensor([5], :int32)], [0], [0, 2])) == {1, 0, 2}
    end
  end

  describe "scatter" do
    test "replaces slices; updates that do not fit are dropped" do
      t = tensor([0, 0, 0, 0], :int32)
      idx = tensor([1, -1, 4, 3, @huge], :int64)
      upd = EMLX.reshape(tensor([10, 20, 30, 40, 50], :int32), {5, 1})
      assert to_list(EMLX.scatter(t, [idx], upd, [0])) == [0, 10, 0, 40]
    end

    test "window updates that would cross the end are dropped whole" do
      t = tensor([0, 0, 0, 0], :int32)
      # windows of 2 may start at 0..2: start 3 would cross the end
      upd = EMLX.reshape(tensor([1, 2, 3, 4], :int32), {2, 2})
      assert to_list(EMLX.scatter(t, [tensor([2, 3], :int32)], upd, [0])) == [0, 0, 1, 2]
    end

    test "rows of a matrix, points over two axes, a transposed target" do
      t = EMLX.transpose(iota({3, 2}, :float32), [1, 0])
      # t = [[0, 2, 4], [1, 3, 5]]
      upd = EMLX.reshape(tensor([-1.0, -2.0, -3.0], :float32), {1, 1, 3})
      assert to_list(EMLX.scatter(t, [tensor([1], :int32)], upd, [0])) == [[0.0, 2.0, 4.0], [-1.0, -2.0, -3.0]]

      i = tensor([0, 1, 5], :int32)
      j = tensor([2, 0, 0], :int32)
      upd = EMLX.reshape(tensor([7.0, 8.0, 9.0], :float32), {3, 1, 1})
      assert to_list(EMLX.scatter(t, [i, j], upd, [0, 1])) == [[0.0, 2.0, 7.0], [8.0, 3.0, 5.0]]
    end

    test "updates broadcast over the index dimensions, in both scatters" do
      t = tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]], :int32)
      upd = EMLX.full(0, {1, 1, 3}, :int32, dev())
      assert to_list(EMLX.scatter(t, [tensor([0, 2], :int32)], upd, [0])) == [[0, 0, 0], [4, 5, 6], [0, 0, 0]]

      assert to_list(EMLX.scatter_add(t, [tensor([0, 2], :int32)], EMLX.add(upd, tensor(1, :int32)), [0])) ==
               [[2, 3, 4], [4, 5, 6], [8, 9, 10]]
    end

    test "empty index lists and empty updates leave the tensor unchanged" do
      t = tensor([1, 2], :uint8)
      upd = EMLX.reshape(tensor([], :uint8), {0, 1})
      assert to_list(EMLX.scatter(t, [tensor([], :int32)], upd, [0])) == [1, 2]
    end
  end

  describe "scatter_add" do
    test "repeated indices add up; out-of-range ones are dropped" do
      t = tensor([1, 1, 1], :int64)
      idx = tensor([0, 2, 2, -1, 3, -@huge], :int64)
      upd = EMLX.reshape(tensor([5, 7, 9, 100, 100, 100], :int64), {6, 1})
      assert to_list(EMLX.scatter_add(t, [idx], upd, [0])) == [6, 1, 17]
    end

    test "dropped updates leave every value bit-for-bit, -0.0 included" do
      t = tensor([:neg_zero, 2.5], :float32)
      upd = EMLX.reshape(tensor([1.0, 1.0], :float32), {2, 1})
      out = EMLX.scatter_add(t, [tensor([-1, 2], :int32)], upd, [0])
      assert neg_zero?(EMLX.slice(out, [0], [1], [1]) |> EMLX.reshape({}))
      assert to_list(out) == [0.0, 2.5]

      z = tensor([:neg_zero], :float64)
      out = EMLX.scatter_add(z, [tensor([7], :int32)], tensor([[3.0]], :float64), [0])
      assert neg_zero?(EMLX.reshape(out, {}))
    end

    test "2-D windows, bfloat16 and complex targets" do
      t = EMLX.full(0, {3, 3}, :bfloat16, dev())
      upd = EMLX.full(1, {2, 2, 2}, :bfloat16, dev())
      out = EMLX.scatter_add(t, [tensor([0, 1], :int32), tensor([0, 2], :int32)], upd, [0, 1])
      # the window at (1, 2) would cross the right edge: dropped
      assert to_list(out) == [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]

      c = tensor([{1.0, 1.0}, {0.0, 0.0}], :complex64)
      upd = EMLX.reshape(tensor([{0.5, -1.0}, {9.0, 9.0}], :complex64), {2, 1})
      assert to_list(EMLX.scatter_add(c, [tensor([0, 2], :int32)], upd, [0])) == [{1.5, 0.0}, {0.0, 0.0}]
    end
  end

  describe "window_scatter_max and window_scatter_min" do
    test "Nx's worked example: 2x3 windows, strides 2" do
      t =
        tensor([[7, 2, 5, 3, 8], [3, 8, 9, 3, 4], [1, 5, 7, 5, 6], [0, 6, 2, 10, 2]], :int32)

      src = tensor([[2, 6], [3, 1]], :int32)
      out = EMLX.window_scatter_max(t, src, tensor(0, :int32), [2, 3], [0, 0], [0, 0], [2, 2])
      assert to_list(out) == [[0, 0, 0, 0, 0], [0, 0, 8, 0, 0], [0, 0, 3, 0, 0], [0, 0, 0, 1, 0]]
    end

    test "min picks each window's minimum; ties go to the first element" do
      t = tensor([[1, 1], [0, 0]], :float32)
      src = tensor([[5.0]], :float32)
      init = tensor(0.5, :float32)
      assert to_list(EMLX.window_scatter_max(t, src, init, [2, 2], [0, 0], [0, 0], [1, 1])) == [[5.5, 0.5], [0.5, 0.5]]
      assert to_list(EMLX.window_scatter_min(t, src, init, [2, 2], [0, 0], [0, 0], [1, 1])) == [[0.5, 0.5], [5.5, 0.5]]
    end

    test "overlapping windows add up; padding positions are dropped" do
      t = tensor([3, 1, 2], :int32)
      src = tensor([1, 10, 100, 1000], :int32)
      # padded [0 | 3, 1, 2 | 0], windows of 2 with stride 1:
      # [0,3] -> 3 (idx 0), [3,1] -> 3 (idx 0), [1,2] -> 2 (idx 2), [2,0] -> 2 (idx 2)
      out = EMLX.window_scatter_max(t, src, tensor(0, :int32), [2], [1], [1], [1])
      assert to_list(out) == [11, 0, 1100]
      # min: [0,3] -> pad (dropped), [3,1] -> 1, [1,2] -> 1, [2,0] -> pad (dropped)
      out = EMLX.window_scatter_min(t, src, tensor(0, :int32), [2], [1], [1], [1])
      assert to_list(out) == [0, 110, 0]
    end

    test "result type joins source and init_value; transposed input" do
      t = EMLX.transpose(tensor([[1, 4], [3, 2]], :int32), [1, 0])
      # t = [[1, 3], [4, 2]]: max of the 2x2 window is at (1, 0)
      out = EMLX.window_scatter_max(t, tensor([[2.5]], :float32), tensor(1, :int32), [2, 2], [0, 0], [0, 0], [1, 1])
      assert EMLX.scalar_type(out) == :float32
      assert to_list(out) == [[1.0, 1.0], [3.5, 1.0]]
    end
  end
end
