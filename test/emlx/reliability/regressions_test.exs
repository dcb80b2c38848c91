defmodule EMLX.Reliability.RegressionsTest do
  # Native-layer bugs the differential fuzzer found, pinned at the EMLX level
  # (no Nx needed). Expected values are worked out by hand.
  use ExUnit.Case, async: true

  # Half-precision bit patterns (native byte order).
  @f16 %{1.0 => 0x3C00, 2.0 => 0x4000, 3.0 => 0x4200, nan: 0x7E00}
  @bf16 %{1.0 => 0x3F80, 2.0 => 0x4000, 3.0 => 0x4040, nan: 0x7FC0}

  defp half(values, table), do: for(v <- values, into: <<>>, do: <<Map.fetch!(table, v)::16-native>>)

  # A half value back: :nan for any NaN pattern (exponent all ones, mantissa not 0).
  defp decode(<<bits::16-native>>, :float16)
       when Bitwise.band(bits, 0x7C00) == 0x7C00 and Bitwise.band(bits, 0x03FF) != 0,
       do: :nan

  defp decode(<<bits::16-native>>, :bfloat16)
       when Bitwise.band(bits, 0x7F80) == 0x7F80 and Bitwise.band(bits, 0x007F) != 0,
       do: :nan

  defp decode(<<bits::16-native>>, type), do: Enum.find(Map.keys(table(type)), &(table(type)[&1] == bits))

  defp table(:float16), do: @f16
  defp table(:bfloat16), do: @bf16

  defp values(tensor, type), do: for(<<h::binary-2 <- EMLX.to_blob(tensor)>>, do: decode(h, type))

  for type <- [:float16, :bfloat16] do
    test "cumulative_max and cumulative_min propagate NaN on #{type} (MLX gave 0.0)" do
      table = table(unquote(type))
      x = EMLX.from_blob(half([1.0, :nan, 2.0, 3.0], table), {4}, unquote(type), EMLX.TestDevice.device())

      # Nx: once a NaN is seen, the running extreme is NaN.
      assert values(EMLX.cumulative_max(x, 0, false, true), unquote(type)) == [1.0, :nan, :nan, :nan]
      assert values(EMLX.cumulative_min(x, 0, false, true), unquote(type)) == [1.0, :nan, :nan, :nan]
      # Reversed: from the end, 3, max(3, 2), then NaN.
      assert values(EMLX.cumulative_max(x, 0, true, true), unquote(type)) == [:nan, :nan, 3.0, 3.0]
      assert EMLX.scalar_type(EMLX.cumulative_max(x, 0, false, true)) == unquote(type)
    end
  end

  test "cumulative_max without NaN is unchanged on float16" do
    x = EMLX.from_blob(half([2.0, 1.0, 3.0, 1.0], @f16), {2, 2}, :float16, EMLX.TestDevice.device())
    # Along axis 1: [2, max(2, 1)], [3, max(3, 1)].
    assert values(EMLX.cumulative_max(x, 1, false, true), :float16) == [2.0, 2.0, 3.0, 3.0]
  end

  describe "as_strided of a view that is not row-contiguous (MLX refused it at evaluation)" do
    # m = [[0, 1, 2], [3, 4, 5]]; its transpose [[0, 3], [1, 4], [2, 5]] has
    # the row-major elements 0, 3, 1, 4, 2, 5; every second one is 0, 1, 2.
    defp ints(t), do: for(<<x::signed-64-native <- EMLX.to_blob(t)>>, do: x)

    defp transposed,
      do: EMLX.arange(0, 6, 1, true, EMLX.TestDevice.device()) |> EMLX.reshape({2, 3}) |> EMLX.transpose([1, 0])

    test "of a lazy transpose" do
      assert ints(EMLX.as_strided(transposed(), {3}, [2], 0)) == [0, 1, 2]
    end

    test "of an evaluated transpose (a strided view of its input's buffer)" do
      t = transposed()
      :ok = EMLX.eval(t)
      assert ints(EMLX.as_strided(t, {3}, [2], 1)) == [3, 4, 5]
      assert ints(EMLX.as_strided(t, {2, 2}, [1, 2], 0)) == [0, 1, 3, 4]
    end
  end
end
