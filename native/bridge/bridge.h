// C++ half of the cxx bridge between the Rust NIF and MLX's C++ API.
//
// Everything MLX is reached through here. Functions are declared in
// native/src/ffi.rs; ops live in ops.cc as one table (name -> lambda).
// Every function may throw: the trycatch override below turns *any* C++
// exception into a Rust Err, so nothing thrown by MLX can abort the VM.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "mlx/mlx.h"
#include "rust/cxx.h"

namespace emlx {
// Thrown before evaluating a graph that holds a node of a stream the
// evaluating queue does not own (MLX itself would fail with "There is no
// Stream(...) in current thread"). Its own class ("S:" below), so that the
// Rust side decides by type, never by MLX's message text.
struct StreamMismatch : std::logic_error {
  using std::logic_error::logic_error;
};
}  // namespace emlx

namespace rust {
namespace behavior {
// cxx only converts std::exception by default; anything else would call
// std::terminate. The message carries a one-letter class prefix, chosen here
// by the exception's C++ type, that the Rust side maps to an error variant
// ("A:" bad argument, "S:" stream mismatch, "E:" MLX/runtime failure).
template <typename Try, typename Fail>
static void trycatch(Try&& func, Fail&& fail) noexcept try {
  func();
} catch (const std::invalid_argument& e) {
  fail((std::string("A:") + e.what()).c_str());
} catch (const std::out_of_range& e) {
  fail((std::string("A:") + e.what()).c_str());
} catch (const std::length_error& e) {
  fail((std::string("A:") + e.what()).c_str());
} catch (const std::overflow_error& e) {
  // MLX throws this for shapes whose dimensions exceed its 32-bit range.
  fail((std::string("A:") + e.what()).c_str());
} catch (const emlx::StreamMismatch& e) {
  fail((std::string("S:") + e.what()).c_str());
} catch (const std::bad_alloc&) {
  fail("E:out of memory: MLX could not allocate the requested buffer");
} catch (const std::exception& e) {
  fail((std::string("E:") + e.what()).c_str());
} catch (...) {
  fail("E:unknown C++ exception raised inside MLX");
}
}  // namespace behavior
}  // namespace rust

namespace emlx {

namespace mx = mlx::core;
using Array = mx::array;

struct StreamRef;
struct Scalar;
struct BlasInfo;
struct DeviceInfo;

// A list of arrays going in or out of an op. For an op's outputs, `alias[i]`
// is the position (in push order, over every array argument of the call) of
// the input that output `i` *is* (MLX returns an input unchanged for no-op
// reshapes, casts, ...), or -1 for a node the op built.
struct ArrayList {
  std::vector<Array> items;
  std::vector<int32_t> alias = {};
};

// The arguments of one op call, pushed one at a time by the Rust side.
class Call {
 public:
  using Arg = std::variant<std::monostate, Array, int64_t, double, bool,
                           std::string, std::vector<int64_t>,
                           std::vector<Array>, std::vector<double>, uint64_t>;
  std::vector<Arg> args;
  mutable const char* op = "";
  // The companion CPU stream of the queue the op is built for, owned by the
  // same thread as its main stream. Set by run_op; ops that MLX runs only on
  // the CPU use it.
  mutable std::optional<mx::Stream> cpu_stream;
  // The ids of array arguments whose data is computed (EMLX's readiness,
  // pushed with push_computed_array): their values may be read while the
  // op is built (see ops::known_ints).
  std::vector<uintptr_t> computed;

  size_t size() const { return args.size(); }
  const Array& arr(size_t i) const;
  const std::vector<Array>& arrays(size_t i) const;
  int64_t i64(size_t i) const;
  int i32(size_t i) const;
  double f64(size_t i) const;
  bool flag(size_t i) const;
  bool none(size_t i) const;
  const std::string& str(size_t i) const;
  std::vector<int64_t> ints(size_t i) const;
  std::vector<int> axes(size_t i) const;
  mx::Shape shape(size_t i) const;
  mx::Shape int32s(size_t i) const;  // like shape, negative values allowed
  std::vector<double> floats(size_t i) const;
  mx::Dtype dtype(size_t i) const;
  mx::Stream cpu() const;

