//! NIFs that need evaluated data, run as jobs on the tensor's own queue:
//! `eval`, `item`, `to_blob`; plus queue management and MLX memory stats.
//!
//! Each job NIF takes a tag (an Elixir reference) and returns `:ok` at once;
//! the queue later sends `{tag, :ok | {:ok, value} | {:error, {module, msg}}}`.

use rustler::{Atom, Encoder, Env, NifResult, ResourceArc, Term};

use crate::args;
use crate::error::Error;
use crate::ffi;
use crate::queue::{self, Device, Queue, Reply, ReplyTo};
use crate::tensor::{decode_tensor, BlobRes, QueueRes};

mod atoms {
    rustler::atoms! { ok, nan, infinity, neg_infinity }
}

#[rustler::nif]
fn queue_new<'a>(env: Env<'a>, device: Term<'a>) -> NifResult<Term<'a>> {
    let device = args::atom("queue_new", "the device", device)?;
    let queue = Queue::start(Device::from_atom(device)?)?;
    Ok(ResourceArc::new(QueueRes(queue)).encode(env))
}

#[rustler::nif(schedule = "DirtyIo")]
fn queue_close(queue: Term) -> NifResult<Atom> {
    args::queue("queue_close", queue)?.0.join();
    Ok(atoms::ok())
}

#[rustler::nif]
fn queue_info(queue: Term) -> NifResult<(u64, Atom, i32, bool)> {
    let queue = args::queue("queue_info", queue)?;
    let q = &queue.0;
    Ok((q.id, q.device.atom(), q.stream.index, q.is_closed()))
}

/// Replies `{tag, :ok}` once every job sent to the queue before has finished
/// and its stream has drained.
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

/// Evaluates every tensor of `tensors` (all of one queue) on that queue.
#[rustler::nif]
fn eval<'a>(env: Env<'a>, tensors: Term<'a>, tag: Term<'a>) -> NifResult<Atom> {
    let mut list = ffi::new_list();
    let mut owner: Option<std::sync::Arc<Queue>> = None;
    for t in args::list("eval", "the tensors", tensors)? {
        let res = decode_tensor(t)?;
        match &owner {
            Some(q) if q.id != res.queue.id => {
                return Err(Error::BadArg(
                    "eval: all tensors evaluated together must belong to one command queue".into(),
                )
                .into())
            }
            _ => owner = Some(res.queue.clone()),
        }
        res.with(|a| ffi::list_push(list.pin_mut(), a))?;
    }
    let Some(queue) = owner else {
        return Ok(atoms::ok());
    };
    queue.submit(
        ReplyTo::new(env, tag),
        Box::new(move |_stream| {
            ffi::eval_list(&list)?;
            Ok(Reply::Ok)
        }),
    )?;
    Ok(atoms::ok())
}

/// Sends `{tag, {:ok, number}}`: an integer, a float (or :nan,
/// :infinity, :neg_infinity), a boolean, or `{re, im}` for complex.
#[rustler::nif]
fn item<'a>(env: Env<'a>, tensor: Term<'a>, tag: Term<'a>) -> NifResult<Atom> {
    let res = decode_tensor(tensor)?;
    let array = res.handle()?;
    res.queue.submit(
        ReplyTo::new(env, tag),
        Box::new(move |stream| {
            let s = ffi::item_of(&array, stream)?;
            Ok(Reply::Term(Box::new(move |env| scalar_term(env, s))))
        }),
    )?;
    Ok(atoms::ok())
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
fn to_blob<'a>(env: Env<'a>, tensor: Term<'a>, limit: Term<'a>, tag: Term<'a>) -> NifResult<Atom> {
    let limit: Option<u64> = if limit.decode::<Option<u64>>().is_ok_and(|l| l.is_none()) {
        None
    } else {
        Some(args::count("to_blob", "the element limit (or nil)", limit)?)
    };
    let res = decode_tensor(tensor)?;
    let array = res.handle()?;
    res.queue.submit(
        ReplyTo::new(env, tag),
        Box::new(move |stream| {
            let ready = ffi::readable(&array, stream)?;
            let itemsize = ffi::itemsize_of(&ffi::dtype_of(&ready))?;
            let total = ffi::nbytes_of(&ready);
            let len = match limit {
                Some(n) => (n as usize).saturating_mul(itemsize).min(total),
                None => total,
            };
            let blob = ResourceArc::new(BlobRes(ready));
            Ok(Reply::Term(Box::new(move |env| {
                blob.make_binary(env, |b| &b.bytes()[..len]).encode(env)
            })))
        }),
    )?;
    Ok(atoms::ok())
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
