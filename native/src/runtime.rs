//! NIFs that need evaluated data, run as jobs on the tensor's own queue:
//! `eval`, `item`, `to_blob`; plus queue management and MLX memory stats.
//!
//! Each job NIF takes a tag (an Elixir reference) and returns `:ok` at once;
//! the queue later sends `{tag, :ok | {:ok, value} | {:error, {module, msg}},
//! run_ns}`, `run_ns` being the time the job ran on the queue thread.
//!
//! A job runs on the queue that built its tensor. An *evaluated* tensor whose
//! queue has closed is read on its device's default queue instead; an
//! unevaluated one can no longer be evaluated and its jobs fail.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustler::{Atom, Encoder, Env, LocalPid, NifResult, ResourceArc, Term};

use crate::args;
use crate::error::Error;
use crate::ffi;
use crate::now::{try_now, Now};
use crate::queue::{self, Device, Queue, Reply, ReplyTo};
use crate::tensor::{decode_tensor, mark_ready, BlobRes, QueueRes, TensorRes};

mod atoms {
    rustler::atoms! {
        ok, done, collect, nan, infinity, neg_infinity,
        id, device, stream, closed, running, pending, capacity,
        completed, failed, dropped, cancelled, busy_ns, inline, evaluates_inline,
    }
}

/// Starts a queue on `device` whose channel holds up to `capacity` waiting
/// jobs. With an `owner` pid the queue closes when that process exits.
#[rustler::nif]
fn queue_new<'a>(
    env: Env<'a>,
    device: Term<'a>,
    owner: Term<'a>,
    capacity: Term<'a>,
) -> NifResult<Term<'a>> {
    let device = args::atom("queue_new", "the device", device)?;
    let owner: Option<LocalPid> = args::optional(owner, |t| {
        t.decode()
            .map_err(|_| args::bad("queue_new", "the owner", "a local pid or nil", t))
    })?;
    let capacity = args::optional(capacity, |t| match t.decode::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(args::bad(
            "queue_new",
            "the capacity",
            "a positive integer or nil",
            t,
        )),
    })?
    .unwrap_or(queue::DEFAULT_CAPACITY);
    let queue = Queue::start(Device::from_atom(device)?, capacity)?;
    if let Some(pid) = owner {
        if let Err(e) = queue.watch_owner(env, &pid) {
            queue.join();
            return Err(e.into());
        }
    }
    Ok(ResourceArc::new(QueueRes(queue)).encode(env))
}

/// Makes `queue` its device's default: it serves reads of evaluated tensors
/// whose own queue has closed.
#[rustler::nif]
fn queue_make_default(queue: Term) -> NifResult<Atom> {
    args::queue("queue_make_default", queue)?.0.make_default();
    Ok(atoms::ok())
}

/// Closes the queue (waiting jobs get an error reply) and waits for its
/// thread to finish the running job and end.
#[rustler::nif(schedule = "DirtyIo")]
fn queue_close(queue: Term) -> NifResult<Atom> {
    args::queue("queue_close", queue)?.0.join();
    Ok(atoms::ok())
}

/// A map describing the queue (or the queue of a tensor) and counting its
/// jobs.
#[rustler::nif]
fn queue_info<'a>(env: Env<'a>, queue: Term<'a>) -> NifResult<Term<'a>> {
    let q = match queue.decode::<ResourceArc<QueueRes>>() {
        Ok(res) => res.0.clone(),
        Err(_) => decode_tensor(queue)
            .map_err(|_| {
                args::bad(
                    "queue_info",
                    "the argument",
                    "an EMLX command queue reference or a tensor",
                    queue,
                )
            })?
            .queue
            .clone(),
    };
    let s = q.stats();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed).encode(env);
    let pairs = [
        (atoms::id(), q.id.encode(env)),
        (atoms::device(), q.device.atom().encode(env)),
        (atoms::stream(), q.stream.index.encode(env)),
        (atoms::closed(), q.is_closed().encode(env)),
        (
            atoms::running(),
            s.running.load(Ordering::SeqCst).encode(env),
        ),
        (atoms::pending(), q.pending().encode(env)),
        (atoms::capacity(), q.capacity.encode(env)),
        (atoms::completed(), n(&s.completed)),
        (atoms::failed(), n(&s.failed)),
        (atoms::dropped(), n(&s.dropped)),
        (atoms::cancelled(), n(&s.cancelled)),
        (atoms::busy_ns(), n(&s.busy_ns)),
        (atoms::inline(), n(&s.inline)),
        (atoms::evaluates_inline(), q.inline.encode(env)),
    ];
    let keys: Vec<Term> = pairs.iter().map(|(k, _)| k.encode(env)).collect();
    let values: Vec<Term> = pairs.iter().map(|(_, v)| *v).collect();
    Term::map_from_term_arrays(env, &keys, &values)
}

