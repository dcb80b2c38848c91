if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Indexing do
    @moduledoc false
    # Indexing callbacks of EMLX.Backend: gather, indexed_add, indexed_put
    # (and the take/take_along_axis blocks, through EMLX.Backend.Block).
    #
    # Out-of-range indices never read or write outside a tensor (the EMLX
    # ops guard them): gather and take clamp indices into range, indexed_add
    # and indexed_put drop updates whose index is out of range, as XLA does.
    # Nx.BinaryBackend raises for them instead; checking would mean reading
    # every index back from the device.

    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert

    def gather(out, %T{shape: shape} = tensor, %T{} = indices, opts) do
      axes = opts[:axes]
      device = Convert.first_device([tensor, indices])
      x = Convert.from_nx(tensor, device)
      slice_sizes = slice_sizes(shape, axes)

      x
      |> EMLX.gather(index_list(indices, device), axes, slice_sizes)
      |> EMLX.reshape(out.shape)
      |> Convert.to_nx_moved(out)
    end

    def indexed_add(out, target, indices, updates, opts), do: scatter(:scatter_add, out, target, indices, updates, opts)
    def indexed_put(out, target, indices, updates, opts), do: scatter(:scatter, out, target, indices, updates, opts)

    defp scatter(op, %T{type: type} = out, %T{shape: shape} = target, indices, updates, opts) do
      axes = opts[:axes]
      device = Convert.first_device([target, indices, updates])
      mlx = Convert.mlx_type(type)
      x = Convert.from_nx(target, device, mlx)
      # MLX wants updates shaped as the index batch followed by one slice per
      # index: the tensor's dimensions, with 1 on the indexed axes.
      batch = indices.shape |> Tuple.delete_at(tuple_size(indices.shape) - 1) |> Tuple.to_list()
      slice = shape |> slice_sizes(axes) |> Tuple.to_list()

      upd =
        updates
        |> Convert.from_nx(device, mlx)
        |> EMLX.reshape(List.to_tuple(batch ++ slice))

      apply(EMLX, op, [x, index_list(indices, device), upd, axes])
      |> Convert.to_nx(out)
    end

    # Slices of size 1 along the indexed axes, whole along the others.
    defp slice_sizes(shape, axes) do
      Enum.reduce(axes, shape, fn axis, acc -> put_elem(acc, axis, 1) end)
    end

    # One index tensor per indexed axis, from the last axis of `indices`.
    defp index_list(%T{shape: shape} = indices, device) do
      rank = tuple_size(shape)
      depth = elem(shape, rank - 1)
      idx = Convert.from_nx(indices, device)
      batch = Tuple.delete_at(shape, rank - 1)
      starts = List.duplicate(0, rank)
      stops = Tuple.to_list(shape)

      for j <- 0..(depth - 1)//1 do
        idx
        |> EMLX.slice(List.replace_at(starts, -1, j), List.replace_at(stops, -1, j + 1), List.duplicate(1, rank))
        |> EMLX.reshape(batch)
      end
    end
  end
end
