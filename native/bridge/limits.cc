// MLX's 32-bit limits, and the guard that refuses graphs MLX would compute
// wrong because of them.
//
// MLX dimensions are 32-bit (Call::shape refuses larger ones), and many of
// MLX 0.32.4's CPU kernels count elements or index memory in `int`: a
// kernel past 2^31 - 1 elements silently computes garbage (a full sum of
// more elements returns 0). Read from MLX's source (mlx/backend/cpu):
// - Reduce: the plan merges reduced axes into an `int` count (overflows
//   when the reduced elements are 2^31 or more), a contiguous full
//   reduction takes an `int` size, and strided plans compute `int` offsets.
// - Binary element-wise ops, Scan, Sort/ArgSort/Partition, Scatter, Conv,
//   Matmul and most other kernels: `int` sizes, loop counters or offsets.
// - Copies (Copy, AsType, Full, Contiguous, the copy behind Reshape), the
//   unary element-wise ops, Gather/GatherAxis and ArgReduce count in 64 bits.
// EMLX's own reductions are staged (ops/staged.cc) so that they never build
// a Reduce past the limit. Everything else is checked here, on the queue's
// thread before evaluation, for every node about to be computed; a node
// MLX would get wrong is refused with std::invalid_argument (ArgumentError).
// The rules follow MLX's CPU kernels and apply to nodes on CPU streams,
// except the reduction count, which applies on every device.
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <unordered_map>

#include "bridge.h"
#include "mlx/primitives.h"  // Primitive::name(), stream()

namespace emlx {

namespace {

constexpr int64_t kMax32 = std::numeric_limits<int32_t>::max();

bool named(const char* name, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (std::strcmp(name, n) == 0) return true;
  }
  return false;
}

// What the limits need to know about a primitive, by its name.
enum Kind : uint8_t {
  // Kernels that count and index in 64 bits: any number of elements is fine.
  kWide = 1,
  // Kernels whose output is bounded by the output rule and that index their
  // inputs in 64 bits, however far those reach.
  kWideInputs = 2,
  kReduce = 4,
  // Views: their span is their input's (they select from its buffer).
  kSelects = 8,
  // Views that never allocate (see allocates_as).
  kView = 16,
  // Reshapes that are views when they only split axes.
  kSplits = 32,
};

uint8_t classify(const char* name) {
  uint8_t kind = 0;
  if (named(name, {"Copy", "Contiguous", "AsType", "Full", "Reshape", "Flatten", "Unflatten",
                   "Abs", "ArcCos", "ArcCosh", "ArcSin", "ArcSinh", "ArcTan", "ArcTanh",
                   "BitwiseInvert", "Ceil", "Conjugate", "Cos", "Cosh", "Erf", "ErfInv", "Exp",
                   "Expm1", "Floor", "Imag", "Log", "Log2", "Log10", "Log1p", "LogicalNot",
                   "Negative", "Real", "Round", "Sigmoid", "Sign", "Sin", "Sinh", "Square", "Sqrt",
                   "Tan", "Tanh"})) {
    kind |= kWide | kWideInputs;
  }
  if (named(name, {"Gather", "GatherAxis", "ArgReduce"})) kind |= kWideInputs;
  if (named(name, {"Sum", "Prod", "Max", "Min", "And", "Or"})) kind |= kReduce;
  if (named(name, {"Broadcast", "BroadcastAxes", "Slice", "Transpose", "ExpandDims", "Squeeze"})) {
    kind |= kSelects;
  }
  if (named(name, {"AsStrided", "Broadcast", "BroadcastAxes", "ExpandDims", "Slice", "Squeeze",
                   "Transpose"})) {
    kind |= kView;
  }
  if (named(name, {"Reshape", "Unflatten"})) kind |= kSplits;
  return kind;
}

// classify(name), remembered per name pointer (primitives name themselves
// with string literals, so a few dozen pointers come by; every node of
// every evaluation asks). A pointer seen with another text (a name built at
// run time whose memory was reused) is classified again.
uint8_t kind_of(const char* name) {
  struct Known {
    std::string text;
    uint8_t kind;
  };
  thread_local std::unordered_map<const char*, Known> known;
  auto hit = known.find(name);
  if (hit != known.end() && hit->second.text == name) return hit->second.kind;
  if (known.size() > 4096) known.clear();
  uint8_t kind = classify(name);
  known.insert_or_assign(name, Known{name, kind});
  return kind;
}

// Whether `out` refines `in`: each axis of `in` is the product of
// consecutive axes of `out`, size-1 axes aside. (Not when `in` starts with
// a size-1 axis that `out` does not: MLX keeps that axis, whose stride is
// arbitrary, as a collapsed axis of its own, and then may copy.)
bool refines(const mx::Shape& in, const mx::Shape& out) {
  if (!in.empty() && in[0] == 1 && (out.empty() || out[0] != 1)) return false;
  size_t j = 0;
  for (auto d : in) {
    if (d == 1) continue;
    int64_t p = 1;
    while (p < d && j < out.size()) p *= out[j++];
    if (p != d) return false;
  }
  for (; j < out.size(); ++j) {
    if (out[j] != 1) return false;
  }
  return true;
}

// Views share their input's buffer and allocate nothing. (By name: libmlx
// does not export its primitives' type information.) Reshape, Flatten,
// Unflatten and View copy an input that is not row-contiguous, which a lazy
// input may turn out to be, except a reshape that only splits axes (or
// adds and drops size-1 axes): MLX's reshape then always finds strides for
// it (it collapses the input's contiguous axes, then splits them), so it is
// a view too. Reads only shapes and the node's own primitive, whose
// kind (kind_of) the caller gives.
bool allocates_as(const Array& a, uint8_t kind) {
  if (kind & kView) return false;
  if ((kind & kSplits) && a.inputs().size() == 1 && a.size() > 0 &&
      refines(a.inputs()[0].shape(), a.shape())) {
    return false;
  }
  return true;
}

size_t saturating_add(size_t a, size_t b) {
  size_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<size_t>::max() : r;
}

// How far into its buffer (in elements) a kernel reading `a` may reach: the
// largest offset MLX computes for it, plus one. Exact for evaluated arrays;
// for graph nodes an upper bound (a view reaches no further than its input;
// a reshape that only splits axes is a view; a computed node is a fresh,
// dense buffer of its own size).
size_t span(const Array& a, std::unordered_map<uintptr_t, size_t>& memo) {
  if (a.size() == 0) return 0;
  if (a.status() != Array::Status::unscheduled) {
    size_t reach = 1;
    for (size_t i = 0; i < a.ndim(); ++i) {
      size_t step = static_cast<size_t>(a.strides()[i] < 0 ? -a.strides()[i] : a.strides()[i]);
      size_t far;
      if (__builtin_mul_overflow(step, static_cast<size_t>(a.shape(i) - 1), &far)) {
        return std::numeric_limits<size_t>::max();
      }
      reach = saturating_add(reach, far);
    }
    return reach;
  }
  if (auto hit = memo.find(a.id()); hit != memo.end()) return hit->second;
  size_t reach = a.size();
  if (a.has_primitive() && !a.inputs().empty()) {
    auto kind = kind_of(a.primitive().name());
    if ((kind & kSelects) || !allocates_as(a, kind)) reach = span(a.inputs()[0], memo);
  }
  memo.emplace(a.id(), reach);
  return reach;
}

std::string described(const Array& a) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < a.ndim(); ++i) out << (i ? ", " : "") << a.shape(i);
  out << "] " << dtype_name(a.dtype());
  return out.str();
}

