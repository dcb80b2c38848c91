// The op registry: every family's table, in one index space. Rust reads the
// names once at load (op_names) and calls ops by index (run_op).
#include <algorithm>
#include <array>
#include <mutex>
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

// MLX does not check that a huge allocation succeeded (the process dies
// with SIGSEGV at evaluation), so results that cannot fit are refused here,
// when the op is built, for every op of the table: more than the memory of
// the device the op runs on (device_memory: a CUDA GPU's own memory, the
// machine's for the CPU). Views allocate nothing and may be any size (a huge
// broadcast feeding a reduction is fine); what they would allocate when
// materialised is refused at evaluation (bridge.cc's check against MLX's
// memory limit).
void check_fits(const Array& a, const char* op, const mx::Device& device) {
  if (!allocates(a)) return;
  size_t bytes = a.itemsize();
  bool overflow = false;
  for (auto d : a.shape()) {
    overflow = overflow || __builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes);
  }
  size_t memory = device_memory(device);
  if (overflow || bytes > memory) {
    std::ostringstream msg;
    msg << op << ": the result of shape (";
    for (size_t i = 0; i < a.ndim(); ++i) msg << (i ? ", " : "") << a.shape(i);
    msg << ") and type " << dtype_name(a.dtype()) << " would need ";
    if (overflow) {
      msg << "more than 2^64 bytes";
    } else {
      msg << bytes << " bytes";
    }
    msg << ", more than " << memory_name(device) << " (" << memory << " bytes)";
    throw std::invalid_argument(msg.str());
  }
}

// Serialises the ops that set MLX's default device (see QueueDefaults).
std::mutex& default_device_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

// Ops pass their stream explicitly, but MLX builds some helper nodes
// internally on the default stream of its default device
// (`default_stream(default_device())`: gather's index broadcast, fftn's zero
// padding, imag of a real array). Those nodes must land on the queue's
// streams, or the queue thread could not evaluate them. So for the duration
// of the op:
//
//   * the queue's device is MLX's default device. MLX keeps that one per
//     process, not per thread, and its CUDA build defaults to the GPU, which
//     a CPU queue's helper nodes must not get. So in a build with a GPU the
//     ops of all threads take a lock while they set it and build (a few
//     microseconds each). A queue thread's eval reads the default device
//     only to pick a provisional stream, which it replaces by the first
//     unevaluated output's.
//   * the queue's streams are the thread's default streams. MLX keeps those
//     per thread, and a BEAM scheduler thread runs one NIF at a time, so no
//     lock is needed. A thread that had no default keeps the queue's stream
//     afterwards (MLX cannot unset one); peek (not default_stream) is used
//     so no stream is ever created on a BEAM scheduler thread.
QueueDefaults::QueueDefaults(const StreamRef& s) {
  static const bool has_gpu = gpu_available();
  auto stream = to_stream(s);
  if (has_gpu) {
    device_lock_ = std::unique_lock<std::mutex>(default_device_mutex());
    const auto& current = mx::default_device();
    if (!(current == stream.device)) {
      previous_device_ = current;
      mx::set_default_device(stream.device);
    }
  }
  use(to_cpu_stream(s));
  if (s.device != 0) use(stream);
}

QueueDefaults::~QueueDefaults() {
  for (size_t i = count_; i-- > 0;) {
    if (saved_[i]) mx::set_default_stream(*saved_[i]);
  }
  if (previous_device_) mx::set_default_device(*previous_device_);
}

void QueueDefaults::use(mx::Stream stream) {
  saved_[count_++] = mx::peek_default_stream(stream.device);
  mx::set_default_stream(stream);
}

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

namespace {

// Whether `a` is one of the call's array arguments.
bool is_input(const Call& call, const Array& a) {
  for (const auto& arg : call.args) {
    if (auto* x = std::get_if<Array>(&arg); x && x->id() == a.id()) return true;
    if (auto* v = std::get_if<std::vector<Array>>(&arg)) {
      for (const auto& x : *v) {
        if (x.id() == a.id()) return true;
      }
    }
  }
  return false;
}

}  // namespace

std::unique_ptr<ArrayList> run_op(uint32_t index, const Call& call, const StreamRef& s) {
  auto list = std::make_unique<ArrayList>();
  list->items = run_entry(index, call, s);
  // An output that *is* one of the inputs is reported as such: it shares
  // that input's readiness (see ArrayList::alias).
  std::vector<uintptr_t> inputs;
  for (const auto& arg : call.args) {
    if (auto* a = std::get_if<Array>(&arg)) inputs.push_back(a->id());
    if (auto* v = std::get_if<std::vector<Array>>(&arg)) {
      for (const auto& a : *v) inputs.push_back(a.id());
    }
  }
  for (const auto& a : list->items) {
    auto hit = std::find(inputs.begin(), inputs.end(), a.id());
    list->alias.push_back(hit == inputs.end() ? -1 : static_cast<int32_t>(hit - inputs.begin()));
  }
  return list;
}

std::vector<Array> run_entry(uint32_t index, const Call& call, const StreamRef& s) {
  const auto* entry = find(index);
  if (entry == nullptr) throw std::invalid_argument("unknown op index");
  call.op = entry->name;
  call.cpu_stream = to_cpu_stream(s);
  std::vector<Array> items;
  auto stream = to_stream(s);
  try {
    QueueDefaults defaults(s);
    // Computed values are read in host memory: CPU streams only.
    std::optional<ops::KnownScope> known;
    if (stream.device == mx::Device::cpu) known.emplace(call);
    items = entry->fn(call, stream);
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
  for (const auto& a : items) {
    // An output that *is* one of the inputs (a no-op reshape, cast, ...) is
    // not a new allocation, and is not looked into: the input's queue may
    // be evaluating it right now.
    if (!is_input(call, a)) check_fits(a, entry->name, stream.device);
  }
  return items;
}

}  // namespace emlx
