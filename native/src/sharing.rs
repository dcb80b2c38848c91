//! Handing a tensor's memory to code outside MLX: its raw address
//! (`tensor_data_ptr`) or a copy in a POSIX shared-memory segment
//! (`tensor_to_shm`, `shm_unlink`).
//!
//! Both jobs evaluate the tensor, so they run on the tensor's own queue and
//! answer by message, like `to_blob`.

use rustler::{Atom, Env, NifResult, Term};

use crate::args;
use crate::ffi;
use crate::queue::Reply;
use crate::runtime::{read_job, Inline};
use crate::shm;

mod atoms {
    rustler::atoms! { ok }
}

/// Sends `{tag, {:ok, {address, byte_size}}, run_ns}` for the tensor's evaluated,
/// row-contiguous buffer. A strided view is replaced, inside the tensor, by
/// its contiguous copy (same values), so the tensor itself keeps the buffer
/// the address points into alive until it is garbage-collected or
/// deallocated.
#[rustler::nif]
fn tensor_data_ptr<'a>(env: Env<'a>, tensor: Term<'a>, tag: Term<'a>) -> NifResult<Term<'a>> {
    read_job(env, tensor, tag, Inline::Never, |job| {
        let ready = job.readable()?;
        let len = ffi::nbytes_of(&ready);
        let address = if len == 0 {
            0
        } else {
            ffi::data_bytes(&ready)?.as_ptr() as u64
        };
        job.owner.replace(ready)?;
        Ok(Reply::Term(Box::new(move |env| {
            rustler::Encoder::encode(&(address, len as u64), env)
        })))
    })
}

/// Sends `{tag, {:ok, {name, byte_size}}, run_ns}`: a new shared-memory segment
/// named `name`, holding a copy of the tensor's bytes in row-major order,
/// created with permission bits `permissions`.
#[rustler::nif]
fn tensor_to_shm<'a>(
    env: Env<'a>,
    tensor: Term<'a>,
    permissions: Term<'a>,
    tag: Term<'a>,
) -> NifResult<Term<'a>> {
    let permissions = match permissions.decode::<u32>() {
        Ok(p) if p <= 0o777 => p,
        _ => {
            return Err(args::bad(
                "tensor_to_shm",
                "the permissions",
                "Unix mode bits (an integer from 0 to 0o777)",
                permissions,
            )
            .into())
        }
    };
    read_job(env, tensor, tag, Inline::Never, move |job| {
        let ready = job.readable()?;
        let bytes = ffi::data_bytes(&ready)?;
        let name = shm::create_with(bytes, permissions)?;
        let len = bytes.len() as u64;
        Ok(Reply::Term(Box::new(move |env| {
            rustler::Encoder::encode(&(name, len), env)
        })))
    })
}

/// Removes a shared-memory segment's name; a missing segment is fine.
#[rustler::nif]
fn shm_unlink(name: Term) -> NifResult<Atom> {
    let name = args::string("shm_unlink", "the name", name)?;
    shm::unlink(&name)?;
    Ok(atoms::ok())
}
