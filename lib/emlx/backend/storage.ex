if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Storage do
    @moduledoc false
    # Nx types MLX has no storage for, held in a wider MLX type:
    #
    #   * f8 (E5M2) and f8_e4m3fn in float16. Both convert to float16
    #     exactly. After every op the float16 result is rounded to the 8-bit
    #     grid exactly as Nx.BinaryBackend writes it: E5M2 keeps the top byte
    #     of the float16 (Nx.Floating.dump_f8/1 truncates the same way);
    #     E4M3FN goes through a 65536-entry table built once from
    #     Nx.Floating.dump_f8_e4m3fn/1, so both agree by construction.
    #   * s2/s4 in int8, u2/u4 in uint8: results wrap to the narrow range
    #     (two's complement), as Nx.BinaryBackend's bit-level writes do.
    #
    # Binaries cross the boundary in Nx's layout (8-bit floats, packed 2- and
    # 4-bit integers, first element in the high bits).

    alias EMLX.Backend.Convert

    import Bitwise, only: [<<<: 2]

    @narrow_ints [{:s, 2}, {:s, 4}, {:u, 2}, {:u, 4}]

    ## Binaries

    @doc false
    # An MLX array on `device` holding the Nx binary of a `type` tensor.
    def from_nx_binary(binary, shape, type, device) do
      case type do
        {:f, 8} ->
          binary
          |> EMLX.from_blob(shape, :uint8, device)
          |> EMLX.astype(:uint16)
          |> EMLX.left_shift(EMLX.scalar_tensor(8, :uint16, device))
          |> EMLX.view(:float16)

        {:f8_e4m3fn, 8} ->
          binary
          |> EMLX.from_blob(shape, :uint8, device)
          |> then(&EMLX.take(table(:e4m3fn_decode, device), &1, 0))
          |> EMLX.view(:float16)

        {kind, bits} when kind in [:s, :u] and bits in [2, 4] ->
          wide =
            if kind == :s,
              do: for(<<x::size(bits)-signed <- binary>>, into: <<>>, do: <<x::8-signed>>),
              else: for(<<x::size(bits) <- binary>>, into: <<>>, do: <<x::8>>)

          EMLX.from_blob(wide, shape, Convert.mlx_type(type), device)

        _ ->
          EMLX.from_blob(binary, shape, Convert.mlx_type(type), device)
      end
    end

    @doc false
    # The Nx binary of the first `limit` elements (nil: all) of an MLX array
    # storing a `type` tensor.
    def to_nx_binary({device, _} = array, type, limit) do
      case type do
        {:f, 8} ->
          array
          |> EMLX.view(:uint16)
          |> EMLX.right_shift(EMLX.scalar_tensor(8, :uint16, device))
          |> EMLX.astype(:uint8)
          |> blob(limit, type)

        {:f8_e4m3fn, 8} ->
          table(:e4m3fn_encode, device)
          |> EMLX.take(EMLX.view(array, :uint16), 0)
          |> blob(limit, type)

        _ when type in @narrow_ints ->
          blob(array, limit, type, &pack(&1, type))

        _ ->
          blob(array, limit, type)
      end
    end

    # Bytes holding one integer each, packed `bits` to an integer.
    # (Literal sizes: OTP 25's compiler rejects a variable size here.)
    defp pack(bytes, {_, 2}), do: for(<<x::8 <- bytes>>, into: <<>>, do: <<x::2>>)
    defp pack(bytes, {_, 4}), do: for(<<x::8 <- bytes>>, into: <<>>, do: <<x::4>>)

    # The telemetry span of the read carries the Nx type.
    defp blob(array, limit, type, finish \\ &Function.identity/1),
      do: EMLX.Native.to_blob(array, limit, type, finish)

    ## Narrowing op results

    @doc false
    # Rounds (f8) or wraps (2/4-bit integers) an MLX array holding a `type`
    # op result to the values `type` can hold. Other types pass through.
    def narrow({device, _} = array, type) do
      case type do
        {:f, 8} ->
          array
          |> EMLX.view(:uint16)
          |> EMLX.bitwise_and(EMLX.scalar_tensor(0xFF00, :uint16, device))
          |> EMLX.view(:float16)

        {:f8_e4m3fn, 8} ->
          table(:e4m3fn_round, device)
          |> EMLX.take(EMLX.view(array, :uint16), 0)
          |> EMLX.view(:float16)

        {:s, bits} when bits in [2, 4] ->
          shift = EMLX.scalar_tensor(8 - bits, :int8, device)
          array |> EMLX.left_shift(shift) |> EMLX.right_shift(shift)

        {:u, bits} when bits in [2, 4] ->
          EMLX.bitwise_and(array, EMLX.scalar_tensor((1 <<< bits) - 1, :uint8, device))

        _ ->
          array
      end
    end

    ## E4M3FN tables

    # :e4m3fn_decode  256 entries:   f8 byte -> float16 bits
    # :e4m3fn_encode  65536 entries: float16 bits -> f8 byte
    # :e4m3fn_round   65536 entries: float16 bits -> float16 bits of the rounded value
    defp table(name, device) do
      key = {__MODULE__, name, device}

      case :persistent_term.get(key, nil) do
        nil ->
          {binary, mlx} = table_binary(name)
          size = div(byte_size(binary), if(mlx == :uint8, do: 1, else: 2))
          array = EMLX.from_blob(binary, {size}, mlx, device)
          :ok = EMLX.eval(array)
          :persistent_term.put(key, array)
          array

        array ->
          array
      end
    end

    defp table_binary(:e4m3fn_decode) do
      bin =
        for byte <- 0..255, into: <<>> do
          f16_bits(Nx.Floating.load_f8_e4m3fn(<<byte>>))
        end

      {bin, :uint16}
    end

    defp table_binary(:e4m3fn_encode) do
      bin = for bits <- 0..0xFFFF, into: <<>>, do: Nx.Floating.dump_f8_e4m3fn(f16_value(bits))
      {bin, :uint8}
    end

    defp table_binary(:e4m3fn_round) do
      {decode, _} = table_binary(:e4m3fn_decode)
      {encode, _} = table_binary(:e4m3fn_encode)
      bin = for <<byte <- encode>>, into: <<>>, do: binary_part(decode, byte * 2, 2)
      {bin, :uint16}
    end

    # The float16 bits (native endian) of a number or NaN (E4M3FN has no infinities).
    defp f16_bits(:nan), do: Nx.Type.nan_binary({:f, 16})
    defp f16_bits(x), do: <<x::float-16-native>>

    # The value of float16 bits given as an integer.
    defp f16_value(bits) do
      case <<bits::16-native>> do
        <<x::float-16-native>> -> x
        _ -> Nx.Shared.read_non_finite(<<bits::16-native>>, 16)
      end
    end
  end
end
