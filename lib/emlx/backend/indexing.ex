if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Indexing do
    @moduledoc false
    # Indexing callbacks of EMLX.Backend: gather, indexed_add, indexed_put
    # (and the take/take_along_axis blocks, through EMLX.Backend.Block).
    #
    # Out-of-range indices never read or write outside a tensor (the EMLX
    # ops guard them): gather and take clamp indices into range, indexed_add
    # and indexed_put drop updates whose index is out of range, as XLA does.
    # Nx.BinaryBackend raises for them instead; checking means reading a
    # boolean back from the device, which `config :emlx, enable_bounds_check:
    # true` does (EMLX.Debug).

    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert

    def gather(out, %T{shape: shape} = tensor, %T{} = indices, opts) do
      axes = opts[:axes]
      device = Convert.first_device([tensor, indices])
      x = Convert.from_nx(tensor, device)
      slice_sizes = slice_sizes(shape, axes)

      x
      |> EMLX.gather(index_list(indices, device, :gather, limits(shape, axes)), axes, slice_sizes)
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

      name = if op == :scatter, do: :indexed_put, else: :indexed_add

      apply(EMLX, op, [x, index_list(indices, device, name, limits(shape, axes)), upd, axes])
      |> Convert.to_nx(out)
    end

    # Slices of size 1 along the indexed axes, whole along the others.
    defp slice_sizes(shape, axes) do
      Enum.reduce(axes, shape, fn axis, acc -> put_elem(acc, axis, 1) end)
    end

    defp limits(shape, axes), do: Enum.map(axes, &elem(shape, &1))

    # One index tensor per indexed axis, from the last axis of `indices`
    # (checked against `limits` under :enable_bounds_check, see EMLX.Debug).
    defp index_list(%T{shape: shape} = indices, device, op, limits) do
      rank = tuple_size(shape)
      depth = elem(shape, rank - 1)
      idx = indices |> Convert.from_nx(device) |> EMLX.Debug.check_indices!(op, limits)
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
