defmodule EMLX.Ops.Shape do
  @moduledoc false
  # Shape, view and type ops.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/shape.cc.

  def table do
    [
      # --- shape and type ---
      {:reshape, [tensor: :tensor, shape: :shape],
       """
       The same elements in a new shape (a tuple or list of dimensions).

           iex> EMLX.ones({2, 3}, :float32, :cpu) |> EMLX.reshape({3, 2}) |> EMLX.shape()
           {3, 2}
       """, []},
      {:broadcast_to, [tensor: :tensor, shape: :shape],
       """
       Broadcasts `tensor` to `shape`.

           iex> EMLX.scalar_tensor(1, :int32, :cpu) |> EMLX.broadcast_to({2, 2}) |> EMLX.shape()
           {2, 2}
       """, []},
      {:astype, [tensor: :tensor, type: :type],
       """
       Converts the elements to `type` (an MLX dtype atom or an Nx type).

           iex> EMLX.scalar_tensor(2.75, :float32, :cpu) |> EMLX.astype(:int32) |> EMLX.item()
           2
       """, []},
      {:view, [tensor: :tensor, type: :type],
       """
       Reinterprets the bytes of `tensor` as `type`; the last dimension scales
       with the ratio of the item sizes.

           iex> EMLX.scalar_tensor(1.0, :float32, :cpu) |> EMLX.reshape({1}) |> EMLX.view(:int32) |> EMLX.to_blob()
           <<1.0::float-32-native>>
       """, []},
      {:transpose, [tensor: :tensor, axes: :axes],
       """
       Permutes the axes.

           iex> EMLX.ones({2, 3}, :float32, :cpu) |> EMLX.transpose([1, 0]) |> EMLX.shape()
           {3, 2}
       """, []},
      {:copy, [tensor: :tensor],
       """
       A new array with the same contents (a separate buffer once evaluated).

           iex> EMLX.ones({2}, :int32, :cpu) |> EMLX.copy() |> EMLX.to_blob()
           <<1::32-native, 1::32-native>>
       """, []},
      {:squeeze, [tensor: :tensor, axes: :axes],
       """
       Removes the given size-1 axes.

           iex> EMLX.ones({1, 3, 1}, :float32, :cpu) |> EMLX.squeeze([0, 2]) |> EMLX.shape()
           {3}
       """, []},
      # --- views, padding, slicing, joining ---
      {:as_strided, [tensor: :tensor, shape: :shape, strides: :ints, offset: :int],
       """
       A view of `shape` over the elements of `tensor` taken in row-major order:
       element `i` of the view is element `offset + sum(i_k * strides_k)`
       (strides in elements, possibly negative or zero). Every reachable
       element must exist, otherwise `ArgumentError`.

           iex> t = EMLX.arange(0, 6, 1, true, :cpu)
           iex> EMLX.as_strided(t, {2, 2}, [2, 1], 1) |> EMLX.to_blob()
           <<1::64-native, 2::64-native, 3::64-native, 4::64-native>>
       """, []},
      {:pad, [tensor: :tensor, axes: :axes, low_pad_size: :ints, high_pad_size: :ints, tensor_pad_value: :tensor],
       """
       Pads each of `axes` with `low_pad_size` and `high_pad_size` copies (lists
       with one non-negative entry per axis) of the 0-d tensor `tensor_pad_value`.

           iex> t = EMLX.arange(1, 3, 1, true, :cpu)
           iex> EMLX.pad(t, [0], [1], [2], EMLX.scalar_tensor(9, :int64, :cpu)) |> EMLX.to_blob()
           <<9::64-native, 1::64-native, 2::64-native, 9::64-native, 9::64-native>>
       """, []},
      {:slice, [tensor: :tensor, starts: :ints, stops: :ints, strides: :ints],
       """
       Elements `starts[k]`, `starts[k] + strides[k]`, … before `stops[k]` on each
       axis (one entry per axis). Negative starts and stops count from the end
       and out-of-range ones are clamped, as in Python; a negative stride walks
       backwards; a zero stride raises.

           iex> t = EMLX.arange(0, 6, 1, true, :cpu)
           iex> EMLX.slice(t, [1], [6], [2]) |> EMLX.to_blob()
           <<1::64-native, 3::64-native, 5::64-native>>
       """, []},
      {:slice_update, [tensor: :tensor, tensor_updates: :tensor, starts: :ints, stops: :ints],
       """
       A copy of `tensor` whose slice `starts`..`stops` (one entry per axis, stride 1)
       is replaced by `tensor_updates` (broadcast to the slice's shape).

           iex> t = EMLX.arange(0, 4, 1, true, :cpu)
           iex> u = EMLX.full(7, {2}, :int64, :cpu)
           iex> EMLX.slice_update(t, u, [1], [3]) |> EMLX.to_blob()
           <<0::64-native, 7::64-native, 7::64-native, 3::64-native>>
       """, []},
      {:concatenate, [tensors: :tensors, axis: :axis],
       """
       Joins a non-empty list of tensors along an existing `axis`; the other
       dimensions must agree, and the types are promoted together.

           iex> a = EMLX.ones({1, 2}, :int32, :cpu)
           iex> EMLX.concatenate([a, a, a], 0) |> EMLX.shape()
           {3, 2}
       """, []},
      {:stack, [tensors: :tensors, axis: :axis],
       """
       Joins a non-empty list of tensors of one shape along a new `axis`.

           iex> a = EMLX.ones({2}, :int32, :cpu)
           iex> EMLX.stack([a, a, a], 1) |> EMLX.shape()
           {2, 3}
       """, []}
    ]
  end
end
