if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fast do
    @moduledoc """
    MLX's fused kernels for `Nx` tensors, usable eagerly and inside `defn`.

    Every function here takes and returns `Nx.Tensor`s. It is an `Nx.block/4`
    (see `EMLX.Fast.Block`) whose default implementation is the plain `Nx`
    formula, so it gives the same values on any backend and under any
    compiler, and `Nx.Defn.grad/2` differentiates it through that formula.
    Where the tensors live on `EMLX.Backend`, the fused MLX op runs instead:

      * eagerly, when every tensor argument is an `EMLX.Backend` tensor;
      * inside `defn` evaluated on `EMLX.Backend` tensors, when
        `EMLX.Backend.block/4` hands `EMLX.Fast.Block` structs to
        `native_block/3`.

    Functions:

      * `rms_norm/3`, `layer_norm/4`, `layer_norm/3` — normalisation over the
        last axis;
      * `rope/6` (sequence on axis -2, integer offset),
        `rope_with_positions/6` and `rope_with_freqs/6` (`{B, T, H, D}` or
        `{B, T, D}` with a `{B, T}` tensor of positions) — rotary embeddings;
      * `scaled_dot_product_attention/4,5,6`,
        `scaled_dot_product_attention_causal/4,5`,
        `scaled_dot_product_attention_causal_key_masked/5,6` — attention in
        the `{B, N, T, D}` layout, grouped-query heads allowed, with optional
        attention sinks (`sinks:`);
      * `kv_cache_sdpa_update/8` — a decoding step: the KV cache written and
        attended in one op;
      * `swiglu/2` — `silu(gate) * up`;
      * `einsum/2` — Einstein summation of any number of operands.

    An Axon model can swap its own layers for these, for example:

        Axon.rewrite_nodes(model, fn
          %Axon.Node{op: :rms_norm, opts: opts} ->
            fn [x, weight], _output -> EMLX.Fast.rms_norm(x, weight, opts[:epsilon]) end

          _ ->
            :skip
        end)
    """

    import Nx.Defn

    import EMLX.Fast.Formulas, only: [merged: 1]

    alias EMLX.Fast.{Attention, Block, Dispatch, Einsum, Formulas}

    ## Normalisation

    @doc """
    RMS normalisation over the last axis:
    `x / sqrt(mean(x², axes: [-1]) + eps) * weight`; `weight` has the size
    of `x`'s last axis. The result has `x`'s shape and the type of `x` and
    `weight` merged.

        iex> x = Nx.tensor([[3.0, 4.0]])
        iex> EMLX.Fast.rms_norm(x, Nx.tensor([1.0, 1.0]), 0.0) |> Nx.multiply(:math.sqrt(12.5)) |> Nx.round()
        #Nx.Tensor<
          f32[1][2]
          [
            [3.0, 4.0]
          ]
        >
    """
    deftransform rms_norm(x, weight, eps) do
      out = Nx.template(Nx.shape(x), merged([x, weight]))
      run(%Block{op: :rms_norm, attrs: [eps: eps]}, [x, weight], out, &Formulas.rms_norm/3)
    end

    @doc """
    Layer normalisation over the last axis:
    `(x - mean) / sqrt(var + eps) * weight + bias`, the mean and (biased)
    variance taken over the last axis; `weight` and `bias` have its size.

        iex> x = Nx.tensor([[1.0, 3.0]])
        iex> EMLX.Fast.layer_norm(x, Nx.tensor([2.0, 3.0]), Nx.tensor([0.5, 0.5]), 0.0)
        #Nx.Tensor<
          f32[1][2]
          [
            [-1.5, 3.5]
          ]
        >
    """
    deftransform layer_norm(x, weight, bias, eps) do
      out = Nx.template(Nx.shape(x), merged([x, weight, bias]))
      block = %Block{op: :layer_norm, attrs: [eps: eps]}
      run(block, [x, weight, bias], out, &Formulas.layer_norm/4)
    end

    @doc """
    Layer normalisation without a bias: `(x - mean) / sqrt(var + eps) * weight`.

        iex> EMLX.Fast.layer_norm(Nx.tensor([[1.0, 3.0]]), Nx.tensor([1.0, 1.0]), 0.0)
        #Nx.Tensor<
          f32[1][2]
          [
            [-1.0, 1.0]
          ]
        >
    """
    deftransform layer_norm(x, weight, eps) do
      out = Nx.template(Nx.shape(x), merged([x, weight]))
      block = %Block{op: :layer_norm_no_bias, attrs: [eps: eps]}
      run(block, [x, weight], out, &Formulas.layer_norm(&1, &2, &3, nil))
    end

    ## Rotary embeddings

    @doc """
    Rotary position embedding of `a` (`{B, ..., T, D}`, sequence on the
    second-to-last axis) with token `t` at position `offset + t` (`offset`
    an integer). The first `dims` features turn in pairs: pair `i` by
    `position * scale * base^(-2i/dims)`; pairs are `(i, i + dims/2)` with
    `traditional: false` and `(2i, 2i + 1)` with `true`. See `EMLX.fast_rope/6`.

        iex> a = Nx.tensor([[[1.0, 0.0]]])
        iex> EMLX.Fast.rope(a, 2, false, 1.0, :math.pi() / 2, 1) |> Nx.round()
        #Nx.Tensor<
          f32[1][1][2]
          [
            [
              [0.0, 1.0]
            ]
          ]
        >
    """
    deftransform rope(a, dims, traditional, base, scale, offset) when is_integer(offset) do
      attrs = [dims: dims, traditional: traditional, base: base * 1.0, scale: scale * 1.0, offset: offset]
      run(%Block{op: :rope, attrs: attrs}, [a], Nx.to_template(a), &Formulas.rope/2)
    end

    @doc """
    Rotary position embedding with a position for every token: `a` is
    `{B, T, H, D}` (heads after the sequence, as Bumblebee keeps them) or
    `{B, T, D}`, `position_ids` an integer `{B, T}` tensor (any positions,
    not only consecutive ones). Other arguments as in `rope/6`; see
    `EMLX.fast_rope_positions/6`.

        iex> a = Nx.broadcast(1.0, {1, 2, 1, 2})
        iex> EMLX.Fast.rope_with_positions(a, Nx.tensor([[0, 0]]), 2, false, 10_000.0, 1.0)
        #Nx.Tensor<
          f32[1][2][1][2]
          [
            [
              [
                [1.0, 1.0]
              ],
              [
                [1.0, 1.0]
              ]
            ]
          ]
        >
    """
    deftransform rope_with_positions(a, position_ids, dims, traditional, base, scale) do
      attrs = [dims: dims, traditional: traditional, base: base * 1.0, scale: scale * 1.0]
      block = %Block{op: :rope_positions, attrs: attrs}
      run(block, [a, position_ids], Nx.to_template(a), &Formulas.rope_positions/3)
    end

    @doc """
    `rope_with_positions/6` with caller-supplied frequencies: pair `i` turns
    by `position * scale / freqs[i]` (`freqs` has shape `{dims / 2}`; as in
    `mlx::fast::rope`, `freqs[i] = base^(2i/dims)` is the plain embedding).

        iex> a = Nx.tensor([[[1.0, 0.0]]])
        iex> EMLX.Fast.rope_with_freqs(a, Nx.tensor([[1]]), 2, false, :math.pi() / 2, Nx.tensor([1.0])) |> Nx.round()
        #Nx.Tensor<
          f32[1][1][2]
          [
            [
              [0.0, 1.0]
            ]
          ]
        >
    """
    deftransform rope_with_freqs(a, position_ids, dims, traditional, scale, freqs) do
      attrs = [dims: dims, traditional: traditional, scale: scale * 1.0]
      block = %Block{op: :rope_freqs, attrs: attrs}
      run(block, [a, position_ids, freqs], Nx.to_template(a), &Formulas.rope_freqs/4)
    end

    ## Attention

    @doc """
    Attention `softmax(q · kᵀ · scale) · v` over the key axis. `q` is
    `{B, N_q, T_q, D}`, `k` and `v` `{B, N_kv, T_kv, D}` with `N_q` a
    multiple of `N_kv`. See `EMLX.fast_sdpa/4`.

        iex> q = Nx.tensor([[[[1.0, 0.0]]]])
        iex> k = Nx.tensor([[[[0.0, 1.0], [0.0, 2.0]]]])
        iex> v = Nx.tensor([[[[2.0, 4.0], [6.0, 8.0]]]])
        iex> EMLX.Fast.scaled_dot_product_attention(q, k, v, 1.0)
        #Nx.Tensor<
          f32[1][1][1][2]
          [
            [
              [
                [4.0, 6.0]
              ]
            ]
          ]
        >
    """
    deftransform scaled_dot_product_attention(q, k, v, scale) do
      sdpa(:sdpa, [scale: scale], q, k, v, [], [])
    end

    @doc """
    Attention with either a `mask` tensor or, given a keyword list, options.

    A `mask` is broadcastable to `{B, N_q, T_q, T_kv}`: a boolean (`{:u, 8}`
    or other integer) mask keeps the non-zero entries, a floating-point mask
    is added to the scores. See `EMLX.fast_sdpa_masked/5`.

    Options:

      * `:sinks` — attention sinks, one logit per query head (shape
        `{N_q}`, as gpt-oss learns them): each head's softmax also counts a
        sink key of that logit whose value is zero, so a query may put part
        of its attention nowhere: `p_j = exp(s_j) / (exp(sink) + Σ exp(s_k))`.
        MLX's fused attention takes them (`EMLX.fast_sdpa/5`).

    Examples:

        iex> q = Nx.tensor([[[[1.0, 0.0]]]])
        iex> k = Nx.tensor([[[[0.0, 1.0], [0.0, 2.0]]]])
        iex> v = Nx.tensor([[[[2.0, 4.0], [6.0, 8.0]]]])
        iex> mask = Nx.tensor([[[[1, 0]]]], type: :u8)
        iex> EMLX.Fast.scaled_dot_product_attention(q, k, v, 1.0, mask)
        #Nx.Tensor<
          f32[1][1][1][2]
          [
            [
              [
                [2.0, 4.0]
              ]
            ]
          ]
        >

    A sink with the keys' score takes a third of the attention here:

        iex> q = Nx.tensor([[[[1.0, 0.0]]]])
        iex> k = Nx.tensor([[[[0.0, 1.0], [0.0, 2.0]]]])
        iex> v = Nx.tensor([[[[3.0, 3.0], [6.0, 6.0]]]])
        iex> EMLX.Fast.scaled_dot_product_attention(q, k, v, 1.0, sinks: Nx.tensor([0.0]))
        #Nx.Tensor<
          f32[1][1][1][2]
          [
            [
              [
                [3.0, 3.0]
              ]
            ]
          ]
        >
    """
    deftransform scaled_dot_product_attention(q, k, v, scale, opts) when is_list(opts) do
      sdpa(:sdpa, [scale: scale], q, k, v, [], opts)
    end

    deftransform scaled_dot_product_attention(q, k, v, scale, mask) do
      sdpa(:sdpa_masked, [scale: scale], q, k, v, [mask], [])
    end

    @doc """
    Attention with a `mask` (as in `scaled_dot_product_attention/5`) and
    options (`:sinks`, as there).

        iex> q = Nx.tensor([[[[1.0, 0.0]]]])
        iex> k = Nx.tensor([[[[0.0, 1.0], [0.0, 2.0]]]])
        iex> v = Nx.tensor([[[[3.0, 3.0], [6.0, 6.0]]]])
        iex> mask = Nx.tensor([[[[1, 0]]]], type: :u8)
        iex> EMLX.Fast.scaled_dot_product_attention(q, k, v, 1.0, mask, sinks: Nx.tensor([0.0]))
        #Nx.Tensor<
          f32[1][1][1][2]
          [
            [
              [
                [1.5, 1.5]
              ]
            ]
          ]
        >
    """
    deftransform scaled_dot_product_attention(q, k, v, scale, mask, opts) when is_list(opts) do
      sdpa(:sdpa_masked, [scale: scale], q, k, v, [mask], opts)
    end

    @doc """
    Causal attention: query `i` sees key `j` when `j <= i + T_kv - T_q`.
    `opts` as in `scaled_dot_product_attention/5` (`:sinks`). See
    `EMLX.fast_sdpa_causal/4`.

        iex> q = Nx.broadcast(0.0, {1, 1, 2, 1})
        iex> v = Nx.tensor([[[[2.0], [4.0]]]])
        iex> EMLX.Fast.scaled_dot_product_attention_causal(q, q, v, 1.0)
        #Nx.Tensor<
          f32[1][1][2][1]
          [
            [
              [
                [2.0],
                [3.0]
              ]
            ]
          ]
        >
    """
    deftransform scaled_dot_product_attention_causal(q, k, v, scale, opts \\ []) when is_list(opts) do
      sdpa(:sdpa_causal, [scale: scale], q, k, v, [], opts)
    end

    @doc """
    Causal attention that also skips padded keys: `key_mask` is `{B, T_kv}`,
    non-zero where a key may be attended. Query `i` sees key `j` when both
    hold: `key_mask[b][j] != 0` and `j <= i + kv_offset`, where `kv_offset` is
    `T_kv - 1` for a single query (decoding) and `0` otherwise (prefill). A
    query that sees no key gets zeros. `opts` as in
    `scaled_dot_product_attention/5` (`:sinks`). See
    `EMLX.fast_sdpa_causal_key_masked/6`.

        iex> q = Nx.broadcast(0.0, {1, 1, 2, 1})
        iex> v = Nx.tensor([[[[2.0], [4.0]]]])
        iex> EMLX.Fast.scaled_dot_product_attention_causal_key_masked(q, q, v, 1.0, Nx.tensor([[0, 1]]))
        #Nx.Tensor<
          f32[1][1][2][1]
          [
            [
              [
                [0.0],
                [4.0]
              ]
            ]
          ]
        >
    """
    deftransform scaled_dot_product_attention_causal_key_masked(q, k, v, scale, key_mask, opts \\ [])
                 when is_list(opts) do
      {b, t_q, t_kv} = {elem(Nx.shape(q), 0), elem(Nx.shape(q), 2), elem(Nx.shape(k), 2)}

      if Nx.shape(key_mask) != {b, t_kv} do
        raise ArgumentError,
              "scaled_dot_product_attention_causal_key_masked: key_mask must have shape " <>
                "{#{b}, #{t_kv}} ({B, T_kv}), got #{inspect(Nx.shape(key_mask))}"
      end

      kv_offset = if t_q == 1, do: t_kv - 1, else: 0
      sdpa(:sdpa_causal_key_masked, [scale: scale, kv_offset: kv_offset], q, k, v, [key_mask], opts)
    end

    # The :sdpa* blocks: q, k, v, then the mask if any, then the sinks if any.
    defp sdpa(op, attrs, q, k, v, masks, opts) do
      sinks = Attention.sinks!(:scaled_dot_product_attention, q, k, v, opts)
      args = [q, k, v | masks] ++ List.wrap(sinks)

      attrs =
        Keyword.update!(attrs, :scale, &Attention.scale!(:scaled_dot_product_attention, &1)) ++ [sinks: sinks != nil]

      run(%Block{op: op, attrs: attrs}, args, Attention.out(q, k, v), default_fun(length(args), &Attention.default/2))
    end

    @doc """
    One decoding (or prefill) step of attention over a preallocated KV
    cache, in the `{B, T, N, D}` layout (sequence before heads, as
    Bumblebee keeps it), with a key mask, usable inside `defn` (a `while`
    loop can carry the caches and the offset).

      * `q` is `{B, T_q, N_q, D}`; `new_k`, `new_v` `{B, T_q, N_kv, D}`;
      * `k_cache`, `v_cache` `{B, T_max, N_kv, D}`;
      * `offset` — the position the new keys are written at, an integer or
        an integer scalar (or `{1}`) tensor, clamped so that they fit;
      * `key_mask` — `{B, T_max}`, non-zero where a cache position may be
        attended (filled and not padding), or `nil` for every position;
      * `scale` — usually `1 / sqrt(D)`.

    Query `i` (at position `offset + i`) sees cache position `j` when
    `j <= offset + i` and `key_mask[b][j] != 0`; a query that sees nothing
    gets zeros. Returns `{attention, k_cache, v_cache}`: the attention is
    **head-major**, `{B, N_q, T_q, D}` (transpose it back with
    `Nx.transpose(a, axes: [0, 2, 1, 3])`), the caches keep their shape and
    type with the new keys and values written in. On `EMLX.Backend` this is
    one MLX op that writes the cache in place of a copy when the old cache
    has no other user (see `EMLX.kv_cache_sdpa_dynamic/8`).

        iex> {q, new_k} = {Nx.broadcast(0.0, {1, 1, 1, 2}), Nx.broadcast(1.0, {1, 1, 1, 2})}
        iex> cache = Nx.broadcast(0.0, {1, 3, 1, 2})
        iex> new_v = Nx.tensor([[[[4.0, 8.0]]]])
        iex> {out, k, v} = EMLX.Fast.kv_cache_sdpa_update(q, new_k, new_v, cache, cache, 1, Nx.tensor([[1, 1, 0]]), 1.0)
        iex> {Nx.to_flat_list(out), Nx.to_flat_list(k), Nx.to_flat_list(v)}
        {[2.0, 4.0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 4.0, 8.0, 0.0, 0.0]}
    """
    deftransform kv_cache_sdpa_update(q, new_k, new_v, k_cache, v_cache, offset, key_mask, scale) do
      Attention.kv_checks!(q, new_k, new_v, k_cache, v_cache, key_mask)
      offset = if is_integer(offset), do: Nx.tensor(offset, type: {:s, 32}), else: offset
      {b, t_q, n_q, d} = Nx.shape(q)
      attention = Nx.template({b, n_q, t_q, d}, merged([q, k_cache, v_cache]))
      out = {attention, Nx.to_template(k_cache), Nx.to_template(v_cache)}
      block = %Block{op: :kv_cache_sdpa_update, attrs: [scale: Attention.scale!(:kv_cache_sdpa_update, scale)]}

      if key_mask do
        run(block, [q, new_k, new_v, k_cache, v_cache, offset, key_mask], out, &Attention.kv_cache_update/8)
      else
        run(
          block,
          [q, new_k, new_v, k_cache, v_cache, offset],
          out,
          &Attention.kv_cache_update(&1, &2, &3, &4, &5, &6, &7, nil)
        )
      end
    end

    ## SwiGLU

    @doc """
    SwiGLU: `silu(gate) * up` with `silu(x) = x * sigmoid(x)`.

        iex> EMLX.Fast.swiglu(Nx.tensor([0.0, 30.0]), Nx.tensor([5.0, 2.0]))
        #Nx.Tensor<
          f32[2]
          [0.0, 60.0]
        >
    """
    deftransform swiglu(gate, up) do
      out = Nx.template(Formulas.swiglu_shape(Nx.shape(gate), Nx.shape(up)), merged([gate, up]))
      run(%Block{op: :swiglu}, [gate, up], out, &Formulas.swiglu/3)
    end

    ## Einsum

    @doc """
    Einstein summation of any number of operands: `subscripts` in NumPy's
    notation (`"ij,jk->ik"`, `"bhid,bhjd->bhij"`, `"ij,jk,kl->il"`, `"ii->i"`,
    `...` for broadcast axes; without `->` the output is the letters used
    once, in alphabetical order). On `EMLX.Backend` MLX's `einsum` runs, its
    path optimiser choosing the order of the pairwise products (integer
    operands use the formula, which keeps integer dots exact); elsewhere and
    under `Nx.Defn.grad` the operands are contracted pairwise with
    `Nx.dot/6`. The result has the operands' merged type. See also
    `EMLX.einsum/2`.

        iex> a = Nx.tensor([[1.0, 2.0], [3.0, 4.0]])
        iex> EMLX.Fast.einsum("ij,jk,kl->il", [a, a, Nx.eye(2)])
        #Nx.Tensor<
          f32[2][2]
          [
            [7.0, 10.0],
            [15.0, 22.0]
          ]
        >
        iex> EMLX.Fast.einsum("ii", [a])
        #Nx.Tensor<
          f32
          5.0
        >
    """
    deftransform einsum(subscripts, operands) when is_list(operands) do
      if operands == [], do: raise(ArgumentError, "einsum: expected at least one operand")
      parsed = Einsum.parse!(subscripts, Enum.map(operands, &Nx.shape/1))
      out = Nx.template(parsed.shape, merged(operands))
      block = %Block{op: :einsum, attrs: [subscripts: subscripts]}
      run(block, operands, out, default_fun(length(operands), fn _block, args -> Einsum.default(parsed, args) end))
    end

    ## Dispatch

    defp run(block, args, out, default), do: Dispatch.run(block, args, out, default)
    defp default_fun(n, fun), do: Dispatch.default_fun(n, fun)

    @doc """
    Runs an `EMLX.Fast.Block` as its fused MLX op on `EMLX.Backend` tensors
    `args`, giving a tensor like `out` (a tuple of tensors for blocks with
    several results). For `EMLX.Backend.block/4`: returns `:default` when
    some argument is not an `EMLX.Backend` tensor, or MLX has no op for the
    arguments, so the block's default implementation should run instead.
    """
    def native_block(%Block{} = block, out, args), do: Dispatch.native_block(block, out, args)
  end
end
