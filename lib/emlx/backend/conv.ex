if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Backend.Conv do
    @moduledoc false
    # conv of EMLX.Backend: MLX's conv_general (channels last) for float16,
    # bfloat16 and float32 with 1 to 3 spatial axes (feature-grouped 3-D
    # ones as grouped 2-D ones, which MLX has); matrix products over strided
    # windows otherwise (float64, other ranks). Batch groups become feature
    # groups; negative padding is applied to the input first; complex
    # convolutions combine real ones.

    alias Nx.Tensor, as: T
    alias EMLX.Backend.Convert

    def conv(%T{type: {:c, _}}, input, kernel, opts) do
      # Complex conv from real ones: (a + bi) * (c + di) = (ac - bd) + (ad + bc)i.
      {re_in, im_in} = {Nx.real(input), Nx.imag(input)}
      {re_k, im_k} = {Nx.real(kernel), Nx.imag(kernel)}
      re = Nx.subtract(Nx.conv(re_in, re_k, opts), Nx.conv(im_in, im_k, opts))
      im = Nx.add(Nx.conv(re_in, im_k, opts), Nx.conv(im_in, re_k, opts))
      Nx.complex(re, im)
    end

    def conv(%T{type: type} = out, input, kernel, opts) do
      device = Convert.first_device([input, kernel])
      compute = conv_type(type)
      x = input |> Convert.from_nx(device) |> EMLX.astype(compute) |> EMLX.transpose(opts[:input_permutation])
      k = kernel |> Convert.from_nx(device) |> EMLX.astype(compute) |> EMLX.transpose(opts[:kernel_permutation])
      rank = tuple_size(input.shape)
      spatial = rank - 2
      batch_groups = opts[:batch_group_size]
      feature_groups = opts[:feature_group_size]

      # Batch groups: the input batch splits into `g` blocks, block j feeding
      # output feature group j; as channels that is a feature-grouped conv.
      {x, feature_groups} =
        if batch_groups > 1 do
          {n, c} = {elem(EMLX.shape(x), 0), elem(EMLX.shape(x), 1)}
          rest = x |> EMLX.shape() |> Tuple.to_list() |> Enum.drop(2)

          x =
            x
            |> EMLX.reshape(List.to_tuple([batch_groups, div(n, batch_groups), c | rest]))
            |> EMLX.transpose([1, 0 | Enum.to_list(2..rank)])
            |> EMLX.reshape(List.to_tuple([div(n, batch_groups), batch_groups * c | rest]))

          {x, batch_groups}
        else
          {x, feature_groups}
        end

      # {batch, spatial..., features}
      result =
        if compute == :float64 or spatial not in 1..3 do
          conv_by_windows(x, k, opts, feature_groups)
        else
          {x, padding, input_dilation} = explicit_padding(x, opts[:padding], opts[:input_dilation])
          channels_last = [0 | Enum.to_list(2..(rank - 1)//1)] ++ [1]

          # MLX groups features in 1-D and 2-D only: a grouped 3-D
          # convolution goes through grouped 2-D ones (conv3d_grouped/4).
          conv = if spatial == 3 and feature_groups > 1, do: &conv3d_grouped/4, else: &mlx_conv/4

          conv.(
            EMLX.transpose(x, channels_last),
            EMLX.transpose(k, channels_last),
            %{
              strides: opts[:strides],
              padding: padding,
              kernel_dilation: opts[:kernel_dilation],
              input_dilation: input_dilation
            },
            feature_groups
          )
        end

      # Back to {batch, features, spatial...}, then Nx's output permutation.
      channels_first = [0, spatial + 1 | Enum.to_list(1..spatial//1)]
      inverse = opts[:output_permutation] |> Enum.with_index() |> Enum.sort() |> Enum.map(&elem(&1, 1))

      result
      |> EMLX.transpose(channels_first)
      |> EMLX.transpose(inverse)
      |> EMLX.Debug.check_finite!(:conv)
      |> Convert.to_nx(out)
    end

    # MLX's conv in channels-last layout: x {N, spatial..., C}, k {O,
    # window..., C / groups}; the padding non-negative.
    defp mlx_conv(x, k, p, groups) do
      EMLX.conv_general(
        x,
        k,
        p.strides,
        Enum.map(p.padding, &elem(&1, 0)),
        Enum.map(p.padding, &elem(&1, 1)),
        p.kernel_dilation,
        p.input_dilation,
        groups
      )
    end

    # A feature-grouped 3-D convolution (depthwise, separable, grouped) from
    # grouped 2-D ones. Output depth d reads input depths d * stride + j *
    # dilation for kernel depths j: for each j, the input planes it reads
    # (one strided slice of the depth axis, padded and dilated first) go as
    # a batch of N * D_out images through a grouped 2-D convolution with the
    # kernel's plane j, and the KD results add up. KD 2-D convolutions
    # whatever the number of groups, and nothing read back.
    defp conv3d_grouped({device, _} = x, k, p, groups) do
      [sd | strides_hw] = p.strides
      [{lo, hi} | padding_hw] = p.padding
      [kd_dil | dilation_hw] = p.kernel_dilation
      [id | input_dilation_hw] = p.input_dilation
      zero = EMLX.scalar_tensor(0, EMLX.scalar_type(x), device)
      flat = [{0, 0, 0}, {0, 0, 0}, {0, 0, 0}, {0, 0, 0}]

      x =
        if {lo, hi, id} == {0, 0, 1},
          do: x,
          else: EMLX.Backend.Shape.pad_ref(x, List.replace_at(flat, 1, {lo, hi, id - 1}), zero)

      [n, depth, h, w, c] = Tuple.to_list(EMLX.shape(x))
      [o, kd, kh, kw, cg] = Tuple.to_list(EMLX.shape(k))
      d_out = div(depth - (kd - 1) * kd_dil - 1, sd) + 1

      plane = %{
        p
        | strides: strides_hw,
          padding: padding_hw,
          kernel_dilation: dilation_hw,
          input_dilation: input_dilation_hw
      }

      # (Nx refuses convolutions with an empty input or result, so d_out >= 1.)
      for j <- 0..(kd - 1) do
        start = j * kd_dil
        planes = EMLX.slice(x, [0, start, 0, 0, 0], [n, start + (d_out - 1) * sd + 1, h, w, c], [1, sd, 1, 1, 1])

        kernel =
          k |> EMLX.slice([0, j, 0, 0, 0], [o, j + 1, kh, kw, cg], [1, 1, 1, 1, 1]) |> EMLX.reshape({o, kh, kw, cg})

        out = planes |> EMLX.reshape({n * d_out, h, w, c}) |> mlx_conv(kernel, plane, groups)
        [_, h_out, w_out, _] = Tuple.to_list(EMLX.shape(out))
        EMLX.reshape(out, {n, d_out, h_out, w_out, o})
      end
      |> Enum.reduce(&EMLX.add(&2, &1))
    end

    # MLX convolves float16, bfloat16 and float32 (float64 goes through
    # conv_by_windows/4).
    defp conv_type({:f, 8}), do: :float16
    defp conv_type({:f8_e4m3fn, 8}), do: :float16
    defp conv_type(type), do: Convert.mlx_type(type)

    # MLX takes non-negative padding only: with a negative side, dilate and
    # pad (or crop) the spatial axes of x here and let MLX add nothing.
    defp explicit_padding(x, padding, input_dilation) do
      if Enum.any?(padding, fn {lo, hi} -> lo < 0 or hi < 0 end) do
        {device, _} = x
        zero = EMLX.scalar_tensor(0, EMLX.scalar_type(x), device)
        config = [{0, 0, 0}, {0, 0, 0} | Enum.zip_with(padding, input_dilation, fn {lo, hi}, d -> {lo, hi, d - 1} end)]
        x = EMLX.Backend.Shape.pad_ref(x, config, zero)
        {x, Enum.map(padding, fn _ -> {0, 0} end), Enum.map(input_dilation, fn _ -> 1 end)}
      else
        {x, padding, input_dilation}
      end
    end

    # A convolution as matrix products: every window of the (dilated and
    # padded) input is viewed through as_strided, and each feature group's
    # windows are multiplied by its kernels. For what MLX's conv cannot do
    # (float64, more than 3 spatial axes). Gives {batch, spatial..., features}.
    defp conv_by_windows(x, k, opts, groups) do
      {device, _} = x
      zero = EMLX.scalar_tensor(0, EMLX.scalar_type(x), device)

      config = [
        {0, 0, 0},
        {0, 0, 0} | Enum.zip_with(opts[:padding], opts[:input_dilation], fn {lo, hi}, d -> {lo, hi, d - 1} end)
      ]

      x = EMLX.Backend.Shape.pad_ref(x, config, zero)
      [n, c | dims] = x |> EMLX.shape() |> Tuple.to_list()
      [o, i | window] = k |> EMLX.shape() |> Tuple.to_list()
      strides = opts[:strides]
      dilations = opts[:kernel_dilation]

      out_dims =
        Enum.zip_with([dims, window, strides, dilations], fn [dim, w, s, d] ->
          max(div(dim - (w - 1) * d - 1, s) + 1, 0)
        end)

      [s_n, s_c | s_dims] = Convert.row_strides([n, c | dims])
      view_shape = [n | out_dims] ++ [c | window]

      view_strides =
        [s_n | Enum.zip_with(s_dims, strides, &(&1 * &2))] ++ [s_c | Enum.zip_with(s_dims, dilations, &(&1 * &2))]

      rows = n * Enum.product(out_dims)
      per_window = i * Enum.product(window)
      og = div(o, groups)

      # {groups, rows, per_window} x {groups, per_window, og} -> {groups, rows, og}
      windows =
        x
        |> EMLX.as_strided(List.to_tuple(view_shape), view_strides, 0)
        |> EMLX.reshape({rows, groups, per_window})
        |> EMLX.transpose([1, 0, 2])

      kernels = k |> EMLX.reshape({groups, og, per_window}) |> EMLX.transpose([0, 2, 1])

      windows
      |> EMLX.matmul(kernels)
      |> EMLX.transpose([1, 0, 2])
      |> EMLX.reshape(List.to_tuple([n | out_dims] ++ [o]))
    end
  end
end