 private:
  template <typename T>
  const T& get(size_t i, const char* what) const;
  [[noreturn]] void bad(size_t i, const char* what) const;
};

// --- helpers shared by bridge.cc and ops.cc ---------------------------------
mx::Stream to_stream(const StreamRef& s);
mx::Stream to_cpu_stream(const StreamRef& s);
mx::Dtype parse_dtype(const std::string& name);
const char* dtype_name(mx::Dtype d);

// --- devices and streams -------------------------------------------------
bool gpu_available();
int32_t new_stream(int32_t device);
void synchronize(const StreamRef& s);
// MLX's name and architecture of a device (0 CPU, 1 GPU) and device_memory.
DeviceInfo device_info(int32_t device);
rust::String mlx_version();
// The bytes a device's arrays can occupy at most: the machine's memory for
// the CPU, the GPU's own memory for a CUDA GPU, the unified memory on Apple
// silicon. Results and buffers larger than this are refused.
size_t device_memory(const mx::Device& device);
// "this machine's memory" / "the GPU's memory", for messages.
const char* memory_name(const mx::Device& device);

// For the duration of one op built on a BEAM thread, makes the queue's
// device MLX's default device and the queue's streams the thread's default
// streams, so that graph nodes MLX builds internally without a stream land
// on the queue's streams (see registry.cc). Every op built outside a queue
// thread must be built inside one.
class QueueDefaults {
 public:
  explicit QueueDefaults(const StreamRef& s);
  ~QueueDefaults();
  QueueDefaults(const QueueDefaults&) = delete;
  QueueDefaults& operator=(const QueueDefaults&) = delete;

