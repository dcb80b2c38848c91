// Helpers shared by the op families: axis checks, index checks and clamping.
#include <algorithm>
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

namespace {
thread_local const Call* t_known = nullptr;

template <typename T>
void read_ints(const Array& a, std::vector<int64_t>& out) {
  const T* p = a.data<T>();
  // Row-major over a's own strides (a computed view may be strided).
  std::vector<int64_t> idx(a.ndim(), 0);
  for (size_t n = 0; n < a.size(); ++n) {
    int64_t offset = 0;
    for (int d = 0; d < static_cast<int>(a.ndim()); ++d) offset += idx[d] * a.strides()[d];
    out.push_back(static_cast<int64_t>(p[offset]));
    for (int d = a.ndim() - 1; d >= 0 && ++idx[d] == a.shape(d); --d) idx[d] = 0;
  }
}
}  // namespace

KnownScope::KnownScope(const Call& c) : previous_(t_known) { t_known = &c; }
KnownScope::~KnownScope() { t_known = previous_; }

std::optional<std::vector<int64_t>> known_ints(const Array& a, size_t max) {
  if (t_known == nullptr || a.size() > max || a.dtype() == mx::uint64) return std::nullopt;
  const auto& ids = t_known->computed;
  if (std::find(ids.begin(), ids.end(), a.id()) == ids.end()) return std::nullopt;
  std::vector<int64_t> out;
  auto t = a.dtype();
  if (t == mx::bool_) read_ints<bool>(a, out);
  else if (t == mx::uint8) read_ints<uint8_t>(a, out);
  else if (t == mx::uint16) read_ints<uint16_t>(a, out);
  else if (t == mx::uint32) read_ints<uint32_t>(a, out);
  else if (t == mx::int8) read_ints<int8_t>(a, out);
  else if (t == mx::int16) read_ints<int16_t>(a, out);
  else if (t == mx::int32) read_ints<int32_t>(a, out);
  else if (t == mx::int64) read_ints<int64_t>(a, out);
  else return std::nullopt;
  return out;
}

Array cast(const Array& a, mx::Dtype dtype, S s) {
  bool integral = mx::issubdtype(dtype, mx::integer) || dtype == mx::bool_;
  if (a.dtype() != dtype && integral) {
    // The array copies each value into `dtype` with C++'s conversion, as
    // MLX's cast kernel does: integers wrap, booleans are `v != 0`.
    if (auto known = known_ints(a, 64)) return Array(known->begin(), a.shape(), dtype);
  }
  return mx::astype(a, dtype, s);
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
