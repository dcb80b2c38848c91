if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Creation do
    @moduledoc false
    # Creation, conversion and memory callbacks of EMLX.Backend: constants,
    # iota, eye, binaries, copies between devices and backends, batching,
    # inspect and pointers.

    alias Nx.Tensor, as: T
    alias EMLX.Backend, as: B
    alias EMLX.Backend.{Convert, Storage}

    ## Creation

    def constant(%T{shape: shape, type: type} = out, number, backend_options) do
      device = Convert.device_option(backend_options)
      Convert.check_device_type!(device, type)
      mlx = Convert.mlx_type(type)

      # A scalar is an array that already holds its value (no graph node to
      # evaluate); other shapes fill a buffer with it.
      case shape do
        {} -> EMLX.scalar_tensor(number, mlx, device)
        _ -> EMLX.full(number, shape, mlx, device)
      end
      |> Convert.to_nx_elementwise(out)
    end

    def iota(%T{shape: shape, type: type} = out, axis, backend_options) do
      device = Convert.device_option(backend_options)
      Convert.check_device_type!(device, type)

      # Counting in int64 and converting is exact for every type (and rounds
      # large counts into small float types the way Nx writes them).
      array =
        case axis do
          nil ->
            EMLX.arange(0, Nx.size(shape), 1, true, device) |> EMLX.reshape(shape)

          axis ->
            dim = elem(shape, axis)
            line_shape = Tuple.duplicate(1, tuple_size(shape)) |> put_elem(axis, dim)

            EMLX.arange(0, dim, 1, true, device)
            |> EMLX.reshape(line_shape)
            |> EMLX.broadcast_to(shape)
        end

      array |> EMLX.astype(Convert.mlx_type(type)) |> Convert.to_nx(out)
    end

    def eye(%T{shape: shape, type: type} = out, backend_options) do
      device = Convert.device_option(backend_options)
      Convert.check_device_type!(device, type)
      rank = tuple_size(shape)

      EMLX.eye(elem(shape, rank - 2), elem(shape, rank - 1), Convert.mlx_type(type), device)
      |> EMLX.broadcast_to(shape)
      |> Convert.to_nx(out)
    end

    ## Binaries

    def from_binary(%T{shape: shape, type: type} = out, binary, backend_options) do
      device = Convert.device_option(backend_options)
      Convert.check_device_type!(device, type)
      expected = Nx.size(shape) * elem(type, 1)

      if bit_size(binary) != expected do
        raise ArgumentError,
              "from_binary expects #{expected} bits for a #{inspect(type)} tensor of shape " <>
                "#{inspect(shape)}, got #{bit_size(binary)} bits"
      end

      binary
      |> Storage.from_nx_binary(shape, type, device)
      |> Convert.to_nx_moved(out)
    end

    def to_binary(%T{type: type} = tensor, limit) do
      Storage.to_nx_binary(Convert.from_nx(tensor), type, limit)
    end

    ## Copies

    def backend_copy(%T{data: %B{quantization_config: cfg} = data} = tensor, EMLX.Backend, opts) when cfg != nil do
      # The packed codes and the scales and biases move together.
      codes =
        backend_copy(
          %{tensor | type: data.type, shape: data.shape, data: %{data | quantization_config: nil}},
          EMLX.Backend,
          opts
        )

      scales = backend_copy(cfg.scales, EMLX.Backend, opts)
      biases = cfg.biases && backend_copy(cfg.biases, EMLX.Backend, opts)
      %{tensor | data: %{codes.data | quantization_config: %{cfg | scales: scales, biases: biases}}}
    end

    def backend_copy(%T{data: %B{quantization_config: cfg}}, backend, _opts) when cfg != nil do
      raise ArgumentError,
            "a quantized tensor (#{cfg.bits}-bit #{cfg.mode} codes made by EMLX.Quantization.quantize/2) " <>
              "holds MLX's packed codes, which only EMLX.Backend can hold, not #{inspect(backend)}. " <>
              "Nx.backend_copy/2 and Nx.backend_transfer/2 to {EMLX.Backend, device: ...} keep it quantized; " <>
              "for another backend copy its values: EMLX.Quantization.dequantize(tensor) |> Nx.backend_copy(#{inspect(backend)})"
    end

    def backend_copy(%T{data: %B{ref: {device, _} = ref}} = tensor, EMLX.Backend, opts) do
      target = Convert.device_option(opts)
      Convert.check_device_type!(target, tensor.type)

      # MLX arrays are immutable, but a copy must outlive a deallocation of
      # the original, so it gets its own array (built on the target device).
      array = if target == device, do: EMLX.copy(ref), else: EMLX.to_device(ref, target)
      Convert.to_nx_moved(array, tensor)
    end

    def backend_copy(tensor, backend, opts) do
      backend.from_binary(tensor, to_binary(tensor, Nx.size(tensor)), opts)
    end

    def backend_transfer(%T{data: %B{ref: {device, _}}} = tensor, EMLX.Backend, opts) do
      if Convert.device_option(opts) == device do
        tensor
      else
        copy = backend_copy(tensor, EMLX.Backend, opts)
        backend_deallocate(tensor)
        copy
      end
    end

    def backend_transfer(tensor, backend, opts) do
      copy = backend_copy(tensor, backend, opts)
      backend_deallocate(tensor)
      copy
    end

    def backend_deallocate(%T{data: %B{ref: ref, quantization_config: cfg}}) when cfg != nil do
      for t <- [cfg.scales, cfg.biases], t != nil, do: Nx.backend_deallocate(t)
      EMLX.deallocate(ref)
    end

    def backend_deallocate(%T{data: %B{ref: ref}}), do: EMLX.deallocate(ref)

    ## Batching

    def to_batched(%T{shape: out_shape} = out, %T{shape: shape} = tensor, opts) do
      leftover = opts[:leftover]
      batch = elem(out_shape, 0)
      total = elem(shape, 0)
      full = div(total, batch)
      rest = rem(total, batch)
      ref = Convert.from_nx(tensor)
      rank = tuple_size(shape)
      ends = Tuple.to_list(shape) |> tl()

      # The last, partial batch under leftover: :repeat wraps around to the start.
      source =
        if rest != 0 and leftover == :repeat do
          head = EMLX.slice(ref, List.duplicate(0, rank), [batch - rest | ends], List.duplicate(1, rank))
          EMLX.concatenate([ref, head], 0)
        else
          ref
        end

      count = if rest != 0 and leftover == :repeat, do: full + 1, else: full

      Stream.map(0..(count - 1)//1, fn i ->
        source
        |> EMLX.slice([i * batch | List.duplicate(0, rank - 1)], [(i + 1) * batch | ends], List.duplicate(1, rank))
        |> Convert.to_nx_moved(out)
      end)
    end

    ## Inspect

    def inspect(%T{data: %B{ref: {device, _}, quantization_config: cfg}}, _inspect_opts) when cfg != nil do
      "EMLX.Backend<#{device}, quantized: #{cfg.bits}-bit #{cfg.mode} codes in groups of #{cfg.group_size}; " <>
        "EMLX.Quantization.dequantize/1 gives the values>"
    end

    def inspect(%T{data: %B{ref: {device, _}}} = tensor, inspect_opts) do
      limit = if inspect_opts.limit == :infinity, do: :infinity, else: inspect_opts.limit + 1
      count = if limit == :infinity, do: Nx.size(tensor), else: min(limit, Nx.size(tensor))

      doc =
        case tensor.type do
          {kind, bits} when bits in [2, 4] ->
            # Nx.Backend.inspect/3 reads byte-aligned elements: show the
            # 8-bit integers that hold the values.
            blob = EMLX.to_blob(Convert.from_nx(tensor), count)
            Nx.Backend.inspect(%{tensor | type: {kind, 8}}, blob, inspect_opts)

          _ ->
            Nx.Backend.inspect(tensor, to_binary(tensor, count), inspect_opts)
        end

      if Application.get_env(:emlx, :inspect_device, true) do
        Inspect.Algebra.concat(["EMLX.Backend<#{device}>", Inspect.Algebra.line(), doc])
      else
        doc
      end
    end

    ## Pointers

    # The pointer is to MLX's own buffer (:local), or to a shared-memory copy
    # of it (:ipc, removed by the receiver's from_pointer/5). from_pointer/5
    # copies the bytes into a new MLX array. Types that MLX stores wider
    # (f8, 2- and 4-bit integers) have no buffer in Nx's layout and raise.
    def to_pointer(%T{type: type} = tensor, opts) do
      opts = Keyword.validate!(opts, mode: :local, permissions: 0o400)
      check_pointer_type!(type)
      ref = Convert.from_nx(tensor)

      case opts[:mode] do
        :local ->
          {address, size} = EMLX.tensor_data_ptr(ref)
          %Nx.Pointer{kind: :local, address: address, data_size: size}

        :ipc ->
          {name, size} = EMLX.tensor_to_shm(ref, opts[:permissions])
          %Nx.Pointer{kind: :ipc, handle: name, data_size: size}

        other ->
          raise ArgumentError, "to_pointer expects mode: :local or :ipc, got: #{inspect(other)}"
      end
    end

    def from_pointer(%Nx.Pointer{} = pointer, type, shape, backend_opts, opts) do
      device = Convert.device_option(backend_opts)
      Convert.check_device_type!(device, type)
      check_pointer_type!(type)
      names = opts[:names] || List.duplicate(nil, tuple_size(shape))
      out = %T{shape: shape, type: type, names: names, data: nil}
      bytes = div(Nx.size(shape) * elem(type, 1), 8)
      mlx = Convert.mlx_type(type)

      if pointer.data_size not in [nil, bytes] do
        raise ArgumentError,
              "from_pointer: the pointer holds #{pointer.data_size} bytes, but a #{inspect(type)} " <>
                "tensor of shape #{inspect(shape)} needs #{bytes}"
      end

      array =
        case pointer do
          %Nx.Pointer{kind: :local, address: address} when is_integer(address) ->
            EMLX.from_address(address, bytes, shape, mlx, device)

          %Nx.Pointer{kind: :ipc, handle: name} when is_binary(name) ->
            EMLX.from_shm(name, bytes, shape, mlx, device)

          other ->
            raise ArgumentError,
                  "from_pointer expects a :local pointer with an address or an :ipc pointer with a handle, " <>
                    "got: #{inspect(other)}"
        end

      Convert.to_nx_moved(array, out)
    end

    defp check_pointer_type!({kind, bits} = type) when bits < 8 or kind == :f8_e4m3fn or type == {:f, 8} do
      raise ArgumentError,
            "EMLX.Backend stores #{inspect(type)} tensors in a wider MLX type, so they have no " <>
              "buffer in Nx's layout to point to; convert them first (Nx.as_type/2)"
    end

    defp check_pointer_type!(_type), do: :ok
  end
end
