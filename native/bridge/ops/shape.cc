// Shape, view and type ops.
#include <sstream>

#include "ops.h"

namespace emlx::ops {

namespace {

// as_strided reads the row-major elements of its input at
// offset + sum(i_k * strides_k); every reachable position must lie inside
// the input, or MLX would read outside its buffer.
Array as_strided(const Call& c, S s) {
  const auto& a = c.arr(0);
  auto shape = c.shape(1);
  auto strides = c.ints(2);
  int64_t offset = c.i64(3);
  if (strides.size() != shape.size()) {
    throw std::invalid_argument("as_strided: got " + std::to_string(strides.size()) +
                                " strides for a shape of rank " + std::to_string(shape.size()));
  }
  if (offset < 0) throw std::invalid_argument("as_strided: the offset must be non-negative");
  bool empty = false;
  for (auto d : shape) empty = empty || d == 0;
  if (!empty) {
    __int128 lo = offset, hi = offset;
    for (size_t k = 0; k < shape.size(); ++k) {
      __int128 reach = static_cast<__int128>(shape[k] - 1) * strides[k];
      (reach < 0 ? lo : hi) += reach;
    }
    if (lo < 0 || hi >= static_cast<__int128>(a.size())) {
      std::ostringstream msg;
      msg << "as_strided: shape " << shape_str(shape) << " with these strides and offset " << offset
          << " reaches element " << static_cast<long long>(lo < 0 ? lo : hi)
          << ", outside the input's " << a.size() << " elements";
      throw std::invalid_argument(msg.str());
    }
  }
  // MLX's AsStrided refuses (at evaluation) an input that is not row
  // contiguous, such as a transposed or strided view: such an input is
  // copied first (contiguous() is free for an input that already is).
  return mx::as_strided(mx::contiguous(a, false, s), std::move(shape),
                        mx::Strides(strides.begin(), strides.end()), static_cast<size_t>(offset), s);
}

Array pad(const Call& c, S s) {
  const auto& value = c.arr(4);
  if (value.size() != 1) {
    throw std::invalid_argument("pad: the pad value must be a one-element tensor, got shape " +
                                shape_str(value.shape()));
  }
  auto axes = c.axes(1);
  auto low = c.int32s(2), high = c.int32s(3);
  // Padding by nothing is the identity. (MLX's CUDA Pad of a 0-d int64
  // array with no axes returned the pad value.)
  bool none = low.size() == axes.size() && high.size() == axes.size();
  for (size_t i = 0; none && i < axes.size(); ++i) none = low[i] == 0 && high[i] == 0;
  if (none) return c.arr(0);
  return mx::pad(c.arr(0), axes, low, high, mx::reshape(value, {}, s), "constant", s);
}

Array slice(const Call& c, S s) {
  auto strides = c.int32s(3);
  for (auto st : strides) {
    if (st == 0) throw std::invalid_argument("slice: strides must be non-zero");
  }
  return mx::slice(c.arr(0), c.int32s(1), c.int32s(2), std::move(strides), s);
}

const Entry ENTRIES[] = {
    {"reshape", [](const Call& c, S s) -> Out { return {mx::reshape(c.arr(0), c.shape(1), s)}; }},
    {"broadcast_to",
     [](const Call& c, S s) -> Out { return {mx::broadcast_to(c.arr(0), c.shape(1), s)}; }},
    {"astype", [](const Call& c, S s) -> Out { return {cast(c.arr(0), c.dtype(1), s)}; }},
    {"view", [](const Call& c, S s) -> Out { return {mx::view(c.arr(0), c.dtype(1), s)}; }},
    {"transpose",
     [](const Call& c, S s) -> Out { return {mx::transpose(c.arr(0), c.axes(1), s)}; }},
    {"squeeze", [](const Call& c, S s) -> Out { return {mx::squeeze(c.arr(0), c.axes(1), s)}; }},
    {"copy", [](const Call& c, S s) -> Out { return {mx::copy(c.arr(0), s)}; }},
    {"as_strided", [](const Call& c, S s) -> Out { return {as_strided(c, s)}; }},
    {"pad", [](const Call& c, S s) -> Out { return {pad(c, s)}; }},
    {"slice", [](const Call& c, S s) -> Out { return {slice(c, s)}; }},
    {"slice_update",
     [](const Call& c, S s) -> Out {
       return {mx::slice_update(c.arr(0), c.arr(1), c.int32s(2), c.int32s(3), s)};
     }},
    {"concatenate",
     [](const Call& c, S s) -> Out { return {mx::concatenate(c.arrays(0), c.i32(1), s)}; }},
    {"stack", [](const Call& c, S s) -> Out { return {mx::stack(c.arrays(0), c.i32(1), s)}; }},
};

}  // namespace

const OpTable shape{ENTRIES};

}  // namespace emlx::ops
