// MLX ops EMLX.Backend needs beyond the EMLX function API: batched matrix
// products, slices whose start indices are tensors, real FFTs, element-wise
// functions computed in double precision with the C library, determinants,
// and arrays
// copied from memory addresses and shared-memory segments.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <string>

#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include <limits>

#include "ops.h"

#ifdef __clang__
// Keep a * b + c as two roundings, as Nx computes it (no fused multiply-add).
#pragma STDC FP_CONTRACT OFF
#endif

namespace emlx::ops {

namespace {

// --- precise_unary ----------------------------------------------------------
//
// MLX's CPU kernels evaluate exp, sin, cos, erf, erfinv and sigmoid of float64
// arrays with float32 accuracy (and log1p 1 ulp away from Nx's log(1 + x)), and MLX has no cbrt or erfc. This primitive
// computes them element by element in double precision with the C library,
// the way Nx.BinaryBackend does (cbrt as Nx defines it, pow(|x|, 1/3) with
// the sign; erf_inv with Nx's polynomial), and rounds to the array's type.
// It runs on the CPU only.

enum class Fn { Exp, Log1p, Sin, Cos, Erf, Erfc, Cbrt, ErfInv, Sigmoid };

Fn parse_fn(const std::string& name) {
  if (name == "exp") return Fn::Exp;
  if (name == "log1p") return Fn::Log1p;
  if (name == "sin") return Fn::Sin;
  if (name == "cos") return Fn::Cos;
  if (name == "erf") return Fn::Erf;
  if (name == "erfc") return Fn::Erfc;
  if (name == "cbrt") return Fn::Cbrt;
  if (name == "erf_inv") return Fn::ErfInv;
  if (name == "sigmoid") return Fn::Sigmoid;
  throw std::invalid_argument("precise_unary: unknown function \"" + name +
                              "\" (expected exp, log1p, sin, cos, erf, erfc, cbrt, erf_inv or sigmoid)");
}

double erf_inv(double z) {
  if (z == 1) return INFINITY;
  if (z == -1) return -INFINITY;
  if (z == 0) return 0;
  double w = -std::log((1 - z) * (1 + z));
  double p;
  if (w < 5) {
    w = w - 2.5;
    p = 2.81022636e-08;
    p = p * w + 3.43273939e-07;
    p = p * w + -3.5233877e-06;
    p = p * w + -4.39150654e-06;
    p = p * w + 0.00021858087;
    p = p * w + -0.00125372503;
    p = p * w + -0.00417768164;
    p = p * w + 0.246640727;
    p = p * w + 1.50140941;
  } else {
    w = std::sqrt(w) - 3;
    p = -0.000200214257;
    p = p * w + 0.000100950558;
    p = p * w + 0.00134934322;
    p = p * w + -0.00367342844;
    p = p * w + 0.00573950773;
    p = p * w + -0.0076224613;
    p = p * w + 0.00943887047;
    p = p * w + 1.00167406;
    p = p * w + 2.83297682;
  }
  return p * z;
}

double apply_fn(Fn fn, double x) {
  switch (fn) {
    case Fn::Exp: return std::exp(x);
    case Fn::Log1p: {
      // Kahan's log1p: as accurate as the C library's near 0, and equal to
      // log(1 + x) (Nx's definition) whenever 1 + x is exact.
      double u = 1.0 + x;
      if (u == 1.0 || std::isinf(u)) return u == 1.0 ? x : u;
      return std::log(u) * (x / (u - 1.0));
    }
    case Fn::Sin: return std::sin(x);
    case Fn::Cos: return std::cos(x);
    case Fn::Erf: return std::erf(x);
    case Fn::Erfc: return std::erfc(x);
    case Fn::Cbrt: return x >= 0 ? std::pow(x, 1.0 / 3) : -std::pow(-x, 1.0 / 3);
    case Fn::ErfInv: return erf_inv(x);
    case Fn::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
  }
  return NAN;
}

template <typename T>
void apply_all(Fn fn, const T* in, T* out, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(apply_fn(fn, static_cast<double>(static_cast<float>(in[i]))));
  }
}

template <>
void apply_all<double>(Fn fn, const double* in, double* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = apply_fn(fn, in[i]);
}

class PreciseUnary : public mx::UnaryPrimitive {
 public:
  PreciseUnary(mx::Stream stream, Fn fn) : mx::UnaryPrimitive(stream), fn_(fn) {}

