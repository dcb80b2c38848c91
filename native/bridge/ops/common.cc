// Helpers shared by the op families: axis checks, index checks and clamping.
#include <limits>
#include <sstream>

#include "ops.h"

namespace emlx::ops {

std::string shape_str(const mx::Shape& shape) {
  std::ostringstream out;
  out << "(";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << (shape.size() == 1 ? ",)" : ")");
  return out.str();
}

Array half_via_float32(const Array& a, const Array& b, S s,
                       const std::function<Array(const Array&, const Array&)>& f) {
  // Below this many elements per operand the conversions' graph nodes cost
  // more than the slow GEMM.
  constexpr size_t min_size = 4096;
  auto half = [](mx::Dtype d) { return d == mx::bfloat16 || d == mx::float16; };
  auto out_type = mx::promote_types(a.dtype(), b.dtype());
  if (!half(out_type) || mx::to_stream(s).device != mx::Device::cpu ||
      (a.size() < min_size && b.size() < min_size)) {
    return f(a, b);
  }
  auto wide = f(mx::astype(a, mx::float32, s), mx::astype(b, mx::float32, s));
  return mx::astype(wide, out_type, s);
}

int axis_index(const char* op, int64_t axis, int ndim) {
  if (axis < -ndim || axis >= ndim) {
    std::ostringstream msg;
    msg << op << ": axis " << axis << " is out of range for a tensor of rank " << ndim;
    if (ndim > 0) msg << " (expected -" << ndim << " to " << ndim - 1 << ")";
    throw std::out_of_range(msg.str());
  }
  return static_cast<int>(axis < 0 ? axis + ndim : axis);
}

void require_integer(const char* op, const char* what, const Array& a) {
  if (!mx::issubdtype(a.dtype(), mx::integer)) {
    throw std::invalid_argument(std::string(op) + ": " + what + " must be an integer tensor, got " +
                                dtype_name(a.dtype()));
  }
}

namespace {

// The largest value of an integer dtype, saturated to int64.
int64_t int_max(mx::Dtype d) {
  switch (d) {
    case mx::int8: return std::numeric_limits<int8_t>::max();
    case mx::int16: return std::numeric_limits<int16_t>::max();
    case mx::int32: return std::numeric_limits<int32_t>::max();
    case mx::uint8: return std::numeric_limits<uint8_t>::max();
    case mx::uint16: return std::numeric_limits<uint16_t>::max();
    case mx::uint32: return std::numeric_limits<uint32_t>::max();
    default: return std::numeric_limits<int64_t>::max();
  }
}

}  // namespace

Array clamp_index(const Array& idx, int64_t lo, int64_t hi, S s) {
  auto dtype = idx.dtype();
  Array out = idx;
  // Bounds the dtype cannot exceed need no comparison (and could not be
  // represented in it anyway).
  if (lo > 0 || mx::issubdtype(dtype, mx::signedinteger)) {
    out = mx::maximum(out, Array(lo, dtype), s);
  }
  if (hi < int_max(dtype)) out = mx::minimum(out, Array(hi, dtype), s);
  return out;
}

}  // namespace emlx::ops
