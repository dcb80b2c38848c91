if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Quantization.Config do
    @moduledoc """
    What a quantized tensor (see `EMLX.Quantization`) carries besides its
    packed codes: one scale per group of `group_size` values (an `Nx` tensor
    of shape `{out, in / group_size}`: floats in the affine mode, `:u8`
    codes in the microscaled ones), one bias per group in the affine mode
    (`nil` in the microscaled ones), the code width `bits`, the `mode`
    (`"affine"`, `"mxfp4"`, `"mxfp8"` or `"nvfp4"`), the `dense_type` the
    weight was quantized from (what `EMLX.Quantization.dequantize/1` gives;
    `nil`: the scales' type), and `transpose` (`nil` means the weight is
    stored `{out, in}` and multiplied transposed, as linear layers keep it).
    """

    @enforce_keys [:scales, :biases, :group_size, :bits]
    defstruct [:scales, :biases, :group_size, :bits, transpose: nil, mode: "affine", dense_type: nil]

    @type t :: %__MODULE__{
            scales: Nx.Tensor.t(),
            biases: Nx.Tensor.t() | nil,
            group_size: pos_integer(),
            bits: 2 | 4 | 8,
            transpose: boolean() | nil,
            mode: String.t(),
            dense_type: Nx.Type.t() | nil
          }
  end
end