 private:
  void use(mx::Stream stream);
  std::unique_lock<std::mutex> device_lock_;
  std::optional<mx::Device> previous_device_;
  // At most two streams (the CPU stream and the GPU one); no allocation.
  std::array<std::optional<mx::Stream>, 2> saved_;
  size_t count_ = 0;
};

// --- op calls -------------------------------------------------------------
std::unique_ptr<Call> new_call();
void push_array(Call& c, const Array& a);
// push_array for an array whose data is computed (its status is final).
void push_computed_array(Call& c, const Array& a);
void push_arrays(Call& c, const ArrayList& list);
void push_int(Call& c, int64_t v);
void push_uint(Call& c, uint64_t v);
void push_float(Call& c, double v);
void push_bool(Call& c, bool v);
void push_none(Call& c);
void push_str(Call& c, rust::Str s);
void push_ints(Call& c, rust::Slice<const int64_t> v);
void push_floats(Call& c, rust::Slice<const double> v);
std::unique_ptr<ArrayList> new_list();
void list_push(ArrayList& list, const Array& a);
size_t list_len(const ArrayList& list);
std::unique_ptr<Array> list_get(const ArrayList& list, size_t i);
int32_t list_alias(const ArrayList& list, size_t i);

rust::Vec<rust::String> op_names();
std::unique_ptr<ArrayList> run_op(uint32_t op, const Call& call,
                                  const StreamRef& s);
// What run_op runs: the op's results, built on the queue's streams.
std::vector<Array> run_entry(uint32_t op, const Call& call, const StreamRef& s);

// --- arrays ---------------------------------------------------------------
std::unique_ptr<Array> clone_array(const Array& a);
// --- data in (data_in.cc) ----------------------------------------------------
struct BinaryKeeper;
std::unique_ptr<Array> from_bytes(rust::Slice<const uint8_t> bytes,
                                  rust::Slice<const int64_t> shape,
                                  rust::Str dtype);
// An array over the bytes `keeper` holds alive, without a copy where MLX's
// allocator allows it (else a copy); `keeper` is dropped when MLX no longer
// needs the bytes.
std::unique_ptr<Array> from_kept_bytes(rust::Box<BinaryKeeper> keeper,
                                       rust::Slice<const int64_t> shape, rust::Str dtype);
// Throws (std::invalid_argument) unless `nbytes` bytes hold exactly a
// tensor of `shape` and `dtype`, as from_bytes/from_kept_bytes check.
void check_blob_shape(size_t nbytes, rust::Slice<const int64_t> shape, rust::Str dtype);
// Whether from_kept_bytes can use bytes in place in this build.
bool zero_copy_available();
// A new MLX buffer holding a copy of `bytes` bytes at `data`.
mx::allocator::Data copy_to_new_buffer(const void* data, size_t bytes);
// Throws unless a buffer of `bytes` on `device` fits under MLX's memory
// limit and in that device's memory.
void check_budget(const char* what, size_t bytes, const mx::Shape& shape, mx::Dtype dtype,
                  const mx::Device& device);
rust::Vec<int64_t> shape_of(const Array& a);
// The strides of an evaluated array (`ready`), or the row-major strides a
// lazy one will have. Never asks MLX whether `a` is evaluated (that reads,
// and may write, its status, which its queue's thread may be changing).
rust::Vec<int64_t> strides_of(const Array& a, bool ready);
rust::String dtype_of(const Array& a);
size_t itemsize_of(rust::Str dtype);
size_t nbytes_of(const Array& a);
// MLX's status of `a`: unscheduled (a graph node not evaluated yet), and
// available (its data computed). MLX's status is a plain field that the
// evaluating thread writes, so these may only be asked where no other
// thread can be evaluating `a`: on the thread of the queue that evaluates
// it, or for an array no other thread can reach yet (an op's new output).
bool is_unscheduled(const Array& a);
bool born_ready(const Array& a);
// Whether evaluating `a` allocates a buffer of its own (views such as
// broadcasts, reshapes and slices share their input's buffer).
bool allocates(const Array& a);

// Refuses (std::invalid_argument) a graph node that MLX's 32-bit counts
// would compute wrong (limits.cc). On the evaluating queue's thread only;
// `spans` memoises what it learns about the graph.
void check_limits(const Array& a, std::unordered_map<uintptr_t, size_t>& spans);
// Every check evaluation makes of the graph node `a` before anything runs:
// it runs on one of `s`'s streams (when `s` is given), stays within MLX's
// 32-bit limits (check_limits) and its buffer is possible (check_budget).
// `spans` is check_limits'.
void check_node(const Array& a, const StreamRef* s, std::unordered_map<uintptr_t, size_t>& spans);

// --- evaluation (only on the owning queue's thread) -------------------------
// Evaluates the arrays and waits for them, so that their status is final
// ("available") before the queue tells other threads they are ready.
void eval_list(const ArrayList& list, const StreamRef& s);
// eval_list for a vector. Every node of the graph is checked first (its
// allocations, MLX's 32-bit limits, and, given the evaluating queue's
// streams `s`, that it runs on one of them).
void eval_arrays(const std::vector<Array>& items, const StreamRef* s = nullptr);
// Mends a computed array whose element count (data_size) exceeds its size:
// MLX 0.32.4's LU factorization (LUF, luf.cpp) records its result's byte
// count there, and a kernel that later takes over that buffer (donation)
// would write that many elements, past the buffer's end. A contiguous
// array never spans more elements than it has. Applied to every node an
// inline evaluation computes, and to the results of MLX's eval (whose
// intermediates EMLX cannot reach).
void repair_data_size(Array& a);
std::unique_ptr<Array> readable(const Array& a, const StreamRef& s);
rust::Slice<const uint8_t> data_bytes(const Array& a);
bool is_row_contiguous(const Array& a);
// The value of an evaluated one-element array.
Scalar scalar_of(const Array& a);

// --- CPU evaluation without MLX's stream threads (inline_cpu.cc) -------------
// Creates the pool of `pairs` (main, companion) CPU streams whose tasks run
// inline; returns whether libmlx's scheduler calls reach the hooks.
bool inline_cpu_init(size_t pairs);
// A free pair of the pool (index -1 when the pool is empty), and back.
StreamRef take_inline_streams();
void return_inline_streams(const StreamRef& s);
// Whether the unevaluated graph under `list` is all on `s`'s streams, has
// at most `max_nodes` nodes and touches at most `max_bytes` bytes (inputs and
// outputs of its nodes), with no compiled (JIT) node.
bool is_small_graph(const ArrayList& list, const StreamRef& s, size_t max_nodes,
                    size_t max_bytes);
// Computes the graph under `list` right here, the same way MLX's eval does
// on a CPU stream, if it is small in the sense of is_small_graph and `s`
// runs its kernels inline (inline_cpu.cc); returns whether it did. The
// caller holds the queue's evaluation lock. A kernel's failure is thrown.
bool eval_small_graph(const ArrayList& list, const StreamRef& s, size_t max_nodes,
                      size_t max_bytes);
// Computes the graph under `roots` right here, as eval_small_graph does,
// whatever its size, if `s` runs its kernels inline and the whole graph is
// on its streams with no compiled (JIT) node; returns whether it did. Every
// node is checked (check_node) before any runs; a graph it does not take
// is left unchecked (eval_arrays then checks it).
bool eval_inline_graph(const std::vector<Array>& roots, const StreamRef& s);
// Makes `s`'s main stream the calling thread's default (so MLX's eval
// creates no stream of its own on that thread).
void bind_thread(const StreamRef& s);

// --- BLAS (blas.cc) ---------------------------------------------------------
BlasInfo blas_info();

// --- memory ----------------------------------------------------------------
size_t active_memory();
size_t peak_memory();
size_t cache_memory();
void reset_peak_memory();
size_t set_cache_limit(size_t limit);
size_t set_memory_limit(size_t limit);
void clear_cache();

}  // namespace emlx
