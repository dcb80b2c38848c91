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
      * `scaled_dot_product_attention/4,5`,
        `scaled_dot_product_attention_causal/4`,
        `scaled_dot_product_attention_causal_key_masked/5` — attention in the
        `{B, N, T, D}` layout, grouped-query heads allowed;
      * `swiglu/2` — `silu(gate) * up`.

    An Axon model can swap its own layers for these, for example:

        Axon.rewrite_nodes(model, fn
          %Axon.Node{op: :rms_norm, opts: opts} ->
            fn [x, weight], _output -> EMLX.Fast.rms_norm(x, weight, opts[:epsilon]) end

          _ ->
            :skip
        end)
    """

    import Nx.Defn

    alias EMLX.Fast.Block

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
      run(%Block{op: :rms_norm, attrs: [eps: eps]}, [x, weight], out, &rms_norm_default/3)
    end

    defp rms_norm_default(%Block{attrs: attrs}, x, weight) do
      type = merged([x, weight])
      xf = Nx.as_type(x, compute_type(type))
      r = xf |> Nx.pow(2) |> Nx.mean(axes: [-1], keep_axes: true) |> Nx.add(attrs[:eps]) |> Nx.rsqrt()
      xf |> Nx.multiply(r) |> Nx.multiply(weight) |> Nx.as_type(type)
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
      run(block, [x, weight, bias], out, fn b, x, w, bias -> layer_norm_default(b, x, w, bias) end)
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
      run(block, [x, weight], out, fn b, x, w -> layer_norm_default(b, x, w, nil) end)
    end

    defp layer_norm_default(%Block{attrs: attrs}, x, weight, bias) do
      type = merged(Enum.reject([x, weight, bias], &is_nil/1))
      xf = Nx.as_type(x, compute_type(type))
      centered = Nx.subtract(xf, Nx.mean(xf, axes: [-1], keep_axes: true))
      var = centered |> Nx.pow(2) |> Nx.mean(axes: [-1], keep_axes: true)
      normed = centered |> Nx.multiply(Nx.rsqrt(Nx.add(var, attrs[:eps]))) |> Nx.multiply(weight)
      normed = if bias, do: Nx.add(normed, bias), else: normed
      Nx.as_type(normed, type)
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
      run(%Block{op: :rope, attrs: attrs}, [a], Nx.to_template(a), &rope_default/2)
    end

    defp rope_default(%Block{attrs: attrs}, a) do
      rank = Nx.rank(a)
      t = elem(Nx.shape(a), rank - 2)
      positions = Nx.iota({t}, type: :f32) |> Nx.add(attrs[:offset]) |> Nx.multiply(attrs[:scale])
      theta = Nx.outer(positions, inv_freqs(attrs[:dims], attrs[:base]))
      theta = Nx.reshape(theta, List.to_tuple(List.duplicate(1, rank - 2) ++ [t, div(attrs[:dims], 2)]))
      rotate(a, theta, attrs[:dims], attrs[:traditional])
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
      run(block, [a, position_ids], Nx.to_template(a), &rope_positions_default/3)
    end

    defp rope_positions_default(%Block{attrs: attrs}, a, ids) do
      theta = position_angles(a, ids, attrs[:scale], inv_freqs(attrs[:dims], attrs[:base]))
      rotate(a, theta, attrs[:dims], attrs[:traditional])
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
      run(block, [a, position_ids, freqs], Nx.to_template(a), &rope_freqs_default/4)
    end

    defp rope_freqs_default(%Block{attrs: attrs}, a, ids, freqs) do
      inv = freqs |> Nx.as_type(:f32) |> then(&Nx.divide(1.0, &1))
      rotate(a, position_angles(a, ids, attrs[:scale], inv), attrs[:dims], attrs[:traditional])
    end

    # pair i's angle per token, shaped to broadcast against `a`'s first `dims` features.
    defp position_angles(a, ids, scale, inv) do
      {b, t} = {elem(Nx.shape(a), 0), elem(Nx.shape(a), 1)}
      half = Nx.size(inv)
      theta = ids |> Nx.as_type(:f32) |> Nx.multiply(scale) |> Nx.reshape({b, t, 1}) |> Nx.multiply(inv)
      if Nx.rank(a) == 4, do: Nx.reshape(theta, {b, t, 1, half}), else: theta
    end

    defp inv_freqs(dims, base) do
      half = div(dims, 2)
      Nx.iota({half}, type: :f32) |> Nx.multiply(-2.0 * :math.log(base) / dims) |> Nx.exp()
    end

    # Turns the first `dims` features of `a` by `theta` (broadcastable to
    # {..., dims / 2}); the rest pass through.
    defp rotate(a, theta, dims, traditional) do
      axis = Nx.rank(a) - 1
      d = elem(Nx.shape(a), axis)
      half = div(dims, 2)
      head = Nx.slice_along_axis(a, 0, dims, axis: axis)
      cos = Nx.cos(theta)
      sin = Nx.sin(theta)

      {x1, x2} =
        if traditional,
          do:
            {Nx.slice_along_axis(head, 0, dims, axis: axis, strides: 2),
             Nx.slice_along_axis(head, 1, dims - 1, axis: axis, strides: 2)},
          else: {Nx.slice_along_axis(head, 0, half, axis: axis), Nx.slice_along_axis(head, half, half, axis: axis)}

      o1 = Nx.subtract(Nx.multiply(x1, cos), Nx.multiply(x2, sin))
      o2 = Nx.add(Nx.multiply(x1, sin), Nx.multiply(x2, cos))

      turned =
        if traditional,
          do: Nx.stack([o1, o2], axis: axis + 1) |> Nx.reshape(Nx.shape(head)),
          else: Nx.concatenate([o1, o2], axis: axis)

      turned = Nx.as_type(turned, Nx.type(a))

      if dims == d,
        do: turned,
        else: Nx.concatenate([turned, Nx.slice_along_axis(a, dims, d - dims, axis: axis)], axis: axis)
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
      run(%Block{op: :sdpa, attrs: [scale: scale * 1.0]}, [q, k, v], sdpa_out(q, k, v), &sdpa_default/4)
    end

    @doc """
    Attention with a `mask` broadcastable to `{B, N_q, T_q, T_kv}`: a boolean
    (`{:u, 8}`) mask keeps the non-zero entries, a floating-point mask is
    added to the scores. See `EMLX.fast_sdpa_masked/5`.

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
    """
    deftransform scaled_dot_product_attention(q, k, v, scale, mask) do
      block = %Block{op: :sdpa_masked, attrs: [scale: scale * 1.0]}
      run(block, [q, k, v, mask], sdpa_out(q, k, v), &sdpa_masked_default/5)
    end

    @doc """
    Causal attention: query `i` sees key `j` when `j <= i + T_kv - T_q`.
    See `EMLX.fast_sdpa_causal/4`.

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
    deftransform scaled_dot_product_attention_causal(q, k, v, scale) do
      block = %Block{op: :sdpa_causal, attrs: [scale: scale * 1.0]}
      run(block, [q, k, v], sdpa_out(q, k, v), &sdpa_default/4)
    end

    @doc """
    Causal attention that also skips padded keys: `key_mask` is `{B, T_kv}`,
    non-zero where a key may be attended. Query `i` sees key `j` when both
    hold: `key_mask[b][j] != 0` and `j <= i + kv_offset`, where `kv_offset` is
    `T_kv - 1` for a single query (decoding) and `0` otherwise (prefill). A
    query that sees no key gets zeros. See `EMLX.fast_sdpa_causal_key_masked/6`.

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
    deftransform scaled_dot_product_attention_causal_key_masked(q, k, v, scale, key_mask) do
      {t_q, t_kv} = {elem(Nx.shape(q), 2), elem(Nx.shape(k), 2)}
      kv_offset = if t_q == 1, do: t_kv - 1, else: 0
      block = %Block{op: :sdpa_causal_key_masked, attrs: [scale: scale * 1.0, kv_offset: kv_offset]}
      run(block, [q, k, v, key_mask], sdpa_out(q, k, v), &sdpa_masked_default/5)
    end

    defp sdpa_out(q, k, v) do
      {b, n, t, _} = Nx.shape(q)
      Nx.template({b, n, t, elem(Nx.shape(v), 3)}, merged([q, k, v]))
    end

    defp sdpa_default(%Block{op: :sdpa} = block, q, k, v), do: attention(block, q, k, v, nil)

    defp sdpa_default(%Block{op: :sdpa_causal} = block, q, k, v) do
      offset = elem(Nx.shape(k), 2) - elem(Nx.shape(q), 2)
      attention(block, q, k, v, causal_keep(q, k, offset))
    end

    defp sdpa_masked_default(%Block{op: :sdpa_masked} = block, q, k, v, mask),
      do: attention(block, q, k, v, mask)

    defp sdpa_masked_default(%Block{op: :sdpa_causal_key_masked, attrs: attrs} = block, q, k, v, key_mask) do
      {b, t_kv} = Nx.shape(key_mask)
      keys = key_mask |> Nx.not_equal(0) |> Nx.reshape({b, 1, 1, t_kv})
      keep = Nx.logical_and(keys, causal_keep(q, k, attrs[:kv_offset]))
      out = attention(block, q, k, v, keep)
      seen = Nx.any(keep, axes: [-1], keep_axes: true)
      Nx.select(Nx.broadcast(seen, Nx.shape(out)), out, Nx.tensor(0, type: Nx.type(out)))
    end

    # {1, 1, T_q, T_kv}: key j visible from query i when j <= i + offset.
    defp causal_keep(q, k, offset) do
      {t_q, t_kv} = {elem(Nx.shape(q), 2), elem(Nx.shape(k), 2)}
      rows = Nx.iota({1, 1, t_q, 1}) |> Nx.add(offset)
      cols = Nx.iota({1, 1, 1, t_kv})
      Nx.less_equal(cols, rows)
    end

    # softmax(q kᵀ scale [masked]) v, grouped heads repeated; computed in at
    # least float32. An integer mask selects (non-zero keeps; like MLX, a
    # dropped score becomes the lowest finite value); a float mask adds.
    defp attention(%Block{attrs: attrs}, q, k, v, mask) do
      type = merged([q, k, v])
      ct = compute_type(type)
      groups = div(elem(Nx.shape(q), 1), elem(Nx.shape(k), 1))
      [q, k, v] = Enum.map([q, k, v], &Nx.as_type(&1, ct))
      {k, v} = {repeat_heads(k, groups), repeat_heads(v, groups)}
      scores = Nx.dot(q, [3], [0, 1], k, [3], [0, 1]) |> Nx.multiply(attrs[:scale])

      scores =
        case mask do
          nil -> scores
          %Nx.Tensor{type: {kind, _}} when kind in [:f, :bf] -> Nx.add(scores, mask)
          mask -> Nx.select(Nx.broadcast(Nx.not_equal(mask, 0), Nx.shape(scores)), scores, Nx.Constants.min_finite(ct))
        end

      max = Nx.reduce_max(scores, axes: [-1], keep_axes: true)
      e = Nx.exp(Nx.subtract(scores, max))
      p = Nx.divide(e, Nx.sum(e, axes: [-1], keep_axes: true))
      Nx.dot(p, [3], [0, 1], v, [2], [0, 1]) |> Nx.as_type(type)
    end

    defp repeat_heads(x, 1), do: x

    defp repeat_heads(x, groups) do
      {b, n, t, d} = Nx.shape(x)
      x |> Nx.new_axis(2) |> Nx.broadcast({b, n, groups, t, d}) |> Nx.reshape({b, n * groups, t, d})
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
      out = Nx.template(broadcast_shape(Nx.shape(gate), Nx.shape(up)), merged([gate, up]))
      run(%Block{op: :swiglu}, [gate, up], out, fn _, g, u -> g |> Nx.multiply(Nx.sigmoid(g)) |> Nx.multiply(u) end)
    end

    ## Dispatch

    # Eagerly on EMLX tensors: the fused op. Otherwise an Nx.block whose
    # default is the plain formula.
    defp run(block, args, out, default) do
      cond do
        Enum.all?(args, &EMLX.NxInterop.emlx?/1) -> native_block(block, out, args)
        Enum.any?(args, &expr?/1) -> Nx.block(block, Enum.map(args, &Nx.Defn.Expr.tensor/1), out, default)
        true -> Nx.block(block, args, out, default)
      end
    end

    # While tracing (defn, grad), a concrete tensor next to traced ones
    # (a captured constant) becomes a constant of the trace.
    defp expr?(%Nx.Tensor{data: %Nx.Defn.Expr{}}), do: true
    defp expr?(_), do: false

    @doc """
    Runs an `EMLX.Fast.Block` as its fused MLX op on `EMLX.Backend` tensors
    `args`, giving a tensor like `out`. For `EMLX.Backend.block/4`: returns
    `:default` when some argument is not an `EMLX.Backend` tensor, so the
    block's default implementation should run instead.
    """
    def native_block(%Block{} = block, out, args) do
      if Enum.all?(args, &EMLX.NxInterop.emlx?/1) do
        block |> native(Enum.map(args, &EMLX.NxInterop.ref/1)) |> EMLX.NxInterop.wrap(out)
      else
        :default
      end
    end

    defp native(%Block{op: op, attrs: a}, refs) do
      case {op, refs} do
        {:rms_norm, [x, w]} ->
          EMLX.fast_rms_norm(x, w, a[:eps])

        {:layer_norm, [x, w, b]} ->
          EMLX.fast_layer_norm(x, w, b, a[:eps])

        {:layer_norm_no_bias, [x, w]} ->
          EMLX.fast_layer_norm_no_bias(x, w, a[:eps])

        {:rope, [x]} ->
          EMLX.fast_rope(x, a[:dims], a[:traditional], a[:base], a[:scale], a[:offset])

        {:rope_positions, [x, ids]} ->
          EMLX.fast_rope_positions(x, a[:dims], a[:traditional], a[:base], a[:scale], ids)

        {:rope_freqs, [x, ids, freqs]} ->
          rope_freqs_native(x, ids, freqs, a)

        {:sdpa, [q, k, v]} ->
          EMLX.fast_sdpa(q, k, v, a[:scale])

        {:sdpa_masked, [q, k, v, mask]} ->
          EMLX.fast_sdpa_masked(q, k, v, selection(mask), a[:scale])

        {:sdpa_causal, [q, k, v]} ->
          EMLX.fast_sdpa_causal(q, k, v, a[:scale])

        {:sdpa_causal_key_masked, [q, k, v, m]} ->
          EMLX.fast_sdpa_causal_key_masked(q, k, v, a[:scale], m, a[:kv_offset])

        {:swiglu, [gate, up]} ->
          EMLX.fast_swiglu(gate, up)
      end
    end

    # Nx has no boolean type: an integer mask selects (non-zero keeps), so it
    # becomes MLX's boolean mask; MLX would add any other mask to the scores.
    defp selection(mask) do
      if EMLX.scalar_type(mask) in [:float16, :bfloat16, :float32, :float64],
        do: mask,
        else: EMLX.astype(mask, :bool)
    end

    # Per-token positions with frequencies: every token becomes its own
    # batch row of length one, whose start offset is its position.
    defp rope_freqs_native(x, ids, freqs, a) do
      shape = EMLX.shape(x)
      [b, t | rest] = Tuple.to_list(shape)
      rows = EMLX.reshape(x, List.to_tuple([b * t, 1 | rest]))
      offsets = EMLX.reshape(ids, {b * t})
      rows |> EMLX.fast_rope_with_freqs(a[:dims], a[:traditional], a[:scale], offsets, freqs) |> EMLX.reshape(shape)
    end

    ## Types and shapes

    defp merged(tensors), do: tensors |> Enum.map(&Nx.type/1) |> Enum.reduce(&Nx.Type.merge/2)

    # Formulas run in at least float32.
    defp compute_type(type), do: Nx.Type.merge(type, {:f, 32})

    defp broadcast_shape(a, b) do
      {a, b} = {Tuple.to_list(a), Tuple.to_list(b)}
      n = max(length(a), length(b))
      pad = fn s -> List.duplicate(1, n - length(s)) ++ s end

      Enum.zip_with(pad.(a), pad.(b), fn
        x, x ->
          x

        1, y ->
          y

        x, 1 ->
          x

        x, y ->
          raise ArgumentError,
                "swiglu: shapes #{inspect(List.to_tuple(a))} and #{inspect(List.to_tuple(b))} do not broadcast (#{x} vs #{y})"
      end)
      |> List.to_tuple()
    end
  end
end
