// Indexing: take, gather, scatter, and the window scatters of pooling
// gradients.
//
// MLX does not bounds-check indices: an out-of-range index makes it read or
// write outside the array's buffer. So every op here first makes its indices
// safe, with the semantics XLA (and Nx for dynamic indices) uses:
//   * reads (take, take_along_axis, gather) clamp each index into the valid
//     range (for gather, so that the whole slice fits);
//   * writes (scatter, scatter_add) drop updates whose slice does not fit.
// Negative indices are out of range: they do not count from the end.
#include <limits>
#include <numeric>
#include <sstream>

#include "ops.h"

namespace emlx::ops {

namespace {

[[noreturn]] void empty_axis(const char* op, int axis) {
  throw std::invalid_argument(std::string(op) + ": cannot read from axis " + std::to_string(axis) +
                              ", which has size 0");
}

Array take(const Call& c, S s) {
  const auto& a = c.arr(0);
  const auto& idx = c.arr(1);
  require_integer("take", "indices", idx);
  int axis = axis_index("take", c.i64(2), a.ndim());
  int64_t n = a.shape(axis);
  if (n == 0) {
    if (idx.size() > 0) empty_axis("take", axis);
    return mx::take(a, idx, axis, s);
  }
  return mx::take(a, clamp_index(idx, 0, n - 1, s), axis, s);
}

Array take_along_axis(const Call& c, S s) {
  const auto& a = c.arr(0);
  const auto& idx = c.arr(1);
  require_integer("take_along_axis", "indices", idx);
  int axis = axis_index("take_along_axis", c.i64(2), a.ndim());
  int64_t n = a.shape(axis);
  if (n == 0) {
    if (idx.size() > 0) empty_axis("take_along_axis", axis);
    return mx::take_along_axis(a, idx, axis, s);
  }
  return mx::take_along_axis(a, clamp_index(idx, 0, n - 1, s), axis, s);
}

// Index tensors paired with their (normalized, checked) axes.
std::vector<int> index_axes(const char* op, const Array& a, const std::vector<Array>& indices,
                            const std::vector<int64_t>& axes_in) {
  if (indices.size() != axes_in.size()) {
    std::ostringstream msg;
    msg << op << ": got " << indices.size() << " index tensors for " << axes_in.size()
        << " axes; give one index tensor per axis";
    throw std::invalid_argument(msg.str());
  }
  std::vector<int> axes;
  for (size_t k = 0; k < indices.size(); ++k) {
    require_integer(op, "every index tensor", indices[k]);
    axes.push_back(axis_index(op, axes_in[k], a.ndim()));
  }
  return axes;
}

// Slices of `slice_sizes` starting at the indices; each start is clamped so
// the slice fits in its axis.
Array gather(const Call& c, S s) {
  const auto& a = c.arr(0);
  const auto& indices = c.arrays(1);
  auto axes = index_axes("gather", a, indices, c.ints(2));
  auto sizes = c.shape(3);
  if (sizes.size() != a.ndim()) {
    throw std::invalid_argument("gather: slice_sizes has " + std::to_string(sizes.size()) +
                                " entries for a tensor of rank " + std::to_string(a.ndim()));
  }
  for (int i = 0; i < static_cast<int>(a.ndim()); ++i) {
    if (sizes[i] > a.shape(i)) {
      std::ostringstream msg;
      msg << "gather: slice size " << sizes[i] << " on axis " << i << " exceeds its dimension "
          << a.shape(i);
      throw std::invalid_argument(msg.str());
    }
  }
  std::vector<Array> safe;
  for (size_t k = 0; k < indices.size(); ++k) {
    safe.push_back(clamp_index(indices[k], 0, a.shape(axes[k]) - sizes[axes[k]], s));
  }
  return mx::gather(a, safe, axes, sizes, s);
}

// MLX's GPU scatter has no 8-byte element types (int64, uint64; complex64
// except for sums): it refuses them.
bool gpu_lacks_scatter(const Array& a, S s, bool add) {
  return mx::to_stream(s).device == mx::Device::gpu && mx::size_of(a.dtype()) == 8 &&
         !(add && a.dtype() == mx::complex64);
}

// An assignment only moves values, so on the GPU an 8-byte one is done
// through 32-bit update numbers: every element of `updates` gets its
// position 0..n-1, those are scattered into a tensor of -1, and each target
// element then reads the update that won it (or keeps its value). Every
// element takes all its bytes from one update, as with a native scatter.
Array scatter_by_number(const Array& a, const std::vector<Array>& idx, const Array& updates,
                        const std::vector<int>& axes, S s) {
  if (updates.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    throw std::invalid_argument("scatter: more than 2^31 - 1 updated elements of type " +
                                std::string(dtype_name(a.dtype())) + " on the GPU");
  }
  auto numbers = mx::reshape(
      mx::arange(0.0, static_cast<double>(updates.size()), 1.0, mx::int32, s), updates.shape(), s);
  auto none = Array(-1, mx::int32);
  auto winner = mx::scatter(mx::full(a.shape(), none, s), idx, numbers, axes, s);
  auto zero = Array(0, mx::int32);
  auto picked = mx::take(mx::reshape(updates, {-1}, s), mx::maximum(winner, zero, s), s);
  return mx::where(mx::greater_equal(winner, zero, s), picked, a, s);
}

// scatter_add, on the queue's CPU stream where the GPU lacks it (the
// integer sums it cannot add atomically; MLX moves the data as it must).
Array scatter_add_any(const Call& c, const Array& a, const std::vector<Array>& idx,
                      const Array& updates, const std::vector<int>& axes, S s) {
  return mx::scatter_add(a, idx, updates, axes, gpu_lacks_scatter(a, s, true) ? S(c.cpu()) : s);
}

// Updates are slices: `updates` has the broadcast index shape (or one that
// broadcasts to it) followed by one slice dimension per axis of the tensor.
// An update is applied only if its slice fits entirely; the others are
// dropped.
Array scatter(const Call& c, S s, bool add) {
  const char* op = add ? "scatter_add" : "scatter";
  const auto& a = c.arr(0);
  const auto& indices = c.arrays(1);
  const auto& updates = c.arr(2);
  auto axes = index_axes(op, a, indices, c.ints(3));
  if (indices.empty()) {
    if (add) return scatter_add_any(c, a, indices, updates, axes, s);
    return gpu_lacks_scatter(a, s, false) ? scatter_by_number(a, indices, updates, axes, s)
                                          : mx::scatter(a, indices, updates, axes, s);
  }
  auto idx = mx::broadcast_arrays(indices, s);
  int idx_ndim = idx[0].ndim();
  if (updates.ndim() != idx_ndim + a.ndim()) {
    std::ostringstream msg;
    msg << op << ": updates must have rank " << idx_ndim + a.ndim() << " (the index rank "
        << idx_ndim << " plus the tensor rank " << a.ndim() << "), got shape "
        << shape_str(updates.shape());
    throw std::invalid_argument(msg.str());
  }
  for (int j = 0; j < static_cast<int>(a.ndim()); ++j) {
    if (updates.shape(idx_ndim + j) > a.shape(j)) {
      std::ostringstream msg;
      msg << op << ": update slices of size " << updates.shape(idx_ndim + j)
          << " do not fit in axis " << j << " of size " << a.shape(j);
      throw std::invalid_argument(msg.str());
    }
  }
  std::optional<Array> valid;
  std::vector<int64_t> limit;
  for (size_t k = 0; k < idx.size(); ++k) {
    int64_t n = a.shape(axes[k]);
    int64_t w = updates.shape(idx_ndim + axes[k]);
    limit.push_back(n - w);
    // In range exactly when clamping leaves the index unchanged.
    auto ok = mx::equal(idx[k], clamp_index(idx[k], 0, n - w, s), s);
    valid = valid ? mx::logical_and(*valid, ok, s) : ok;
  }
  auto mask_shape = valid->shape();
  mask_shape.insert(mask_shape.end(), a.ndim(), 1);
  auto mask = mx::reshape(*valid, mask_shape, s);

  if (add) {
    // Dropped updates add the additive identity at a clamped position: -0.0
    // for floats (x + -0.0 == x for every x, -0.0 included), 0 otherwise.
    auto dtype = a.dtype();
    Array neutral = dtype == mx::complex64 ? Array(std::complex<float>(-0.0f, -0.0f))
                    : mx::issubdtype(dtype, mx::floating) ? mx::astype(Array(-0.0f), dtype, s)
                                                          : mx::zeros({}, dtype, s);
    auto upd = mx::where(mask, mx::astype(updates, dtype, s), neutral, s);
    std::vector<Array> safe;
    for (size_t k = 0; k < idx.size(); ++k) safe.push_back(clamp_index(idx[k], 0, limit[k], s));
    return scatter_add_any(c, a, safe, upd, axes, s);
  }

  // Dropped updates are sent into a margin appended to each indexed axis,
  // which is sliced off afterwards.
  mx::Shape low(axes.size(), 0), high;
  for (size_t k = 0; k < axes.size(); ++k) high.push_back(updates.shape(idx_ndim + axes[k]));
  auto padded = mx::pad(a, axes, low, high, mx::zeros({}, a.dtype(), s), "constant", s);
  std::vector<Array> safe;
  for (size_t k = 0; k < idx.size(); ++k) {
    auto margin = Array(static_cast<int32_t>(a.shape(axes[k])), mx::int32);
    safe.push_back(mx::where(*valid, mx::astype(idx[k], mx::int32, s), margin, s));
  }
  // Like scatter_add's, the updates broadcast over the index dimensions.
  auto full_shape = valid->shape();
  full_shape.insert(full_shape.end(), updates.shape().begin() + idx_ndim, updates.shape().end());
  auto full = mx::broadcast_to(mx::astype(updates, a.dtype(), s), full_shape, s);
  auto out = gpu_lacks_scatter(a, s, false) ? scatter_by_number(padded, safe, full, axes, s)
                                            : mx::scatter(padded, safe, full, axes, s);
  return mx::slice(out, mx::Shape(a.ndim(), 0), a.shape(), s);
}

// Row-major strides of `shape`.
std::vector<int64_t> row_strides(const mx::Shape& shape) {
  std::vector<int64_t> out(shape.size(), 1);
  for (int i = static_cast<int>(shape.size()) - 2; i >= 0; --i) out[i] = out[i + 1] * shape[i + 1];
  return out;
}

// Pads `t` with `init_value`, finds in every window (of `window`, moved by
// `strides`) the first maximum (or minimum) in row-major order, adds the
// matching `source` element there, into a tensor filled with `init_value`,
// and strips the padding. The result type is that of source and init_value
// together.
Array window_scatter(const Call& c, S s, bool is_max) {
  const char* op = is_max ? "window_scatter_max" : "window_scatter_min";
  const auto& t = c.arr(0);
  const auto& source = c.arr(1);
  const auto& init = c.arr(2);
  auto window = c.shape(3);
  auto low = c.shape(4);
  auto high = c.shape(5);
  auto strides = c.shape(6);
  int n = t.ndim();
  for (auto* list : {&window, &low, &high, &strides}) {
    if (static_cast<int>(list->size()) != n) {
      throw std::invalid_argument(std::string(op) +
                                  ": window, paddings and strides need one entry per axis "
                                  "of the tensor (rank " +
                                  std::to_string(n) + ")");
    }
  }
  if (init.size() != 1) {
    throw std::invalid_argument(std::string(op) + ": init_value must be a one-element tensor");
  }
  for (int i = 0; i < n; ++i) {
    if (window[i] < 1 || strides[i] < 1) {
      throw std::invalid_argument(std::string(op) + ": window sizes and strides must be positive");
    }
  }
  auto init_scalar = mx::reshape(init, {}, s);
  std::vector<int> all_axes(n);
  std::iota(all_axes.begin(), all_axes.end(), 0);
  auto padded =
      n == 0 ? t
             : mx::pad(t, all_axes, low, high, mx::astype(init_scalar, t.dtype(), s), "constant", s);
  const auto& p = padded.shape();
  mx::Shape out(n);
  int64_t total = 1, k_size = 1;
  for (int i = 0; i < n; ++i) {
    if (p[i] < window[i]) {
      std::ostringstream msg;
      msg << op << ": window size " << window[i] << " on axis " << i
          << " exceeds the padded dimension " << p[i];
      throw std::invalid_argument(msg.str());
    }
    out[i] = (p[i] - window[i]) / strides[i] + 1;
    total *= p[i];
    k_size *= window[i];
  }
  if (source.shape() != out) {
    throw std::invalid_argument(std::string(op) + ": source has shape " +
                                shape_str(source.shape()) + " but the windows form shape " +
                                shape_str(out));
  }

  if (total > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument(std::string(op) + ": the padded tensor has " +
                                std::to_string(total) + " elements, more than 2^31 - 1");
  }
  // Flat position in `padded` of every element of every window: out ++ [K].
  auto itype = mx::int32;
  auto pstride = row_strides(p);
  Array base = mx::zeros({}, itype, s), offset = mx::zeros({}, itype, s);
  for (int i = 0; i < n; ++i) {
    mx::Shape along(n, 1);
    along[i] = out[i];
    auto starts = mx::arange(0.0, out[i], 1.0, itype, s);
    starts = mx::multiply(starts, Array(static_cast<int64_t>(strides[i]) * pstride[i], itype), s);
    base = mx::add(base, mx::reshape(starts, along, s), s);
    along[i] = window[i];
    auto steps = mx::multiply(mx::arange(0.0, window[i], 1.0, itype, s),
                              Array(pstride[i], itype), s);
    offset = mx::add(offset, mx::reshape(steps, along, s), s);
  }
  auto base_shape = out;
  base_shape.push_back(1);
  mx::Shape offset_shape(n, 1);
  offset_shape.push_back(static_cast<int32_t>(k_size));
  auto idx = mx::add(mx::reshape(mx::broadcast_to(base, out, s), base_shape, s),
                     mx::reshape(mx::broadcast_to(offset, window, s), offset_shape, s), s);

  auto values = mx::take(mx::reshape(padded, {-1}, s), idx, s);
  auto pick = is_max ? mx::argmax(values, n, true, s) : mx::argmin(values, n, true, s);
  auto position = mx::reshape(mx::take_along_axis(idx, pick, n, s), out, s);

  auto dtype = mx::promote_types(source.dtype(), init.dtype());
  auto buffer = mx::full({static_cast<int32_t>(total)}, mx::astype(init_scalar, dtype, s), s);
  auto updates = mx::reshape(mx::astype(source, dtype, s), base_shape, s);
  auto summed = mx::reshape(scatter_add_any(c, buffer, {position}, updates, {0}, s), p, s);
  mx::Shape stop(n);
  for (int i = 0; i < n; ++i) stop[i] = low[i] + t.shape(i);
  return mx::slice(summed, low, stop, s);
}

const Entry ENTRIES[] = {
    {"take", [](const Call& c, S s) -> Out { return {take(c, s)}; }},
    {"take_along_axis", [](const Call& c, S s) -> Out { return {take_along_axis(c, s)}; }},
    {"gather", [](const Call& c, S s) -> Out { return {gather(c, s)}; }},
    {"scatter", [](const Call& c, S s) -> Out { return {scatter(c, s, false)}; }},
    {"scatter_add", [](const Call& c, S s) -> Out { return {scatter(c, s, true)}; }},
    {"window_scatter_max", [](const Call& c, S s) -> Out { return {window_scatter(c, s, true)}; }},
    {"window_scatter_min",
     [](const Call& c, S s) -> Out { return {window_scatter(c, s, false)}; }},
};

}  // namespace

const OpTable indexing{ENTRIES};

}  // namespace emlx::ops
