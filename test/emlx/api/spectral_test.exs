defmodule EMLX.API.SpectralTest do
  # fft, ifft, fft2, ifft2 against the DFT of small sequences worked out by
  # hand, and the round trip ifft(fft(x)) = x.
  use ExUnit.Case, async: true
  import EMLX.APIHelpers

  test "fft of a delta, of ones, of a shifted delta" do
    assert_close(EMLX.fft(tensor([1.0, 0.0, 0.0, 0.0], :float32), 4, 0), [1.0, 1.0, 1.0, 1.0])
    assert_close(EMLX.fft(tensor([1.0, 1.0, 1.0, 1.0], :float32), 4, 0), [4.0, 0.0, 0.0, 0.0])
    # X[k] = exp(-2πi k / 4): 1, -i, -1, i
    out = EMLX.fft(tensor([0.0, 1.0, 0.0, 0.0], :float32), 4, 0)
    assert EMLX.scalar_type(out) == :complex64
    assert_close(out, [{1.0, 0.0}, {0.0, -1.0}, {-1.0, 0.0}, {0.0, 1.0}])
  end

  test "n crops or zero-pads the axis" do
    x = tensor([1.0, 2.0, 3.0], :float32)
    # cropped to [1, 2]: [3, -1]
    assert_close(EMLX.fft(x, 2, 0), [3.0, -1.0])
    # padded to [1, 2, 3, 0]: X = [6, -2-2i, 2, -2+2i]
    assert_close(EMLX.fft(x, 4, 0), [{6.0, 0.0}, {-2.0, -2.0}, {2.0, 0.0}, {-2.0, 2.0}])
  end

  test "ifft scales by 1/n and inverts fft on complex, integer and transposed inputs" do
    assert_close(EMLX.ifft(tensor([4.0, 0.0, 0.0, 0.0], :float32), 4, 0), [1.0, 1.0, 1.0, 1.0])

    x = tensor([{1.0, -1.0}, {0.5, 2.0}, {-3.0, 0.25}], :complex64)
    assert_close(EMLX.ifft(EMLX.fft(x, 3, 0), 3, 0), to_list(x))

    i = tensor([[1, 2], [3, 4]], :int32)
    assert_close(EMLX.fft(i, 2, 1), [[3.0, -1.0], [7.0, -1.0]])

    t = EMLX.transpose(tensor([[1.0, 2.0], [3.0, 4.0]], :float32), [1, 0])
    # rows of t: [1, 3], [2, 4]
    assert_close(EMLX.fft(t, 2, -1), [[4.0, -2.0], [6.0, -2.0]])
    assert_close(EMLX.fft(t, 2, 0), [[3.0, 7.0], [-1.0, -1.0]])
  end

  test "fft2 and ifft2" do
    x = tensor([[1.0, 2.0], [3.0, 4.0]], :float32)
    # X[0,0] = 10, X[0,1] = (1-2)+(3-4) = -2, X[1,0] = (1+2)-(3+4) = -4, X[1,1] = 1-2-3+4 = 0
    assert_close(EMLX.fft2(x, [2, 2], [0, 1]), [[10.0, -2.0], [-4.0, 0.0]])
    assert_close(EMLX.ifft2(EMLX.fft2(x, [2, 2], [0, 1]), [2, 2], [0, 1]), [[1.0, 2.0], [3.0, 4.0]])
    # padded to 2x3 along the last axis
    assert EMLX.shape(EMLX.fft2(x, {2, 3}, [0, 1])) == {2, 3}
    batch = EMLX.stack([x, x], 0)
    assert_close(EMLX.fft2(batch, [2, 2], [1, 2]), [[[10.0, -2.0], [-4.0, 0.0]], [[10.0, -2.0], [-4.0, 0.0]]])
  end

  test "a strided (sliced with a step) input" do
    # every other element of [1, 9, 0, 9, 0, 9, 0, 9]: a delta of length 4
    x = EMLX.slice(tensor([1.0, 9.0, 0.0, 9.0, 0.0, 9.0, 0.0, 9.0], :float32), [0], [8], [2])
    assert_close(EMLX.fft(x, 4, 0), [1.0, 1.0, 1.0, 1.0])
  end

  test "empty and bfloat16 inputs" do
    assert EMLX.shape(EMLX.fft(iota({0, 4}, :float32), 4, 1)) == {0, 4}
    assert_close(EMLX.fft(tensor([1.0, 1.0], :bfloat16), 2, 0), [2.0, 0.0])
  end
end
