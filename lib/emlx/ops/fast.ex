defmodule EMLX.Ops.Fast do
  @moduledoc false
  # Fused ops from mlx::fast and the KV-cache attention steps.
  # Entries: see EMLX.Ops. Native twin: native/bridge/ops/fast.cc.

  @sdpa_layout """
  `q` is `{B, N_q, T_q, D}`, `k` and `v` are `{B, N_kv, T_kv, D}`; `N_q` must
  be a multiple of `N_kv` (grouped-query attention needs no repeated heads).
  The result is `{B, N_q, T_q, D}` in the promoted type of `q`, `k` and `v`.
  MLX uses its fused kernel where it has one for the device and shapes
  (Metal, CUDA) and composes ordinary ops otherwise (the CPU); the values
  are the same. `EMLX.Fast` has the `defn` versions.
  """

  @kv_returns """
  Returns `{attention, k_cache_updated, v_cache_updated}`: the updated caches
  have the cache's shape and type. The inputs are not modified (MLX arrays
  are immutable): keep the returned caches for the next step. Calling
  `EMLX.deallocate/1` on the old caches right after the call leaves the
  graph as their only owner, which lets MLX write the update into their
  buffers instead of copying them.
  """

  def table do
    [
      # --- normalisation ---
      {:fast_rms_norm, [x: :tensor, weight: :tensor, eps: :float],
       """
       RMS normalisation over the last axis (`mlx::fast::rms_norm`):
       `x / sqrt(mean(x², axis: -1) + eps) * weight`.

       `weight` has shape `{n}` where `n` is the size of `x`'s last axis. The
       result has `x`'s shape; its type is that of `x` and `weight` promoted.

           iex> x = EMLX.full(3.0, {2, 4}, :float32, :cpu)
           iex> EMLX.fast_rms_norm(x, EMLX.full(2.0, {4}, :float32, :cpu), 0.0) |> EMLX.sum([0, 1], false) |> EMLX.item() |> Float.round(4)
           16.0
       """, []},
      {:fast_layer_norm, [x: :tensor, weight: :tensor, bias: :tensor, eps: :float],
       """
       Layer normalisation over the last axis (`mlx::fast::layer_norm`):
       `(x - mean) / sqrt(var + eps) * weight + bias`, with the mean and the
       (biased) variance taken over the last axis.

       `weight` and `bias` have shape `{n}`, `n` the size of `x`'s last axis.

           iex> x = EMLX.from_blob(<<1.0::float-32-native, 3.0::float-32-native>>, {1, 2}, :float32, :cpu)
           iex> w = EMLX.ones({2}, :float32, :cpu)
           iex> b = EMLX.full(10.0, {2}, :float32, :cpu)
           iex> EMLX.fast_layer_norm(x, w, b, 0.0) |> EMLX.max([0, 1], false) |> EMLX.item() |> Float.round(4)
           11.0
       """, []},
      {:fast_layer_norm_no_bias, [x: :tensor, weight: :tensor, eps: :float],
       """
       Layer normalisation over the last axis without a bias term:
       `(x - mean) / sqrt(var + eps) * weight`.

           iex> x = EMLX.from_blob(<<1.0::float-32-native, 3.0::float-32-native>>, {1, 2}, :float32, :cpu)
           iex> EMLX.fast_layer_norm_no_bias(x, EMLX.full(2.0, {2}, :float32, :cpu), 0.0) |> EMLX.min([0, 1], false) |> EMLX.item() |> Float.round(4)
           -2.0
       """, []},

      # --- rotary position embeddings ---
      {:fast_rope, [a: :tensor, dims: :int, traditional: :bool, base: :float, scale: :float, offset: :int],
       """
       Rotary position embedding (`mlx::fast::rope`) with one integer start
       position for every sequence.

       `a` is `{B, ..., T, D}` with the sequence on the **second-to-last**
       axis (for example `{B, T, D}` or `{B, H, T, D}`); token `t` is at
       position `offset + t`. The first `dims` features (even, at most `D`)
       are rotated in pairs: feature pair `i` turns by angle
       `position * scale * base^(-2i/dims)`. With `traditional: false` the
       pairs are `(i, i + dims/2)` (split halves, as in Llama/Qwen); with
       `true` they are the adjacent `(2i, 2i + 1)`. Features past `dims`
       pass through. For the `{B, T, H, D}` layout use `fast_rope_ids/6` or
       `fast_rope_positions/6`.

       At position 0 nothing turns:

           iex> a = EMLX.ones({1, 1, 4}, :float32, :cpu)
           iex> EMLX.fast_rope(a, 4, false, 10_000.0, 1.0, 0) |> EMLX.sum([0, 1, 2], false) |> EMLX.item()
           4.0
       """, []},
      {:fast_rope_ids, [a: :tensor, dims: :int, traditional: :bool, base: :float, scale: :float, offset: :tensor],
       """
       Rotary position embedding with one start position per batch row:
       token `t` of row `b` is at position `offset[b] + t`.

       `a` is `{B, T, D}` or, with heads, `{B, T, H, D}` (every head of a
       token gets the token's position); `offset` is an integer tensor of
       shape `{B}` (or a scalar for all rows). `dims`, `traditional`, `base`
       and `scale` are as in `fast_rope/6`. For positions that are not
       consecutive, use `fast_rope_positions/6`.

           iex> a = EMLX.ones({2, 3, 4}, :float32, :cpu)
           iex> offset = EMLX.from_blob(<<0::32-native, 5::32-native>>, {2}, :int32, :cpu)
           iex> EMLX.fast_rope_ids(a, 4, false, 10_000.0, 1.0, offset) |> EMLX.shape()
           {2, 3, 4}
       """, []},
      {:fast_rope_positions,
       [a: :tensor, dims: :int, traditional: :bool, base: :float, scale: :float, position_ids: :tensor],
       """
       Rotary position embedding with an explicit position for every token.

       `a` is `{B, T, H, D}` (or `{B, T, D}`) and `position_ids` an integer
       `{B, T}` tensor: token `t` of row `b` is at `position_ids[b][t]`, in
       any order (padding, packed sequences). Both pair conventions
       (`traditional`) are supported; the other arguments are as in
       `fast_rope/6`. Runs on MLX's fused kernel, each token as its own row.

           iex> a = EMLX.ones({1, 2, 2, 4}, :float32, :cpu)
           iex> ids = EMLX.from_blob(<<0::64-native, 0::64-native>>, {1, 2}, :int64, :cpu)
           iex> EMLX.fast_rope_positions(a, 4, false, 10_000.0, 1.0, ids) |> EMLX.sum([0, 1, 2, 3], false) |> EMLX.item()
           16.0
       """, []},
      {:fast_rope_with_freqs,
       [a: :tensor, dims: :int, traditional: :bool, scale: :float, offset: :tensor, freqs: :tensor],
       """
       Rotary position embedding with caller-supplied frequencies (for
       scaled variants such as Llama 3's), per-row start positions as in
       `fast_rope_ids/6`.

       `freqs` has shape `{dims / 2}`; following `mlx::fast::rope`, pair `i`
       turns by `position * scale / freqs[i]`, so `freqs[i] = base^(2i/dims)`
       reproduces the plain embedding. `offset` is `{B}` or a scalar.

           iex> a = EMLX.ones({1, 2, 4}, :float32, :cpu)
           iex> freqs = EMLX.ones({2}, :float32, :cpu)
           iex> EMLX.fast_rope_with_freqs(a, 4, false, 1.0, EMLX.scalar_tensor(0, :int32, :cpu), freqs) |> EMLX.shape()
           {1, 2, 4}
       """, []},

      # --- attention ---
      {:fast_sdpa, [q: :tensor, k: :tensor, v: :tensor, scale: :float],
       """
       Scaled dot-product attention without a mask:
       `softmax(q · kᵀ · scale) · v` over the key axis.

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> v = EMLX.full(3.0, {1, 1, 4, 2}, :float32, :cpu)
           iex> EMLX.fast_sdpa(q, EMLX.ones({1, 1, 4, 2}, :float32, :cpu), v, 0.5) |> EMLX.max([0, 1, 2, 3], false) |> EMLX.item()
           3.0
       """, []},
      {:fast_sdpa_causal, [q: :tensor, k: :tensor, v: :tensor, scale: :float],
       """
       Scaled dot-product attention with a causal mask: query `i` sees key
       `j` when `j <= i + T_kv - T_q` (the last query is aligned with the last
       key, so a single decoding query sees every key).

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 1, 3, 2}, :float32, :cpu)
           iex> EMLX.fast_sdpa_causal(q, q, q, 1.0) |> EMLX.shape()
           {1, 1, 3, 2}
       """, []},
      {:fast_sdpa_causal_key_masked,
       [q: :tensor, k: :tensor, v: :tensor, scale: :float, key_mask: :tensor, kv_offset: :int],
       """
       Causal attention that also skips padded keys: query `i` sees key `j`
       when `key_mask[b][j]` is non-zero **and** `j <= i + kv_offset`.

       `key_mask` is `{B, T_kv}` (boolean or integer, non-zero = attend).
       `kv_offset` is the position of query 0 among the keys: `0` for a
       prefill, `T_kv - 1` for one decoding query. A query that sees no key
       gets a row of zeros.

       The mask is part of the lazy graph: nothing is evaluated when the op
       is built (the original EMLX evaluated the key mask first to choose a
       kernel; here the combined boolean mask always goes to the masked
       attention, which gives the same values).

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 1, 2, 2}, :float32, :cpu)
           iex> mask = EMLX.ones({1, 2}, :bool, :cpu)
           iex> EMLX.fast_sdpa_causal_key_masked(q, q, q, 1.0, mask, 0) |> EMLX.shape()
           {1, 1, 2, 2}
       """, []},
      {:fast_sdpa_masked, [q: :tensor, k: :tensor, v: :tensor, mask: :tensor, scale: :float],
       """
       Scaled dot-product attention with an explicit `mask`, broadcastable
       to `{B, N_q, T_q, T_kv}`. A boolean mask keeps the `true` entries; any
       other mask is **added** to the scores before the softmax (use `0` and
       `-inf`; an integer 0/1 mask is additive too, not a selection).

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> kv = EMLX.ones({1, 1, 3, 2}, :float32, :cpu)
           iex> EMLX.fast_sdpa_masked(q, kv, kv, EMLX.ones({1, 1, 1, 3}, :bool, :cpu), 1.0) |> EMLX.shape()
           {1, 1, 1, 2}
       """, []},
      # --- attention with sinks (the same ops, one more argument) ---
      {:fast_sdpa, [q: :tensor, k: :tensor, v: :tensor, scale: :float, sinks: :tensor],
       """
       `fast_sdpa/4` with attention sinks: `sinks` holds one logit per query
       head (shape `{N_q}`, as gpt-oss learns them). Each head's softmax
       also counts a sink key of that logit whose value is zero:
       `p_j = exp(s_j) / (exp(sink) + Σ exp(s_k))`, so the weights of the real
       keys sum to less than one. `sinks` is converted to the attention's type.

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> kv = EMLX.ones({1, 1, 3, 2}, :float32, :cpu)
           iex> sinks = EMLX.full(:math.log(3.0) + 1.0, {1}, :float32, :cpu)
           iex> EMLX.fast_sdpa(q, kv, kv, 0.5, sinks) |> EMLX.max([0, 1, 2, 3], false) |> EMLX.item() |> Float.round(4)
           0.5
       """, []},
      {:fast_sdpa_causal, [q: :tensor, k: :tensor, v: :tensor, scale: :float, sinks: :tensor],
       """
       `fast_sdpa_causal/4` with attention sinks (see `fast_sdpa/5`).

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 2, 3, 2}, :float32, :cpu)
           iex> EMLX.fast_sdpa_causal(q, q, q, 1.0, EMLX.full(0.0, {2}, :float32, :cpu)) |> EMLX.shape()
           {1, 2, 3, 2}
       """, []},
      {:fast_sdpa_masked, [q: :tensor, k: :tensor, v: :tensor, mask: :tensor, scale: :float, sinks: :tensor],
       """
       `fast_sdpa_masked/5` with attention sinks (see `fast_sdpa/5`).

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> kv = EMLX.ones({1, 1, 3, 2}, :float32, :cpu)
           iex> mask = EMLX.ones({1, 1, 1, 3}, :bool, :cpu)
           iex> EMLX.fast_sdpa_masked(q, kv, kv, mask, 1.0, EMLX.full(0.0, {1}, :float32, :cpu)) |> EMLX.shape()
           {1, 1, 1, 2}
       """, []},
      {:fast_sdpa_causal_key_masked,
       [q: :tensor, k: :tensor, v: :tensor, scale: :float, key_mask: :tensor, kv_offset: :int, sinks: :tensor],
       """
       `fast_sdpa_causal_key_masked/6` with attention sinks (see `fast_sdpa/5`).
       A query that sees no key still gets a row of zeros.

       #{@sdpa_layout}
           iex> q = EMLX.ones({1, 1, 2, 2}, :float32, :cpu)
           iex> mask = EMLX.ones({1, 2}, :bool, :cpu)
           iex> EMLX.fast_sdpa_causal_key_masked(q, q, q, 1.0, mask, 0, EMLX.full(0.0, {1}, :float32, :cpu)) |> EMLX.shape()
           {1, 1, 2, 2}
       """, []},
      {:fast_swiglu, [gate: :tensor, up: :tensor],
       """
       SwiGLU activation: `silu(gate) * up`, with `silu(x) = x * sigmoid(x)`.
       The two tensors broadcast together.

           iex> gate = EMLX.scalar_tensor(0.0, :float32, :cpu)
           iex> EMLX.fast_swiglu(gate, EMLX.scalar_tensor(5.0, :float32, :cpu)) |> EMLX.item()
           0.0
       """, []},

      # --- KV cache + attention ---
      {:kv_cache_attention,
       [q: :tensor, new_k: :tensor, new_v: :tensor, k_cache: :tensor, v_cache: :tensor, offset: :int, scale: :float],
       """
       One attention step over a preallocated KV cache, in the `{B, T, N, D}`
       layout (sequence before heads, as Bumblebee keeps it).

       `new_k`/`new_v` (`{B, T_new, N_kv, D}`) are written into
       `k_cache`/`v_cache` (`{B, T_max, N_kv, D}`) at positions
       `offset ... offset + T_new - 1`; then `q` (`{B, T_q, N_q, D}`) attends
       causally over the `offset + T_new` valid positions (no mask for a
       single query). The attention is `{B, T_q, N_q, D}`.

       #{@kv_returns}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> cache = EMLX.full(0.0, {1, 4, 1, 2}, :float32, :cpu)
           iex> {out, k, _v} = EMLX.kv_cache_attention(q, q, q, cache, cache, 0, 1.0)
           iex> {EMLX.shape(out), EMLX.sum(k, [0, 1, 2, 3], false) |> EMLX.item()}
           {{1, 1, 1, 2}, 2.0}
       """, [out: :tuple]},
      {:kv_cache_attention_masked,
       [
         q: :tensor,
         new_k: :tensor,
         new_v: :tensor,
         k_cache: :tensor,
         v_cache: :tensor,
         offset: :int,
         scale: :float,
         key_mask: :tensor
       ],
       """
       `kv_cache_attention/7` that also skips padded keys: `key_mask` is
       `{B, offset + T_new}` (or `{B, T_max}`, of which the valid prefix is
       used), non-zero where a key may be attended. The causal rule applies as
       well, and a query that sees no key gets a row of zeros.

       #{@kv_returns}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> cache = EMLX.full(0.0, {1, 4, 1, 2}, :float32, :cpu)
           iex> mask = EMLX.ones({1, 1}, :int32, :cpu)
           iex> {out, _k, _v} = EMLX.kv_cache_attention_masked(q, q, q, cache, cache, 0, 1.0, mask)
           iex> EMLX.shape(out)
           {1, 1, 1, 2}
       """, [out: :tuple]},
      {:kv_cache_sdpa_dynamic,
       [
         q: :tensor,
         new_k: :tensor,
         new_v: :tensor,
         k_cache: :tensor,
         v_cache: :tensor,
         offset: :tensor,
         key_mask: :tensor,
         scale: :float
       ],
       """
       One attention step over a KV cache whose write position is a tensor
       (so a compiled decoding loop can carry it), in the `{B, T, N, D}`
       layout; `EMLX.Fast.kv_cache_sdpa_update/8` is the `Nx` version.

       `new_k`/`new_v` (`{B, T, N_kv, D}`) are written into `k_cache`/`v_cache`
       (`{B, T_max, N_kv, D}`) at position `offset` (an integer tensor holding
       one value, clamped to `0..T_max - T`). Query `i` of `q`
       (`{B, T, N_q, D}`), at position `offset + i`, sees cache position `j`
       when `j <= offset + i` and `key_mask[b][j]` is non-zero (`key_mask`
       `{B, T_max}`, or `nil` for every position); a query that sees nothing
       gets zeros. The attention is **head-major**, `{B, N_q, T, D}`.

       #{@kv_returns}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> cache = EMLX.full(0.0, {1, 4, 1, 2}, :float32, :cpu)
           iex> at = EMLX.scalar_tensor(2, :int32, :cpu)
           iex> {out, k, _v} = EMLX.kv_cache_sdpa_dynamic(q, q, q, cache, cache, at, nil, 1.0)
           iex> {EMLX.shape(out), EMLX.sum(k, [0, 1, 2, 3], false) |> EMLX.item()}
           {{1, 1, 1, 2}, 2.0}
       """, [out: :tuple]},
      {:kv_cache_sdpa_update,
       [q: :tensor, new_k: :tensor, new_v: :tensor, k_cache: :tensor, v_cache: :tensor, offset: :int, scale: :float],
       """
       `kv_cache_attention/7` in the `{B, N, T, D}` layout (heads before the
       sequence, as MLX's attention takes it): `q` is `{B, N_q, T_q, D}`,
       `new_k`/`new_v` `{B, N_kv, T_new, D}`, the caches `{B, N_kv, T_max, D}`;
       the attention is `{B, N_q, T_q, D}`.

       #{@kv_returns}
           iex> q = EMLX.ones({1, 1, 1, 2}, :float32, :cpu)
           iex> cache = EMLX.full(0.0, {1, 1, 4, 2}, :float32, :cpu)
           iex> {_out, k, _v} = EMLX.kv_cache_sdpa_update(q, q, q, cache, cache, 3, 1.0)
           iex> EMLX.shape(k)
           {1, 1, 4, 2}
       """, [out: :tuple]}
    ]
  end
end
