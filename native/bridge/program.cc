// Compiled programs: building (from program.rs) and running (on a queue
// thread). See program.h for the shape of a program.
#include "program.h"

#include <algorithm>
#include <sstream>
#include <unordered_set>

#include "emlx/native/src/ffi.rs.h"

namespace emlx {

using namespace program;

namespace {

// Function ids for mx::compile: unique for the life of the process, so a
// program that is gone can never be confused with a new one.
std::atomic<std::uintptr_t> next_fun_id{1};

[[noreturn]] void broken(const std::string& what) {
  throw std::logic_error("internal error in an EMLX program: " + what);
}

Slots to_slots(rust::Slice<const int32_t> s) { return Slots(s.begin(), s.end()); }

Block& block_of(Program& p, uint32_t block) {
  if (block >= p.blocks.size()) broken("unknown block");
  return p.blocks[block];
}

// Whether an evaluated one-element array is non-zero (a predicate).
bool truthy(const Array& a) {
  if (a.size() != 1) broken("a predicate must have one element");
  switch (a.dtype()) {
    case mx::bool_: return a.item<bool>();
    case mx::uint8: return a.item<uint8_t>() != 0;
    case mx::int8: return a.item<int8_t>() != 0;
    case mx::uint16: return a.item<uint16_t>() != 0;
    case mx::int16: return a.item<int16_t>() != 0;
    case mx::uint32: return a.item<uint32_t>() != 0;
    case mx::int32: return a.item<int32_t>() != 0;
    case mx::uint64: return a.item<uint64_t>() != 0;
    case mx::int64: return a.item<int64_t>() != 0;
    case mx::float16: return static_cast<float>(a.item<mx::float16_t>()) != 0;
    case mx::bfloat16: return static_cast<float>(a.item<mx::bfloat16_t>()) != 0;
    case mx::float32: return a.item<float>() != 0;
    case mx::float64: return a.item<double>() != 0;
    case mx::complex64: return a.item<mx::complex64_t>() != mx::complex64_t(0, 0);
  }
  return false;
}

// --- running ------------------------------------------------------------------

// A counted loop's graph is evaluated when it has grown by about this many
// op nodes: large enough that a short loop is evaluated once, with whatever
// reads its results; small enough that a long one never builds a graph
// that is slow to walk.
constexpr int64_t kCountedEvalNodes = 1024;

// One run of a program: its slots, and what it hands back besides outputs.
class Run {
 public:
  Run(const Program& p, const StreamRef& s) : p_(p), s_(s), slots_(p.n_slots) {}

  std::optional<Array>& at(Slot slot) {
    if (slot < 0 || static_cast<uint32_t>(slot) >= slots_.size()) broken("slot out of range");
    return slots_[slot];
  }

  const Array& get(Slot slot) {
    auto& a = at(slot);
    if (!a) broken("slot " + std::to_string(slot) + " read before it was written");
    return *a;
  }

  std::vector<Array> gather(const Slots& slots) {
    std::vector<Array> out;
    out.reserve(slots.size());
    for (auto slot : slots) out.push_back(get(slot));
    return out;
  }

  void scatter(const Slots& slots, std::vector<Array> values) {
    if (values.size() != slots.size()) broken("result count");
    for (size_t i = 0; i < slots.size(); ++i) at(slots[i]) = std::move(values[i]);
  }

  void block(uint32_t index) {
    for (const auto& step : p_.blocks.at(index).steps) {
      std::visit([this](const auto& s) { this->step(s); }, step);
    }
  }

  // What `finish` evaluates: the outputs, then the hooked values.
  std::vector<Array> pending() {
    std::vector<Array> all = gather(p_.outputs);
    for (const auto& [id, arrays] : hooks_) all.insert(all.end(), arrays.begin(), arrays.end());
    return all;
  }

  // Outputs and hooked values evaluated together; then the hooks are handed
  // to `host`. The slots are emptied first: an intermediate that only the
  // graph holds can lend its buffer to the op that reads it (MLX donates
  // buffers nothing else references).
  std::vector<Array> finish() {
    if (host == nullptr) broken("a run finished without its host");
    auto all = pending();
    slots_.clear();
    evaluate(all);
    for (const auto& [id, arrays] : hooks_) {
      ArrayList list{arrays};
      host_hook(*host, id, list);
    }
    hooks_.clear();
    all.erase(all.begin() + static_cast<std::ptrdiff_t>(p_.outputs.size()), all.end());
    return all;
  }

