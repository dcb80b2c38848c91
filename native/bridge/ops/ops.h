// Shared pieces of the op table, which is split by family: each
// native/bridge/ops/<family>.cc defines one `OpTable` and registry.cc lists
// them. An entry is a name and a lambda that reads its arguments from the
// Call (positional, typed getters that raise ArgumentError-class errors) and
// builds graph nodes on the given stream. The Elixir twin of each family is
// lib/emlx/ops/<family>.ex (same names, same argument order).
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "bridge.h"

namespace emlx::ops {

using S = mx::StreamOrDevice;
using Out = std::vector<Array>;
using Fn = Out (*)(const Call&, S);

struct Entry {
  const char* name;
  Fn fn;
};

using OpTable = std::span<const Entry>;

// A scalar argument as an array of `dtype`: integers keep full precision;
// floats, nan/infinity atoms and [re, im] pairs are accepted.
Array scalar(const Call& c, size_t i, mx::Dtype dtype);

// --- helpers shared by the family files (common.cc) ---
// "(2, 3)": a shape for error messages.
std::string shape_str(const mx::Shape& shape);
// `axis` as an index into `ndim` dimensions (negative counts from the end);
// std::out_of_range naming the op otherwise.
int axis_index(const char* op, int64_t axis, int ndim);
// std::invalid_argument naming the op unless `a` holds integers.
void require_integer(const char* op, const char* what, const Array& a);
// The integer tensor `idx` clamped into [lo, hi] (lo <= hi), in its own dtype.
Array clamp_index(const Array& idx, int64_t lo, int64_t hi, S s);

// --- reductions that are right at any size (staged.cc) ---
enum class Reduction { Sum, Prod, Max, Min, All, Any };
// Floating-point sums add at most this many numbers in one sequential run
// (MLX's CPU kernels add sequentially); longer reductions are staged.
inline constexpr int64_t kBlock = 1 << 12;
// `mx::sum` & co. over `axes`, staged so that no MLX kernel reduces 2^31 or
// more elements and float sums stay accurate; half-precision sums and
// products accumulate in float32. Same result dtype and shape as MLX's.
Array reduce(Reduction k, const Array& x, const std::vector<int>& axes, bool keep, S s);
// The index of the first maximum (minimum) of all elements in row-major
// order, at any size: `uint32` as MLX's argmax up to 2^32 - 1 elements,
// `int64` beyond.
Array arg_all(bool is_max, const Array& x, bool keep, S s);
// mx::fast::rms_norm / layer_norm over the last axis, with staged means for
// rows longer than kBlock on the CPU (where MLX composes them sequentially).
Array rms_norm(const Array& x, const Array& w, float eps, S s);
Array layer_norm(const Array& x, const std::optional<Array>& w, const std::optional<Array>& b,
                 float eps, S s);
// A contraction `f(a, b)` (matmul, tensordot, einsum) of bfloat16/float16
// operands on the CPU, computed as a float32 GEMM (BLAS) and rounded once to
// the half type, when the operands are large enough for that to pay; MLX's
// own CPU half-precision GEMM runs ~30x slower. Every product of two half
// values is exact in float32 and MLX's CPU kernel also sums in float32, so
// the result differs from its only in summation order. Other types, small
// operands and GPU streams call `f` as is.
Array half_via_float32(const Array& a, const Array& b, S s,
                       const std::function<Array(const Array&, const Array&)>& f);

// The values of `a` when it is an integer (or boolean) argument of the op
// being built whose data is computed (Call::computed) and has at most
// `max` elements, row-major; nullopt otherwise (a graph node, or an op
// built for a program). Ops use them to build fewer nodes; never to
// change a result.
std::optional<std::vector<int64_t>> known_ints(const Array& a, size_t max);
// `a` converted to `dtype`, as mx::astype does; a computed integer or
// boolean `a` of at most 64 elements converted to an integer or boolean
// type becomes a computed array right away (the same C++ conversions MLX's
// kernel makes, on the host), without a graph node.
Array cast(const Array& a, mx::Dtype dtype, S s);
// While an entry builds its nodes on a CPU stream: the call whose computed
// arguments known_ints may read (registry.cc sets it around each entry).
class KnownScope {
 public:
  explicit KnownScope(const Call& c);
  ~KnownScope();
  KnownScope(const KnownScope&) = delete;
  KnownScope& operator=(const KnownScope&) = delete;

 private:
  const Call* previous_;
};

// Throws the ArgumentError-class error "<op>: <msg>".
[[noreturn]] void bad_arg(const Call& c, const std::string& msg);

// A shape as Elixir prints it, for messages: {2, 3, 4}.
std::string shape_text(const Array& a);

#define EMLX_UNARY(name, fn) \
  {#name, [](const Call& c, S s) -> Out { return {fn(c.arr(0), s)}; }}
#define EMLX_BINARY(name, fn) \
  {#name, [](const Call& c, S s) -> Out { return {fn(c.arr(0), c.arr(1), s)}; }}

// One per family file.
extern const OpTable creation;
extern const OpTable shape;
extern const OpTable elementwise;
extern const OpTable reduction;
extern const OpTable indexing;
extern const OpTable linalg;
extern const OpTable conv;
extern const OpTable spectral;
extern const OpTable fast;
extern const OpTable quant;
extern const OpTable backend;

}  // namespace emlx::ops
