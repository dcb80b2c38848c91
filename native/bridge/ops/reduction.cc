// Reductions and cumulative ops.
#include "ops.h"

namespace emlx::ops {

namespace {

#define REDUCE(name, fn)                             \
  {#name, [](const Call& c, S s) -> Out {            \
     return {fn(c.arr(0), c.axes(1), c.flag(2), s)}; \
   }}
#define CUMULATIVE(name, fn)                                   \
  {#name, [](const Call& c, S s) -> Out {                      \
     return {fn(c.arr(0), c.i32(1), c.flag(2), c.flag(3), s)}; \
   }}

const Entry ENTRIES[] = {
    // --- reductions ---
    REDUCE(sum, mx::sum),
    REDUCE(product, mx::prod),
    REDUCE(max, mx::max),
    REDUCE(min, mx::min),
    REDUCE(all, mx::all),
    REDUCE(any, mx::any),
    CUMULATIVE(cumulative_sum, mx::cumsum),
    CUMULATIVE(cumulative_product, mx::cumprod),
    CUMULATIVE(cumulative_max, mx::cummax),
    CUMULATIVE(cumulative_min, mx::cummin),
};

#undef REDUCE
#undef CUMULATIVE

}  // namespace

const OpTable reduction{ENTRIES};

}  // namespace emlx::ops