  // The ProgramHost of a running program: its callback steps ask it, and
  // `finish` hands it the hooked values.
  ProgramHost* host = nullptr;

 private:
  // On a queue whose CPU kernels run inline, node by node (checked as
  // eval_arrays checks); else MLX's eval, after eval_arrays' checks.
  void evaluate(const std::vector<Array>& items) {
    if (!eval_inline_graph(items, s_)) eval_arrays(items);
  }

  void step(const std::unique_ptr<Segment>& seg) {
    if (p_.fuse && !seg->broken.load(std::memory_order_relaxed)) {
      std::call_once(seg->once, [&] {
        const Segment* raw = seg.get();
        const Program* prog = &p_;
        auto fun = [prog, raw, s = s_](const std::vector<Array>& ins) {
          Run traced(*prog, s);
          traced.scatter(raw->ins, ins);
          traced.interpret(*raw);
          return traced.gather(raw->outs);
        };
        seg->compiled = mx::detail::compile(std::move(fun), seg->fun_id);
      });
      auto ins = gather(seg->ins);
      std::optional<std::vector<Array>> outs;
      try {
        outs = seg->compiled(ins);
      } catch (const std::exception&) {
        // MLX could not trace it (an op that evaluates while building, say).
        // Interpreted below; if that fails too, the error is real.
      }
      if (outs) {
        p_.note_cache();
        scatter(seg->outs, std::move(*outs));
        return;
      }
      interpret(*seg);
      seg->broken.store(true, std::memory_order_relaxed);
      return;
    }
    interpret(*seg);
  }

  void interpret(const Segment& seg) {
    for (const auto& op : seg.ops) {
      Call call = op.tmpl;
      for (const auto& [pos, slot] : op.arrays) call.args.at(pos) = get(slot);
      for (const auto& [pos, slots] : op.lists) call.args.at(pos) = gather(slots);
      auto results = run_entry(op.op, call, s_);
      if (results.size() != op.outs.size()) {
        std::ostringstream msg;
        msg << call.op << " gave " << results.size() << " results where the program expects "
            << op.outs.size();
        broken(msg.str());
      }
      scatter(op.outs, std::move(results));
    }
  }

  void step(const WhileStep& w) {
    scatter(w.params, gather(w.init));
    if (w.count >= 0) {
      // A counted loop: its graph grows by one body per iteration and is
      // evaluated every so often (about kCountedEvalNodes nodes), so it
      // stays bounded; the last bodies are evaluated with whatever reads
      // the results.
      int64_t every = std::max<int64_t>(1, kCountedEvalNodes / std::max<size_t>(1, ops_in(w.body_block)));
      for (int64_t i = 1; i <= w.count; ++i) {
        block(w.body_block);
        scatter(w.params, gather(w.body_out));
        if (i % every == 0 && i < w.count) evaluate(gather(w.params));
      }
      scatter(w.results, gather(w.params));
      return;
    }
    while (true) {
      block(w.cond_block);
      // The predicate and the state are evaluated together: one evaluation
      // per iteration, and the graph never grows across iterations.
      auto pending = gather(w.params);
      pending.push_back(get(w.cond));
      evaluate(pending);
      if (!truthy(pending.back())) break;
      block(w.body_block);
      scatter(w.params, gather(w.body_out));
    }
    scatter(w.results, gather(w.params));
  }

  void step(const CondStep& c) {
    for (const auto& clause : c.clauses) {
      block(clause.pred_block);
      const auto& pred = get(clause.pred);
      evaluate({pred});
      if (truthy(pred)) {
        block(clause.body_block);
        scatter(c.results, gather(clause.results));
        return;
      }
    }
    block(c.last_block);
    scatter(c.results, gather(c.last_results));
  }

  void step(const HookStep& h) { hooks_.emplace_back(h.id, gather(h.slots)); }

