// Runtime half of the bridge: argument access for ops, streams, array
// metadata, evaluation and memory. The op table itself is in ops.cc.
#include "bridge.h"

#include <unistd.h>

#include <cstring>
#include <limits>
#include <sstream>
#include <unordered_set>

#include "mlx/primitives.h"  // Primitive::name()

#include "emlx/native/src/ffi.rs.h"

namespace emlx {

namespace {

mx::Device device_of(int32_t d) {
  return d == 1 ? mx::Device(mx::Device::gpu) : mx::Device(mx::Device::cpu);
}

}  // namespace

mx::Stream to_stream(const StreamRef& s) {
  return mx::Stream(s.index, device_of(s.device));
}

mx::Stream to_cpu_stream(const StreamRef& s) {
  return mx::Stream(s.cpu_index, mx::Device(mx::Device::cpu));
}

// --- dtypes ----------------------------------------------------------------

mx::Dtype parse_dtype(const std::string& name) {
  static const std::pair<const char*, mx::Dtype> names[] = {
      {"bool", mx::bool_},         {"uint8", mx::uint8},
      {"uint16", mx::uint16},      {"uint32", mx::uint32},
      {"uint64", mx::uint64},      {"int8", mx::int8},
      {"int16", mx::int16},        {"int32", mx::int32},
      {"int64", mx::int64},        {"float16", mx::float16},
      {"float32", mx::float32},    {"float64", mx::float64},
      {"bfloat16", mx::bfloat16},  {"complex64", mx::complex64},
  };
  for (auto& [n, d] : names) {
    if (name == n) return d;
  }
  throw std::invalid_argument("unknown MLX dtype '" + name + "'");
}

const char* dtype_name(mx::Dtype d) {
  switch (d) {
    case mx::bool_: return "bool";
    case mx::uint8: return "uint8";
    case mx::uint16: return "uint16";
    case mx::uint32: return "uint32";
    case mx::uint64: return "uint64";
    case mx::int8: return "int8";
    case mx::int16: return "int16";
    case mx::int32: return "int32";
    case mx::int64: return "int64";
    case mx::float16: return "float16";
    case mx::float32: return "float32";
    case mx::float64: return "float64";
    case mx::bfloat16: return "bfloat16";
    case mx::complex64: return "complex64";
  }
  return "unknown";
}

// --- Call ------------------------------------------------------------------

void Call::bad(size_t i, const char* what) const {
  std::ostringstream msg;
  msg << op << ": argument " << (i + 1) << " must be " << what;
  if (i >= args.size()) msg << " (only " << args.size() << " given)";
  throw std::invalid_argument(msg.str());
}

template <typename T>
const T& Call::get(size_t i, const char* what) const {
  if (i >= args.size()) bad(i, what);
  if (auto* v = std::get_if<T>(&args[i])) return *v;
  bad(i, what);
}

const Array& Call::arr(size_t i) const { return get<Array>(i, "a tensor"); }
const std::vector<Array>& Call::arrays(size_t i) const {
  if (i < args.size() && std::holds_alternative<std::vector<int64_t>>(args[i]) &&
      std::get<std::vector<int64_t>>(args[i]).empty()) {
    static const std::vector<Array> empty;
    return empty;
  }
  return get<std::vector<Array>>(i, "a list of tensors");
}
int64_t Call::i64(size_t i) const { return get<int64_t>(i, "an integer"); }
int Call::i32(size_t i) const {
  int64_t v = i64(i);
  if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
    bad(i, "an integer that fits in 32 bits");
  return static_cast<int>(v);
}
double Call::f64(size_t i) const {
  if (i < args.size()) {
    if (auto* v = std::get_if<int64_t>(&args[i])) return static_cast<double>(*v);
    if (auto* v = std::get_if<uint64_t>(&args[i])) return static_cast<double>(*v);
    if (auto* s = std::get_if<std::string>(&args[i])) {
      if (*s == "nan") return std::numeric_limits<double>::quiet_NaN();
      if (*s == "infinity") return std::numeric_limits<double>::infinity();
      if (*s == "neg_infinity") return -std::numeric_limits<double>::infinity();
    }
  }
  return get<double>(i, "a number");
}
bool Call::flag(size_t i) const { return get<bool>(i, "a boolean"); }
bool Call::none(size_t i) const {
  return i < args.size() && std::holds_alternative<std::monostate>(args[i]);
}
const std::string& Call::str(size_t i) const { return get<std::string>(i, "an atom or string"); }
std::vector<int64_t> Call::ints(size_t i) const {
  return get<std::vector<int64_t>>(i, "a list of integers");
}
std::vector<int> Call::axes(size_t i) const {
  auto v = ints(i);
  std::vector<int> out;
  out.reserve(v.size());
  for (auto x : v) {
    if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
      bad(i, "a list of integers that fit in 32 bits");
    out.push_back(static_cast<int>(x));
  }
  return out;
}
mx::Shape Call::shape(size_t i) const {
  auto v = ints(i);
  mx::Shape out;
  for (auto x : v) {
    if (x < 0 || x > std::numeric_limits<int32_t>::max())
      bad(i, "a shape of non-negative dimensions below 2^31");
    out.push_back(static_cast<int32_t>(x));
  }
  return out;
}
mx::Shape Call::int32s(size_t i) const {
  auto v = axes(i);
  return mx::Shape(v.begin(), v.end());
}
std::vector<double> Call::floats(size_t i) const {
  if (i < args.size()) {
    if (auto* v = std::get_if<std::vector<int64_t>>(&args[i])) {
      return std::vector<double>(v->begin(), v->end());
    }
  }
  return get<std::vector<double>>(i, "a list of numbers");
}
mx::Dtype Call::dtype(size_t i) const { return parse_dtype(str(i)); }
mx::Stream Call::cpu() const {
  if (!cpu_stream) throw std::logic_error("internal: op called without a CPU stream");
  return *cpu_stream;
}

// --- devices and streams -----------------------------------------------------

bool gpu_available() { return mx::is_available(mx::Device(mx::Device::gpu)); }

namespace {

size_t physical_memory() {
  static const size_t bytes = [] {
    long pages = sysconf(_SC_PHYS_PAGES);
    long page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page)
                                 : std::numeric_limits<size_t>::max();
  }();
  return bytes;
}

// A string or number entry of MLX's device_info map, if there is one.
template <typename T>
std::optional<T> info_entry(const mx::Device& d, const char* key) {
  const auto& info = mx::device_info(d);
  auto it = info.find(key);
  if (it == info.end()) return std::nullopt;
  if (auto* v = std::get_if<T>(&it->second)) return *v;
  return std::nullopt;
}

}  // namespace

