//! Evaluation right in the calling NIF: the `_now` variants of the job
//! NIFs (`eval_now`, `item_now`, `to_blob_now`), which EMLX.Native calls.
//!
//! They answer like `eval`, `item` and `to_blob`, except that a small graph
//! on an idle CPU queue is evaluated in the NIF itself (`Queue::run_now`;
//! MLX's kernels run inline there, see native/bridge/inline_cpu.cc) and
//! answered with `{:done, run_ns}` or `{:done, value, run_ns}`, and that a
//! large one is answered `:collect`: the caller collects its garbage, then
//! sends the job (see `COLLECT_MIN_BYTES`).

use rustler::{Env, NifResult, Term};

use std::time::Instant;

use crate::error::Result;
use crate::ffi;
use crate::queue::Queue;
use crate::runtime::{blob_job, eval_tensors, item_job, Inline};

/// The largest graph a NIF evaluates itself (`run_now`): MLX's CPU kernels
/// run at roughly 1 GB/s and a few hundred ns per node when inline, so this
/// bounds such a call to about 100 us.
pub const NOW_MAX_NODES: usize = 128;
const NOW_MAX_BYTES: usize = 128 * 1024;

/// From this many bytes of buffers to compute, a `_now` NIF asks its caller
/// to collect garbage before the job is sent (`:collect`): intermediate
/// tensors the caller no longer references then release their arrays, and
/// MLX can reuse their buffers in place while it evaluates, as it does when
/// nothing else holds them.
const COLLECT_MIN_BYTES: usize = 1 << 20;

/// Past this many nodes a graph is worth collecting for whatever its
/// bytes: a minor collection costs microseconds, evaluating this many
/// nodes a millisecond or more, and the walk stops here instead of visiting
/// every node of a long graph of tiny arrays.
const COLLECT_WALK_MAX_NODES: usize = 512;

/// Whether evaluating the graph under `list` computes at least
/// `COLLECT_MIN_BYTES`, or has more than `COLLECT_WALK_MAX_NODES` nodes.
fn worth_collecting(list: &ffi::ArrayList, stream: &ffi::StreamRef) -> bool {
    !ffi::is_small_graph(list, stream, COLLECT_WALK_MAX_NODES, COLLECT_MIN_BYTES)
}

/// Whether the arrays of `list` themselves hold at least
/// `COLLECT_MIN_BYTES`: a lower bound on what evaluating them computes,
/// read from their shapes and types only (which never change), so any
/// thread may ask, on any queue.
fn outputs_worth_collecting(list: &ffi::ArrayList) -> bool {
    let bytes: usize = (0..ffi::list_len(list))
        .map(|i| ffi::nbytes_of(&ffi::list_get(list, i)))
        .sum();
    worth_collecting_bytes(bytes)
}

/// Whether results of this many bytes are worth collecting garbage for
/// before they are computed (`COLLECT_MIN_BYTES`).
pub fn worth_collecting_bytes(bytes: usize) -> bool {
    bytes >= COLLECT_MIN_BYTES
}

/// Whether the unevaluated graph under `list` may be evaluated in a NIF.
pub fn small(list: &ffi::ArrayList, stream: &ffi::StreamRef) -> bool {
    ffi::is_small_graph(list, stream, NOW_MAX_NODES, NOW_MAX_BYTES)
}

/// What a `_now` NIF does with the graph under `list`, built on `queue`.
pub enum Now<T> {
    /// It was small and the queue idle: `run` ran here, and took this many
    /// nanoseconds.
    Ran(Result<(T, u64)>),
    /// It is large: the caller collects garbage first, then sends the job.
    Collect,
    /// Send the job.
    Submit,
}

/// Runs `run` right here when the graph under `list` is small and `queue`
/// can evaluate inline now (`Queue::run_now`); otherwise says whether to
/// collect garbage before the job. The graph is only walked inside
/// `run_now` or `when_idle`, where nothing else evaluates it; on a busy
/// inline queue the answer is `Submit`, on a queue that never evaluates
/// inline it is `Collect` when the outputs alone are large.
pub fn try_now<T>(
    queue: &Queue,
    list: &ffi::ArrayList,
    run: impl FnOnce(&ffi::StreamRef) -> Result<T>,
) -> Now<T> {
    let mut collect = None;
    let ran = queue.run_now(|stream| {
        if !small(list, stream) {
            collect = Some(worth_collecting(list, stream));
            return None;
        }
        let start = Instant::now();
        Some(run(stream).map(|value| (value, start.elapsed().as_nanos() as u64)))
    });
    if let Some(result) = ran {
        return Now::Ran(result);
    }
    // A queue that does not evaluate inline (MLX's own stream threads: GPU
    // builds) is never idle for a graph walk; the outputs' own size decides.
    let collect = collect
        .or_else(|| queue.when_idle(|| worth_collecting(list, &queue.stream)))
        .unwrap_or_else(|| !queue.inline && outputs_worth_collecting(list));
    if collect {
        Now::Collect
    } else {
        Now::Submit
    }
}

/// `eval`, except that a small graph on an idle queue is evaluated right
/// here (see `Queue::run_now`): then the answer is `{:done, run_ns}` and no
/// reply comes. A large graph is not submitted: the answer is `:collect`
/// (see `COLLECT_MIN_BYTES`), and the caller collects garbage and calls
/// `eval`.
#[rustler::nif]
fn eval_now<'a>(env: Env<'a>, tensors: Term<'a>, tag: Term<'a>) -> NifResult<Term<'a>> {
    eval_tensors(env, tensors, tag, true)
}

/// `item`, answering `{:done, number, run_ns}` for a small graph on an idle
/// queue and `:collect` for a large one (see `read_job`).
#[rustler::nif]
fn item_now<'a>(env: Env<'a>, tensor: Term<'a>, tag: Term<'a>) -> NifResult<Term<'a>> {
    item_job(env, tensor, tag, Inline::WhenSmall)
}

/// `to_blob`, answering `{:done, binary, run_ns}` for a small graph on an
/// idle queue and `:collect` for a large one (see `read_job`).
#[rustler::nif]
fn to_blob_now<'a>(
    env: Env<'a>,
    tensor: Term<'a>,
    limit: Term<'a>,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    blob_job(env, tensor, limit, tag, Inline::WhenSmall)
}
