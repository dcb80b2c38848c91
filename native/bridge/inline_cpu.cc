// CPU evaluation without MLX's stream threads.
//
// MLX runs every CPU kernel on a thread of its own per stream: the thread
// that evaluates encodes a task, wakes the stream's thread, and waits on an
// event for the result. For the small graphs of an interactive or training
// workload those wake-ups are most of the cost (an add of 4 elements
// evaluates in ~6 us inline, 20-130 us through the stream thread on a
// 2-core VM, depending on load).
//
// The EMLX NIF therefore takes over the four scheduler entry points libmlx
// calls (Scheduler::enqueue, signal_event, wait_event, check_error) for the
// CPU streams of its own command queues: their tasks run right away, on the
// thread that encodes them, which is always the queue's thread or a NIF
// holding that queue's evaluation lock (queue.rs). Every other stream (GPU
// streams, other threads' default streams) goes to libmlx's own scheduler.
// A task that throws is handled as MLX's stream thread handles it: the
// first failure is kept and the rest of the graph still runs; the
// evaluation then raises it as MLX would (std::runtime_error with MLX's
// message), when it signals its end event (mx::eval) or checks the stream
// (mx::synchronize). Inline, the failure belongs to the thread that ran the
// task. (mx::async_eval over several streams would raise at the first
// stream's signal and leave the later ones unsignalled: EMLX never
// async-evaluates on these streams.)
//
// The takeover works by symbol interposition: the NIF exports those
// member functions' names (native/src/interpose.rs) and is ahead of libmlx
// in libmlx's symbol lookup scope, the mechanism that already binds libmlx's
// cblas_* calls to OpenBLAS. Where the dynamic linker does not do that (macOS's
// two-level namespaces, a libmlx linked with -Bsymbolic) nothing is
// intercepted; `inline_cpu_init` notices (a probe through libmlx's own
// mx::synchronize) and the queues keep MLX's stream threads.
//
// The streams themselves are MLX "thread-unsafe" streams (their command
// encoders are process-wide, so any thread holding the queue's lock may
// encode), created once, in a pool, when the NIF loads: MLX inserts them
// into an unsynchronised map that evaluations read, so they must all exist
// before any evaluation can run.
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "bridge.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "mlx/scheduler.h"

#include "emlx/native/src/ffi.rs.h"