  void eval_cpu(const std::vector<Array>& inputs, Array& out) override {
    const auto& in = inputs[0];  // row-contiguous: see precise_unary below
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    encoder.set_input_array(in);
    encoder.set_output_array(out);
    encoder.dispatch([in = Array::unsafe_weak_copy(in), out = Array::unsafe_weak_copy(out),
                      fn = fn_]() mutable {
      size_t n = out.size();
      switch (out.dtype()) {
        case mx::float64: apply_all(fn, in.data<double>(), out.data<double>(), n); break;
        case mx::float32: apply_all(fn, in.data<float>(), out.data<float>(), n); break;
        case mx::float16:
          apply_all(fn, in.data<mx::float16_t>(), out.data<mx::float16_t>(), n);
          break;
        case mx::bfloat16:
          apply_all(fn, in.data<mx::bfloat16_t>(), out.data<mx::bfloat16_t>(), n);
          break;
        default: break;  // refused when the node was built
      }
    });
  }

  void eval_gpu(const std::vector<Array>&, Array&) override {
    throw std::invalid_argument("precise_unary runs on the CPU only");
  }

  const char* name() const override { return "PreciseUnary"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    return fn_ == static_cast<const PreciseUnary&>(other).fn_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<Array>& inputs) override {
    return {inputs[0].shape()};
  }

 private:
  Fn fn_;
};

Array precise_unary(const Call& c, S s) {
  const auto& a = c.arr(0);
  Fn fn = parse_fn(c.str(1));
  auto dtype = a.dtype();
  if (dtype != mx::float64 && dtype != mx::float32 && dtype != mx::float16 &&
      dtype != mx::bfloat16) {
    throw std::invalid_argument(std::string("precise_unary: expected a real floating-point tensor, got ") +
                                dtype_name(dtype));
  }
  auto stream = mx::to_stream(s);
  if (stream.device != mx::Device::cpu) {
    throw std::invalid_argument("precise_unary runs on the CPU only; this tensor is on the GPU");
  }
  auto x = mx::contiguous(a, false, stream);
  return Array(x.shape(), dtype, std::make_shared<PreciseUnary>(stream, fn), {x});
}

// --- arrays from memory (Nx.from_pointer) ------------------------------------

// A `shape` x `dtype` array holding a copy of the `byte_size` bytes at `data`.
Array copy_of(const void* data, int64_t byte_size, const mx::Shape& shape, mx::Dtype dtype,
              const char* op) {
  size_t count = 1;
  for (auto d : shape) count *= static_cast<size_t>(d);
  size_t expected = count * mx::size_of(dtype);
  if (byte_size < 0 || static_cast<size_t>(byte_size) != expected) {
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(byte_size) +
                                " bytes given, but the shape and type need " +
                                std::to_string(expected));
  }
  check_budget(op, expected, shape, dtype, mx::Device(mx::Device::cpu));
  return Array(copy_to_new_buffer(data, expected), shape, dtype);
}

Array from_address(const Call& c) {
  int64_t address = c.i64(0);
  int64_t byte_size = c.i64(1);
  if (address == 0 && byte_size > 0) {
    throw std::invalid_argument("from_address: the address is NULL");
  }
  return copy_of(reinterpret_cast<const void*>(address), byte_size, c.shape(2), c.dtype(3),
                 "from_address");
}

// Opens the shared-memory segment `name`, copies its bytes, and removes the
// name (the segment is handed over exactly once).
Array from_shm(const Call& c) {
  const auto& name = c.str(0);
  int64_t byte_size = c.i64(1);
  auto shape = c.shape(2);
  auto dtype = c.dtype(3);
  int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) {
    int err = errno;
    std::string msg = "from_shm: cannot open shared memory \"" + name + "\": " + std::strerror(err);
    if (err == ENOENT || err == EINVAL || err == ENAMETOOLONG) throw std::invalid_argument(msg);
    throw std::runtime_error(msg);
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < byte_size) {
    close(fd);
    throw std::invalid_argument("from_shm: the segment \"" + name + "\" holds fewer than " +
                                std::to_string(byte_size) + " bytes");
  }
  void* addr = nullptr;
  if (byte_size > 0) {
    addr = mmap(nullptr, static_cast<size_t>(byte_size), PROT_READ, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) {
      int err = errno;
      close(fd);
      throw std::runtime_error("from_shm: mmap of \"" + name + "\" failed: " + std::strerror(err));
    }
  }
  close(fd);
  try {
    auto out = copy_of(addr, byte_size, shape, dtype, "from_shm");
    if (addr) munmap(addr, static_cast<size_t>(byte_size));
    shm_unlink(name.c_str());
    return out;
  } catch (...) {
    if (addr) munmap(addr, static_cast<size_t>(byte_size));
    throw;
  }
}

