// Reductions composed of MLX reductions so that each one is right at any
// size: every MLX kernel reduces fewer than 2^31 elements (MLX's CPU
// reduction counts in 32 bits: a full sum over more elements returns 0),
// and floating-point sums are accurate to about sqrt(n) * eps (MLX's CPU
// backend adds sequentially: the float32 sum of 2^25 ones is 2^24).
//
// How: the reduced axes are reduced in stages, each stage as many axes as
// fit under the stage's limit; an axis longer than the limit is first split
// into blocks (a view: slice + reshape), its blocks reduced, then the
// partial results. A float32 sum of n elements thus adds at most kBlock
// numbers in any one sequential run, in about log(n)/log(kBlock) levels.
// Everything is built from MLX ops in the op table, so eager evaluation and
// any compiled graph share it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "ops.h"

namespace emlx::ops {

namespace {

constexpr int64_t kMax32 = std::numeric_limits<int32_t>::max();

Array plain(Reduction k, const Array& a, const std::vector<int>& axes, bool keep, S s) {
  switch (k) {
    case Reduction::Sum: return mx::sum(a, axes, keep, s);
    case Reduction::Prod: return mx::prod(a, axes, keep, s);
    case Reduction::Max: return mx::max(a, axes, keep, s);
    case Reduction::Min: return mx::min(a, axes, keep, s);
    case Reduction::All: return mx::all(a, axes, keep, s);
    case Reduction::Any: return mx::any(a, axes, keep, s);
  }
  throw std::logic_error("unknown reduction");
}

// The number of elements reduced over `axes`, saturated at 2^63.
int64_t count(const Array& a, const std::vector<int>& axes) {
  int64_t n = 1;
  for (int ax : axes) {
    if (__builtin_mul_overflow(n, int64_t{a.shape(ax)}, &n)) return std::numeric_limits<int64_t>::max();
  }
  return n;
}

// A block length for splitting an axis of length `len` (> limit): about
// sqrt(len) (which balances the lengths of the two levels), at most `limit`,
// preferring one that divides `len` (then no tail is left).
int64_t block_for(int64_t len, int64_t limit) {
  int64_t b = std::min<int64_t>(limit, std::max<int64_t>(2, std::llround(std::sqrt(double(len)))));
  for (int64_t d = b; d > b - 128 && d > 1; --d) {
    if (len % d == 0) return d;
  }
  return b;
}

// Splits axis `ax` of `a` into blocks of `b`, reduces each block, and
// returns `a` with that axis shortened to the number of blocks (plus one
// for a tail that is not a whole block). Only views and small partial
// results are made: nothing of the size of `a` is copied.
Array split_axis(Reduction k, const Array& a, int ax, int64_t b, S s) {
  int64_t len = a.shape(ax);
  int64_t q = len / b;
  int64_t whole = q * b;
  auto stop = a.shape();
  mx::Shape start(a.ndim(), 0);
  Array main = a;
  if (whole != len) {
    stop[ax] = static_cast<int32_t>(whole);
    main = mx::slice(a, start, stop, s);
  }
  auto blocked = main.shape();
  blocked[ax] = static_cast<int32_t>(q);
  blocked.insert(blocked.begin() + ax + 1, static_cast<int32_t>(b));
  Array partial = plain(k, mx::reshape(main, blocked, s), {ax + 1}, false, s);
  if (whole == len) return partial;
  start[ax] = static_cast<int32_t>(whole);
  Array tail = plain(k, mx::slice(a, start, a.shape(), s), {ax}, true, s);
  return mx::concatenate({partial, tail}, ax, s);
}

}  // namespace

Array reduce(Reduction k, const Array& x, const std::vector<int>& axes_in, bool keep, S s) {
  int nd = static_cast<int>(x.ndim());
  std::vector<int> axes;
  for (int ax : axes_in) {
    // Anything MLX would refuse, MLX reports (with its own message).
    if (ax < -nd || ax >= nd) return plain(k, x, axes_in, keep, s);
    axes.push_back(ax < 0 ? ax + nd : ax);
  }
  std::sort(axes.begin(), axes.end());
  if (axes.empty() || std::adjacent_find(axes.begin(), axes.end()) != axes.end()) {
    return plain(k, x, axes_in, keep, s);
  }

  // Half-precision sums and products accumulate in float32 (MLX's CPU
  // kernels would accumulate in the half type: 300 bfloat16 ones sum to
  // 256). Not for 2^31 elements or more (views of broadcasts, in practice):
  // a float32 copy of those would be huge, so they are staged in the half
  // type itself.
  bool half = x.dtype() == mx::float16 || x.dtype() == mx::bfloat16;
  bool widen = half && (k == Reduction::Sum || k == Reduction::Prod) &&
               x.size() <= static_cast<size_t>(kMax32);
  // A float32 product rounds at every multiplication, by up to eps / 2 of
  // the result whatever its order: staging does not help, a wider
  // accumulator does. On the CPU (which has float64) products of up to
  // 2^28 float32 values (a 2 GiB float64 copy at most) run in float64.
  bool wide_product = k == Reduction::Prod && x.dtype() == mx::float32 &&
                      x.size() <= (size_t{1} << 28) && mx::to_stream(s).device == mx::Device::cpu;
  bool accurate = k == Reduction::Sum && mx::issubdtype(x.dtype(), mx::inexact);
  Array cur = widen ? mx::astype(x, mx::float32, s) : wide_product ? mx::astype(x, mx::float64, s) : x;
  widen = widen || wide_product;
  auto finish = [&](Array out) { return widen ? mx::astype(out, x.dtype(), s) : out; };

  int64_t limit = accurate ? kBlock : kMax32;
  if (count(cur, axes) <= limit) return finish(plain(k, cur, axes, keep, s));

  // Stages: each reduces the largest set of remaining axes (longest first)
  // whose product fits the limit, keeping them as size-1 axes so that the
  // axis numbers stay valid; an axis longer than the limit is split first.
  std::vector<int> left = axes;
  bool kept = false;  // whether an earlier stage left size-1 axes behind
  while (!left.empty()) {
    std::stable_sort(left.begin(), left.end(), [&](int a, int b) {
      return cur.shape(a) != cur.shape(b) ? cur.shape(a) > cur.shape(b) : a > b;
    });
    if (cur.shape(left.front()) > limit) {
      cur = split_axis(k, cur, left.front(), block_for(cur.shape(left.front()), limit), s);
      continue;
    }
    std::vector<int> group, rest;
    int64_t n = 1;
    for (int ax : left) {
      if (n * cur.shape(ax) <= limit) {
        group.push_back(ax);
        n *= cur.shape(ax);
      } else {
        rest.push_back(ax);
      }
    }
    std::sort(group.begin(), group.end());
    // The last stage of a reduction with no earlier stage (a long axis,
    // split) gives the result its final shape itself: one node fewer.
    if (rest.empty() && !kept) return finish(plain(k, cur, group, keep, s));
    cur = plain(k, cur, group, true, s);
    kept = true;
    left = rest;
  }
  return finish(keep ? cur : mx::squeeze(cur, axes, s));
}

Array arg_all(bool is_max, const Array& x, bool keep, S s) {
  auto arg = [&](const Array& a, int ax) {
    return is_max ? mx::argmax(a, ax, false, s) : mx::argmin(a, ax, false, s);
  };
  if (x.size() <= static_cast<size_t>(kMax32)) {
    return is_max ? mx::argmax(x, keep, s) : mx::argmin(x, keep, s);
  }
  // MLX flattens first, which a shape of 2^31 or more elements cannot be:
  // one axis at a time from the last instead. `idx` holds, for each element
  // of `v`, the row-major offset of its extreme within the trailing block
  // already reduced; the first extreme of each row, then the first row
  // holding the overall extreme, is the first extreme in row-major order.
  Array v = x;
  std::optional<Array> idx;
  int64_t inner = 1;
  for (int ax = static_cast<int>(x.ndim()) - 1; ax >= 0; --ax) {
    Array j = mx::expand_dims(arg(v, -1), -1, s);
    Array offset = mx::astype(j, mx::int64, s);
    if (idx) {
      offset = mx::add(mx::multiply(offset, Array(inner, mx::int64), s),
                       mx::take_along_axis(*idx, j, -1, s), s);
    }
    idx = mx::squeeze(offset, -1, s);
    v = mx::squeeze(mx::take_along_axis(v, j, -1, s), -1, s);
    inner *= x.shape(ax);
  }
  Array out = x.size() <= std::numeric_limits<uint32_t>::max() ? mx::astype(*idx, mx::uint32, s) : *idx;
  return keep ? mx::reshape(out, mx::Shape(x.ndim(), 1), s) : out;
}

namespace {

// MLX's CPU backend has no fused normalisation kernels: mx::fast::rms_norm
// and layer_norm run there as compositions over MLX's sequential mean (the
// rms_norm of 2^25 ones came out as 1.41). Rows longer than kBlock on a CPU
// stream are normalised with the staged mean instead; shorter rows, and
// the GPU's fused kernels (which accumulate in parallel), are MLX's own.
bool long_cpu_rows(const Array& x, S s) {
  return x.ndim() > 0 && x.shape(-1) > kBlock && mx::to_stream(s).device == mx::Device::cpu;
}

// The mean over the last axis, staged, in float32 (or float64).
Array row_mean(const Array& x, S s) {
  auto n = Array(static_cast<double>(x.shape(-1)), x.dtype());
  return mx::divide(reduce(Reduction::Sum, x, {-1}, true, s), n, s);
}

Array widened(const Array& a, S s) {
  return a.dtype() == mx::float64 ? a : mx::astype(a, mx::float32, s);
}

}  // namespace

Array rms_norm(const Array& x, const Array& w, float eps, S s) {
  if (!long_cpu_rows(x, s)) return mx::fast::rms_norm(x, w, eps, s);
  auto xf = widened(x, s);
  auto scale = mx::rsqrt(mx::add(row_mean(mx::square(xf, s), s), Array(eps, xf.dtype()), s), s);
  return mx::astype(mx::multiply(mx::multiply(xf, scale, s), widened(w, s), s), x.dtype(), s);
}

Array layer_norm(const Array& x, const std::optional<Array>& w, const std::optional<Array>& b,
                 float eps, S s) {
  if (!long_cpu_rows(x, s)) return mx::fast::layer_norm(x, w, b, eps, s);
  auto xf = widened(x, s);
  auto centred = mx::subtract(xf, row_mean(xf, s), s);
  auto var = row_mean(mx::square(centred, s), s);
  auto y = mx::multiply(centred, mx::rsqrt(mx::add(var, Array(eps, xf.dtype()), s), s), s);
  if (w) y = mx::multiply(y, widened(*w, s), s);
  if (b) y = mx::add(y, widened(*b, s), s);
  return mx::astype(y, x.dtype(), s);
}

}  // namespace emlx::ops