/// Replies `{tag, :ok, run_ns}` once every job sent to the queue before has
/// finished and its stream has drained.
#[rustler::nif]
fn queue_synchronize<'a>(env: Env<'a>, queue: Term<'a>, tag: Term<'a>) -> NifResult<Atom> {
    let queue = args::queue("queue_synchronize", queue)?;
    queue.0.submit(
        ReplyTo::new(env, tag),
        Box::new(|stream| {
            ffi::synchronize(stream)?;
            Ok(Reply::Ok)
        }),
    )?;
    Ok(atoms::ok())
}

#[rustler::nif]
fn queue_threads() -> usize {
    queue::live_threads()
}

/// The queue a tensor was built on, as a handle (for binding and tests).
#[rustler::nif]
fn tensor_queue_id(tensor: Term) -> NifResult<u64> {
    Ok(decode_tensor(tensor)?.queue.id)
}

#[rustler::nif]
fn gpu_available() -> bool {
    ffi::gpu_available()
}

/// Evaluates the tensors of `tensors` that are not computed yet (all of one
/// queue) on that queue: unevaluated ones, and ones whose evaluation is
/// still running there (the job then waits for it). Returns `:done` without
/// a job (and without a reply) when every tensor is ready, `:ok` when a
/// reply will come.
#[rustler::nif]
fn eval<'a>(env: Env<'a>, tensors: Term<'a>, tag: Term<'a>) -> NifResult<Term<'a>> {
    eval_tensors(env, tensors, tag, false)
}

pub fn eval_tensors<'a>(
    env: Env<'a>,
    tensors: Term<'a>,
    tag: Term<'a>,
    now: bool,
) -> NifResult<Term<'a>> {
    let tensors = args::list("eval", "the tensors", tensors)?;
    let mut list = ffi::new_list();
    let mut flags = Vec::new();
    let mut owner: Option<Arc<Queue>> = None;
    for t in tensors {
        let res = decode_tensor(t)?;
        if res.is_ready() {
            res.with(|_| ())?;
            continue;
        }
        res.with(|a| ffi::list_push(list.pin_mut(), a))?;
        flags.push(res.ready_flag());
        match &owner {
            Some(q) if q.id != res.queue.id => {
                return Err(Error::BadArg(
                    "eval: tensors evaluated together must belong to one command queue; \
                     evaluate each queue's tensors separately"
                        .into(),
                )
                .into())
            }
            _ => owner = Some(res.queue.clone()),
        }
    }
    let Some(queue) = owner else {
        return Ok(atoms::done().encode(env));
    };
    if now {
        let evaluated = try_now(&queue, &list, |stream| {
            ffi::eval_list(&list, stream).map_err(Error::from)
        });
        match evaluated {
            Now::Ran(result) => {
                let ((), ns) = result?;
                mark_ready(&flags);
                return Ok((atoms::done(), ns).encode(env));
            }
            Now::Collect => return Ok(atoms::collect().encode(env)),
            Now::Submit => {}
        }
    }
    let route = queue.route(false)?;
    route.queue.clone().submit(
        ReplyTo::new(env, tag),
        Box::new(move |stream| {
            for i in 0..ffi::list_len(&list) {
                route.check(&ffi::list_get(&list, i))?;
            }
            ffi::eval_list(&list, stream)?;
            mark_ready(&flags);
            Ok(Reply::Ok)
        }),
    )?;
    Ok(atoms::ok().encode(env))
}

