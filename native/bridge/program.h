// Compiled programs: what `compiler: EMLX` hands the native layer.
//
// A program is a flat list of steps over numbered slots. Most steps run one
// entry of the op table (the same entries the eager EMLX functions run) on
// arrays read from slots and write their results to slots; the others are
// control flow (while, cond) driven on the queue thread, hooks, checks and
// callbacks into the BEAM. Runs of consecutive op steps form segments; with
// fusion on, each segment is handed to mx::compile (its own function id) so
// MLX can trace it once per input shapes and fuse what it can.
//
// A program is built once (on a BEAM scheduler, by program.rs), is
// immutable afterwards and may run on any command queue thread, several at
// once; each run keeps its slots to itself.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "bridge.h"
#include "mlx/compile_impl.h"
#include "rust/cxx.h"

namespace emlx {

struct ProgramHost;  // Rust: receives hook values, answers callbacks (program.rs)

namespace program {

using Slot = int32_t;
using Slots = std::vector<Slot>;

// One op of the table: `tmpl` holds the literal arguments; `arrays` and
// `lists` say which argument positions take the array (or arrays) of which
// slot at run time.
struct OpStep {
  uint32_t op;
  Call tmpl;
  std::vector<std::pair<uint32_t, Slot>> arrays;
  std::vector<std::pair<uint32_t, Slots>> lists;
  Slots outs;
};

// Consecutive op steps; `ins` are the slots they read that are defined
// before the segment, `outs` the slots they define that anything after it
// reads. Compiled lazily (per program, on first use) when fusion is on.
struct Segment {
  std::vector<OpStep> ops;
  Slots ins, outs;
  std::uintptr_t fun_id = 0;
  std::once_flag once;
  std::function<std::vector<Array>(const std::vector<Array>&)> compiled;
  // Set once MLX could not trace the segment: it is interpreted from then on.
  std::atomic<bool> broken{false};
};

struct WhileStep {
  uint32_t cond_block, body_block;
  Slot cond;
  Slots init, params, body_out, results;
  // How many times the loop runs when the expression says (a counted loop,
  // EMLX.Defn.TripCount): the condition is then never built or evaluated.
  // -1: evaluate it before each iteration.
  int64_t count = -1;
};

struct Clause {
  uint32_t pred_block;
  Slot pred;
  uint32_t body_block;
  Slots results;
};

struct CondStep {
  std::vector<Clause> clauses;
  uint32_t last_block;
  Slots last_results, results;
};

struct HookStep {
  uint32_t id;
  Slots slots;
};

struct CheckStep {
  Slot flag;
  std::string message;
};

// A function of the BEAM's, run by the caller on evaluated `ins`, whose
// results become `outs` (Nx.runtime_call, and callbacks EMLX.Backend runs
// in Nx.BinaryBackend). The queue thread waits for the answer.
struct CallbackStep {
  uint32_t id;
  Slots ins, outs;
};

using Step =
    std::variant<std::unique_ptr<Segment>, WhileStep, CondStep, HookStep, CheckStep, CallbackStep>;

struct Block {
  std::vector<Step> steps;
};

}  // namespace program

class Program {
 public:
  Program();
  ~Program();
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  std::vector<program::Block> blocks;  // blocks[0] is the main block
  std::vector<std::pair<program::Slot, Array>> constants;
  program::Slots inputs, outputs;
  uint32_t n_slots = 0;
  bool fuse = false;
  // Op steps in the main block, when it holds nothing but op steps and hooks
  // (no loop, branch, check or callback): such a program only builds a graph
  // until its outputs are evaluated at the end. Unset (0) otherwise.
  size_t straight_ops = 0;

  // Compile caches (one per queue thread) holding traces of this program's
  // segments, erased when the program goes.
  void note_cache() const;

 private:
  mutable std::mutex caches_mutex_;
  mutable std::vector<mx::detail::CompileCacheWeakPtr> caches_;
};

// --- building (program.rs) --------------------------------------------------
std::unique_ptr<Program> program_new();
uint32_t program_block(Program& p);
void program_op(Program& p, uint32_t block, uint32_t op, const Call& call,
                rust::Slice<const int32_t> arrays, rust::Slice<const int32_t> lists,
                rust::Slice<const int32_t> outs);
void program_while(Program& p, uint32_t block, uint32_t cond_block, int32_t cond,
                   uint32_t body_block, rust::Slice<const int32_t> init,
                   rust::Slice<const int32_t> params, rust::Slice<const int32_t> body_out,
                   rust::Slice<const int32_t> results, int64_t count);
void program_cond(Program& p, uint32_t block, rust::Slice<const uint32_t> clause_blocks,
                  rust::Slice<const int32_t> preds, rust::Slice<const int32_t> clause_results,
                  uint32_t last_block, rust::Slice<const int32_t> last_results,
                  rust::Slice<const int32_t> results);
void program_hook(Program& p, uint32_t block, uint32_t id, rust::Slice<const int32_t> slots);
void program_check(Program& p, uint32_t block, int32_t flag, rust::Str message);
void program_callback(Program& p, uint32_t block, uint32_t id, rust::Slice<const int32_t> ins,
                      rust::Slice<const int32_t> outs);
void program_constant(Program& p, int32_t slot, const Array& a);
void program_finish(Program& p, uint32_t n_slots, rust::Slice<const int32_t> inputs,
                    rust::Slice<const int32_t> outputs, bool fuse);

// --- running (only on a queue thread: it evaluates) ----------------------------
std::unique_ptr<ArrayList> program_run(const Program& p, const ArrayList& inputs,
                                       const StreamRef& s, ProgramHost& host);

// --- running a straight-line program in steps ---------------------------------
// A run whose graph is built and whose outputs are not evaluated yet. It
// refers to its program, which must outlive it.
class ProgramRun {
 public:
  struct Impl;
  explicit ProgramRun(std::unique_ptr<Impl> impl);
  ~ProgramRun();
  std::unique_ptr<Impl> impl;
};

// How many op steps a program has that can be built without evaluating
// anything (see `straight_ops`); 0 for every other program, and for fused
// ones (mx::compile keeps its traces per thread).
size_t program_straight_ops(const Program& p);
// Builds the graph of a straight-line program (any thread: it evaluates
// nothing); throws for another program.
std::unique_ptr<ProgramRun> program_build(const Program& p, const ArrayList& inputs,
                                          const StreamRef& s);
// The arrays a built run will evaluate: its outputs, then hooked values.
std::unique_ptr<ArrayList> program_pending(const ProgramRun& run);
// Evaluates a built run's outputs (where its stream may be evaluated) and
// hands its hooks to `host`; a run completes once.
std::unique_ptr<ArrayList> program_complete(ProgramRun& run, ProgramHost& host);

}  // namespace emlx