// Where MLX puts a device's arrays: the CPU's (and, in a CUDA build, the
// managed memory MLX gives CPU arrays) is the machine's RAM; a CUDA GPU's
// arrays live in the GPU's own memory, whatever the host has; on Apple
// silicon the two are the same unified memory. Read once.
size_t device_memory(const mx::Device& device) {
  if (device.type == mx::Device::cpu) return physical_memory();
  static const size_t gpu = [] {
    mx::Device d(mx::Device::gpu);
    if (!mx::is_available(d)) return physical_memory();
    auto bytes = info_entry<size_t>(d, "total_memory");  // CUDA
    if (!bytes) bytes = info_entry<size_t>(d, "memory_size");  // Metal
    return bytes.value_or(physical_memory());
  }();
  return gpu;
}

rust::String mlx_version() { return rust::String(mx::version()); }

const char* memory_name(const mx::Device& device) {
  return device.type == mx::Device::cpu ? "this machine's memory" : "the GPU's memory";
}

DeviceInfo device_info(int32_t device) {
  auto d = device_of(device);
  if (!mx::is_available(d)) {
    throw std::invalid_argument(device == 1 ? "this MLX build has no GPU" : "no CPU device");
  }
  return DeviceInfo{rust::String(info_entry<std::string>(d, "device_name").value_or("unknown")),
                    rust::String(info_entry<std::string>(d, "architecture").value_or("unknown")),
                    device_memory(d)};
}

int32_t new_stream(int32_t device) {
  auto d = device_of(device);
  if (!mx::is_available(d)) {
    throw std::invalid_argument(device == 1 ? "this MLX build has no GPU" : "no CPU device");
  }
  return mx::new_stream(d).index;
}

