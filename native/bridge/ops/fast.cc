// Fused ops from mlx::fast (normalisation, rotary embeddings, attention)
// and the KV-cache attention steps built on them.
// Elixir twin: lib/emlx/ops/fast.ex (same names, same argument order).
//
// Everything here only builds graph nodes: nothing is evaluated, so every
// op is as lazy as an element-wise one. Shapes are checked up front so that
// a mistake names the EMLX function and the argument, not an MLX internal.
#include <limits>
#include <string>

#include "ops.h"

namespace emlx::ops {

namespace {

void need_rank(const Call& c, const Array& a, int rank, const char* name, const char* layout) {
  if (static_cast<int>(a.ndim()) != rank) {
    bad_arg(c, std::string(name) + " must have rank " + std::to_string(rank) + " (" + layout +
               "), got shape " + shape_text(a));
  }
}

void need_integer(const Call& c, const Array& a, const char* name) {
  if (!mx::issubdtype(a.dtype(), mx::integer)) {
    bad_arg(c, std::string(name) + " must be an integer tensor, got " + dtype_name(a.dtype()));
  }
}

// `weight` (and `bias`) of a normalisation: one value per element of x's last axis.
void check_norm(const Call& c, const Array& x, const Array& p, const char* name) {
  if (x.ndim() == 0) bad_arg(c, "x must have at least one axis, got a scalar");
  if (p.ndim() != 1 || p.shape(0) != x.shape(-1)) {
    bad_arg(c, std::string(name) + " must have shape {" + std::to_string(x.shape(-1)) +
               "} (the size of x's last axis), got " + shape_text(p));
  }
}

// --- rotary embeddings ---------------------------------------------------------

// The number of leading features to rotate, in pairs.
void check_dims(const Call& c, const Array& a, int d) {
  if (a.ndim() == 0) bad_arg(c, "a must not be a scalar");
  if (d <= 0 || d % 2 != 0 || d > a.shape(-1)) {
    bad_arg(c, "dims must be even, positive and at most the last axis of a (" +
               std::to_string(a.shape(-1)) + "), got " + std::to_string(d));
  }
}

// An offset tensor for mlx::fast::rope: a scalar or one start per batch row.
void check_offset(const Call& c, const Array& offset, int batch, const char* name) {
  need_integer(c, offset, name);
  if (offset.ndim() > 1 || (offset.size() != 1 && offset.size() != static_cast<size_t>(batch))) {
    bad_arg(c, std::string(name) + " must be a scalar or have shape {" + std::to_string(batch) +
               "} (one start position per batch row), got " + shape_text(offset));
  }
}

// mlx::fast::rope rotates along axis -2 of (B, ..., T, D). A rank-4 input in
// the {B, T, H, D} layout (heads after the sequence axis) is rotated as its
// {B, H, T, D} transpose, so every head of token t gets position t.
Array rope_btd(const Call& c, const Array& a, const Array& offset,
               const std::optional<float>& base, const std::optional<Array>& freqs, S s) {
  int d = c.i32(1);
  bool traditional = c.flag(2);
  float scale = static_cast<float>(c.f64(freqs ? 3 : 4));
  if (a.ndim() != 3 && a.ndim() != 4) {
    bad_arg(c, "a must have shape {B, T, D} or {B, T, H, D}, got " + shape_text(a));
  }
  check_dims(c, a, d);
  check_offset(c, offset, a.shape(0), "offset");
  if (a.ndim() == 3) return mx::fast::rope(a, d, traditional, base, scale, offset, freqs, s);
  auto bhtd = mx::transpose(a, {0, 2, 1, 3}, s);
  auto out = mx::fast::rope(bhtd, d, traditional, base, scale, offset, freqs, s);
  return mx::transpose(out, {0, 2, 1, 3}, s);
}

// Arbitrary per-token positions: each token becomes its own batch row of
// length 1, whose offset is its position, so the fused kernel still applies.
Array rope_positions(const Call& c, S s) {
  const auto& a = c.arr(0);
  const auto& ids = c.arr(5);
  if (a.ndim() != 3 && a.ndim() != 4) {
    bad_arg(c, "a must have shape {B, T, D} or {B, T, H, D}, got " + shape_text(a));
  }
  check_dims(c, a, c.i32(1));
  need_integer(c, ids, "position_ids");
  if (ids.ndim() != 2 || ids.shape(0) != a.shape(0) || ids.shape(1) != a.shape(1)) {
    bad_arg(c, "position_ids must have shape {" + std::to_string(a.shape(0)) + ", " +
               std::to_string(a.shape(1)) + "} (B and T of a), got " + shape_text(ids));
  }
  int64_t rows64 = static_cast<int64_t>(a.shape(0)) * a.shape(1);
  if (rows64 > std::numeric_limits<int32_t>::max()) bad_arg(c, "B * T must be below 2^31");
  int rows = static_cast<int>(rows64);
  mx::Shape tokens = a.ndim() == 4 ? mx::Shape{rows, a.shape(2), 1, a.shape(3)}
                                   : mx::Shape{rows, 1, a.shape(2)};
  auto flat = mx::reshape(a, tokens, s);
  auto offset = mx::reshape(ids, {rows}, s);
  auto out = mx::fast::rope(flat, c.i32(1), c.flag(2), static_cast<float>(c.f64(3)),
                            static_cast<float>(c.f64(4)), offset, std::nullopt, s);
  return mx::reshape(out, a.shape(), s);
}

// --- attention -------------------------------------------------------------------

Array sdpa(const Array& q, const Array& k, const Array& v, float scale, const char* mode,
           std::optional<Array> mask, S s, std::optional<Array> sinks = std::nullopt) {
  // MLX divides the query heads by the key/value heads while building the
  // node: zero KV heads must not reach it (SIGFPE).
  if (q.ndim() == 4 && k.ndim() == 4 && v.ndim() == 4 && k.shape(1) == 0) {
    if (q.shape(1) != 0) {
      throw std::invalid_argument("attention: k and v have no heads but q has " +
                                  std::to_string(q.shape(1)));
    }
    return mx::zeros({q.shape(0), 0, q.shape(2), v.shape(3)}, mx::result_type(q, k, v), s);
  }
  // force_fused stays false: MLX picks its fused kernel where one exists for
  // these shapes (Metal, CUDA) and composes plain ops otherwise (the CPU).
  return mx::fast::scaled_dot_product_attention(q, k, v, scale, mode, std::move(mask),
                                                sinks, false, s);
}

// The optional attention sinks at argument `i`: one logit per query head,
// in the attention's type (MLX refuses sinks of a wider type).
std::optional<Array> sinks_at(const Call& c, size_t i, S s) {
  if (c.size() <= i) return std::nullopt;
  const auto& q = c.arr(0);
  const auto& sinks = c.arr(i);
  need_rank(c, q, 4, "q", "{B, N_q, T_q, D}");
  if (sinks.ndim() != 1 || sinks.shape(0) != q.shape(1)) {
    bad_arg(c, "sinks must hold one logit per query head, shape {" + std::to_string(q.shape(1)) +
               "}, got " + shape_text(sinks));
  }
  auto type = mx::result_type({q, c.arr(1), c.arr(2)});
  if (!mx::issubdtype(type, mx::floating)) return sinks;  // MLX names the bad type
  return mx::astype(sinks, type, s);
}

// {B, 1, T_q, T_kv} boolean: key j is visible from query i when
// key_mask[b, j] is non-zero and j <= i + kv_offset.
Array causal_key_keep(const Call& c, const Array& key_mask, int batch, int t_q, int t_kv,
                      int kv_offset, S s) {
  if (key_mask.ndim() != 2 || key_mask.shape(0) != batch || key_mask.shape(1) != t_kv) {
    bad_arg(c, "key_mask must have shape {" + std::to_string(batch) + ", " + std::to_string(t_kv) +
               "} ({B, T_kv}), got " + shape_text(key_mask));
  }
  auto keys = mx::reshape(mx::astype(key_mask, mx::bool_, s), {batch, 1, 1, t_kv}, s);
  auto row = mx::reshape(mx::arange(0, t_q, s), {1, 1, t_q, 1}, s);
  auto col = mx::reshape(mx::arange(0, t_kv, s), {1, 1, 1, t_kv}, s);
  auto causal = mx::less_equal(col, mx::add(row, Array(kv_offset, mx::int32), s), s);
  return mx::logical_and(keys, causal, s);
}

// Attention under a boolean `keep` mask; a query that sees no key at all
// gets a zero row (softmax over nothing), never NaN or an average.
Array masked_attention(const Array& q, const Array& k, const Array& v, float scale,
                       const Array& keep, S s, std::optional<Array> sinks = std::nullopt) {
  auto out = sdpa(q, k, v, scale, "array", keep, s, std::move(sinks));
  auto seen = mx::any(keep, std::vector<int>{-1}, true, s);
  return mx::where(seen, out, Array(0, out.dtype()), s);
}

// The KV-cache step shared by the three kv_cache_* ops. `t` is the sequence
// axis (1 for {B, T, N, D}, 2 for {B, N, T, D}); `h` the heads axis.
struct KvStep {
  Array k_upd, v_upd, k_valid, v_valid;
  int valid_len, t_max;
};

// Checks the shapes of a KV-cache step (q, new_k, new_v, k_cache, v_cache
// at arguments 0-4; `t` the sequence axis).
void check_kv(const Call& c, int t) {
  const auto& q = c.arr(0);
  const auto& new_k = c.arr(1);
  const auto& new_v = c.arr(2);
  const auto& k_cache = c.arr(3);
  const auto& v_cache = c.arr(4);
  int h = t == 1 ? 2 : 1;
  const char* layout = t == 1 ? "{B, T, N, D}" : "{B, N, T, D}";
  need_rank(c, q, 4, "q", layout);
  need_rank(c, new_k, 4, "new_k", layout);
  need_rank(c, k_cache, 4, "k_cache", layout);
  if (new_v.shape() != new_k.shape()) {
    bad_arg(c, "new_v must have the shape of new_k " + shape_text(new_k) + ", got " + shape_text(new_v));
  }
  if (v_cache.shape() != k_cache.shape()) {
    bad_arg(c, "v_cache must have the shape of k_cache " + shape_text(k_cache) + ", got " + shape_text(v_cache));
  }
  if (k_cache.shape(0) != new_k.shape(0) || k_cache.shape(h) != new_k.shape(h) ||
      k_cache.shape(3) != new_k.shape(3)) {
    bad_arg(c, "new_k " + shape_text(new_k) + " and k_cache " + shape_text(k_cache) +
               " must agree on B, the number of KV heads and D");
  }
}

KvStep kv_update(const Call& c, int t, S s) {
  check_kv(c, t);
  const auto& q = c.arr(0);
  const auto& new_k = c.arr(1);
  const auto& new_v = c.arr(2);
  const auto& k_cache = c.arr(3);
  const auto& v_cache = c.arr(4);
  int64_t offset = c.i64(5);
  int t_new = new_k.shape(t);
  int t_max = k_cache.shape(t);
  if (offset < 0 || offset + t_new > t_max) {
    bad_arg(c, "offset " + std::to_string(offset) + " plus the " + std::to_string(t_new) +
               " new positions must fit in the cache's " + std::to_string(t_max) + " positions");
  }
  int valid = static_cast<int>(offset) + t_new;
  if (q.shape(t) > valid) {
    bad_arg(c, "q has " + std::to_string(q.shape(t)) + " query positions but only " +
               std::to_string(valid) + " keys are valid after the update");
  }
  mx::Shape start(4, 0), stop = k_cache.shape();
  start[t] = static_cast<int>(offset);
  stop[t] = valid;
  auto k_upd = mx::slice_update(k_cache, new_k, start, stop, s);
  auto v_upd = mx::slice_update(v_cache, new_v, start, stop, s);
  mx::Shape zero(4, 0);
  auto k_valid = mx::slice(k_upd, zero, stop, s);
  auto v_valid = mx::slice(v_upd, zero, stop, s);
  return {k_upd, v_upd, k_valid, v_valid, valid, t_max};
}

// Attention of q over the valid cache prefix, in {B, N, T, D}. The last
// query sits at the last valid key (causal alignment at the end).
Array kv_attention(const Call& c, const Array& q, const Array& k, const Array& v,
                   std::optional<Array> key_mask, const KvStep& step, S s) {
  int valid = step.valid_len;
  float scale = static_cast<float>(c.f64(6));
  int t_q = q.shape(2);
  if (!key_mask) return sdpa(q, k, v, scale, t_q == 1 ? "" : "causal", std::nullopt, s);
  // The mask covers the valid keys, or the whole cache (then cut to them).
  Array m = *key_mask;
  if (m.ndim() == 2 && m.shape(1) == step.t_max && step.t_max != valid) {
    m = mx::slice(m, {0, 0}, {m.shape(0), valid}, s);
  }
  auto keep = causal_key_keep(c, m, q.shape(0), t_q, valid, valid - t_q, s);
  return masked_attention(q, k, v, scale, keep, s);
}

// kv_cache_sdpa_dynamic: {B, T, N, D} inputs, the write position an integer
// tensor (clamped so the new positions fit), an optional {B, T_max} key
// mask. Query i, at position offset + i, sees cache position j when
// j <= offset + i and the mask allows j. Attention in {B, N, T, D}.
Out kv_cache_dynamic(const Call& c, S s) {
  check_kv(c, 1);
  const auto& q = c.arr(0);
  const auto& new_k = c.arr(1);
  const auto& k_cache = c.arr(3);
  int t_new = new_k.shape(1);
  int t_max = k_cache.shape(1);
  int batch = k_cache.shape(0);
  if (q.shape(1) != t_new || t_new > t_max || q.shape(0) != batch) {
    bad_arg(c, "q " + shape_text(q) + " and new_k " + shape_text(new_k) +
               " need the same batch and number of positions, at most the cache's " +
               std::to_string(t_max));
  }
  const auto& offset = c.arr(5);
  need_integer(c, offset, "offset");
  if (offset.size() != 1) bad_arg(c, "offset must hold one position, got shape " + shape_text(offset));
  auto off = mx::clip(mx::reshape(mx::astype(offset, mx::int32, s), {1}, s), Array(0, mx::int32),
                      Array(t_max - t_new, mx::int32), s);
  auto k_upd = mx::slice_update(k_cache, mx::astype(new_k, k_cache.dtype(), s), off, {1}, s);
  auto v_upd = mx::slice_update(c.arr(4), mx::astype(c.arr(2), c.arr(4).dtype(), s), off, {1}, s);
  auto row = mx::add(mx::reshape(mx::arange(0, t_new, s), {1, 1, t_new, 1}, s),
                     mx::reshape(off, {1, 1, 1, 1}, s), s);
  auto col = mx::reshape(mx::arange(0, t_max, s), {1, 1, 1, t_max}, s);
  auto keep = mx::less_equal(col, row, s);
  if (!c.none(6)) {
    const auto& key_mask = c.arr(6);
    if (key_mask.ndim() != 2 || key_mask.shape(0) != batch || key_mask.shape(1) != t_max) {
      bad_arg(c, "key_mask must have shape {" + std::to_string(batch) + ", " + std::to_string(t_max) +
                 "} ({B, T_max}), got " + shape_text(key_mask));
    }
    auto keys = mx::reshape(mx::astype(key_mask, mx::bool_, s), {batch, 1, 1, t_max}, s);
    keep = mx::logical_and(keys, keep, s);
  }
  const std::vector<int> swap = {0, 2, 1, 3};
  auto out = masked_attention(mx::transpose(q, swap, s), mx::transpose(k_upd, swap, s),
                              mx::transpose(v_upd, swap, s), static_cast<float>(c.f64(7)), keep, s);
  return {out, k_upd, v_upd};
}

Out kv_cache_bthd(const Call& c, bool masked, S s) {
  auto step = kv_update(c, 1, s);
  const std::vector<int> swap = {0, 2, 1, 3};
  auto q = mx::transpose(c.arr(0), swap, s);
  auto k = mx::transpose(step.k_valid, swap, s);
  auto v = mx::transpose(step.v_valid, swap, s);
  std::optional<Array> mask;
  if (masked) mask = c.arr(7);
  auto out = kv_attention(c, q, k, v, mask, step, s);
  return {mx::transpose(out, swap, s), step.k_upd, step.v_upd};
}

// An empty input has an empty result, of the type MLX's norms give (x's
// and the weight's). Built without MLX's kernels: its CUDA build launches
// one of zero blocks, which a CUDA graph refuses ("invalid argument").
std::optional<Array> empty_norm(const Array& x, const Array& weight, S s) {
  if (x.size() != 0) return std::nullopt;
  return mx::zeros(x.shape(), mx::promote_types(x.dtype(), weight.dtype()), s);
}

const Entry ENTRIES[] = {
    // --- normalisation ---
    {"fast_rms_norm",
     [](const Call& c, S s) -> Out {
       check_norm(c, c.arr(0), c.arr(1), "weight");
       if (auto empty = empty_norm(c.arr(0), c.arr(1), s)) return {*empty};
       return {mx::fast::rms_norm(c.arr(0), c.arr(1), static_cast<float>(c.f64(2)), s)};
     }},
    {"fast_layer_norm",
     [](const Call& c, S s) -> Out {
       check_norm(c, c.arr(0), c.arr(1), "weight");
       check_norm(c, c.arr(0), c.arr(2), "bias");
       if (auto empty = empty_norm(c.arr(0), c.arr(1), s)) return {*empty};
       return {mx::fast::layer_norm(c.arr(0), c.arr(1), c.arr(2), static_cast<float>(c.f64(3)),
                                    s)};
     }},
    {"fast_layer_norm_no_bias",
     [](const Call& c, S s) -> Out {
       check_norm(c, c.arr(0), c.arr(1), "weight");
       if (auto empty = empty_norm(c.arr(0), c.arr(1), s)) return {*empty};
       return {mx::fast::layer_norm(c.arr(0), c.arr(1), std::nullopt,
                                    static_cast<float>(c.f64(2)), s)};
     }},

    // --- rotary position embeddings ---
    {"fast_rope",
     [](const Call& c, S s) -> Out {
       return {mx::fast::rope(c.arr(0), c.i32(1), c.flag(2), static_cast<float>(c.f64(3)),
                              static_cast<float>(c.f64(4)), c.i32(5), std::nullopt, s)};
     }},
    {"fast_rope_ids",
     [](const Call& c, S s) -> Out {
       return {rope_btd(c, c.arr(0), c.arr(5), static_cast<float>(c.f64(3)), std::nullopt, s)};
     }},
    {"fast_rope_positions", [](const Call& c, S s) -> Out { return {rope_positions(c, s)}; }},
    {"fast_rope_with_freqs",
     [](const Call& c, S s) -> Out {
       const auto& freqs = c.arr(5);
       check_dims(c, c.arr(0), c.i32(1));
       int half = c.i32(1) / 2;
       if (freqs.ndim() != 1 || freqs.shape(0) != half) {
         bad_arg(c, "freqs must have shape {" + std::to_string(half) + "} (dims / 2), got " +
                    shape_text(freqs));
       }
       return {rope_btd(c, c.arr(0), c.arr(4), std::nullopt, freqs, s)};
     }},

    // --- attention ---
    // Each attention op takes optional sinks as its last argument.
    {"fast_sdpa",
     [](const Call& c, S s) -> Out {
       return {sdpa(c.arr(0), c.arr(1), c.arr(2), static_cast<float>(c.f64(3)), "", std::nullopt,
                    s, sinks_at(c, 4, s))};
     }},
    {"fast_sdpa_causal",
     [](const Call& c, S s) -> Out {
       return {sdpa(c.arr(0), c.arr(1), c.arr(2), static_cast<float>(c.f64(3)), "causal",
                    std::nullopt, s, sinks_at(c, 4, s))};
     }},
    {"fast_sdpa_masked",
     [](const Call& c, S s) -> Out {
       return {sdpa(c.arr(0), c.arr(1), c.arr(2), static_cast<float>(c.f64(4)), "array",
                    c.arr(3), s, sinks_at(c, 5, s))};
     }},
    {"fast_sdpa_causal_key_masked",
     [](const Call& c, S s) -> Out {
       const auto& q = c.arr(0);
       const auto& k = c.arr(1);
       need_rank(c, q, 4, "q", "{B, N_q, T_q, D}");
       need_rank(c, k, 4, "k", "{B, N_kv, T_kv, D}");
       auto keep = causal_key_keep(c, c.arr(4), q.shape(0), q.shape(2), k.shape(2), c.i32(5), s);
       return {masked_attention(q, k, c.arr(2), static_cast<float>(c.f64(3)), keep, s,
                                sinks_at(c, 6, s))};
     }},
    {"fast_swiglu",
     [](const Call& c, S s) -> Out {
       const auto& gate = c.arr(0);
       return {mx::multiply(mx::multiply(gate, mx::sigmoid(gate, s), s), c.arr(1), s)};
     }},

    // --- KV cache + attention ---
    {"kv_cache_attention", [](const Call& c, S s) -> Out { return kv_cache_bthd(c, false, s); }},
    {"kv_cache_attention_masked",
     [](const Call& c, S s) -> Out { return kv_cache_bthd(c, true, s); }},
    {"kv_cache_sdpa_update",
     [](const Call& c, S s) -> Out {
       auto step = kv_update(c, 2, s);
       auto out =
           kv_attention(c, c.arr(0), step.k_valid, step.v_valid, std::nullopt, step, s);
       return {out, step.k_upd, step.v_upd};
     }},
    {"kv_cache_sdpa_dynamic", [](const Call& c, S s) -> Out { return kv_cache_dynamic(c, s); }},
};

}  // namespace

const OpTable fast{ENTRIES};

}  // namespace emlx::ops
