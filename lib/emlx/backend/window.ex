if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Window do
    @moduledoc false
    # Window callbacks of EMLX.Backend.
    #
    # window_sum/product/max/min pad the tensor with the reduction's
    # identity, view every window through as_strided (no copy: the view has
    # the output's axes followed by the window's) and reduce the window axes.
    # window_reduce with an Elixir function runs in Nx.BinaryBackend (see
    # EMLX.Backend.Reduction.reduce/5). window_scatter_max/min select in
    # the same windows, the last of equal candidates (as Nx.BinaryBackend).

    alias Nx.Tensor, as: T
    alias EMLX.Backend.{Convert, Reduction}

    @window_ops [window_sum: :sum, window_product: :product, window_max: :max, window_min: :min]

    for {name, reduction} <- @window_ops do
      def unquote(name)(%T{type: type} = out, tensor, window, opts) do
        x = Convert.from_nx(tensor, Convert.first_device([tensor]), type)
        init = identity(unquote(reduction), type, x)
        windows = windows(x, init, window, opts)
        rank = tuple_size(window)
        window_axes = Enum.to_list(rank..(2 * rank - 1)//1)

        windows
        |> EMLX.unquote(reduction)(window_axes, false)
        |> Convert.to_nx(out)
      end
    end

    # The identity of each reduction, as a scalar of x's type.
    defp identity(:sum, _type, x), do: scalar(0, x)
    defp identity(:product, _type, x), do: scalar(1, x)
    defp identity(:max, type, x), do: scalar(lowest(type), x)
    defp identity(:min, type, x), do: scalar(highest(type), x)

    defp lowest({kind, _}) when kind in [:f, :bf, :f8_e4m3fn], do: :neg_infinity
    defp lowest(type), do: Nx.Constants.min_finite(type, backend: Nx.BinaryBackend) |> Nx.to_number()
    defp highest({kind, _}) when kind in [:f, :bf, :f8_e4m3fn], do: :infinity
    defp highest(type), do: Nx.Constants.max_finite(type, backend: Nx.BinaryBackend) |> Nx.to_number()

    defp scalar(value, {device, _} = x), do: EMLX.scalar_tensor(value, EMLX.scalar_type(x), device)

    # A view of x (padded with init) whose shape is the output shape
    # followed by the window shape.
    defp windows(x, init, window, opts) do
      rank = tuple_size(window)
      padding = opts[:padding] || List.duplicate({0, 0}, rank)
      strides = opts[:strides] || List.duplicate(1, rank)
      dilations = opts[:window_dilations] || List.duplicate(1, rank)

      padded = EMLX.Backend.Shape.pad_ref(x, Enum.map(padding, fn {lo, hi} -> {lo, hi, 0} end), init)
      dims = padded |> EMLX.shape() |> Tuple.to_list()
      window = Tuple.to_list(window)

      {view_shape, view_strides} = view(dims, window, strides, dilations)
      out_dims = Enum.take(view_shape, rank)

      if Enum.any?(out_dims ++ window, &(&1 == 0)) do
        # No windows (or empty ones): nothing to view.
        EMLX.broadcast_to(EMLX.reshape(init, {}), List.to_tuple(out_dims ++ window))
      else
        EMLX.as_strided(padded, List.to_tuple(view_shape), view_strides, 0)
      end
    end

    # The as_strided shape (output dims ++ window dims) and element strides
    # that view every window of a row-major array of `dims`.
    defp view(dims, window, strides, dilations) do
      out_dims =
        Enum.zip_with([dims, window, strides, dilations], fn [dim, w, s, d] ->
          max(div(dim - (w - 1) * d - 1, s) + 1, 0)
        end)

      elem_strides = Convert.row_strides(dims)

      view_strides =
        Enum.zip_with(elem_strides, strides, &(&1 * &2)) ++ Enum.zip_with(elem_strides, dilations, &(&1 * &2))

      {out_dims ++ window, view_strides}
    end

    ## window_reduce with an Elixir function

    def window_reduce(out, tensor, acc, window, opts, fun) do
      Reduction.on_binary_backend(out, [tensor, acc], fn [t, a], binary_out ->
        Nx.BinaryBackend.window_reduce(binary_out, t, a, window, opts, Reduction.binary_fun(fun))
      end)
    end

    ## window scatters

    def window_scatter_max(out, tensor, source, init_value, window, opts),
      do: window_scatter(:window_scatter_max, out, tensor, source, init_value, window, opts)

    def window_scatter_min(out, tensor, source, init_value, window, opts),
      do: window_scatter(:window_scatter_min, out, tensor, source, init_value, window, opts)

    # Pads the tensor with init_value (which takes part in the selection, as
    # in Nx), picks in every window the position of the last maximum (or
    # minimum) in row-major order, as Nx.BinaryBackend does, adds the
    # source values there into a tensor of init_value, and crops the padding
    # (selections that fell in it are dropped).
    defp window_scatter(op, %T{type: type} = out, tensor, source, init_value, window, opts) do
      device = Convert.first_device([tensor, source, init_value])
      t = Convert.from_nx(tensor, device)
      t_type = EMLX.scalar_type(t)
      out_type = Convert.mlx_type(type)
      init = init_value |> Convert.from_nx(device) |> EMLX.reshape({})
      padding = opts[:padding]
      rank = tuple_size(window)

      padded =
        EMLX.Backend.Shape.pad_ref(t, Enum.map(padding, fn {lo, hi} -> {lo, hi, 0} end), Convert.astype(init, t_type))

      dims = padded |> EMLX.shape() |> Tuple.to_list()
      total = Enum.product(dims)
      {view_shape, view_strides} = view(dims, Tuple.to_list(window), opts[:strides], List.duplicate(1, rank))
      out_dims = Enum.take(view_shape, rank)
      k = window |> Tuple.to_list() |> Enum.product()
      flat_shape = List.to_tuple(out_dims ++ [k])

      values = padded |> EMLX.as_strided(List.to_tuple(view_shape), view_strides, 0) |> EMLX.reshape(flat_shape)

      positions =
        EMLX.arange(0, total, 1, true, device)
        |> EMLX.as_strided(List.to_tuple(view_shape), view_strides, 0)
        |> EMLX.reshape(flat_shape)

      arg = if op == :window_scatter_max, do: :argmax, else: :argmin
      reversed_pick = apply(EMLX, arg, [EMLX.Backend.Shape.reverse_ref(values, [rank]), rank, true])
      pick = EMLX.subtract(EMLX.scalar_tensor(k - 1, :uint32, device), reversed_pick)
      flat = positions |> EMLX.take_along_axis(pick, rank) |> EMLX.reshape(List.to_tuple(out_dims))

      updates =
        source |> Convert.from_nx(device) |> EMLX.astype(out_type) |> EMLX.reshape(List.to_tuple(out_dims ++ [1]))

      summed =
        EMLX.full(0, {total}, out_type, device)
        |> EMLX.scatter_add([flat], updates, [0])
        |> EMLX.reshape(List.to_tuple(dims))

      lows = Enum.map(padding, &elem(&1, 0))
      stops = Enum.zip_with(lows, Tuple.to_list(tensor.shape), &(&1 + &2))

      summed
      |> EMLX.slice(lows, stops, List.duplicate(1, rank))
      |> EMLX.add(Convert.astype(init, out_type))
      |> Convert.to_nx(out)
    end
  end
end