[[noreturn]] void refuse(const Array& a, const char* name, const std::string& why) {
  std::ostringstream msg;
  msg << "cannot evaluate " << name << " (result " << described(a) << "): " << why
      << "; MLX counts elements in 32 bits there and would silently compute a wrong result, so "
         "EMLX refuses it. Work on parts below 2^31 elements (Nx.slice) and combine the results";
  throw std::invalid_argument(msg.str());
}

}  // namespace

void check_limits(const Array& a, std::unordered_map<uintptr_t, size_t>& spans) {
  if (!a.has_primitive()) return;
  const char* name = a.primitive().name();
  auto kind = kind_of(name);
  if ((kind & kReduce) && !a.inputs().empty() && a.size() > 0) {
    size_t reduced = a.inputs()[0].size() / a.size();
    if (reduced > static_cast<size_t>(kMax32)) {
      std::ostringstream why;
      why << "it reduces " << reduced << " elements into each result element";
      refuse(a, name, why.str());
    }
  }
  if (!allocates_as(a, kind) || a.primitive().stream().device.type != mx::Device::cpu) return;
  if (a.size() > static_cast<size_t>(kMax32) && !(kind & kWide)) {
    refuse(a, name, "its result has " + std::to_string(a.size()) + " elements");
  }
  if (kind & kWideInputs) return;
  for (const auto& in : a.inputs()) {
    size_t reach = span(in, spans);
    if (reach > static_cast<size_t>(kMax32)) {
      std::ostringstream why;
      why << "it reads an input of shape " << described(in) << " that reaches " << reach
          << " elements into its buffer";
      refuse(a, name, why.str());
    }
  }
}

bool allocates(const Array& a) {
  return !a.has_primitive() || allocates_as(a, kind_of(a.primitive().name()));
}

}  // namespace emlx
