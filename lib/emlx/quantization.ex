if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Quantization do
    @moduledoc """
    Group-wise quantization of `Nx` weights on `EMLX.Backend`, in MLX's
    affine mode and its microscaled floating-point modes.

    `quantize/2` turns a dense `{out, in}` float tensor into a *quantized
    tensor*: an `Nx.Tensor` that keeps the logical shape and reports the
    storage type `{:s, bits}`, while its `EMLX.Backend` data holds MLX's
    packed `:uint32` codes and an `EMLX.Quantization.Config` (scales, biases,
    group size, bits, mode). `dequantize/1` gives the dense tensor back
    (within the quantization error described in `EMLX.quantize/3` and
    `EMLX.quantize/4`) and `quantized_matmul/2` multiplies by the weight
    without materialising it; so does `Nx.dot/2,4,6` with the quantized
    tensor as its right operand, in every mode:

        w = Nx.iota({64, 128}, type: :f32, backend: EMLX.Backend) |> Nx.divide(8192)
        qw = EMLX.Quantization.quantize(w, type: {:s, 4}, group_size: 64)
        x = Nx.broadcast(Nx.tensor(1.0, backend: EMLX.Backend), {2, 128})
        Nx.dot(x, [1], qw, [1])   # ≈ Nx.dot(x, Nx.transpose(w))

    Modes (`:mode`):

      * `"affine"` (default) — `bits`-bit integer codes with a scale and a
        bias per group of 32, 64 or 128 values (`:type` `{:s, 2}`,
        `{:s, 4}` or `{:s, 8}`);
      * `"mxfp4"` — 4-bit floats (E2M1) with a power-of-two scale per 32
        values (OCP MX); `"mxfp8"` — 8-bit floats (E4M3), the same scales;
      * `"nvfp4"` — 4-bit floats with an E4M3 scale per 16 values.

    The microscaled modes fix the group size and width (their defaults:
    `:group_size` 32, 32 and 16, `:type` `{:s, 4}`, `{:s, 8}`, `{:s, 4}`),
    have `:uint8` scales and no biases (`Config.biases` is `nil`). MLX 0.32
    runs every mode on the CPU as well as on the GPU.

    `Nx.backend_copy/2` and `Nx.backend_transfer/2` to `EMLX.Backend` (any
    device) keep a quantized tensor quantized: the codes, scales and biases
    move together. Another backend cannot hold the codes: dequantize first.

    All three functions work eagerly and inside `defn`. In `defn` the
    dequantized value and the product are computed when the function runs
    (through `Nx.runtime_call/4`), and their type is given by the `:type`
    option of `dequantize/2` (default `{:f, 32}`) and by the activation's
    type for `quantized_matmul/2`. A quantized tensor only carries its codes
    on `EMLX.Backend`: quantize on that backend.

    The functions of the `EMLX` module with the same names (`EMLX.quantize/2`,
    `EMLX.dequantize/1`, `EMLX.quantized_matmul/2`) are these.
    """

    import Nx.Defn

    alias EMLX.NxInterop
    alias EMLX.Quantization.Config

    @types [{:s, 2}, {:s, 4}, {:s, 8}]
    @group_sizes [32, 64, 128]
    # mode => {group_size, bits} it fixes
    @microscaled %{"mxfp4" => {32, 4}, "mxfp8" => {32, 8}, "nvfp4" => {16, 4}}
    @modes ["affine" | Map.keys(@microscaled)]

    @doc """
    Quantizes a dense floating-point `{out, in}` tensor along its last axis.

    Options:

      * `:mode` — `"affine"` (default), `"mxfp4"`, `"mxfp8"` or `"nvfp4"`
        (see the module documentation);
      * `:type` — `{:s, 2}`, `{:s, 4}` (default) or `{:s, 8}`: the code
        width (the microscaled modes fix it, and default to it);
      * `:group_size` — 32, 64 (default) or 128 values per scale and bias
        (the microscaled modes fix it, and default to it); it must divide
        the last axis.

    Returns a quantized tensor of the same shape and names, of type `:type`.

        iex> w = Nx.iota({2, 32}, type: :f32, backend: {EMLX.Backend, device: :cpu}) |> Nx.divide(32)
        iex> qw = EMLX.Quantization.quantize(w, mode: "mxfp8")
        iex> {qw.type, qw.data.quantization_config.group_size, qw.data.quantization_config.biases}
        {{:s, 8}, 32, nil}
    """
    @spec quantize(Nx.Tensor.t(), keyword()) :: Nx.Tensor.t()
    def quantize(%Nx.Tensor{} = tensor, opts \\ []) do
      opts = Keyword.validate!(opts, [:type, :group_size, mode: "affine"])
      {mode, type, group_size} = settings!(opts)
      check!(tensor, group_size)
      {_, bits} = type

      {wq, scales, biases} = tensor |> NxInterop.from_nx() |> EMLX.quantize(group_size, bits, mode)

      config = %Config{
        scales: NxInterop.to_nx(scales),
        biases: biases && NxInterop.to_nx(biases),
        group_size: group_size,
        bits: bits,
        mode: mode,
        dense_type: Nx.type(tensor)
      }

      data = NxInterop.backend_data(ref: wq, shape: EMLX.shape(wq), type: {:u, 32}, quantization_config: config)
      %{tensor | type: type, data: data}
    end

    # {mode, type, group_size}: the options, with the mode's defaults.
    defp settings!(opts) do
      mode = opts[:mode]

      case Map.fetch(@microscaled, mode) do
        :error when mode == "affine" ->
          group_size = opts[:group_size] || 64

          unless group_size in @group_sizes do
            raise ArgumentError, "quantize: :group_size must be 32, 64 or 128, got: #{inspect(group_size)}"
          end

          {mode, code_type!(opts[:type] || {:s, 4}), group_size}

        :error ->
          raise ArgumentError, "quantize: :mode must be one of #{inspect(@modes)}, got: #{inspect(mode)}"

        {:ok, {group_size, bits}} ->
          type = code_type!(opts[:type] || {:s, bits})

          if type != {:s, bits} or (opts[:group_size] || group_size) != group_size do
            raise ArgumentError,
                  "quantize: mode #{inspect(mode)} stores #{bits}-bit values in groups of #{group_size}: " <>
                    ":type must be #{inspect({:s, bits})} and :group_size #{group_size} (or leave them out), " <>
                    "got: #{inspect(type)} and #{inspect(opts[:group_size])}"
          end

          {mode, type, group_size}
      end
    end

    # {:s, 4}, or an alias such as :s4.
    defp code_type!(type) do
      normalized =
        try do
          Nx.Type.normalize!(type)
        rescue
          ArgumentError -> type
        end

      if normalized in @types,
        do: normalized,
        else: raise(ArgumentError, "quantize: :type must be one of #{inspect(@types)}, got: #{inspect(type)}")
    end

    defp check!(%Nx.Tensor{shape: shape, type: dense}, group_size) do
      unless match?({kind, _} when kind in [:f, :bf], dense) do
        raise ArgumentError, "quantize: expected a floating-point tensor, got type #{inspect(dense)}"
      end

      case shape do
        {_out, inner} when rem(inner, group_size) == 0 ->
          :ok

        {_out, inner} ->
          raise ArgumentError, "quantize: the last axis (#{inner}) must be a multiple of :group_size (#{group_size})"

        _ ->
          raise ArgumentError, "quantize: expected a rank-2 {out, in} tensor, got shape #{inspect(shape)}"
      end
    end

    @doc "Whether `tensor` is a quantized tensor made by `quantize/2`."
    def quantized?(%Nx.Tensor{data: %{quantization_config: %Config{}}}), do: true
    def quantized?(_), do: false

    @doc """
    The dense tensor a quantized tensor stands for, in the type it was
    quantized from (the type of its scales in the affine mode). Inside
    `defn`, the result has type `opts[:type]` (default `{:f, 32}`), as the
    scales are not known while tracing.
    """
    deftransform dequantize(qw, opts \\ []) do
      case qw do
        %Nx.Tensor{data: %Nx.Defn.Expr{}} ->
          opts = Keyword.validate!(opts, type: {:f, 32})
          out = Nx.template(Nx.shape(qw), opts[:type], names: qw.names)
          Nx.runtime_call(out, qw, opts, &__MODULE__.dequantize_callback/2)

        _ ->
          dequantize_now(qw)
      end
    end

    @doc false
    def dequantize_callback(qw, opts), do: qw |> dequantize_now() |> Nx.as_type(opts[:type])

    defp dequantize_now(qw) do
      %Config{} = cfg = config!(qw, :dequantize)

      EMLX.dequantize(
        NxInterop.ref(qw),
        NxInterop.from_nx(cfg.scales),
        cfg.biases && NxInterop.from_nx(cfg.biases),
        cfg.group_size,
        cfg.bits,
        cfg.mode,
        dense_type(cfg)
      )
      |> NxInterop.to_nx()
      |> Nx.rename(qw.names)
    end

    @doc """
    `activation · dequantize(qw)ᵀ` for a quantized `{out, in}` weight `qw`
    and a dense `{..., in}` activation, computed by MLX on the packed codes.
    The result is `{..., out}`, in the activation's and the scales' type
    merged (inside `defn`: the activation's type).
    """
    deftransform quantized_matmul(activation, qw) do
      {out_features, _in} = Nx.shape(qw)
      shape = activation |> Nx.shape() |> put_elem(Nx.rank(activation) - 1, out_features)

      case {activation, qw} do
        {%Nx.Tensor{data: %Nx.Defn.Expr{}}, _} -> traced_matmul(activation, qw, shape)
        {_, %Nx.Tensor{data: %Nx.Defn.Expr{}}} -> traced_matmul(activation, qw, shape)
        _ -> matmul_now(activation, qw)
      end
    end

    defp traced_matmul(activation, qw, shape) do
      out = Nx.template(shape, Nx.type(activation))
      Nx.runtime_call(out, {activation, qw}, [type: Nx.type(activation)], &__MODULE__.quantized_matmul_callback/2)
    end

    @doc false
    def quantized_matmul_callback({activation, qw}, opts),
      do: activation |> matmul_now(qw) |> Nx.as_type(opts[:type])

    defp matmul_now(activation, qw) do
      if quantized?(activation) do
        raise ArgumentError,
              "quantized_matmul: the activation (first argument) must be dense; dequantize it first"
      end

      cfg = config!(qw, :quantized_matmul)
      transpose = if is_nil(cfg.transpose), do: true, else: cfg.transpose

      EMLX.quantized_matmul(
        NxInterop.from_nx(activation),
        NxInterop.ref(qw),
        NxInterop.from_nx(cfg.scales),
        cfg.biases && NxInterop.from_nx(cfg.biases),
        transpose,
        cfg.group_size,
        cfg.bits,
        cfg.mode
      )
      |> NxInterop.to_nx()
    end

    @doc false
    # The MLX type dequantize gives: what the weight was quantized from.
    def dense_type(%Config{dense_type: nil, scales: scales}), do: EMLX.Types.mlx_type(Nx.type(scales))
    def dense_type(%Config{dense_type: type}), do: EMLX.Types.mlx_type(type)

    defp config!(%Nx.Tensor{data: %{quantization_config: %Config{} = cfg}}, _function), do: cfg

    defp config!(other, function) do
      raise ArgumentError,
            "#{function}: expected a quantized tensor made by EMLX.Quantization.quantize/2, got: #{inspect(other)}"
    end
  end
end
