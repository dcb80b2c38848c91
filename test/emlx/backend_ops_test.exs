defmodule EMLX.BackendOpsTest do
  # The op family EMLX.Backend adds to the EMLX API (lib/emlx/ops/backend.ex):
  # values checked by hand, and bad input raising instead of reaching MLX.
  use ExUnit.Case, async: true

  defp f32(list, shape),
    do:
      EMLX.from_blob(for(x <- list, into: <<>>, do: <<x::float-32-native>>), shape, :float32, EMLX.TestDevice.device())

  defp s32(list),
    do:
      EMLX.from_blob(
        for(x <- list, into: <<>>, do: <<x::32-signed-native>>),
        {length(list)},
        :int32,
        EMLX.TestDevice.device()
      )

  defp floats(t), do: for(<<x::float-32-native <- EMLX.to_blob(t)>>, do: x)

  test "matmul broadcasts batch axes" do
    a = f32([1, 2, 3, 4], {1, 2, 2})
    b = f32([1, 0, 0, 1, 2, 0, 0, 2], {2, 2, 2})
    assert floats(EMLX.matmul(a, b)) == [1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, 8.0]
    assert_raise ArgumentError, fn -> EMLX.matmul(a, f32([1, 2, 3], {3, 1})) end
  end

  test "dynamic slices clamp their starts so the block fits" do
    t = f32(Enum.to_list(0..9), {2, 5})
    assert floats(EMLX.dynamic_slice(t, s32([1, 3]), [0, 1], {1, 2})) == [8.0, 9.0]
    assert floats(EMLX.dynamic_slice(t, s32([7, 100]), [0, 1], {1, 2})) == [8.0, 9.0]
    assert floats(EMLX.dynamic_slice(t, s32([-5, -1]), [0, 1], {2, 1})) == [0.0, 5.0]

    updated = EMLX.dynamic_slice_update(t, f32([-1, -2], {1, 2}), s32([9, 9]), [0, 1])
    assert floats(updated) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -1.0, -2.0]

    assert_raise ArgumentError, ~r/one start index per axis/, fn -> EMLX.dynamic_slice(t, s32([1]), [0, 1], {1, 1}) end
    assert_raise ArgumentError, ~r/does not fit/, fn -> EMLX.dynamic_slice(t, s32([0, 0]), [0, 1], {3, 1}) end
    assert_raise ArgumentError, ~r/integer/, fn -> EMLX.dynamic_slice(t, f32([0, 0], {2}), [0, 1], {1, 1}) end
  end

  test "rfft and irfft pad or cut to the length" do
    t = f32([1, 1], {2})
    assert EMLX.shape(EMLX.rfft(t, 6, 0)) == {4}
    assert floats(t |> EMLX.rfft(4, 0) |> EMLX.irfft(4, 0)) == [1.0, 1.0, 0.0, 0.0]
    assert_raise ArgumentError, ~r/axis/, fn -> EMLX.rfft(t, 4, 3) end
    assert_raise ArgumentError, ~r/positive/, fn -> EMLX.rfft(t, 0, 0) end
  end

  test "precise_unary computes in double precision, on the CPU, for real floats" do
    t = EMLX.from_blob(<<1.0::float-64-native, -8.0::float-64-native>>, {2}, :float64, :cpu)
    assert <<x::float-64-native, _::binary>> = EMLX.to_blob(EMLX.precise_unary(t, "exp"))
    assert x == :math.exp(1.0)
    assert <<_::binary-size(8), y::float-64-native>> = EMLX.to_blob(EMLX.precise_unary(t, "cbrt"))
    assert y == -:math.pow(8.0, 1 / 3)
    assert_raise ArgumentError, ~r/unknown function/, fn -> EMLX.precise_unary(t, "gamma") end
    assert_raise ArgumentError, ~r/real floating-point/, fn -> EMLX.precise_unary(s32([1]), "exp") end
  end

  test "linalg_det" do
    assert [-2.0] == floats(EMLX.reshape(EMLX.linalg_det(f32([1, 2, 3, 4], {2, 2})), {1}))
    assert_raise ArgumentError, ~r/square/, fn -> EMLX.linalg_det(f32([1, 2, 3], {1, 3})) end

    assert_raise ArgumentError, ~r/float32 or float64/, fn ->
      EMLX.linalg_det(EMLX.reshape(s32([1, 0, 0, 1]), {2, 2}))
    end
  end

  test "from_address and from_shm copy, and refuse what they cannot read" do
    t = EMLX.from_blob(<<1, 2, 3, 4>>, {4}, :uint8, EMLX.TestDevice.device())
    {address, 4} = EMLX.tensor_data_ptr(t)
    assert EMLX.to_blob(EMLX.from_address(address, 4, {2, 2}, :uint8, :cpu)) == <<1, 2, 3, 4>>
    assert_raise ArgumentError, ~r/NULL/, fn -> EMLX.from_address(0, 4, {4}, :uint8, :cpu) end
    assert_raise ArgumentError, ~r/need 8/, fn -> EMLX.from_address(address, 4, {2}, :int32, :cpu) end

    {name, 4} = EMLX.tensor_to_shm(t, 0o600)
    assert EMLX.to_blob(EMLX.from_shm(name, 4, {4}, :uint8, :cpu)) == <<1, 2, 3, 4>>
    assert_raise ArgumentError, ~r/cannot open shared memory/, fn -> EMLX.from_shm(name, 4, {4}, :uint8, :cpu) end
  end
end