/// Submits a job on `tensor`'s queue that evaluates it, marks it ready and
/// answers with what `work` makes of the array. Shared by every job NIF that
/// reads one tensor back: item, to_blob, tensor_data_ptr, tensor_to_shm.
///
/// With `Inline::WhenReady`, a tensor already evaluated (and row-contiguous)
/// is answered right here, without a trip through the queue: the NIF returns
/// `{:done, value}` instead of `:ok`. Only cheap work may ask for that (it
/// runs on a BEAM scheduler): reading a scalar, wrapping a buffer. With
/// `Inline::WhenSmall`, so is a small graph on an idle queue, evaluated
/// here (see `Queue::run_now`): the answer is then `{:done, value, run_ns}`;
/// for a large graph it is `:collect`, as for `eval_now`.
pub fn read_job<'a>(
    env: Env<'a>,
    tensor: Term<'a>,
    tag: Term<'a>,
    inline: Inline,
    work: impl FnOnce(ReadArgs) -> crate::error::Result<Reply> + Send + 'static,
) -> NifResult<Term<'a>> {
    let res = decode_tensor(tensor)?;
    let array = res.handle()?;
    let ready = res.is_ready();
    let answer = |reply| match reply {
        Reply::Ok => atoms::done().encode(env),
        Reply::Term(f) => (atoms::done(), f(env)).encode(env),
    };
    if inline != Inline::Never && ready && ffi::is_row_contiguous(&array) {
        let reply = work(ReadArgs {
            array: &array,
            stream: &res.queue.stream,
            owner: &res,
            evaluated: true,
        })?;
        return Ok(answer(reply));
    }
    if inline == Inline::WhenSmall {
        let mut list = ffi::new_list();
        ffi::list_push(list.pin_mut(), &array);
        let mut work = Some(work);
        let read = try_now(&res.queue, &list, |stream| {
            let work = work
                .take()
                .ok_or_else(|| Error::Internal("the read job's work was already taken".into()))?;
            work(ReadArgs {
                array: &array,
                stream,
                owner: &res,
                evaluated: false,
            })
        });
        match read {
            Now::Ran(reply) => {
                let (reply, ns) = reply?;
                mark_ready(&[res.ready_flag()]);
                return Ok(match reply {
                    Reply::Ok => (atoms::done(), ns).encode(env),
                    Reply::Term(f) => (atoms::done(), f(env), ns).encode(env),
                });
            }
            Now::Collect => return Ok(atoms::collect().encode(env)),
            Now::Submit => {}
        }
        let Some(unused) = work else {
            unreachable!("run_now declined after running the work")
        };
        return submit_read(env, res, array, tag, unused);
    }
    submit_read(env, res, array, tag, work)
}

/// When a read job may be answered in the NIF itself (see `read_job`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Inline {
    Never,
    WhenReady,
    WhenSmall,
}

fn submit_read<'a>(
    env: Env<'a>,
    res: ResourceArc<TensorRes>,
    array: cxx::UniquePtr<ffi::Array>,
    tag: Term<'a>,
    work: impl FnOnce(ReadArgs) -> crate::error::Result<Reply> + Send + 'static,
) -> NifResult<Term<'a>> {
    let route = res.queue.route(res.is_ready())?;
    let flag = res.ready_flag();
    route.queue.clone().submit(
        ReplyTo::new(env, tag),
        Box::new(move |stream| {
            route.check(&array)?;
            let reply = work(ReadArgs {
                array: &array,
                stream,
                owner: &res,
                evaluated: false,
            })?;
            mark_ready(&[flag]);
            Ok(reply)
        }),
    )?;
    Ok(atoms::ok().encode(env))
}

/// What a read job's work gets: the tensor's array (possibly lazy), the
/// queue's stream, and the tensor resource itself.
pub struct ReadArgs<'j> {
    pub array: &'j ffi::Array,
    pub stream: &'j ffi::StreamRef,
    pub owner: &'j ResourceArc<TensorRes>,
    /// Already evaluated and row-contiguous (the inline path): nothing to run.
    evaluated: bool,
}

impl ReadArgs<'_> {
    /// The array evaluated and row-contiguous.
    pub fn readable(&self) -> crate::error::Result<cxx::UniquePtr<ffi::Array>> {
        if self.evaluated {
            return Ok(ffi::clone_array(self.array));
        }
        Ok(ffi::readable(self.array, self.stream)?)
    }
}

/// Sends `{tag, {:ok, number}}`: an integer, a float (or :nan,
/// :infinity, :neg_infinity), a boolean, or `{re, im}` for complex.
#[rustler::nif]
fn item<'a>(env: Env<'a>, tensor: Term<'a>, tag: Term<'a>) -> NifResult<Term<'a>> {
    item_job(env, tensor, tag, Inline::WhenReady)
}

