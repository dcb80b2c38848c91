//! Fault injection for tests: makes a command queue fail in the ways a bug
//! in EMLX would, so that the tests can check that every waiting caller
//! still gets an answer. Reached only through `EMLX.NIF.queue_fault/3`
//! (undocumented, for the test suite).

use rustler::{Atom, Env, NifResult, Term};

use crate::args;
use crate::error::Error;
use crate::ffi;
use crate::queue::Reply;
use crate::tensor::decode_tensor;

/// The payload of an injected panic; `quiet_injected_panics` keeps these
/// out of the VM's standard error.
pub struct Injected;

/// Installs a panic hook that prints every panic as Rust's default hook
/// does, except the injected ones (the test suite makes many).
pub fn quiet_injected_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Injected>().is_none() {
            default(info);
        }
    }));
}

/// Panics as a bug would, with the payload the hook keeps quiet.
pub fn inject() -> ! {
    std::panic::panic_any(Injected)
}

mod atoms {
    rustler::atoms! { ok, panic_in_job, panic_in_reply, crash_thread, eval_foreign }
}

/// Submits a job to `queue` that fails as `kind` says, answered to `tag`:
/// `:panic_in_job` (the job panics), `:panic_in_reply` (encoding its result
/// panics on the queue thread), `:crash_thread` (the queue thread itself
/// panics outside any job, which ends it and closes the queue), or
/// `{:eval_foreign, tensor}` (the queue evaluates a tensor built on another
/// queue's stream, which the routing of real jobs never does).
#[rustler::nif]
fn queue_fault<'a>(
    env: Env<'a>,
    queue: Term<'a>,
    kind: Term<'a>,
    tag: Term<'a>,
) -> NifResult<Atom> {
    let queue = args::queue("queue_fault", queue)?;
    let shown = args::show(kind);
    if let Ok((which, tensor)) = kind.decode::<(Atom, Term)>() {
        if which == atoms::eval_foreign() {
            let array = decode_tensor(tensor)?.handle()?;
            let reply = crate::queue::ReplyTo::new(env, tag);
            queue.0.submit(
                reply,
                Box::new(move |stream| {
                    let mut list = ffi::new_list();
                    ffi::list_push(list.pin_mut(), &array);
                    ffi::eval_list(&list, stream)?;
                    Ok(Reply::Ok)
                }),
            )?;
            return Ok(atoms::ok());
        }
    }
    let kind = args::atom("queue_fault", "the fault", kind)?;
    let reply = crate::queue::ReplyTo::new(env, tag);
    if kind == atoms::crash_thread() {
        queue.0.submit_crash(reply)?;
    } else if kind == atoms::panic_in_job() {
        queue.0.submit(reply, Box::new(|_| inject()))?;
    } else if kind == atoms::panic_in_reply() {
        queue.0.submit(
            reply,
            Box::new(|_| Ok(Reply::Term(Box::new(|_env| inject())))),
        )?;
    } else {
        return Err(Error::BadArg(format!(
            "queue_fault: unknown fault {shown}: expected :panic_in_job, :panic_in_reply, \
             :crash_thread or {{:eval_foreign, tensor}}"
        ))
        .into());
    }
    Ok(atoms::ok())
}
