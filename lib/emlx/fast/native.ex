if Code.ensure_loaded?(Nx) do
  defmodule EMLX.Fast.Native do
    @moduledoc false
    # EMLX.Fast's blocks as MLX ops on `{device, ref}` arrays: one table op
    # (or a few) per block, nothing read back, so a compiler that traces the
    # table ops sees them all. Returns the array (a tuple of arrays for the
    # KV-cache step), or :default where MLX cannot run the block and its
    # plain-Nx formula must.

    alias EMLX.Fast.Block

    @floats [:float16, :bfloat16, :float32, :float64]

    @doc false
    def run(%Block{op: op, attrs: a}, refs) do
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
          rope_freqs(x, ids, freqs, a)

        {:swiglu, [gate, up]} ->
          EMLX.fast_swiglu(gate, up)

        {:einsum, operands} ->
          einsum(operands, a[:subscripts])

        {:kv_cache_sdpa_update, [q, new_k, new_v, k_cache, v_cache, offset, key_mask]} ->
          EMLX.kv_cache_sdpa_dynamic(q, new_k, new_v, k_cache, v_cache, offset, key_mask, a[:scale])

        {:kv_cache_sdpa_update, [q, new_k, new_v, k_cache, v_cache, offset]} ->
          EMLX.kv_cache_sdpa_dynamic(q, new_k, new_v, k_cache, v_cache, offset, nil, a[:scale])

        {sdpa, [q, k, v | rest]} ->
          attention(sdpa, a, q, k, v, rest)
      end
    end

    # The sinks, when given, are the last argument of every attention op.
    defp attention(op, a, q, k, v, rest) do
      {rest, sinks} = if a[:sinks], do: {Enum.drop(rest, -1), [List.last(rest)]}, else: {rest, []}

      case {op, rest} do
        {:sdpa, []} ->
          apply(EMLX, :fast_sdpa, [q, k, v, a[:scale] | sinks])

        {:sdpa_causal, []} ->
          apply(EMLX, :fast_sdpa_causal, [q, k, v, a[:scale] | sinks])

        {:sdpa_masked, [mask]} ->
          apply(EMLX, :fast_sdpa_masked, [q, k, v, selection(mask), a[:scale] | sinks])

        {:sdpa_causal_key_masked, [m]} ->
          apply(EMLX, :fast_sdpa_causal_key_masked, [q, k, v, a[:scale], m, a[:kv_offset] | sinks])
      end
    end

    # Nx has no boolean type: an integer mask selects (non-zero keeps), so it
    # becomes MLX's boolean mask; MLX would add any other mask to the scores.
    defp selection(mask) do
      if EMLX.scalar_type(mask) in @floats, do: mask, else: EMLX.astype(mask, :bool)
    end

    # Per-token positions with frequencies: every token becomes its own
    # batch row of length one, whose start offset is its position.
    defp rope_freqs(x, ids, freqs, a) do
      shape = EMLX.shape(x)
      [b, t | rest] = Tuple.to_list(shape)
      rows = EMLX.reshape(x, List.to_tuple([b * t, 1 | rest]))
      offsets = EMLX.reshape(ids, {b * t})
      rows |> EMLX.fast_rope_with_freqs(a[:dims], a[:traditional], a[:scale], offsets, freqs) |> EMLX.reshape(shape)
    end

    # MLX's einsum multiplies with matmul, which has floating-point kernels
    # only: integer operands take the formula (exact integer dots).
    defp einsum(operands, subscripts) do
      if Enum.all?(operands, &(EMLX.scalar_type(&1) in [:complex64 | @floats])),
        do: EMLX.einsum(operands, subscripts),
        else: :default
    end
  end
end
