if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Quantization.Config do
    @moduledoc """
    What a quantized tensor (see `EMLX.Quantization`) carries besides its
    packed codes: one scale and one bias per group of `group_size` values
    (`Nx` tensors of shape `{out, in / group_size}`), the code width `bits`,
    and `transpose` (`nil` means the weight is stored `{out, in}` and
    multiplied transposed, as linear layers keep it). Only MLX's `"affine"`
    mode is supported.
    """

    @enforce_keys [:scales, :biases, :group_size, :bits]
    defstruct [:scales, :biases, :group_size, :bits, transpose: nil, mode: "affine"]

    @type t :: %__MODULE__{
            scales: Nx.Tensor.t(),
            biases: Nx.Tensor.t(),
            group_size: 32 | 64 | 128,
            bits: 2 | 4 | 8,
            transpose: boolean() | nil,
            mode: String.t()
          }
  end
end