void synchronize(const StreamRef& s) {
  mx::synchronize(to_stream(s));
  mx::synchronize(to_cpu_stream(s));
}

// --- op calls ----------------------------------------------------------------

std::unique_ptr<Call> new_call() {
  auto c = std::make_unique<Call>();
  c->args.reserve(6);
  return c;
}
void push_array(Call& c, const Array& a) { c.args.emplace_back(a); }
void push_computed_array(Call& c, const Array& a) {
  c.args.emplace_back(a);
  c.computed.push_back(a.id());
}
void push_arrays(Call& c, const ArrayList& list) { c.args.emplace_back(list.items); }
void push_int(Call& c, int64_t v) { c.args.emplace_back(v); }
void push_uint(Call& c, uint64_t v) { c.args.emplace_back(v); }
void push_float(Call& c, double v) { c.args.emplace_back(v); }
void push_bool(Call& c, bool v) { c.args.emplace_back(v); }
void push_none(Call& c) { c.args.emplace_back(std::monostate{}); }
void push_str(Call& c, rust::Str s) { c.args.emplace_back(std::string(s)); }
void push_ints(Call& c, rust::Slice<const int64_t> v) {
  c.args.emplace_back(std::vector<int64_t>(v.begin(), v.end()));
}
void push_floats(Call& c, rust::Slice<const double> v) {
  c.args.emplace_back(std::vector<double>(v.begin(), v.end()));
}
std::unique_ptr<ArrayList> new_list() { return std::make_unique<ArrayList>(); }
void list_push(ArrayList& list, const Array& a) { list.items.push_back(a); }
size_t list_len(const ArrayList& list) { return list.items.size(); }
std::unique_ptr<Array> list_get(const ArrayList& list, size_t i) {
  return std::make_unique<Array>(list.items.at(i));
}
int32_t list_alias(const ArrayList& list, size_t i) {
  return i < list.alias.size() ? list.alias[i] : -1;
}

// --- allocation guard ------------------------------------------------------------
//
// MLX's CPU allocator neither enforces the memory limit nor checks malloc:
// a failed allocation becomes a null buffer that the kernel then writes
// through (a segfault that takes the VM down), and an array's byte size
// silently wraps modulo 2^64 for absurd shapes (a small buffer, then writes
// far past it). So before anything is evaluated, every buffer the graph will
// allocate is checked here, and an impossible one is refused with an
// exception instead: a byte count past 2^64 (ArgumentError), or more than
// MLX's memory limit or the machine's memory (EMLX.NIFError). A limit of 0
// refuses every allocation.

namespace {

std::string describe(const char* what, const mx::Shape& shape, mx::Dtype dtype) {
  std::ostringstream msg;
  msg << what << ": an array of shape [";
  for (size_t i = 0; i < shape.size(); ++i) msg << (i ? ", " : "") << shape[i];
  msg << "] and type " << dtype_name(dtype);
  return msg.str();
}

// The bytes an array of `shape` and `dtype` needs; throws if that count
// overflows 2^64 (MLX's own count would wrap).
size_t checked_nbytes(const char* what, const mx::Shape& shape, mx::Dtype dtype) {
  size_t bytes = mx::size_of(dtype);
  for (auto d : shape) {
    if (d < 0 || __builtin_mul_overflow(bytes, static_cast<size_t>(d), &bytes)) {
      throw std::invalid_argument(describe(what, shape, dtype) +
                                  " would need more than 2^64 bytes");
    }
  }
  return bytes;
}

}  // namespace

// Throws unless a buffer of `bytes` on `device` fits under MLX's memory
// limit and in that device's memory (device_memory).
void check_budget(const char* what, size_t bytes, const mx::Shape& shape, mx::Dtype dtype,
                  const mx::Device& device) {
  size_t limit = mx::get_memory_limit();
  size_t memory = device_memory(device);
  if (bytes <= limit && bytes <= memory) return;
  std::ostringstream msg;
  msg << describe(what, shape, dtype) << " needs " << bytes << " bytes, more than ";
  if (bytes > limit) {
    msg << "MLX's memory limit of " << limit << " bytes (see EMLX.set_memory_limit/1)";
  } else {
    msg << memory_name(device) << " (" << memory << " bytes)";
  }
  throw std::runtime_error(msg.str());
}

