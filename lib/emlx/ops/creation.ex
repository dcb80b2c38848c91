defmodule EMLX.Ops.Creation do
  @moduledoc false
  # Creation ops: tensors from scalars, constants and ranges.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/creation.cc.

  def table do
    [
      # --- creation ---
      {:scalar_tensor, [scalar: :scalar, type: :type, device: :device],
       """
       A 0-d tensor holding `scalar` (an integer, a float, `:nan`, `:infinity`,
       `:neg_infinity` or a `Complex`) as `type` on `device`.

           iex> EMLX.scalar_tensor(3, :int64, :cpu) |> EMLX.item()
           3
       """, []},
      {:full, [value: :scalar, shape: :shape, type: :type, device: :device],
       """
       A tensor of `shape` filled with `value`.

           iex> EMLX.full(1.5, {2, 2}, :float32, :cpu) |> EMLX.sum([0, 1], false) |> EMLX.item()
           6.0
       """, []},
      {:ones, [shape: :shape, type: :type, device: :device],
       """
       A tensor of `shape` filled with ones.

           iex> EMLX.ones({3}, {:s, 32}, :cpu) |> EMLX.sum([0], false) |> EMLX.item()
           3
       """, []},
      {:eye, [m: :int, n: :int, type: :type, device: :device],
       """
       An `m`x`n` tensor with ones on the diagonal.

           iex> EMLX.eye(3, 3, :float32, :cpu) |> EMLX.sum([0, 1], false) |> EMLX.item()
           3.0
       """, []},
      {:arange, [start: :float, stop: :float, step: :float, integer?: :bool, device: :device],
       """
       `start, start + step, …` up to (excluding) `stop`; `:int64` when `integer?`
       is true, `:float32` otherwise.

           iex> EMLX.arange(0, 5, 1, true, :cpu) |> EMLX.sum([0], false) |> EMLX.item()
           10
       """, []}
    ]
  end
end