  // Made where it stands (as the eager op makes it), before anything after
  // it can fail on the input it guards against.
  void step(const CheckStep& c) {
    const auto& flag = get(c.flag);
    evaluate({flag});
    if (truthy(flag)) throw std::invalid_argument(c.message);
  }

  void step(const CallbackStep& c) {
    if (host == nullptr) broken("a callback outside a run");
    ArrayList ins{gather(c.ins)};
    evaluate(ins.items);
    auto outs = host_callback(*host, c.id, ins);
    scatter(c.outs, outs->items);
  }

  // Op steps directly in a block (not in its loops or branches).
  size_t ops_in(uint32_t index) const {
    size_t n = 0;
    for (const auto& step : p_.blocks.at(index).steps) {
      if (auto* seg = std::get_if<std::unique_ptr<Segment>>(&step)) n += (*seg)->ops.size();
    }
    return n;
  }

  const Program& p_;
  StreamRef s_;
  std::vector<std::optional<Array>> slots_;
  std::vector<std::pair<uint32_t, std::vector<Array>>> hooks_;
};

// --- segments: which slots cross their borders ------------------------------------

// Borders of every segment: a slot is a segment output when any step outside
// the segment (or a block result, or the program's outputs) reads it.
void compute_borders(Program& p) {
  // readers[slot] = set of segment pointers (nullptr: a non-segment reader)
  std::vector<std::unordered_set<const Segment*>> readers(p.n_slots);
  auto note = [&](Slot slot, const Segment* who) {
    if (slot < 0 || static_cast<uint32_t>(slot) >= p.n_slots) broken("slot out of range");
    readers[slot].insert(who);
  };
  for (const auto& block : p.blocks) {
    for (const auto& step : block.steps) {
      if (auto* seg = std::get_if<std::unique_ptr<Segment>>(&step)) {
        for (const auto& op : (*seg)->ops) {
          for (const auto& [_, slot] : op.arrays) note(slot, seg->get());
          for (const auto& [_, slots] : op.lists) {
            for (auto slot : slots) note(slot, seg->get());
          }
        }
      } else {
        std::vector<Slot> direct;
        std::visit(
            [&](const auto& s) {
              using T = std::decay_t<decltype(s)>;
              if constexpr (std::is_same_v<T, WhileStep>) {
                direct = s.init;
                direct.push_back(s.cond);
                direct.insert(direct.end(), s.body_out.begin(), s.body_out.end());
              } else if constexpr (std::is_same_v<T, CondStep>) {
                for (const auto& cl : s.clauses) {
                  direct.push_back(cl.pred);
                  direct.insert(direct.end(), cl.results.begin(), cl.results.end());
                }
                direct.insert(direct.end(), s.last_results.begin(), s.last_results.end());
              } else if constexpr (std::is_same_v<T, HookStep>) {
                direct = s.slots;
              } else if constexpr (std::is_same_v<T, CheckStep>) {
                direct = {s.flag};
              } else if constexpr (std::is_same_v<T, CallbackStep>) {
                direct = s.ins;
              }
            },
            step);
        for (auto slot : direct) note(slot, nullptr);
      }
    }
  }
  for (auto slot : p.outputs) note(slot, nullptr);

  for (auto& block : p.blocks) {
    for (auto& step : block.steps) {
      auto* seg = std::get_if<std::unique_ptr<Segment>>(&step);
      if (!seg) continue;
      Segment& s = **seg;
      std::unordered_set<Slot> defined, seen_in;
      for (const auto& op : s.ops) {
        auto read = [&](Slot slot) {
          if (!defined.count(slot) && seen_in.insert(slot).second) s.ins.push_back(slot);
        };
        for (const auto& [_, slot] : op.arrays) read(slot);
        for (const auto& [_, slots] : op.lists) {
          for (auto slot : slots) read(slot);
        }
        for (auto out : op.outs) defined.insert(out);
      }
      for (const auto& op : s.ops) {
        for (auto out : op.outs) {
          for (const auto* who : readers[out]) {
            if (who != &s) {
              s.outs.push_back(out);
              break;
            }
          }
        }
      }
      s.fun_id = next_fun_id.fetch_add(1);
    }
  }
}

}  // namespace

// --- Program -----------------------------------------------------------------------

Program::Program() { blocks.emplace_back(); }

Program::~Program() {
  // Traces of this program's segments live in the compile cache of each
  // queue thread that ran them; MLX allows erasing from another thread.
  for (const auto& cache : caches_) {
    for (const auto& block : blocks) {
      for (const auto& step : block.steps) {
        if (auto* seg = std::get_if<std::unique_ptr<Segment>>(&step)) {
          mx::detail::compile_erase(cache, (*seg)->fun_id);
        }
      }
    }
  }
}

void Program::note_cache() const {
  auto cache = mx::detail::compile_cache();
  std::lock_guard lock(caches_mutex_);
  for (const auto& known : caches_) {
    if (!known.owner_before(cache) && !cache.owner_before(known)) return;
  }
  caches_.push_back(std::move(cache));
}

// --- building ------------------------------------------------------------------------

std::unique_ptr<Program> program_new() { return std::make_unique<Program>(); }

uint32_t program_block(Program& p) {
  p.blocks.emplace_back();
  return static_cast<uint32_t>(p.blocks.size() - 1);
}

void program_op(Program& p, uint32_t block, uint32_t op, const Call& call,
                rust::Slice<const int32_t> arrays, rust::Slice<const int32_t> lists,
                rust::Slice<const int32_t> outs) {
  OpStep step{op, call, {}, {}, to_slots(outs)};
  if (arrays.size() % 2 != 0) broken("array arguments come in pairs");
  for (size_t i = 0; i < arrays.size(); i += 2) {
    step.arrays.emplace_back(static_cast<uint32_t>(arrays[i]), arrays[i + 1]);
  }
  // lists: position, count, then that many slots; repeated.
  for (size_t i = 0; i < lists.size();) {
    if (i + 1 >= lists.size()) broken("list arguments");
    auto pos = static_cast<uint32_t>(lists[i]);
    auto count = static_cast<size_t>(lists[i + 1]);
    if (i + 2 + count > lists.size()) broken("list arguments");
    step.lists.emplace_back(pos, Slots(lists.begin() + i + 2, lists.begin() + i + 2 + count));
    i += 2 + count;
  }
  auto& steps = block_of(p, block).steps;
  if (steps.empty() || !std::holds_alternative<std::unique_ptr<Segment>>(steps.back())) {
    steps.emplace_back(std::make_unique<Segment>());
  }
  std::get<std::unique_ptr<Segment>>(steps.back())->ops.push_back(std::move(step));
}

void program_while(Program& p, uint32_t block, uint32_t cond_block, int32_t cond,
                   uint32_t body_block, rust::Slice<const int32_t> init,
                   rust::Slice<const int32_t> params, rust::Slice<const int32_t> body_out,
                   rust::Slice<const int32_t> results, int64_t count) {
  if (init.size() != params.size() || params.size() != body_out.size() ||
      params.size() != results.size()) {
    broken("while state sizes differ");
  }
  block_of(p, cond_block);
  block_of(p, body_block);
  block_of(p, block).steps.emplace_back(WhileStep{cond_block, body_block, cond, to_slots(init),
                                                  to_slots(params), to_slots(body_out),
                                                  to_slots(results), count});
}

void program_cond(Program& p, uint32_t block, rust::Slice<const uint32_t> clause_blocks,
                  rust::Slice<const int32_t> preds, rust::Slice<const int32_t> clause_results,
                  uint32_t last_block, rust::Slice<const int32_t> last_results,
                  rust::Slice<const int32_t> results) {
  // clause_blocks: pred block, body block per clause; clause_results: the
  // results of each clause's body, results.size() per clause.
  size_t n = preds.size();
  if (clause_blocks.size() != 2 * n || clause_results.size() != n * results.size() ||
      last_results.size() != results.size()) {
    broken("cond clause sizes differ");
  }
  CondStep step{{}, last_block, to_slots(last_results), to_slots(results)};
  for (size_t i = 0; i < n; ++i) {
    auto begin = clause_results.begin() + i * results.size();
    step.clauses.push_back(Clause{clause_blocks[2 * i], preds[i], clause_blocks[2 * i + 1],
                                  Slots(begin, begin + results.size())});
    block_of(p, clause_blocks[2 * i]);
    block_of(p, clause_blocks[2 * i + 1]);
  }
  block_of(p, last_block);
  block_of(p, block).steps.emplace_back(std::move(step));
}

void program_hook(Program& p, uint32_t block, uint32_t id, rust::Slice<const int32_t> slots) {
  block_of(p, block).steps.emplace_back(HookStep{id, to_slots(slots)});
}

void program_check(Program& p, uint32_t block, int32_t flag, rust::Str message) {
  block_of(p, block).steps.emplace_back(CheckStep{flag, std::string(message)});
}

void program_callback(Program& p, uint32_t block, uint32_t id, rust::Slice<const int32_t> ins,
                      rust::Slice<const int32_t> outs) {
  block_of(p, block).steps.emplace_back(CallbackStep{id, to_slots(ins), to_slots(outs)});
}

void program_constant(Program& p, int32_t slot, const Array& a) {
  p.constants.emplace_back(slot, a);
}

void program_finish(Program& p, uint32_t n_slots, rust::Slice<const int32_t> inputs,
                    rust::Slice<const int32_t> outputs, bool fuse) {
  p.n_slots = n_slots;
  p.inputs = to_slots(inputs);
  p.outputs = to_slots(outputs);
  p.fuse = fuse;
  compute_borders(p);
  p.straight_ops = 0;
  for (const auto& step : p.blocks[0].steps) {
    if (auto* seg = std::get_if<std::unique_ptr<Segment>>(&step)) {
      p.straight_ops += (*seg)->ops.size();
    } else if (!std::holds_alternative<HookStep>(step)) {
      p.straight_ops = 0;
      break;
    }
  }
}

// --- running ---------------------------------------------------------------------------

namespace {

// A run with its constants and inputs in their slots.
std::unique_ptr<Run> start(const Program& p, const ArrayList& inputs, const StreamRef& s) {
  if (inputs.items.size() != p.inputs.size()) {
    throw std::invalid_argument("the compiled function takes " + std::to_string(p.inputs.size()) +
                                " tensors, got " + std::to_string(inputs.items.size()));
  }
  auto run = std::make_unique<Run>(p, s);
  for (const auto& [slot, array] : p.constants) run->at(slot) = array;
  run->scatter(p.inputs, inputs.items);
  return run;
}

}  // namespace

std::unique_ptr<ArrayList> program_run(const Program& p, const ArrayList& inputs,
                                       const StreamRef& s, ProgramHost& host) {
  auto run = start(p, inputs, s);
  run->host = &host;
  // mx::compile keys its traces by the thread's default stream: make it the
  // queue's for the whole run (the queue thread owns these streams).
  mx::set_default_stream(to_cpu_stream(s));
  if (s.device != 0) mx::set_default_stream(to_stream(s));
  run->block(0);
  auto out = std::make_unique<ArrayList>();
  out->items = run->finish();
  return out;
}

struct ProgramRun::Impl {
  std::unique_ptr<Run> run;
  bool completed = false;
};

ProgramRun::ProgramRun(std::unique_ptr<Impl> impl) : impl(std::move(impl)) {}
ProgramRun::~ProgramRun() = default;

size_t program_straight_ops(const Program& p) { return p.fuse ? 0 : p.straight_ops; }

std::unique_ptr<ProgramRun> program_build(const Program& p, const ArrayList& inputs,
                                          const StreamRef& s) {
  if (program_straight_ops(p) == 0) broken("program_build of a program that evaluates as it runs");
  auto impl = std::make_unique<ProgramRun::Impl>();
  impl->run = start(p, inputs, s);
  impl->run->block(0);
  return std::make_unique<ProgramRun>(std::move(impl));
}

std::unique_ptr<ArrayList> program_pending(const ProgramRun& run) {
  auto out = std::make_unique<ArrayList>();
  if (!run.impl->completed) out->items = run.impl->run->pending();
  return out;
}

std::unique_ptr<ArrayList> program_complete(ProgramRun& run, ProgramHost& host) {
  if (run.impl->completed) broken("a program run completed twice");
  run.impl->completed = true;
  run.impl->run->host = &host;
  auto out = std::make_unique<ArrayList>();
  out->items = run.impl->run->finish();
  return out;
}

}  // namespace emlx
