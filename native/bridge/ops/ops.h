// Shared pieces of the op table, which is split by family: each
// native/bridge/ops/<family>.cc defines one `OpTable` and registry.cc lists
// them. An entry is a name and a lambda that reads its arguments from the
// Call (positional, typed getters that raise ArgumentError-class errors) and
// builds graph nodes on the given stream. The Elixir twin of each family is
// lib/emlx/ops/<family>.ex (same names, same argument order).
#pragma once

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

#define EMLX_UNARY(name, fn) \
  {#name, [](const Call& c, S s) -> Out { return {fn(c.arr(0), s)}; }}
#define EMLX_BINARY(name, fn) \
  {#name, [](const Call& c, S s) -> Out { return {fn(c.arr(0), c.arr(1), s)}; }}

// One per family file.
extern const OpTable creation;
extern const OpTable shape;
extern const OpTable elementwise;
extern const OpTable reduction;
extern const OpTable linalg;
extern const OpTable backend;

}  // namespace emlx::ops