namespace {

// The device an unevaluated node will be computed on.
mx::Device node_device(const Array& a) {
  return a.has_primitive() ? a.primitive().stream().device : mx::Device(mx::Device::cpu);
}

// The stream a graph node runs on must be one of the evaluating queue's
// (its main stream or its companion CPU stream): MLX binds a stream to the
// thread that created it and would fail with "There is no Stream(...)".
void check_stream(const Array& a, const StreamRef& s) {
  auto st = a.primitive().stream();
  bool main = st.index == s.index && st.device == to_stream(s).device;
  bool cpu = st.index == s.cpu_index && st.device == mx::Device(mx::Device::cpu);
  if (main || cpu) return;
  std::ostringstream msg;
  msg << "internal error in EMLX: a graph node of stream " << st.index
      << " was to be evaluated by the command queue of stream " << s.index
      << ", which does not own it (MLX streams belong to the thread that created them); "
         "please report this with the code that caused it";
  throw StreamMismatch(msg.str());
}

}  // namespace

void check_node(const Array& a, const StreamRef* s, std::unordered_map<uintptr_t, size_t>& spans) {
  if (s && a.has_primitive()) check_stream(a, *s);
  check_limits(a, spans);
  // Views allocate nothing, but a view whose size wraps would make its
  // consumers loop over a wrong element count: refused too.
  size_t bytes = checked_nbytes("cannot evaluate", a.shape(), a.dtype());
  if (allocates(a)) check_budget("cannot evaluate", bytes, a.shape(), a.dtype(), node_device(a));
}

namespace {

// Walks the unevaluated part of the graph under `roots`, each node once,
// on the queue's thread (the only one that may read these nodes' status):
// every node must run on the queue's streams (when `s` is given), stay
// within MLX's 32-bit limits (limits.cc), and every buffer it will allocate
// must be possible.
void check_graph(const std::vector<Array>& roots, const StreamRef* s) {
  std::vector<Array> stack;
  std::unordered_set<std::uintptr_t> seen;
  std::unordered_map<uintptr_t, size_t> spans;
  auto visit = [&](const Array& a) {
    if (a.status() == Array::Status::unscheduled && seen.insert(a.id()).second) {
      stack.push_back(a);
    }
  };
  for (const auto& r : roots) visit(r);
  while (!stack.empty()) {
    Array a = std::move(stack.back());
    stack.pop_back();
    check_node(a, s, spans);
    for (const auto& in : a.inputs()) visit(in);
    for (const auto& sib : a.siblings()) visit(sib);
  }
}

}  // namespace

// --- arrays --------------------------------------------------------------------

std::unique_ptr<Array> clone_array(const Array& a) { return std::make_unique<Array>(a); }

rust::Vec<int64_t> shape_of(const Array& a) {
  rust::Vec<int64_t> out;
  for (auto d : a.shape()) out.push_back(d);
  return out;
}

rust::Vec<int64_t> strides_of(const Array& a, bool ready) {
  rust::Vec<int64_t> out;
  // Strides are only defined once the array has a layout; report the
  // row-major strides a lazy array will have.
  if (ready) {
    for (auto s : a.strides()) out.push_back(s);
    return out;
  }
  std::vector<int64_t> rev;
  int64_t acc = 1;
  for (int i = a.ndim() - 1; i >= 0; --i) {
    rev.push_back(acc);
    acc *= a.shape(i);
  }
  for (auto it = rev.rbegin(); it != rev.rend(); ++it) out.push_back(*it);
  return out;
}

rust::String dtype_of(const Array& a) { return rust::String(dtype_name(a.dtype())); }
size_t itemsize_of(rust::Str dtype) { return mx::size_of(parse_dtype(std::string(dtype))); }
size_t nbytes_of(const Array& a) { return a.nbytes(); }
bool is_unscheduled(const Array& a) { return a.status() == Array::Status::unscheduled; }
bool born_ready(const Array& a) { return a.status() == Array::Status::available; }

// --- evaluation ------------------------------------------------------------------