namespace emlx {

namespace {

namespace sched = mx::scheduler;

// Which MLX stream indices are the pool's. Built once by inline_cpu_init
// and never changed afterwards (published through the atomic with
// release/acquire), so lookups take no lock.
struct Table {
  std::vector<bool> ours;
};
std::atomic<const Table*> g_table{nullptr};

// Free (main, companion) pairs of the pool, and whether interposition works.
std::mutex g_pool_mtx;
std::vector<std::pair<int32_t, int32_t>> g_pool;
bool g_active = false;

// Set by the enqueue hook on the thread it ran on (for the probe).
thread_local bool t_hook_ran = false;

// The first failure of a task run inline on this thread since the last
// evaluation ended (MLX's stream threads keep the same, per stream).
thread_local std::shared_ptr<std::string> t_failed;

bool ours(const mx::Stream& s) {
  if (s.device != mx::Device::cpu) return false;
  const Table* t = g_table.load(std::memory_order_acquire);
  return t != nullptr && s.index >= 0 && static_cast<size_t>(s.index) < t->ours.size() &&
         t->ours[s.index];
}

// Raises (and forgets) this thread's pending failure, if any.
void raise_failure() {
  if (t_failed) {
    auto msg = std::move(t_failed);
    throw std::runtime_error(*msg);
  }
}

// libmlx's own definition of a hooked member function (the next one after
// this library in the lookup order).
template <typename F>
F next_definition(const char* symbol) {
  void* p = dlsym(RTLD_NEXT, symbol);
  if (p == nullptr) {
    // Only reachable if libmlx calls a function it does not define.
    std::fprintf(stderr, "emlx: cannot find MLX's %s (%s)\n", symbol, dlerror());
    std::abort();
  }
  return reinterpret_cast<F>(p);
}

}  // namespace

// --- the hooks (reached through the exported trampolines) ------------------
//
// Each has the parameter list of the member function it stands for, with
// `self` first: the Itanium C++ ABI passes `this` exactly like a leading
// pointer parameter, so the trampoline can jump here without touching a
// register.

extern "C" void emlx_hook_enqueue(sched::Scheduler* self, mx::Stream s,
                                  std::function<void()> task) {
  if (ours(s)) {
    t_hook_ran = true;
    try {
      task();
    } catch (const std::exception& e) {
      // As MLX does: keep the earliest, and carry on encoding (throwing
      // here could leave MLX's count of running tasks unbalanced).
      if (!t_failed) t_failed = std::make_shared<std::string>(e.what());
    }
    return;
  }
  using Fn = void (*)(sched::Scheduler*, mx::Stream, std::function<void()>);
  static const Fn real =
      next_definition<Fn>("_ZN3mlx4core9scheduler9Scheduler7enqueueENS0_6StreamESt8functionIFvvEE");
  real(self, s, std::move(task));
}

using EventFn = void (*)(sched::Scheduler*, mx::Stream, mx::Event,
                         std::function<void(mx::Event&)>);

extern "C" void emlx_hook_signal_event(sched::Scheduler* self, mx::Stream s, mx::Event event,
                                       std::function<void(mx::Event&)> task) {
  if (ours(s)) {
    // An evaluation ends by signalling its event: signalled first (nothing
    // may wait on it forever), the evaluation then raises the failure.
    task(event);
    raise_failure();
    return;
  }
  static const EventFn real = next_definition<EventFn>(
      "_ZN3mlx4core9scheduler9Scheduler12signal_eventENS0_6StreamENS0_5EventESt8functionIFvRS4_EE");
  real(self, s, std::move(event), std::move(task));
}

extern "C" void emlx_hook_wait_event(sched::Scheduler* self, mx::Stream s, mx::Event event,
                                     std::function<void(mx::Event&)> task) {
  if (ours(s)) {
    // Only this queue's two streams meet here, on one thread: the event
    // was signalled earlier on this same thread.
    task(event);
    return;
  }
  static const EventFn real = next_definition<EventFn>(
      "_ZN3mlx4core9scheduler9Scheduler10wait_eventENS0_6StreamENS0_5EventESt8functionIFvRS4_EE");
  real(self, s, std::move(event), std::move(task));
}

extern "C" void emlx_hook_check_error(sched::Scheduler* self, mx::Stream s) {
  if (ours(s)) {
    raise_failure();
    return;
  }
  using Fn = void (*)(sched::Scheduler*, mx::Stream);
  static const Fn real =
      next_definition<Fn>("_ZN3mlx4core9scheduler9Scheduler11check_errorENS0_6StreamE");
  real(self, s);
}

// --- the pool ------------------------------------------------------------------

bool inline_cpu_init(size_t pairs) {
  std::lock_guard lock(g_pool_mtx);
  if (g_table.load(std::memory_order_acquire) != nullptr) return g_active;
  auto* table = new Table();
  for (size_t i = 0; i < pairs; ++i) {
    auto main = mx::new_thread_unsafe_stream(mx::Device::cpu);
    auto companion = mx::new_thread_unsafe_stream(mx::Device::cpu);
    size_t top = static_cast<size_t>(std::max(main.index, companion.index));
    if (table->ours.size() <= top) table->ours.resize(top + 1, false);
    table->ours[main.index] = true;
    table->ours[companion.index] = true;
    g_pool.emplace_back(main.index, companion.index);
  }
  g_table.store(table, std::memory_order_release);
  // Does libmlx reach the hooks? mx::synchronize enqueues through libmlx's
  // own call to Scheduler::enqueue.
  if (!g_pool.empty()) {
    t_hook_ran = false;
    mx::synchronize(mx::Stream(g_pool.front().first, mx::Device::cpu));
    g_active = t_hook_ran;
  }
  if (!g_active) {
    // The streams stay usable, through MLX's stream threads.
    g_table.store(new Table(), std::memory_order_release);
  }
  return g_active;
}

StreamRef take_inline_streams() {
  std::lock_guard lock(g_pool_mtx);
  if (g_pool.empty()) return StreamRef{-1, 0, -1};
  auto [main, companion] = g_pool.back();
  g_pool.pop_back();
  return StreamRef{main, 0, companion};
}

void return_inline_streams(const StreamRef& s) {
  std::lock_guard lock(g_pool_mtx);
  g_pool.emplace_back(s.index, s.cpu_index);
}

// --- what may be evaluated right in a NIF -------------------------------------

namespace {

// The nodes seen by a walk: a short list while there are few (most graphs
// an evaluation meets have a handful of nodes), a hash set past that.
class Seen {
 public:
  // Whether `id` is new (and now seen).
  bool insert(std::uintptr_t id) {
    if (many_.empty()) {
      if (std::find(few_.begin(), few_.end(), id) != few_.end()) return false;
      if (few_.size() < kFew) {
        few_.push_back(id);
        return true;
      }
      many_.insert(few_.begin(), few_.end());
    }
    return many_.insert(id).second;
  }

