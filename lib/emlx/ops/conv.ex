defmodule EMLX.Ops.Conv do
  @moduledoc false
  # Convolution. Entries: see EMLX.Ops. Native twin: native/bridge/ops/conv.cc.

  def table do
    [
      {:conv_general,
       [
         tensor_input: :tensor,
         tensor_kernel: :tensor,
         strides: :ints,
         padding_low: :ints,
         padding_high: :ints,
         kernel_dilation: :ints,
         input_dilation: :ints,
         feature_group_count: :int
       ],
       """
       N-dimensional convolution (cross-correlation: the kernel is not flipped)
       in MLX's channels-last layout: `tensor_input` is (N, spatial…, C_in),
       `tensor_kernel` is (C_out, spatial…, C_in / feature_group_count), the
       result is (N, spatial…, C_out). The lists have one entry per spatial
       axis (an empty list means all 1, or all 0 for paddings); strides and
       dilations must be positive; a negative padding crops the input.
       Floating-point types only.

           iex> x = EMLX.arange(1, 5, 1, false, :cpu) |> EMLX.reshape({1, 4, 1})
           iex> k = EMLX.ones({1, 2, 1}, :float32, :cpu)
           iex> EMLX.conv_general(x, k, [1], [0], [0], [1], [1], 1) |> EMLX.to_blob()
           <<3.0::float-32-native, 5.0::float-32-native, 7.0::float-32-native>>
       """, []}
    ]
  end
end