void eval_list(const ArrayList& list, const StreamRef& s) { eval_arrays(list.items, &s); }

void repair_data_size(Array& a) {
  if (a.flags().contiguous && a.data_size() > a.size()) {
    a.copy_shared_buffer(a, a.strides(), a.flags(), a.size());
  }
}

void eval_arrays(const std::vector<Array>& items, const StreamRef* s) {
  // MLX's eval costs a few microseconds a node more than its kernels
  // (events, hash sets, a task per node): on a queue whose CPU kernels run
  // inline, the graph is checked and computed node by node instead.
  if (s != nullptr && eval_inline_graph(items, *s)) return;
  check_graph(items, s);
  mx::eval(items);
  // mx::eval leaves its outputs "evaluated"; wait() makes them "available"
  // here, so that no later reader (another queue, a scheduler thread reading
  // a ready tensor) ever writes their status.
  for (const auto& a : items) {
    const_cast<Array&>(a).wait();
    repair_data_size(const_cast<Array&>(a));
  }
}

std::unique_ptr<Array> readable(const Array& a, const StreamRef& s) {
  Array out = a;
  eval_arrays({out}, &s);
  if (!out.flags().row_contiguous) {
    out = mx::contiguous(out, false, to_stream(s));
    eval_arrays({out}, &s);
  }
  return std::make_unique<Array>(std::move(out));
}

rust::Slice<const uint8_t> data_bytes(const Array& a) {
  if (a.status() == Array::Status::unscheduled || !a.flags().row_contiguous) {
    throw std::logic_error("data_bytes needs an evaluated row-contiguous array");
  }
  if (a.nbytes() == 0) {
    static const uint8_t empty = 0;
    return rust::Slice<const uint8_t>(&empty, 0);
  }
  return rust::Slice<const uint8_t>(a.data<uint8_t>(), a.nbytes());
}

bool is_row_contiguous(const Array& a) { return a.flags().row_contiguous; }

Scalar scalar_of(const Array& a) {
  if (a.size() != 1) {
    throw std::invalid_argument("item: the tensor must have exactly one element, it has " +
                                std::to_string(a.size()));
  }
  if (a.status() == Array::Status::unscheduled) {
    throw std::logic_error("scalar_of needs an evaluated array");
  }
  Scalar out{2, 0, 0, 0.0, 0.0};
  switch (a.dtype()) {
    case mx::bool_: out.kind = 4; out.ival = a.item<bool>(); break;
    case mx::uint8: out.kind = 1; out.uval = a.item<uint8_t>(); break;
    case mx::uint16: out.kind = 1; out.uval = a.item<uint16_t>(); break;
    case mx::uint32: out.kind = 1; out.uval = a.item<uint32_t>(); break;
    case mx::uint64: out.kind = 1; out.uval = a.item<uint64_t>(); break;
    case mx::int8: out.kind = 0; out.ival = a.item<int8_t>(); break;
    case mx::int16: out.kind = 0; out.ival = a.item<int16_t>(); break;
    case mx::int32: out.kind = 0; out.ival = a.item<int32_t>(); break;
    case mx::int64: out.kind = 0; out.ival = a.item<int64_t>(); break;
    case mx::float16: out.real = static_cast<float>(a.item<mx::float16_t>()); break;
    case mx::bfloat16: out.real = static_cast<float>(a.item<mx::bfloat16_t>()); break;
    case mx::float32: out.real = a.item<float>(); break;
    case mx::float64: out.real = a.item<double>(); break;
    case mx::complex64: {
      auto c = a.item<mx::complex64_t>();
      out.kind = 3;
      out.real = c.real();
      out.imag = c.imag();
      break;
    }
  }
  return out;
}

// --- memory ------------------------------------------------------------------------

size_t active_memory() { return mx::get_active_memory(); }
size_t peak_memory() { return mx::get_peak_memory(); }
size_t cache_memory() { return mx::get_cache_memory(); }
void reset_peak_memory() { mx::reset_peak_memory(); }
size_t set_cache_limit(size_t limit) { return mx::set_cache_limit(limit); }
size_t set_memory_limit(size_t limit) { return mx::set_memory_limit(limit); }
void clear_cache() { mx::clear_cache(); }

}  // namespace emlx
