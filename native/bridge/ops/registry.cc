// The op registry: every family's table, in one index space. Rust reads the
// names once at load (op_names) and calls ops by index (run_op).
#include <unistd.h>

#include <array>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>

#include "emlx/native/src/ffi.rs.h"
#include "ops.h"

namespace emlx {

namespace {

const std::array<const ops::OpTable*, 11> FAMILIES = {
    &ops::creation, &ops::shape,  &ops::elementwise, &ops::reduction, &ops::indexing, &ops::linalg,
    &ops::conv,     &ops::spectral, &ops::fast,     &ops::quant,     &ops::backend,
};

const ops::Entry* find(uint32_t index) {
  for (const auto* family : FAMILIES) {
    if (index < family->size()) return &(*family)[index];
    index -= family->size();
  }
  return nullptr;
}

// The machine's physical memory in bytes: no single result may need more.
size_t physical_memory() {
  static const size_t bytes = [] {
    long pages = sysconf(_SC_PHYS_PAGES);
    long size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(size)
                                 : std::numeric_limits<size_t>::max();
  }();
  return bytes;
}

// MLX does not check that a huge allocation succeeded (the process dies
// with SIGSEGV at evaluation), so results that cannot fit are refused here,
// when the op is built, for every op of the table. Views allocate nothing
// and may be any size (a huge broadcast feeding a reduction is fine); what
// they would allocate when materialised is refused at evaluation
// (bridge.cc's check against MLX's memory limit).
void check_fits(const Array& a, const char* op) {
  if (!allocates(a)) return;
  size_t bytes = a.itemsize();
  bool overflow = false;
  for (auto d : a.shape()) {
    overflow = overflow || __builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes);
  }
  if (overflow || bytes > physical_memory()) {
    std::ostringstream msg;
    msg << op << ": the result of shape (";
    for (size_t i = 0; i < a.ndim(); ++i) msg << (i ? ", " : "") << a.shape(i);
    msg << ") and type " << dtype_name(a.dtype()) << " would need ";
    if (overflow) {
      msg << "more than 2^64 bytes";
    } else {
      msg << bytes << " bytes";
    }
    msg << ", more than this machine's memory (" << physical_memory() << " bytes)";
    throw std::invalid_argument(msg.str());
  }
}

// For the duration of one op, makes the queue's streams the calling thread's
// default streams. Ops pass their stream explicitly, but some MLX ops build
// helper nodes internally on the thread's default stream (gather's index
// broadcast, fftn's padding, imag of a real array were seen); those nodes
// must land on the queue's streams too, or the queue thread could not
// evaluate them. MLX 0.32 keeps default streams per thread, and a BEAM
// scheduler thread runs one NIF at a time, so this is race-free. A thread
// that had no default stream keeps ours afterwards (MLX cannot unset one);
// asking MLX for its default would create a stream on this thread.
class DefaultStreams {
 public:
  DefaultStreams(const StreamRef& s) {
    use(to_cpu_stream(s));
    if (s.device != 0) use(to_stream(s));
  }
  // Restores what the thread had. A thread that had no default keeps the
  // queue's stream: MLX has no way to unset it, and every op built on this
  // thread goes through here and sets its own. peek (not default_stream) is
  // used so no stream is ever created on a BEAM scheduler thread.
  ~DefaultStreams() {
    for (size_t i = count_; i-- > 0;) {
      if (saved_[i]) mx::set_default_stream(*saved_[i]);
    }
  }
  DefaultStreams(const DefaultStreams&) = delete;
  DefaultStreams& operator=(const DefaultStreams&) = delete;

 private:
  void use(mx::Stream stream) {
    saved_[count_++] = mx::peek_default_stream(stream.device);
    mx::set_default_stream(stream);
  }
  // At most two (the CPU stream and the GPU one); no allocation per op.
  std::array<std::optional<mx::Stream>, 2> saved_;
  size_t count_ = 0;
};

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

void bad_arg(const Call& c, const std::string& msg) {
  throw std::invalid_argument(std::string(c.op) + ": " + msg);
}

std::string shape_text(const Array& a) {
  std::string out = "{";
  for (size_t i = 0; i < a.ndim(); ++i) {
    if (i) out += ", ";
    out += std::to_string(a.shape()[i]);
  }
  return out + "}";
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
  auto list = std::make_unique<ArrayList>();
  list->items = run_entry(index, call, s);
  return list;
}

std::vector<Array> run_entry(uint32_t index, const Call& call, const StreamRef& s) {
  const auto* entry = find(index);
  if (entry == nullptr) throw std::invalid_argument("unknown op index");
  call.op = entry->name;
  call.cpu_stream = to_cpu_stream(s);
  std::vector<Array> items;
  try {
    DefaultStreams defaults(s);
    items = entry->fn(call, to_stream(s));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(with_op(entry->name, e.what()));
  } catch (const std::out_of_range& e) {
    throw std::out_of_range(with_op(entry->name, e.what()));
  } catch (const std::length_error& e) {
    throw std::length_error(with_op(entry->name, e.what()));
  } catch (const std::overflow_error& e) {
    throw std::overflow_error(with_op(entry->name, e.what()));
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(with_op(entry->name, e.what()));
  }
  for (const auto& a : items) check_fits(a, entry->name);
  return items;
}

}  // namespace emlx
