if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Shape do
    @moduledoc false
    # Shape callbacks of EMLX.Backend: reshape, squeeze, broadcast,
    # transpose, pad (negative and interior padding included), reverse,
    # slice and put_slice (static or tensor start indices), concatenate and
    # stack.

    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert

    def reshape(%T{shape: shape} = out, tensor) do
      tensor |> Convert.from_nx() |> EMLX.reshape(shape) |> Convert.to_nx_same(out)
    end

    def squeeze(%T{shape: shape} = out, tensor, _axes) do
      tensor |> Convert.from_nx() |> EMLX.reshape(shape) |> Convert.to_nx_same(out)
    end

    def broadcast(%T{type: type} = out, %T{shape: from} = tensor, shape, axes) do
      # Put the tensor's axes where `axes` says, size-1 axes elsewhere.
      aligned =
        Enum.zip(axes, Tuple.to_list(from))
        |> Enum.reduce(Tuple.duplicate(1, tuple_size(shape)), fn {axis, dim}, acc -> put_elem(acc, axis, dim) end)

      tensor
      |> Convert.from_nx(Convert.first_device([tensor]), type)
      |> EMLX.reshape(aligned)
      |> EMLX.broadcast_to(shape)
      |> Convert.to_nx_same(out)
    end

    def transpose(out, tensor, axes) do
      tensor |> Convert.from_nx() |> EMLX.transpose(axes) |> Convert.to_nx_same(out)
    end

    ## Pad

    def pad(%T{type: type} = out, tensor, pad_value, config) do
      device = Convert.first_device([tensor, pad_value])
      mlx = Convert.mlx_type(type)
      x = Convert.from_nx(tensor, device, mlx)
      value = Convert.from_nx(pad_value, device, mlx)

      x |> pad_ref(config, value) |> Convert.to_nx(out)
    end

    @doc false
    # The MLX array padded by `config` ({low, high, interior} per axis) with
    # the 0-d array `value` (of x's type).
    def pad_ref(x, config, value) do
      config
      |> Enum.with_index()
      |> Enum.reduce(x, fn {{_low, _high, interior}, axis}, acc -> interior_pad(acc, axis, interior, value) end)
      |> edge_pad(config, value)
    end

    # n elements become n + (n - 1) * interior: each element is followed by
    # `interior` pad values (through a new axis), and the trailing ones go.
    defp interior_pad(x, _axis, 0, _value), do: x

    defp interior_pad(x, axis, interior, value) do
      shape = EMLX.shape(x)
      n = elem(shape, axis)

      if n == 0 do
        x
      else
        rank = tuple_size(shape)
        expanded = Tuple.insert_at(shape, axis + 1, 1)
        padded = EMLX.pad(EMLX.reshape(x, expanded), [axis + 1], [0], [interior], value)
        merged = put_elem(shape, axis, n * (interior + 1))
        stops = shape |> put_elem(axis, n * (interior + 1) - interior) |> Tuple.to_list()

        padded
        |> EMLX.reshape(merged)
        |> EMLX.slice(List.duplicate(0, rank), stops, List.duplicate(1, rank))
      end
    end

    # Positive low/high padding adds pad values, negative padding removes
    # elements (after the positive padding of the other side).
    defp edge_pad(x, config, value) do
      lows = Enum.map(config, fn {low, _, _} -> max(low, 0) end)
      highs = Enum.map(config, fn {_, high, _} -> max(high, 0) end)
      rank = length(config)

      x =
        if Enum.any?(lows, &(&1 > 0)) or Enum.any?(highs, &(&1 > 0)),
          do: EMLX.pad(x, Enum.to_list(0..(rank - 1)//1), lows, highs, value),
          else: x

      if Enum.any?(config, fn {low, high, _} -> low < 0 or high < 0 end) do
        dims = Tuple.to_list(EMLX.shape(x))
        starts = Enum.map(config, fn {low, _, _} -> max(-low, 0) end)
        stops = Enum.zip_with(dims, config, fn dim, {_, high, _} -> max(dim - max(-high, 0), 0) end)
        stops = Enum.zip_with(starts, stops, &max/2)
        EMLX.slice(x, starts, stops, List.duplicate(1, rank))
      else
        x
      end
    end

    ## Reverse

    def reverse(out, tensor, axes) do
      tensor |> Convert.from_nx() |> reverse_ref(axes) |> Convert.to_nx_same(out)
    end

    @doc false
    # The MLX array reversed along `axes`: a slice with stride -1 there.
    def reverse_ref(x, axes) do
      dims = x |> EMLX.shape() |> Tuple.to_list()

      if Enum.any?(axes, &(Enum.at(dims, &1) > 0)) do
        {starts, stops, strides} =
          dims
          |> Enum.with_index()
          |> Enum.map(fn {dim, axis} ->
            if axis in axes and dim > 0, do: {dim - 1, -dim - 1, -1}, else: {0, dim, 1}
          end)
          |> unzip3()

        EMLX.slice(x, starts, stops, strides)
      else
        x
      end
    end

    defp unzip3(list) do
      {Enum.map(list, &elem(&1, 0)), Enum.map(list, &elem(&1, 1)), Enum.map(list, &elem(&1, 2))}
    end

    ## Slices

    # `lengths` are the extents before striding (the result has
    # ceil(length / stride) elements along each axis).
    def slice(out, %T{shape: shape} = tensor, starts, lengths, strides) do
      x = Convert.from_nx(tensor)

      if Enum.all?(starts, &is_integer/1) do
        starts = clamp_starts(starts, shape, lengths)
        stops = Enum.zip_with(starts, lengths, &(&1 + &2))
        x |> EMLX.slice(starts, stops, strides) |> Convert.to_nx_same(out)
      else
        rank = tuple_size(shape)
        axes = Enum.to_list(0..(rank - 1)//1)
        window = EMLX.dynamic_slice(x, start_tensor(starts, shape, lengths, x), axes, lengths)

        window =
          if Enum.all?(strides, &(&1 == 1)),
            do: window,
            else: EMLX.slice(window, List.duplicate(0, rank), lengths, strides)

        Convert.to_nx_same(window, out)
      end
    end

    def put_slice(%T{type: type} = out, %T{shape: shape} = tensor, starts, slice) do
      device = Convert.first_device([tensor, slice])
      mlx = Convert.mlx_type(type)
      x = Convert.from_nx(tensor, device, mlx)
      update = Convert.from_nx(slice, device, mlx)
      spans = Tuple.to_list(slice.shape)

      if Enum.all?(starts, &is_integer/1) do
        starts = clamp_starts(starts, shape, spans)
        stops = Enum.zip_with(starts, spans, &(&1 + &2))
        x |> EMLX.slice_update(update, starts, stops) |> Convert.to_nx(out)
      else
        axes = Enum.to_list(0..(tuple_size(shape) - 1))

        x
        |> EMLX.dynamic_slice_update(update, start_tensor(starts, shape, spans, x), axes)
        |> Convert.to_nx(out)
      end
    end

    # Nx clamps start indices so that the slice fits in the tensor.
    defp clamp_starts(starts, shape, spans) do
      Enum.zip_with([starts, Tuple.to_list(shape), spans], fn [start, dim, span] ->
        start |> min(dim - span) |> max(0)
      end)
    end

    # A 1-d int64 tensor of the start indices (integers or scalar tensors);
    # EMLX.dynamic_slice clamps them into range in MLX, so no value has to
    # be read back.
    defp start_tensor(starts, shape, spans, {device, _}) do
      starts
      |> Enum.zip_with(Enum.zip(Tuple.to_list(shape), spans), fn start, {dim, span} ->
        case start do
          n when is_integer(n) -> EMLX.scalar_tensor(n |> min(dim - span) |> max(0), :int64, device)
          # Clamped while unsigned: as int64, a start of 2^63 or more would be negative.
          %T{shape: {}, type: {:u, 64}} = t -> t |> Convert.from_nx(device) |> clamp_u64(dim - span, device)
          %T{shape: {}} = t -> Convert.from_nx(t, device, :int64)
        end
      end)
      |> EMLX.stack(0)
    end

    defp clamp_u64(start, hi, device) do
      start |> EMLX.minimum(EMLX.scalar_tensor(max(hi, 0), :uint64, device)) |> EMLX.astype(:int64)
    end

    ## Joining

    def concatenate(%T{type: type} = out, tensors, axis) do
      device = Convert.first_device(tensors)
      mlx = Convert.mlx_type(type)

      tensors
      |> Enum.map(&Convert.from_nx(&1, device, mlx))
      |> EMLX.concatenate(axis)
      |> Convert.to_nx_moved(out)
    end

    def stack(%T{type: type} = out, tensors, axis) do
      device = Convert.first_device(tensors)
      mlx = Convert.mlx_type(type)

      tensors
      |> Enum.map(&Convert.from_nx(&1, device, mlx))
      |> EMLX.stack(axis)
      |> Convert.to_nx_moved(out)
    end
  end
end
