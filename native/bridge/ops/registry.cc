// The op registry: every family's table, in one index space. Rust reads the
// names once at load (op_names) and calls ops by index (run_op).
#include <array>

#include "emlx/native/src/ffi.rs.h"
#include "ops.h"

namespace emlx {

namespace {

const std::array<const ops::OpTable*, 6> FAMILIES = {
    &ops::creation, &ops::shape,  &ops::elementwise,
    &ops::reduction, &ops::linalg, &ops::backend,
};

const ops::Entry* find(uint32_t index) {
  for (const auto* family : FAMILIES) {
    if (index < family->size()) return &(*family)[index];
    index -= family->size();
  }
  return nullptr;
}

}  // namespace

namespace ops {

Array scalar(const Call& c, size_t i, mx::Dtype dtype) {
  if (i < c.args.size()) {
    const auto& a = c.args[i];
    if (auto* v = std::get_if<int64_t>(&a)) return Array(*v, dtype);
    if (auto* v = std::get_if<uint64_t>(&a)) return Array(*v, dtype);
    if (auto* v = std::get_if<bool>(&a)) return Array(*v, dtype);
    if (auto* v = std::get_if<std::vector<double>>(&a); v && v->size() == 2) {
      return Array(std::complex<float>((*v)[0], (*v)[1]), dtype);
    }
  }
  return Array(c.f64(i), dtype);
}

}  // namespace ops

rust::Vec<rust::String> op_names() {
  rust::Vec<rust::String> out;
  for (const auto* family : FAMILIES) {
    for (const auto& e : *family) out.push_back(rust::String(e.name));
  }
  return out;
}

std::unique_ptr<ArrayList> run_op(uint32_t index, const Call& call, const StreamRef& s) {
  const auto* entry = find(index);
  if (entry == nullptr) throw std::invalid_argument("unknown op index");
  call.op = entry->name;
  auto list = std::make_unique<ArrayList>();
  list->items = entry->fn(call, to_stream(s));
  return list;
}

}  // namespace emlx
