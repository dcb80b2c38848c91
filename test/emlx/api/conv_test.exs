defmodule EMLX.API.ConvTest do
  # conv_general in MLX's channels-last layout, against sums worked out by
  # hand (cross-correlation: the kernel is not flipped).
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  # input (N=1, W=5, C=1) = 1..5
  defp signal(type), do: tensor([[[1.0], [2.0], [3.0], [4.0], [5.0]]], type)
  # kernel (C_out=1, W=2, C_in=1) = [1, -1]: x[i] - x[i + 1]
  defp diff(type), do: tensor([[[1.0], [-1.0]]], type)

  test "1-D: stride, padding, kernel and input dilation" do
    x = signal(:float32)
    k = diff(:float32)
    assert_close(EMLX.conv_general(x, k, [1], [0], [0], [1], [1], 1), [[[-1.0], [-1.0], [-1.0], [-1.0]]])
    assert_close(EMLX.conv_general(x, k, [2], [0], [0], [1], [1], 1), [[[-1.0], [-1.0]]])
    # zero padding: [0, 1, 2, 3, 4, 5, 0]
    assert_close(EMLX.conv_general(x, k, [1], [1], [1], [1], [1], 1), [[[-1.0], [-1.0], [-1.0], [-1.0], [-1.0], [5.0]]])
    # kernel dilation 2: x[i] - x[i + 2]
    assert_close(EMLX.conv_general(x, k, [1], [0], [0], [2], [1], 1), [[[-2.0], [-2.0], [-2.0]]])
    # input dilation 2: [1, 0, 2, 0, 3, 0, 4, 0, 5]
    assert_close(
      EMLX.conv_general(x, k, [1], [0], [0], [1], [2], 1),
      [[[1.0], [-2.0], [2.0], [-3.0], [3.0], [-4.0], [4.0], [-5.0]]]
    )
  end

  test "empty lists mean unit strides and no padding; several dtypes" do
    for type <- [:float16, :bfloat16, :float32, :float64] do
      out = EMLX.conv_general(signal(type), diff(type), [], [], [], [], [], 1)
      assert EMLX.scalar_type(out) == type
      assert to_list(out) == [[[-1.0], [-1.0], [-1.0], [-1.0]]]
    end
  end

  test "a strided (sliced with a step) input" do
    # every other element of 1..10: 1, 3, 5, 7, 9
    x = EMLX.slice(EMLX.arange(1, 11, 1, false, dev()), [0], [10], [2]) |> EMLX.reshape({1, 5, 1})
    assert_close(EMLX.conv_general(x, diff(:float32), [1], [0], [0], [1], [1], 1), [[[-2.0], [-2.0], [-2.0], [-2.0]]])
  end

  test "channels, output features and feature groups" do
    # x: (1, W=2, C=2) with channels [1, 10], [2, 20]
    x = tensor([[[1.0, 10.0], [2.0, 20.0]]], :float32)
    # two output features over both channels, width 1
    k = tensor([[[1.0, 0.0]], [[1.0, 1.0]]], :float32)
    assert_close(EMLX.conv_general(x, k, [1], [0], [0], [1], [1], 1), [[[1.0, 11.0], [2.0, 22.0]]])

    # two groups: feature 0 sees channel 0, feature 1 sees channel 1
    kg = tensor([[[2.0]], [[3.0]]], :float32)
    assert_close(EMLX.conv_general(x, kg, [1], [0], [0], [1], [1], 2), [[[2.0, 30.0], [4.0, 60.0]]])
  end

  test "2-D with a transposed (non-contiguous) input and an empty batch" do
    # image 3x3 = 0..8, built transposed
    img = iota({3, 3}, :float32) |> EMLX.transpose([1, 0])
    # img = [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    x = EMLX.reshape(EMLX.transpose(img, [1, 0]) |> EMLX.transpose([1, 0]), {1, 3, 3, 1})
    k = EMLX.ones({1, 2, 2, 1}, :float32, dev())
    # 2x2 window sums
    assert_close(EMLX.conv_general(x, k, [1, 1], [0, 0], [0, 0], [1, 1], [1, 1], 1), [
      [[[8.0], [20.0]], [[12.0], [24.0]]]
    ])

    empty = iota({0, 3, 3, 1}, :float32)
    assert EMLX.shape(EMLX.conv_general(empty, k, [1, 1], [0, 0], [0, 0], [1, 1], [1, 1], 1)) == {0, 2, 2, 1}
  end
end
