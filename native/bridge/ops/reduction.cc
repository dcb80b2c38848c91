// Reductions and cumulative ops.
#include "ops.h"

namespace emlx::ops {

namespace {

// Staged (staged.cc): right at any size, accurate float sums.
#define REDUCE(name, kind)                                               \
  {#name, [](const Call& c, S s) -> Out {                                \
     return {reduce(Reduction::kind, c.arr(0), c.axes(1), c.flag(2), s)}; \
   }}
#define CUMULATIVE(name, fn)                                   \
  {#name, [](const Call& c, S s) -> Out {                      \
     return {fn(c.arr(0), c.i32(1), c.flag(2), c.flag(3), s)}; \
   }}

// argmax/argmin: (tensor, keep_axes) over all elements (staged.cc: any
// size), or (tensor, axis, keep_axes) along one axis.
#define ARG_REDUCE(name, fn, is_max)                                     \
  {#name, [](const Call& c, S s) -> Out {                                \
     if (c.size() == 2) return {arg_all(is_max, c.arr(0), c.flag(1), s)}; \
     return {fn(c.arr(0), axis_index(#name, c.i64(1), c.arr(0).ndim()), \
                c.flag(2), s)};                                          \
   }}

// MLX's cummax/cummin on float16 and bfloat16 turn NaN into 0 (float32 and
// float64 propagate it, as Nx does): those run in float32, which holds every
// half value exactly, and are converted back.
Out cumulative_extreme(bool max, const Call& c, S s) {
  auto run = [&](const Array& a) {
    return max ? mx::cummax(a, c.i32(1), c.flag(2), c.flag(3), s)
               : mx::cummin(a, c.i32(1), c.flag(2), c.flag(3), s);
  };
  const auto& a = c.arr(0);
  if (a.dtype() != mx::float16 && a.dtype() != mx::bfloat16) return {run(a)};
  return {mx::astype(run(mx::astype(a, mx::float32, s)), a.dtype(), s)};
}

const Entry ENTRIES[] = {
    // --- reductions ---
    REDUCE(sum, Sum),
    REDUCE(product, Prod),
    REDUCE(max, Max),
    REDUCE(min, Min),
    REDUCE(all, All),
    REDUCE(any, Any),
    CUMULATIVE(cumulative_sum, mx::cumsum),
    CUMULATIVE(cumulative_product, mx::cumprod),
    {"cumulative_max", [](const Call& c, S s) -> Out { return cumulative_extreme(true, c, s); }},
    {"cumulative_min", [](const Call& c, S s) -> Out { return cumulative_extreme(false, c, s); }},
    ARG_REDUCE(argmax, mx::argmax, true),
    ARG_REDUCE(argmin, mx::argmin, false),

    // --- sorting ---
    {"sort", [](const Call& c, S s) -> Out { return {mx::sort(c.arr(0), c.i32(1), s)}; }},
    {"argsort", [](const Call& c, S s) -> Out { return {mx::argsort(c.arr(0), c.i32(1), s)}; }},
};

#undef REDUCE
#undef ARG_REDUCE
#undef CUMULATIVE

}  // namespace

const OpTable reduction{ENTRIES};

}  // namespace emlx::ops
