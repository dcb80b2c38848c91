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

/// Whether an array's data is known to be computed: EMLX's own readiness
/// state, the only one read off a queue's thread. False while the array is
/// a graph node, or its evaluation may be running; set (with `Release`) by
/// the queue thread once a job that evaluated the array has finished and
/// MLX's own status is final; never unset. Shared by every tensor that holds
/// the same MLX array (an op that returns its input unchanged).
pub type ReadyFlag = Arc<AtomicBool>;

pub struct TensorRes {
    /// `None` once deallocated.
    array: RwLock<Option<UniquePtr<Array>>>,
    pub queue: Arc<Queue>,
    /// See [`ReadyFlag`]. Other queues may read the array only once it is
    /// set. MLX's own status is never read off the queue thread: it is a
    /// plain field that the evaluating thread writes (and it says
    /// "evaluated" as soon as a computation is scheduled).
    ready: ReadyFlag,
}

#[rustler::resource_impl]
impl Resource for TensorRes {}

impl Drop for TensorRes {
    fn drop(&mut self) {
        let ready = self.is_ready();
        if let Some(array) = self.array.get_mut().take() {
            if crate::lifetime::exiting() {
                // The process is exiting and libmlx is being torn down: a
                // garbage collection still running on a scheduler must not
                // free into it. The process's memory goes anyway.
                std::mem::forget(array);
            } else {
                self.queue.release(array, ready);
            }
        }
    }
}

impl TensorRes {
    /// A tensor for `array`, built on `queue`. `same_as` is the readiness of
    /// the input tensor that `array` *is* (an op that returned its input);
    /// without it the array must be one no other thread can reach yet (an
    /// op's new node, an array made from bytes), whose status it is safe to
    /// read here.
    pub fn new(
        array: UniquePtr<Array>,
        queue: Arc<Queue>,
        same_as: Option<ReadyFlag>,
    ) -> ResourceArc<TensorRes> {
        let ready = same_as.unwrap_or_else(|| {
            Arc::new(AtomicBool::new(!array.is_null() && ffi::born_ready(&array)))
        });
        ResourceArc::new(TensorRes {
            array: RwLock::new(Some(array)),
            queue,
            ready,
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
    pub fn ready_flag(&self) -> ReadyFlag {
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
                self.queue.release(array, self.is_ready());
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

impl Drop for BlobRes {
    fn drop(&mut self) {
        // As for TensorRes: nothing is freed into libmlx while it is torn down.
        if crate::lifetime::exiting() {
            std::mem::forget(std::mem::replace(&mut self.0, UniquePtr::null()));
        }
    }
}

impl BlobRes {
    pub fn bytes(&self) -> &[u8] {
        ffi::data_bytes(&self.0).unwrap_or(&[])
    }
}

/// Records that a job has computed the arrays behind `flags`. Only the
/// queue thread calls this, after MLX's status of those arrays is final.
pub fn mark_ready(flags: &[ReadyFlag]) {
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