// --- slices at tensor offsets -------------------------------------------------

// The highest start of each of `axes` at which a block of `sizes` fits in
// `a`; checks that `starts` (1-d integer tensor) holds one index per axis.
// MLX does not check start indices, and reading past the end would leave
// the buffer: they are clamped into [0, highest] (safe_starts).
std::vector<int64_t> start_bounds(const char* op, const Array& a, const Array& starts,
                                  const std::vector<int>& axes, const std::vector<int>& sizes) {
  require_integer(op, "the start indices", starts);
  if (starts.ndim() != 1 || starts.shape(0) != static_cast<int>(axes.size())) {
    throw std::invalid_argument(std::string(op) + ": expected one start index per axis (" +
                                std::to_string(axes.size()) + "), got shape " +
                                shape_str(starts.shape()));
  }
  std::vector<int64_t> highs;
  for (size_t k = 0; k < axes.size(); ++k) {
    int axis = axis_index(op, axes[k], a.ndim());
    int64_t high = static_cast<int64_t>(a.shape(axis)) - sizes[k];
    if (sizes[k] < 0 || high < 0) {
      throw std::invalid_argument(std::string(op) + ": a block of size " + std::to_string(sizes[k]) +
                                  " does not fit in axis " + std::to_string(axis) + " of size " +
                                  std::to_string(a.shape(axis)));
    }
    highs.push_back(high);
  }
  return highs;
}

// Computed starts (known_ints), clamped into [0, highs]; nullopt for a
// graph node.
std::optional<std::vector<int64_t>> known_starts(const Array& starts,
                                                 const std::vector<int64_t>& highs) {
  auto known = known_ints(starts, highs.size());
  if (!known) return std::nullopt;
  for (size_t k = 0; k < highs.size(); ++k) {
    (*known)[k] = std::clamp<int64_t>((*known)[k], 0, highs[k]);
  }
  return known;
}

// The starts clamped into [0, highs], as an int64 array: a constant when
// they are computed, graph nodes otherwise.
Array safe_starts(const Array& starts, const std::vector<int64_t>& highs, S s) {
  if (auto known = known_starts(starts, highs)) {
    return Array(known->begin(), {static_cast<int>(known->size())}, mx::int64);
  }
  auto hi = Array(highs.begin(), {static_cast<int>(highs.size())}, mx::int64);
  auto start64 = mx::astype(starts, mx::int64, s);
  return mx::minimum(mx::maximum(start64, mx::zeros({}, mx::int64, s), s), hi, s);
}

Array dynamic_slice(const Call& c, S s) {
  const auto& a = c.arr(0);
  const auto& starts = c.arr(1);
  auto axes = c.axes(2);
  auto size = c.shape(3);
  if (size.size() != axes.size()) {
    throw std::invalid_argument("dynamic_slice: give one slice size per axis");
  }
  std::vector<int> sizes(size.begin(), size.end());
  auto highs = start_bounds("dynamic_slice", a, starts, axes, sizes);
  // Computed starts make a plain slice (a view).
  if (auto known = known_starts(starts, highs)) {
    mx::Shape start(a.ndim(), 0);
    mx::Shape stop(a.shape());
    for (size_t k = 0; k < axes.size(); ++k) {
      int axis = axis_index("dynamic_slice", axes[k], a.ndim());
      start[axis] = static_cast<int>((*known)[k]);
      stop[axis] = start[axis] + sizes[k];
    }
    return mx::slice(a, start, stop, s);
  }
  return mx::slice(a, safe_starts(starts, highs, s), axes, size, s);
}

