// Shared pieces of the op table, which is split by family: each
// native/bridge/ops/<family>.cc defines one `OpTable` and registry.cc lists
// them. An entry is a name and a lambda that reads its arguments from the
// Call (positional, typed getters that raise ArgumentError-class errors) and
// builds graph nodes on the given stream. The Elixir twin of each family is
// lib/emlx/ops/<family>.ex (same names, same argument order).
#pragma once

#include <functional>
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

// A contraction `f(a, b)` (matmul, tensordot, einsum) of bfloat16/float16
// operands on the CPU, computed as a float32 GEMM (BLAS) and rounded once to
// the half type, when the operands are large enough for that to pay; MLX's
// own CPU half-precision GEMM runs ~30x slower. Every product of two half
// values is exact in float32 and MLX's CPU kernel also sums in float32, so
// the result differs from its only in summation order. Other types, small
// operands and GPU streams call `f` as is.
Array half_via_float32(const Array& a, const Array& b, S s,
                       const std::function<Array(const Array&, const Array&)>& f);

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
