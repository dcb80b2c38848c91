//! Resources that Elixir holds: tensors, queues and zero-copy blobs.
//!
//! An Elixir tensor is `{device, ref}` where `ref` is a [`TensorRes`]. Every
//! tensor remembers the queue whose stream its graph node was built on; only
//! that queue evaluates it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cxx::UniquePtr;
use parking_lot::RwLock;
use rustler::{Encoder, Env, Resource, ResourceArc, Term};

use crate::error::{Error, Result};
use crate::ffi::{self, Array};
use crate::queue::Queue;

pub struct TensorRes {
    /// `None` once deallocated.
    array: RwLock<Option<UniquePtr<Array>>>,
    pub queue: Arc<Queue>,
    /// Whether the array's data is known to be computed: true for arrays
    /// born with data, and set by the queue thread once a job that
    /// evaluated the array has finished. Other queues may read the array
    /// only then. (MLX's own status cannot tell: it says "evaluated" as soon
    /// as a computation is scheduled, and may only be read safely on the
    /// queue's thread.)
    ready: Arc<AtomicBool>,
}

#[rustler::resource_impl]
impl Resource for TensorRes {}

impl Drop for TensorRes {
    fn drop(&mut self) {
        if let Some(array) = self.array.get_mut().take() {
            self.queue.release(array);
        }
    }
}

impl TensorRes {
    pub fn new(array: UniquePtr<Array>, queue: Arc<Queue>) -> ResourceArc<TensorRes> {
        // The array is not shared yet, so reading its status here is safe.
        let ready = !array.is_null() && ffi::is_ready(&array);
        ResourceArc::new(TensorRes {
            array: RwLock::new(Some(array)),
            queue,
            ready: Arc::new(AtomicBool::new(ready)),
        })
    }

    /// A tensor over an array that a job has just evaluated (on the queue
    /// thread): its data is computed.
    pub fn evaluated(array: UniquePtr<Array>, queue: Arc<Queue>) -> ResourceArc<TensorRes> {
        ResourceArc::new(TensorRes {
            array: RwLock::new(Some(array)),
            queue,
            ready: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Whether the data is computed (see the `ready` field).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// What a job sets (with `mark_ready`) once it has evaluated the array.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }

    /// Runs `f` on the live array, or fails if it was deallocated.
    pub fn with<T>(&self, f: impl FnOnce(&Array) -> T) -> Result<T> {
        match self.array.read().as_ref() {
            Some(a) => Ok(f(a)),
            None => Err(Error::Deallocated),
        }
    }

    /// A new handle to the same MLX array (shares the graph node / buffer).
    pub fn handle(&self) -> Result<UniquePtr<Array>> {
        self.with(ffi::clone_array)
    }

    /// Swaps in `array`, an equal-valued stand-in for the current one (its
    /// evaluated, contiguous form), unless the tensor was deallocated.
    pub fn replace(&self, array: UniquePtr<Array>) -> Result<()> {
        let mut slot = self.array.write();
        match slot.as_mut() {
            Some(current) => {
                *current = array;
                Ok(())
            }
            None => Err(Error::Deallocated),
        }
    }

    /// Drops the array now. Returns false if it was already gone.
    pub fn deallocate(&self) -> bool {
        let taken = self.array.write().take();
        match taken {
            Some(array) => {
                self.queue.release(array);
                true
            }
            None => false,
        }
    }

    /// `{device, ref}`, the Elixir representation.
    pub fn wrap<'a>(env: Env<'a>, res: ResourceArc<TensorRes>) -> Term<'a> {
        let device = res.queue.device.atom();
        (device, res).encode(env)
    }
}

/// An Elixir handle on a command queue.
///
/// Dropping the handle does not close the queue: tensors built on it still
/// need it to be evaluated and read, and each holds the queue itself. The
/// queue ends when it is closed, when the process that owns it exits (see
/// `queue::OwnerWatch`), or once neither a handle nor a tensor of it is left
/// (its channel disconnects).
pub struct QueueRes(pub Arc<Queue>);

#[rustler::resource_impl]
impl Resource for QueueRes {}

/// An evaluated, row-contiguous array whose bytes back a resource binary.
/// Holding its own handle keeps the buffer alive (and never donated) for as
/// long as the binary lives, even if the tensor is deallocated.
pub struct BlobRes(pub UniquePtr<Array>);

#[rustler::resource_impl]
impl Resource for BlobRes {}

impl BlobRes {
    pub fn bytes(&self) -> &[u8] {
        ffi::data_bytes(&self.0).unwrap_or(&[])
    }
}

/// Records that a job has computed the arrays behind `flags`.
pub fn mark_ready(flags: &[Arc<AtomicBool>]) {
    for flag in flags {
        flag.store(true, Ordering::Release);
    }
}

/// Decodes `{device, ref}` or a bare `ref` into its resource.
pub fn decode_tensor(term: Term) -> Result<ResourceArc<TensorRes>> {
    if let Ok(res) = term.decode::<ResourceArc<TensorRes>>() {
        return Ok(res);
    }
    if let Ok((_, res)) = term.decode::<(rustler::Atom, ResourceArc<TensorRes>)>() {
        return Ok(res);
    }
    Err(Error::BadArg(format!(
        "expected an EMLX tensor ({{device, ref}}), got: {}",
        crate::args::show(term)
    )))
}
