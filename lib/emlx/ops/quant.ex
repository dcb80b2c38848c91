defmodule EMLX.Ops.Quant do
  @moduledoc false
  # Group-wise quantization: MLX's "affine" mode and its microscaled modes.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/quant.cc.

  @params """
  `group_size` is 32, 64 or 128 and `bits` one of 2, 3, 4, 5, 6 or 8; they
  must be the values the weights were quantized with.
  """

  @modes """
  `mode` is `"affine"` (the default) or one of MLX's
  microscaled floating-point modes, which fix `group_size` and `bits`:
  `"mxfp4"` (32, 4: E2M1 values, a shared power-of-two scale per group),
  `"mxfp8"` (32, 8: E4M3 values) and `"nvfp4"` (16, 4: E2M1 values, an E4M3
  scale per group). Microscaled scales are `:uint8` codes and there are no
  biases (`nil`). On MLX's CPU backend every mode quantizes, dequantizes and
  multiplies.
  """

  def table do
    [
      {:quantize, [tensor: :tensor, group_size: :int, bits: :int, mode: :string],
       """
       Quantizes a float32, float16 or bfloat16 tensor of rank 2 or more along its last
       axis, in groups of `group_size` consecutive values.

       Returns `{w, scales, biases}`:

         * `w` — `:uint32`, the `bits`-bit codes packed 32 / `bits` to a word:
           shape `{..., n * bits / 32}` for a last axis of `n`;
         * `scales` — one per group, shape `{..., n / group_size}`, in the
           input's type (`:uint8` codes in the microscaled modes);
         * `biases` — like `scales` in the affine mode, `nil` in the
           microscaled ones.

       In the affine mode (the default) each value is stored as a code `q` in
       `0..2^bits - 1` standing for `scale * q + bias`. MLX aligns each group's
       grid on its largest-magnitude value (which comes back exactly); a value
       inside the grid comes back within half a step (`abs(scale) / 2`), and
       the opposite end of the group may lie up to one step of
       `(max - min) / (2^bits - 1)` outside the grid, where it is clipped.
       A microscaled value comes back as the nearest point of its 4- or 8-bit
       float grid after dividing by its group's scale (clipped to the grid's
       largest value): within 1/2 (mxfp4), 1/4 (nvfp4) or 1/8 (mxfp8) of the
       group's largest magnitude (0.20, 0.17 and 0.06 seen on random data).
       The last axis must be a multiple of `group_size`.
       #{@params}
       #{@modes}
           iex> x = EMLX.ones({2, 64}, :float32, :cpu)
           iex> {w, scales, biases} = EMLX.quantize(x, 64, 4)
           iex> {EMLX.shape(w), EMLX.scalar_type(w), EMLX.shape(scales), EMLX.shape(biases)}
           {{2, 8}, :uint32, {2, 1}, {2, 1}}
           iex> {w, scales, nil} = EMLX.quantize(EMLX.ones({2, 32}, :float32, :cpu), 32, 4, "mxfp4")
           iex> {EMLX.shape(w), EMLX.shape(scales), EMLX.scalar_type(scales)}
           {{2, 4}, {2, 1}, :uint8}
       """, [out: {:tuple, 3}, defaults: [mode: "affine"]]},
      {:dequantize, [w: :tensor, scales: :tensor, biases: :tensor, group_size: :int, bits: :int, mode: :string],
       """
       The floating-point tensor that `quantize/3,4`'s `{w, scales, biases}`
       stand for: `scale * q + bias` for every packed code `q` in the affine
       mode (the default), in the type of `scales`; in the microscaled modes
       (`biases` `nil`), each code's 4- or 8-bit float times its group's
       scale, as `:float32` (`dequantize/7` picks the type).
       #{@params}
       #{@modes}
           iex> x = EMLX.full(0.5, {1, 32}, :float32, :cpu)
           iex> {w, s, b} = EMLX.quantize(x, 32, 8)
           iex> EMLX.dequantize(w, s, b, 32, 8) |> EMLX.sum([0, 1], false) |> EMLX.item()
           16.0
           iex> {w, s, nil} = EMLX.quantize(x, 32, 8, "mxfp8")
           iex> EMLX.dequantize(w, s, nil, 32, 8, "mxfp8") |> EMLX.sum([0, 1], false) |> EMLX.item()
           16.0
       """, [defaults: [mode: "affine"]]},
      {:dequantize,
       [w: :tensor, scales: :tensor, biases: :tensor, group_size: :int, bits: :int, mode: :string, type: :type],
       """
       `dequantize/6` giving a dense tensor of `type` (a floating-point type).

           iex> x = EMLX.full(0.5, {1, 32}, :float32, :cpu)
           iex> {w, s, nil} = EMLX.quantize(x, 32, 4, "mxfp4")
           iex> EMLX.dequantize(w, s, nil, 32, 4, "mxfp4", :bfloat16) |> EMLX.scalar_type()
           :bfloat16
       """, []},
      {:quantized_matmul,
       [
         x: :tensor,
         w: :tensor,
         scales: :tensor,
         biases: :tensor,
         transpose: :bool,
         group_size: :int,
         bits: :int,
         mode: :string
       ],
       """
       Multiplies `x` by quantized weights without materialising them:
       `x · dequantize(w)ᵀ` when `transpose` is true (the default, weights
       stored `{out, in}` as linear layers keep them), `x · dequantize(w)`
       otherwise.

       `x` is floating-point, `{..., in}`; the result is `{..., out}` in the
       promoted type of `x` and `scales` (the type of `x` in the microscaled
       modes, where `biases` is `nil`). `group_size` defaults to 64, `bits`
       to 4 and `mode` to `"affine"`.
       #{@params}
       #{@modes}
           iex> w = EMLX.ones({3, 64}, :float32, :cpu)
           iex> {qw, s, b} = EMLX.quantize(w, 64, 4)
           iex> x = EMLX.ones({2, 64}, :float32, :cpu)
           iex> out = EMLX.quantized_matmul(x, qw, s, b)
           iex> {EMLX.shape(out), EMLX.max(out, [0, 1], false) |> EMLX.item()}
           {{2, 3}, 64.0}
           iex> {qw, s, nil} = EMLX.quantize(w, 32, 8, "mxfp8")
           iex> EMLX.quantized_matmul(x, qw, s, nil, true, 32, 8, "mxfp8") |> EMLX.max([0, 1], false) |> EMLX.item()
           64.0
       """, [defaults: [transpose: true, group_size: 64, bits: 4, mode: "affine"]]}
    ]
  end
end
