// The op registry: every family's table, in one index space. Rust reads the
// names once at load (op_names) and calls ops by index (run_op).
#include <array>
#include <string_view>

#include "emlx/native/src/ffi.rs.h"
#include "ops.h"

namespace emlx {

namespace {

const std::array<const ops::OpTable*, 5> FAMILIES = {
    &ops::creation, &ops::shape, &ops::elementwise, &ops::reduction, &ops::linalg,
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

namespace {

// MLX's own messages do not always say which op failed ("Invalid axis 5 for
// array with 1 dimensions."): prefix the EMLX op name unless it is there.
std::string with_op(const char* op, const char* what) {
  std::string prefix = std::string(op) + ":";
  if (std::string_view(what).substr(0, prefix.size()) == prefix) return what;
  return prefix + " " + what;
}

}  // namespace

std::unique_ptr<ArrayList> run_op(uint32_t index, const Call& call, const StreamRef& s) {
  const auto* entry = find(index);
  if (entry == nullptr) throw std::invalid_argument("unknown op index");
  call.op = entry->name;
  auto list = std::make_unique<ArrayList>();
  try {
    list->items = entry->fn(call, to_stream(s));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(with_op(entry->name, e.what()));
  } catch (const std::out_of_range& e) {
    throw std::out_of_range(with_op(entry->name, e.what()));
  } catch (const std::length_error& e) {
    throw std::length_error(with_op(entry->name, e.what()));
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(with_op(entry->name, e.what()));
  }
  return list;
}

}  // namespace emlx
