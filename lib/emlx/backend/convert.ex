if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Convert do
    @moduledoc false
    # Between Nx tensors and MLX arrays: the one place that knows how an Nx
    # type is stored in MLX (see the type table in EMLX.Backend's moduledoc),
    # which device a tensor lives on, and how op results become tensors.

    alias Nx.Tensor, as: T
    alias EMLX.Backend, as: B
    alias EMLX.Backend.Storage

    ## Devices

    @doc false
    def device_option(opts) when is_list(opts) do
      case opts[:device] do
        nil -> EMLX.default_device()
        device when device in [:cpu, :gpu] -> device
        other -> raise ArgumentError, "unknown EMLX device #{inspect(other)}: expected :cpu or :gpu"
      end
    end

    @doc false
    def device(%T{data: %B{ref: {device, _}}}), do: device
    def device(_), do: nil

    @doc false
    # The device of the first EMLX tensor among `tensors` (the cross-device rule).
    def first_device(tensors) do
      Enum.find_value(tensors, &device/1) || EMLX.default_device()
    end

    ## Types

    @doc false
    # The MLX dtype holding an Nx type.
    def mlx_type({:f, 8}), do: :float16
    def mlx_type({:f8_e4m3fn, 8}), do: :float16
    def mlx_type({:s, bits}) when bits in [2, 4], do: :int8
    def mlx_type({:u, bits}) when bits in [2, 4], do: :uint8

    def mlx_type({:c, 128}),
      do:
        raise(
          ArgumentError,
          "EMLX.Backend cannot hold {:c, 128} tensors: MLX has no complex128. " <>
            "Use {:c, 64} (for example Nx.as_type(t, :c64), or f32 inputs to Nx.fft/2)"
        )

    def mlx_type(type), do: EMLX.Types.mlx_type(type)

    @doc false
    def check_device_type!(:gpu, {:f, 64}),
      do:
        raise(
          ArgumentError,
          "MLX has no float64 on the GPU: keep f64 tensors on the CPU " <>
            "(Nx.backend_transfer(t, {EMLX.Backend, device: :cpu}) or backend: {EMLX.Backend, device: :cpu}) " <>
            "or convert them with Nx.as_type(t, :f32)"
        )

    def check_device_type!(_device, {:c, 128}), do: mlx_type({:c, 128})
    def check_device_type!(_device, _type), do: :ok

    ## Nx -> MLX

    @doc false
    def from_nx(%T{data: %B{quantization_config: nil, ref: ref}}), do: ref
    def from_nx(%T{data: %B{}} = t), do: quantized!(t)
    def from_nx(%T{} = t), do: from_nx(t, EMLX.default_device())

    @doc false
    # Like from_nx/1; a tensor of another backend is copied to `device`.
    def from_nx(%T{data: %B{quantization_config: nil, ref: ref}}, _device), do: ref
    def from_nx(%T{data: %B{}} = t, _device), do: quantized!(t)

    def from_nx(%T{type: type, shape: shape} = t, device) do
      check_device_type!(device, type)
      binary = Nx.to_binary(t)
      Storage.from_nx_binary(binary, shape, type, device)
    end

    # A quantized tensor (EMLX.Quantization) holds packed codes, not its
    # values: only the ops that know the packing may read it.
    defp quantized!(t) do
      raise ArgumentError,
            "this operation cannot take a quantized tensor (#{inspect(t.type)} codes made by " <>
              "EMLX.Quantization.quantize/2): only Nx.dot/2,4,6 with it as the right operand and " <>
              "EMLX.Quantization.dequantize/1 read it; dequantize it first"
    end

    @doc false
    # from_nx/2 converted to `as`: an MLX type, or the MLX type that stores
    # the Nx type `as`. An EMLX.Backend tensor is always stored in
    # mlx_type(t.type) (to_nx/2 and to_nx_moved/2 see to that), so no NIF
    # call is needed to know whether a conversion is.
    def from_nx(t, device, as) when is_tuple(as), do: from_nx(t, device, mlx_type(as))

    def from_nx(%T{type: type} = t, device, mlx) when is_atom(mlx) do
      ref = from_nx(t, device)
      if mlx_type(type) == mlx, do: ref, else: EMLX.astype(ref, mlx)
    end

    @doc false
    # An MLX array converted to `mlx` unless it already has that type (one
    # NIF call to know).
    def astype(ref, mlx) do
      if EMLX.scalar_type(ref) == mlx, do: ref, else: EMLX.astype(ref, mlx)
    end

    ## MLX -> Nx

    @doc false
    def to_nx({device, ref} = array) when is_atom(device) and is_reference(ref) do
      mlx = EMLX.scalar_type(array)
      to_nx(array, Nx.template(EMLX.shape(array), EMLX.Types.nx_type(mlx)))
    end

    @doc false
    # Wraps an op result as a tensor like `out`: converts it to the MLX type
    # storing out.type, narrows it to the values out.type can hold, and
    # checks its shape (a mismatch is a bug here, never a silent result).
    def to_nx({device, _} = array, %T{type: type, shape: shape} = out) do
      check_device_type!(device, type)
      mlx = mlx_type(type)
      # One NIF call tells both the type and the shape.
      {stored, actual} = EMLX.NIF.meta(array)
      array = if stored == mlx, do: array, else: EMLX.astype(array, mlx)
      array = Storage.narrow(array, type)

      if actual != shape do
        raise EMLX.NIFError,
              "EMLX.Backend produced an array of shape #{inspect(actual)} where Nx expects " <>
                "#{inspect(shape)}; please report this bug"
      end

      %T{out | data: %B{ref: array, shape: shape, type: type}}
    end

    @doc false
    # Like to_nx/2 for the results of element-wise ops whose operands were
    # all converted to out's storage type first: MLX gives such an op's
    # result that type and the broadcast shape Nx computed, so neither needs
    # asking (one NIF call less per op); narrow types are still narrowed.
    def to_nx_elementwise({device, _} = array, %T{type: type, shape: shape} = out) do
      check_device_type!(device, type)
      %T{out | data: %B{ref: Storage.narrow(array, type), shape: shape, type: type}}
    end

    @doc false
    # Like to_nx_moved/2 for ops that keep their input's storage type, given
    # an input stored as out.type is (reshape, transpose, slice, ...): no NIF
    # call to check it.
    def to_nx_same({device, _} = array, %T{type: type, shape: shape} = out) do
      check_device_type!(device, type)
      %T{out | data: %B{ref: array, shape: shape, type: type}}
    end

    @doc false
    # Like to_nx/2 for ops that only move values (reshape, transpose, slice):
    # no narrowing needed, the values are already on the type's grid.
    def to_nx_moved({device, _} = array, %T{type: type, shape: shape} = out) do
      check_device_type!(device, type)
      array = astype(array, mlx_type(type))
      %T{out | data: %B{ref: array, shape: shape, type: type}}
    end

    @doc false
    # Row-major strides, in elements, of a tensor with dimensions `dims`.
    def row_strides(dims) do
      dims
      |> Enum.reverse()
      |> Enum.map_reduce(1, fn dim, acc -> {acc, acc * dim} end)
      |> elem(0)
      |> Enum.reverse()
    end
  end
end
