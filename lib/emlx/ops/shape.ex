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
       """, []}
    ]
  end
end