 private:
  static constexpr size_t kFew = 32;
  std::vector<std::uintptr_t> few_;
  std::unordered_set<std::uintptr_t> many_;
};

// The unevaluated graph under `roots` in evaluation order (every node after
// its inputs), if it is all on `s`'s streams, has at most `max_nodes`
// nodes, touches at most `max_bytes` bytes (inputs and outputs of its
// nodes) and has no compiled (JIT) node; false otherwise. Only the thread
// that may evaluate on `s` may walk it (statuses are read).
bool graph_order(const std::vector<Array>& roots, const StreamRef& s, size_t max_nodes,
                 size_t max_bytes, std::vector<Array>* order) {
  // Depth first, each node once: (node, index of its next input to visit).
  std::vector<std::pair<Array, size_t>> stack;
  Seen seen;
  size_t nodes = 0;
  size_t bytes = 0;
  auto add_bytes = [&](size_t n) { bytes = n > SIZE_MAX - bytes ? SIZE_MAX : bytes + n; };
  // Whether `a` is computed, or a node to compute that passes the limits
  // (then pushed).
  auto enter = [&](const Array& a) {
    if (a.status() != Array::Status::unscheduled || !seen.insert(a.id())) return true;
    if (!a.has_primitive() || ++nodes > max_nodes) return false;
    auto stream = a.primitive().stream();
    if (stream.device != mx::Device::cpu || (stream.index != s.index && stream.index != s.cpu_index)) {
      return false;
    }
    // Compiled graphs may invoke a C++ compiler the first time they run.
    if (std::strcmp(a.primitive().name(), "Compiled") == 0) return false;
    add_bytes(a.nbytes());
    for (const auto& in : a.inputs()) add_bytes(in.nbytes());
    // Siblings are computed with `a` (one primitive): seen, not visited.
    for (const auto& sib : a.siblings()) {
      add_bytes(sib.nbytes());
      seen.insert(sib.id());
    }
    if (bytes > max_bytes) return false;
    stack.emplace_back(a, 0);
    return true;
  };
  for (const auto& r : roots) {
    if (!enter(r)) return false;
    while (!stack.empty()) {
      auto& [a, next] = stack.back();
      if (next < a.inputs().size()) {
        const Array& in = a.inputs()[next++];
        if (!enter(in)) return false;
        continue;
      }
      if (order) order->push_back(std::move(a));
      stack.pop_back();
    }
  }
  return true;
}

// What MLX's eval does for each node of `order` on a CPU stream, less what
// only a graph that crosses streams or threads needs (events, fences, the
// synchronizer node, the buffers a dispatched task keeps alive): each
// node's inputs are computed (earlier in `order`, or evaluated before),
// and its kernels run right here (the enqueue hook). Each node leaves
// `order` as it is computed, so that, as in MLX, an intermediate is freed
// once the last node reading it is computed, and a kernel may take over
// (donate) the buffer of an input nothing else holds.
void run_in_order(std::vector<Array>& order) {
  for (auto& slot : order) {
    Array a = std::move(slot);
    auto outputs = a.outputs();
    a.primitive().eval_cpu(a.inputs(), outputs);
    for (auto& o : outputs) repair_data_size(o);
    // The temporaries a kernel keeps for its tasks: those tasks are done.
    mx::cpu::get_command_encoder(a.primitive().stream()).temporaries().clear();
    raise_failure();
    // Computed, and final: no event to wait for.
    for (auto& o : outputs) o.set_status(Array::Status::available);
    a.detach();
  }
}

}  // namespace

bool is_small_graph(const ArrayList& list, const StreamRef& s, size_t max_nodes,
                    size_t max_bytes) {
  return graph_order(list.items, s, max_nodes, max_bytes, nullptr);
}

bool eval_small_graph(const ArrayList& list, const StreamRef& s, size_t max_nodes,
                      size_t max_bytes) {
  if (!ours(to_stream(s))) return false;
  std::vector<Array> order;
  if (!graph_order(list.items, s, max_nodes, max_bytes, &order)) return false;
  // The rest of check_node's checks (the queue's streams, MLX's 32-bit
  // limits) hold for a graph this small: only the memory guard is left.
  for (const auto& a : order) {
    if (allocates(a)) {
      check_budget("cannot evaluate", a.nbytes(), a.shape(), a.dtype(), mx::Device::cpu);
    }
  }
  run_in_order(order);
  return true;
}

bool eval_inline_graph(const std::vector<Array>& roots, const StreamRef& s) {
  if (!ours(to_stream(s))) return false;
  std::vector<Array> order;
  if (!graph_order(roots, s, SIZE_MAX, SIZE_MAX, &order)) return false;
  // Checked once the walk has succeeded: a graph it gives back to MLX's
  // eval is checked there (check_graph), not twice.
  std::unordered_map<uintptr_t, size_t> spans;
  for (const auto& a : order) check_node(a, &s, spans);
  run_in_order(order);
  return true;
}

void bind_thread(const StreamRef& s) { mx::set_default_stream(to_stream(s)); }

}  // namespace emlx
