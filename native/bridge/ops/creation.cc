// Creation ops: tensors from scalars, constants and ranges.
#include "ops.h"

namespace emlx::ops {

namespace {

// The n x m identity, as row index == column index. (MLX's eye scatters
// ones into zeros, and its GPU scatter has no 8-byte types: an s64, u64 or
// c64 eye failed there.)
Array eye(int n, int m, mx::Dtype dtype, S s) {
  if (n < 0 || m < 0) throw std::invalid_argument("[eye] N and M must be positive integers.");
  auto rows = mx::reshape(mx::arange(0, n, mx::int32, s), {n, 1}, s);
  auto cols = mx::reshape(mx::arange(0, m, mx::int32, s), {1, m}, s);
  return mx::astype(mx::equal(rows, cols, s), dtype, s);
}

const Entry ENTRIES[] = {
    {"scalar_tensor", [](const Call& c, S) -> Out { return {scalar(c, 0, c.dtype(1))}; }},
    {"full",
     [](const Call& c, S s) -> Out {
       auto dtype = c.dtype(2);
       return {mx::full(c.shape(1), scalar(c, 0, dtype), dtype, s)};
     }},
    {"ones", [](const Call& c, S s) -> Out { return {mx::ones(c.shape(0), c.dtype(1), s)}; }},
    {"eye", [](const Call& c, S s) -> Out { return {eye(c.i32(0), c.i32(1), c.dtype(2), s)}; }},
    {"arange",
     [](const Call& c, S s) -> Out {
       auto dtype = c.flag(3) ? mx::int64 : mx::float32;
       return {mx::arange(c.f64(0), c.f64(1), c.f64(2), dtype, s)};
     }},
};

}  // namespace

const OpTable creation{ENTRIES};

}  // namespace emlx::ops