Array dynamic_slice_update(const Call& c, S s) {
  const auto& a = c.arr(0);
  const auto& update = c.arr(1);
  auto axes = c.axes(3);
  if (update.ndim() != a.ndim()) {
    throw std::invalid_argument("dynamic_slice_update: the update must have the tensor's rank");
  }
  std::vector<int> sizes;
  for (auto axis : axes) sizes.push_back(update.shape(axis_index("dynamic_slice_update", axis, a.ndim())));
  auto highs = start_bounds("dynamic_slice_update", a, c.arr(2), axes, sizes);
  return mx::slice_update(a, update, safe_starts(c.arr(2), highs, s), axes, s);
}

// --- real FFTs ----------------------------------------------------------------

// `a` padded with zeros or cut to `n` elements along `axis`, on stream `s`
// (MLX's FFTs pad on the calling thread's default stream otherwise, which
// the command queue's thread cannot evaluate).
Array fit_length(const Array& a, int n, int axis, S s) {
  if (axis < 0) axis += a.ndim();
  if (axis < 0 || axis >= static_cast<int>(a.ndim())) {
    throw std::invalid_argument("rfft/irfft: axis out of range for a tensor of rank " +
                                std::to_string(a.ndim()));
  }
  if (n < 1) throw std::invalid_argument("rfft/irfft: the length must be positive");
  int size = a.shape(axis);
  if (size == n) return a;
  if (size < n) {
    return mx::pad(a, {axis}, {0}, {n - size}, mx::zeros({}, a.dtype(), s), "constant", s);
  }
  mx::Shape start(a.ndim(), 0), stop = a.shape();
  stop[axis] = n;
  return mx::slice(a, start, stop, s);
}

const Entry ENTRIES[] = {
    // --- backend ---
    {"matmul",
     [](const Call& c, S s) -> Out {
       return {half_via_float32(c.arr(0), c.arr(1), s, [&](const Array& a, const Array& b) {
         return mx::matmul(a, b, s);
       })};
     }},
    {"dynamic_slice", [](const Call& c, S s) -> Out { return {dynamic_slice(c, s)}; }},
    {"dynamic_slice_update",
     [](const Call& c, S s) -> Out { return {dynamic_slice_update(c, s)}; }},
    {"rfft",
     [](const Call& c, S s) -> Out {
       int n = c.i32(1), axis = c.i32(2);
       auto a = fit_length(c.arr(0), n, axis, s);
       return {mx::fft::rfft(a, n, axis, mx::fft::FFTNorm::Backward, s)};
     }},
    {"irfft",
     [](const Call& c, S s) -> Out {
       int n = c.i32(1), axis = c.i32(2);
       auto a = fit_length(c.arr(0), n / 2 + 1, axis, s);
       return {mx::fft::irfft(a, n, axis, mx::fft::FFTNorm::Backward, s)};
     }},
    {"precise_unary", [](const Call& c, S s) -> Out { return {precise_unary(c, s)}; }},
    {"linalg_det",
     [](const Call& c, S) -> Out {
       const auto& a = c.arr(0);
       if (a.dtype() != mx::float32 && a.dtype() != mx::float64) {
         throw std::invalid_argument(std::string("linalg_det: expected float32 or float64, got ") +
                                     dtype_name(a.dtype()));
       }
       if (a.ndim() < 2 || a.shape(-1) != a.shape(-2) || a.shape(-1) == 0) {
         throw std::invalid_argument("linalg_det: expected non-empty square matrices, got shape " +
                                     shape_str(a.shape()));
       }
       // NaN for a matrix with a non-finite entry, as every linalg op
       // (linalg.cc); the determinant of a singular matrix is 0.
       auto s = c.cpu();
       auto finite = mx::all(mx::isfinite(a, s), std::vector<int>{-2, -1}, false, s);
       auto nan = Array(std::numeric_limits<float>::quiet_NaN(), a.dtype());
       return {mx::where(finite, mx::linalg::det(a, s), nan, s)};
     }},
    {"from_address", [](const Call& c, S) -> Out { return {from_address(c)}; }},
    {"from_shm", [](const Call& c, S) -> Out { return {from_shm(c)}; }},
};

}  // namespace

const OpTable backend{ENTRIES};

}  // namespace emlx::ops
