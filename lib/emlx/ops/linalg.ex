defmodule EMLX.Ops.Linalg do
  @moduledoc false
  # Linear algebra. MLX's decompositions run on the CPU only.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/linalg.cc.

  def table do
    [
      # --- linear algebra ---
      {:tensordot, [tensorA: :tensor, tensorB: :tensor, axesA: :axes, axesB: :axes],
       """
       Contracts `axesA` of `tensorA` with `axesB` of `tensorB`.

           iex> a = EMLX.ones({2, 3}, :float32, :cpu)
           iex> EMLX.tensordot(a, a, [1], [1]) |> EMLX.shape()
           {2, 2}
       """, []}
    ]
  end
end