pub fn item_job<'a>(
    env: Env<'a>,
    tensor: Term<'a>,
    tag: Term<'a>,
    inline: Inline,
) -> NifResult<Term<'a>> {
    read_job(env, tensor, tag, inline, |job| {
        let ready = job.readable()?;
        let s = ffi::scalar_of(&ready)?;
        Ok(Reply::Term(Box::new(move |env| scalar_term(env, s))))
    })
}

fn float_term(env: Env, x: f64) -> Term {
    if x.is_nan() {
        atoms::nan().encode(env)
    } else if x == f64::INFINITY {
        atoms::infinity().encode(env)
    } else if x == f64::NEG_INFINITY {
        atoms::neg_infinity().encode(env)
    } else {
        x.encode(env)
    }
}

fn scalar_term(env: Env, s: ffi::Scalar) -> Term {
    match s.kind {
        0 => s.ival.encode(env),
        1 => s.uval.encode(env),
        3 => (float_term(env, s.real), float_term(env, s.imag)).encode(env),
        4 => (s.ival != 0).encode(env),
        _ => float_term(env, s.real),
    }
}

/// Sends `{tag, {:ok, binary}}`: the tensor's bytes in row-major order,
/// the first `limit` elements only when `limit` is an integer. The binary
/// is a zero-copy view of the evaluated MLX buffer.
#[rustler::nif]
fn to_blob<'a>(
    env: Env<'a>,
    tensor: Term<'a>,
    limit: Term<'a>,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    blob_job(env, tensor, limit, tag, Inline::WhenReady)
}

pub fn blob_job<'a>(
    env: Env<'a>,
    tensor: Term<'a>,
    limit: Term<'a>,
    tag: Term<'a>,
    inline: Inline,
) -> NifResult<Term<'a>> {
    let limit = args::optional(limit, |t| {
        args::count("to_blob", "the element limit (or nil)", t)
    })?;
    read_job(env, tensor, tag, inline, move |job| {
        let ready = job.readable()?;
        let itemsize = ffi::itemsize_of(&ffi::dtype_of(&ready))?;
        let len = emlx_pure::blob::byte_len(limit, itemsize, ffi::nbytes_of(&ready));
        let blob = ResourceArc::new(BlobRes(ready));
        Ok(Reply::Term(Box::new(move |env| {
            blob.make_binary(env, |b| &b.bytes()[..len]).encode(env)
        })))
    })
}

/// `{name, architecture, memory}` of `:cpu` or `:gpu`: MLX's device name and
/// architecture, and the bytes that device's arrays can occupy (the
/// machine's memory for the CPU, a CUDA GPU's own memory). Dirty: the
/// first call on a GPU initialises the driver's management library.
#[rustler::nif(schedule = "DirtyIo")]
fn device_info(device: Term) -> NifResult<(String, String, usize)> {
    let device = Device::from_atom(args::atom("device_info", "the device", device)?)?;
    let info = ffi::device_info(device.code()).map_err(Error::from)?;
    Ok((info.name, info.architecture, info.memory))
}

/// The version of the libmlx this NIF runs on.
#[rustler::nif]
fn mlx_version() -> String {
    ffi::mlx_version()
}

#[rustler::nif]
fn memory_info() -> (usize, usize, usize) {
    (
        ffi::active_memory(),
        ffi::peak_memory(),
        ffi::cache_memory(),
    )
}

#[rustler::nif]
fn reset_peak_memory() -> Atom {
    ffi::reset_peak_memory();
    atoms::ok()
}

#[rustler::nif]
fn clear_cache() -> Atom {
    ffi::clear_cache();
    atoms::ok()
}

#[rustler::nif]
fn set_cache_limit(limit: Term) -> NifResult<usize> {
    let limit = args::count("set_cache_limit", "the limit in bytes", limit)?;
    Ok(ffi::set_cache_limit(limit as usize))
}

#[rustler::nif]
fn set_memory_limit(limit: Term) -> NifResult<usize> {
    let limit = args::count("set_memory_limit", "the limit in bytes", limit)?;
    Ok(ffi::set_memory_limit(limit as usize))
}
