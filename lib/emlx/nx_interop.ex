if Code.ensure_loaded?(Nx) do
  defmodule EMLX.NxInterop do
    @moduledoc false
    # Where EMLX.Fast and EMLX.Quantization meet EMLX.Backend: recognising
    # its tensors, taking their MLX arrays out and wrapping arrays back.
    # EMLX.Backend is reached at run time only, so these modules compile
    # (and run their Nx fallbacks) in a build without it.

    @backend EMLX.Backend

    @doc false
    def emlx?(%Nx.Tensor{data: %{__struct__: @backend}}), do: true
    def emlx?(_), do: false

    @doc false
    # The `{device, ref}` of an EMLX.Backend tensor.
    def ref(%Nx.Tensor{data: %{__struct__: @backend, ref: ref}}), do: ref

    @doc false
    # An MLX array as a tensor shaped and typed like `template`.
    def wrap(ref, template), do: apply(backend!(), :to_nx, [ref, template])

    @doc false
    def to_nx(ref), do: apply(backend!(), :to_nx, [ref])

    @doc false
    # The MLX array of any tensor (copied to EMLX first if needed).
    def from_nx(%Nx.Tensor{} = t), do: if(emlx?(t), do: ref(t), else: apply(backend!(), :from_nx, [t]))

    @doc false
    # The backend's struct for a tensor whose data is `fields`.
    def backend_data(fields), do: struct(backend!(), fields)

    defp backend! do
      if Code.ensure_loaded?(@backend) do
        @backend
      else
        raise ArgumentError, "this needs EMLX.Backend, which is not part of this build of EMLX"
      end
    end
  end
end
