defmodule EMLX.Ops.Indexing do
  @moduledoc false
  # Indexing: take, gather, scatter and the window scatters.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/indexing.cc.
  #
  # Out-of-range indices never touch memory outside the tensor: reads clamp
  # them (like XLA), writes drop the update. The docs say so per op.

  @reads """
  Indices must be integer tensors. Out-of-range indices are clamped into
  the axis (negative ones to 0, too large ones to the last position), as
  XLA does; reading from an axis of size 0 raises `ArgumentError`.
  """

  @writes """
  Indices must be integer tensors. An update whose slice would not fit
  entirely in the tensor (a negative index, or one too close to the end) is
  dropped, as XLA does; nothing outside the tensor is ever written.
  """

  def table do
    [
      {:take, [tensor: :tensor, tensorIndices: :tensor, axis: :axis],
       """
       The slices of `tensor` at `tensorIndices` along `axis`: the axis is
       replaced by the shape of the indices.

       #{@reads}
           iex> t = EMLX.arange(10, 15, 1, true, :cpu)
           iex> i = EMLX.from_blob(<<4::32-native, 0::32-native, 99::32-native>>, {3}, :int32, :cpu)
           iex> EMLX.take(t, i, 0) |> EMLX.to_blob()
           <<14::64-native, 10::64-native, 14::64-native>>
       """, []},
      {:take_along_axis, [tensor: :tensor, tensorIndices: :tensor, axis: :axis],
       """
       Picks, along `axis`, the element at each index of `tensorIndices`, which
       has the rank of `tensor` and broadcasts against it on the other axes.

       #{@reads}
           iex> t = EMLX.arange(0, 6, 1, true, :cpu) |> EMLX.reshape({2, 3})
           iex> i = EMLX.from_blob(<<2::32-native, 0::32-native>>, {2, 1}, :int32, :cpu)
           iex> EMLX.take_along_axis(t, i, 1) |> EMLX.to_blob()
           <<2::64-native, 3::64-native>>
       """, []},
      {:gather, [tensor: :tensor, indices: :tensors, axes: :axes, slice_sizes: :shape],
       """
       Slices of `slice_sizes` (one size per axis of `tensor`) starting at the
       positions given by `indices`, a list with one integer tensor per entry
       of `axes` (broadcast together); the other axes start at 0. The result
       has the broadcast index shape followed by `slice_sizes`.

       Starts are clamped so that each slice fits in its axis, as XLA does, so
       out-of-range indices never read outside the tensor.

           iex> t = EMLX.arange(0, 6, 1, true, :cpu) |> EMLX.reshape({3, 2})
           iex> rows = EMLX.from_blob(<<2::32-native, 0::32-native>>, {2}, :int32, :cpu)
           iex> EMLX.gather(t, [rows], [0], [1, 2]) |> EMLX.to_blob()
           <<4::64-native, 5::64-native, 0::64-native, 1::64-native>>
       """, []},
      {:scatter, [tensor: :tensor, indices: :tensors, tensor_updates: :tensor, axes: :axes],
       """
       A copy of `tensor` with slices replaced by `tensor_updates`, which has the
       broadcast shape of `indices` (one integer tensor per entry of `axes`),
       or a shape that broadcasts to it, followed by one slice dimension per
       axis of `tensor`. Where several
       updates hit one position, which one wins is unspecified.

       #{@writes}
           iex> t = EMLX.full(0, {4}, :int32, :cpu)
           iex> i = EMLX.from_blob(<<1::32-native, 9::32-native>>, {2}, :int32, :cpu)
           iex> u = EMLX.full(5, {2, 1}, :int32, :cpu)
           iex> EMLX.scatter(t, [i], u, [0]) |> EMLX.to_blob()
           <<0::32-native, 5::32-native, 0::32-native, 0::32-native>>
       """, []},
      {:scatter_add, [tensor: :tensor, indices: :tensors, tensor_updates: :tensor, axes: :axes],
       """
       Like `scatter/4`, but adds the updates to the tensor (repeated indices
       add up).

       #{@writes}
           iex> t = EMLX.full(0, {3}, :int32, :cpu)
           iex> i = EMLX.from_blob(<<1::32-native, 1::32-native, -1::32-native>>, {3}, :int32, :cpu)
           iex> u = EMLX.full(5, {3, 1}, :int32, :cpu)
           iex> EMLX.scatter_add(t, [i], u, [0]) |> EMLX.to_blob()
           <<0::32-native, 10::32-native, 0::32-native>>
       """, []}
    ] ++ window_scatters()
  end

  defp window_scatters do
    for {name, what} <- [window_scatter_max: "maximum", window_scatter_min: "minimum"] do
      {name,
       [
         tensor_t: :tensor,
         tensor_source: :tensor,
         tensor_init_value: :tensor,
         window: :shape,
         low_pad: :shape,
         high_pad: :shape,
         strides: :shape
       ],
       """
       The gradient step of #{what} pooling (XLA's select-and-scatter):
       `tensor_t` is padded with `tensor_init_value` (`low_pad`/`high_pad` per
       axis), and in each window (`window` sizes, moved by `strides`) the first
       #{what} in row-major order receives the matching element of
       `tensor_source`, whose shape is the window grid. The result has the
       shape of `tensor_t`, holds `tensor_init_value` plus the sum of what each
       position received (positions in the padding are dropped), and has the
       type of `tensor_source` and `tensor_init_value` together.

           iex> t = EMLX.from_blob(<<1::32-native, 5::32-native, 2::32-native, 0::32-native>>, {4}, :int32, :cpu)
           iex> src = EMLX.from_blob(<<10::32-native, 20::32-native>>, {2}, :int32, :cpu)
           iex> init = EMLX.scalar_tensor(0, :int32, :cpu)
           iex> EMLX.#{name}(t, src, init, [2], [0], [0], [2]) |> EMLX.to_blob()
           #{if name == :window_scatter_max, do: "<<0::32-native, 10::32-native, 20::32-native, 0::32-native>>", else: "<<10::32-native, 0::32-native, 0::32-native, 20::32-native>>"}
       """, []}
    end
  end
end
