defmodule EMLX.APIHelpers do
  @moduledoc false
  # Tensors from nested lists and back, without Nx, for the EMLX API tests.
  # Encoding is written here from the formats' definitions (IEEE 754,
  # bfloat16 = the top half of a float32), independent of the code tested.

  import ExUnit.Assertions

  @itemsize %{
    bool: 1,
    uint8: 1,
    uint16: 2,
    uint32: 4,
    uint64: 8,
    int8: 1,
    int16: 2,
    int32: 4,
    int64: 8,
    float16: 2,
    bfloat16: 2,
    float32: 4,
    float64: 8,
    complex64: 8
  }

  @doc "A tensor from a number or nested list, on `device` (by default the suite's: EMLX.TestDevice.device_for/1)."
  def tensor(data, type, device \\ nil) do
    device = device || EMLX.TestDevice.device_for(type)
    shape = shape_of(data)
    blob = data |> List.wrap() |> List.flatten() |> Enum.map(&encode(&1, type)) |> IO.iodata_to_binary()
    EMLX.from_blob(blob, shape, type, device)
  end

  @doc "The suite's device (EMLX_TEST_DEVICE), for tests that create tensors themselves."
  def dev, do: EMLX.TestDevice.device()

  @doc "A row-major arange reshaped, as `type`."
  def iota(shape, type) do
    n = shape |> Tuple.to_list() |> Enum.product()
    EMLX.arange(0, n, 1, true, EMLX.TestDevice.device_for(type)) |> EMLX.astype(type) |> EMLX.reshape(shape)
  end

  defp shape_of(list) when is_list(list) do
    case list do
      [] -> {0}
      [first | _] -> List.to_tuple([length(list) | Tuple.to_list(shape_of(first))])
    end
  end

  defp shape_of(_scalar), do: {}

  @doc "The tensor's elements as a nested list (a bare value for 0-d)."
  def to_list(t) do
    type = EMLX.scalar_type(t)
    size = @itemsize[type]
    values = for <<chunk::binary-size(size) <- EMLX.to_blob(t)>>, do: decode(chunk, type)
    nest(values, Tuple.to_list(EMLX.shape(t)))
  end

  defp nest([value], []), do: value
  defp nest(values, [_]), do: values

  defp nest(values, [dim | rest]) do
    case Enum.product(rest) do
      0 -> List.duplicate(nest([], rest), dim)
      inner -> values |> Enum.chunk_every(inner) |> Enum.map(&nest(&1, rest))
    end
  end

  @doc "Flattened elements."
  def flat(t), do: t |> to_list() |> List.wrap() |> List.flatten()

  @doc """
  Asserts `t` has `shape` and its elements are within `atol + rtol * |e|`
  of `expected` (a nested list or number); NaNs must match NaNs.
  """
  def assert_close(t, expected, opts \\ []) do
    atol = Keyword.get(opts, :atol, 1.0e-5)
    rtol = Keyword.get(opts, :rtol, 1.0e-5)
    actual = to_list(t)

    if shape = opts[:shape], do: assert(EMLX.shape(t) == shape)
    a = actual |> List.wrap() |> List.flatten()
    e = expected |> List.wrap() |> List.flatten()
    assert length(a) == length(e), "expected #{length(e)} elements, got #{inspect(actual)}"

    for {x, y} <- Enum.zip(a, e) do
      assert close?(x, y, atol, rtol), "#{inspect(actual)}\n  is not close to\n#{inspect(expected)}"
    end

    t
  end

  defp close?({xr, xi}, {yr, yi}, atol, rtol), do: close?(xr, yr, atol, rtol) and close?(xi, yi, atol, rtol)
  defp close?({xr, xi}, y, atol, rtol) when is_number(y), do: close?({xr, xi}, {y, 0.0}, atol, rtol)
  defp close?(x, x, _atol, _rtol), do: true
  defp close?(x, y, atol, rtol) when is_number(x) and is_number(y), do: abs(x - y) <= atol + rtol * abs(y)
  defp close?(_, _, _, _), do: false

  @doc "Batched matrix product through einsum (float types)."
  def matmul(a, b), do: EMLX.einsum(a, b, "...ij,...jk->...ik")

  @doc "Swaps the last two axes."
  def mT(t) do
    r = tuple_size(EMLX.shape(t))
    EMLX.transpose(t, Enum.to_list(0..(r - 3)//1) ++ [r - 1, r - 2])
  end

  @doc "Runs `fun` and checks the VM (a fresh op, evaluated) still works."
  def still_alive! do
    assert to_list(EMLX.add(tensor([1, 2], :int32), tensor([3, 4], :int32))) == [4, 6]
  end

  ## Encoding

  defp encode(v, :bool), do: <<if(v in [true, 1], do: 1, else: 0)>>
  defp encode(v, :uint8), do: <<v::unsigned-8>>
  defp encode(v, :uint16), do: <<v::unsigned-16-native>>
  defp encode(v, :uint32), do: <<v::unsigned-32-native>>
  defp encode(v, :uint64), do: <<v::unsigned-64-native>>
  defp encode(v, :int8), do: <<v::signed-8>>
  defp encode(v, :int16), do: <<v::signed-16-native>>
  defp encode(v, :int32), do: <<v::signed-32-native>>
  defp encode(v, :int64), do: <<v::signed-64-native>>
  defp encode({re, im}, :complex64), do: [encode(re, :float32), encode(im, :float32)]
  defp encode(v, :complex64), do: [encode(v, :float32), encode(0.0, :float32)]

  defp encode(v, :bfloat16) do
    <<hi::16, _::16>> = encode_big(v, 32)
    <<hi::16-native>>
  end

  defp encode(v, type) when type in [:float16, :float32, :float64] do
    bits = %{float16: 16, float32: 32, float64: 64}[type]
    <<x::size(bits)>> = encode_big(v, bits)
    <<x::size(bits)-native>>
  end

  @special %{
    16 => %{nan: 0x7E00, infinity: 0x7C00, neg_infinity: 0xFC00, neg_zero: 0x8000},
    32 => %{nan: 0x7FC00000, infinity: 0x7F800000, neg_infinity: 0xFF800000, neg_zero: 0x80000000},
    64 => %{
      nan: 0x7FF8000000000000,
      infinity: 0x7FF0000000000000,
      neg_infinity: 0xFFF0000000000000,
      neg_zero: 0x8000000000000000
    }
  }

  defp encode_big(v, bits) when is_atom(v), do: <<@special[bits][v]::size(bits)>>
  defp encode_big(v, bits), do: <<v * 1.0::float-size(bits)>>

  ## Decoding

  defp decode(<<v>>, :bool), do: v != 0
  defp decode(<<v::unsigned-8>>, :uint8), do: v
  defp decode(<<v::unsigned-16-native>>, :uint16), do: v
  defp decode(<<v::unsigned-32-native>>, :uint32), do: v
  defp decode(<<v::unsigned-64-native>>, :uint64), do: v
  defp decode(<<v::signed-8>>, :int8), do: v
  defp decode(<<v::signed-16-native>>, :int16), do: v
  defp decode(<<v::signed-32-native>>, :int32), do: v
  defp decode(<<v::signed-64-native>>, :int64), do: v
  defp decode(<<re::binary-4, im::binary-4>>, :complex64), do: {decode(re, :float32), decode(im, :float32)}

  defp decode(<<x::16-native>>, :bfloat16), do: decode_big(<<x::16, 0::16>>, 32)
  defp decode(<<x::16-native>>, :float16), do: decode_big(<<x::16>>, 16)
  defp decode(<<x::32-native>>, :float32), do: decode_big(<<x::32>>, 32)
  defp decode(<<x::64-native>>, :float64), do: decode_big(<<x::64>>, 64)

  defp decode_big(bin, bits) do
    case bin do
      <<v::float-size(bits)>> ->
        v

      _ ->
        <<sign::1, _::bitstring>> = bin
        <<_::1, rest::bitstring>> = bin

        cond do
          not mantissa_zero?(rest, bits) -> :nan
          sign == 1 -> :neg_infinity
          true -> :infinity
        end
    end
  end

  defp mantissa_zero?(rest, bits) do
    exp_bits = %{16 => 5, 32 => 8, 64 => 11}[bits]
    <<_exp::size(exp_bits), mantissa::bitstring>> = rest
    m = bit_size(mantissa)
    <<value::size(m)>> = mantissa
    value == 0
  end

  @doc "Whether a float tensor's single element is negative zero (by its bits)."
  def neg_zero?(t) do
    case {EMLX.scalar_type(t), EMLX.to_blob(t)} do
      {:float32, <<x::32-native>>} -> x == 0x80000000
      {:float64, <<x::64-native>>} -> x == 0x8000000000000000
    end
  end
end
