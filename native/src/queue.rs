//! Command queues: one OS thread per queue, owning one MLX stream.
//!
//! MLX binds a stream's command encoder to the thread that created it, so the
//! queue thread creates its stream and is the only thread that evaluates
//! arrays built on it. NIFs on BEAM schedulers build graph nodes with the
//! queue's stream passed explicitly, then send eval / item / to_blob jobs
//! over a bounded crossbeam channel; the queue thread replies to the caller
//! with a message, so no scheduler ever waits on MLX.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use rustler::env::SavedTerm;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};

use crate::error::{Error, Result};
use crate::ffi::{self, Array, StreamRef};

/// How many jobs may wait on one queue before submitters are told to back off.
const CAPACITY: usize = 65_536;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LIVE_THREADS: AtomicUsize = AtomicUsize::new(0);

mod atoms {
    rustler::atoms! { ok, error, cpu, gpu }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    pub fn from_atom(a: rustler::Atom) -> Result<Device> {
        if a == atoms::cpu() {
            Ok(Device::Cpu)
        } else if a == atoms::gpu() {
            Ok(Device::Gpu)
        } else {
            Err(Error::BadArg(format!(
                "unknown device {a:?}: expected :cpu or :gpu"
            )))
        }
    }

    pub fn atom(self) -> rustler::Atom {
        match self {
            Device::Cpu => atoms::cpu(),
            Device::Gpu => atoms::gpu(),
        }
    }

    fn code(self) -> i32 {
        match self {
            Device::Cpu => 0,
            Device::Gpu => 1,
        }
    }
}

/// What a job hands back to the caller on success.
pub enum Reply {
    Ok,
    /// A value encoded on the queue thread, inside the reply's environment.
    Term(Box<dyn for<'a> FnOnce(Env<'a>) -> Term<'a> + Send>),
}

/// Where a reply goes: `{ref, result}` to `pid`.
pub struct ReplyTo {
    pid: LocalPid,
    env: OwnedEnv,
    tag: SavedTerm,
}

impl ReplyTo {
    pub fn new(env: Env, tag: Term) -> ReplyTo {
        let owned = OwnedEnv::new();
        let tag = owned.save(tag);
        ReplyTo {
            pid: env.pid(),
            env: owned,
            tag,
        }
    }

    fn send(mut self, result: Result<Reply>) {
        let tag = self.tag;
        // A caller that died in the meantime simply gets no message.
        let _ = self.env.send_and_clear(&self.pid, move |env| {
            let body = match result {
                Ok(Reply::Ok) => atoms::ok().encode(env),
                Ok(Reply::Term(f)) => (atoms::ok(), f(env)).encode(env),
                Err(e) => (atoms::error(), e.to_pair(env)).encode(env),
            };
            (tag.load(env), body).encode(env)
        });
    }
}

type Work = Box<dyn FnOnce(&StreamRef) -> Result<Reply> + Send>;

enum Job {
    Run(Work, ReplyTo),
    Release(cxx::UniquePtr<Array>),
    Stop,
}

pub struct Queue {
    pub id: u64,
    pub device: Device,
    pub stream: StreamRef,
    tx: Sender<Job>,
    closed: AtomicBool,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Queue {
    /// Starts the queue's thread and waits until it has created its stream.
    pub fn start(device: Device) -> Result<Arc<Queue>> {
        if device == Device::Gpu && !ffi::gpu_available() {
            return Err(Error::BadArg(
                "this MLX build has no GPU: use device: :cpu (Linux CPU builds of MLX have no GPU; \
                 build with EMLX_MLX_VARIANT=cuda for NVIDIA GPUs)"
                    .into(),
            ));
        }
        let (tx, rx) = bounded::<Job>(CAPACITY);
        let (ready_tx, ready_rx) = bounded::<Result<StreamRef>>(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let handle = thread::Builder::new()
            .name(format!("emlx-queue-{id}"))
            .spawn(move || {
                LIVE_THREADS.fetch_add(1, Ordering::SeqCst);
                let created = create_streams(device);
                let stream = created.as_ref().ok().copied();
                let _ = ready_tx.send(created);
                if let Some(stream) = stream {
                    serve(stream, rx);
                }
                LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
            })
            .map_err(|e| Error::Queue(format!("cannot start a command queue thread: {e}")))?;
        let stream = ready_rx
            .recv()
            .map_err(|_| Error::Queue("the command queue thread died while starting".into()))??;
        Ok(Arc::new(Queue {
            id,
            device,
            stream,
            tx,
            closed: AtomicBool::new(false),
            thread: Mutex::new(Some(handle)),
        }))
    }

    /// Sends a job; its result goes to `reply`.
    pub fn submit(&self, reply: ReplyTo, work: Work) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(self.closed_error());
        }
        match self.tx.try_send(Job::Run(work, reply)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(Error::Queue(format!(
                "command queue {} has {CAPACITY} pending jobs; wait for some to finish",
                self.id
            ))),
            Err(TrySendError::Disconnected(_)) => Err(self.closed_error()),
        }
    }

    /// Drops an array, on the queue thread when it still holds a graph
    /// (freeing a large unevaluated graph can take long), inline otherwise.
    pub fn release(&self, array: cxx::UniquePtr<Array>) {
        if array.is_null() || !ffi::is_lazy(&array) || self.closed.load(Ordering::Acquire) {
            return;
        }
        // On a full or stopped queue the array is simply dropped here.
        let _ = self.tx.try_send(Job::Release(array));
    }

    /// Stops taking jobs; pending ones get an error reply. Idempotent.
    pub fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            // A blocking send: Stop must get in even behind a full channel.
            let _ = self.tx.send(Job::Stop);
        }
    }

    /// Closes the queue and waits for its thread to end.
    pub fn join(&self) {
        self.close();
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn closed_error(&self) -> Error {
        Error::Queue(format!("command queue {} is closed", self.id))
    }
}

/// Creates the queue's streams on the calling (queue) thread: its main stream
/// and, for a GPU queue, a companion CPU stream for the ops MLX only runs on
/// the CPU. Both belong to this thread, so this thread can evaluate graphs
/// that mix them.
fn create_streams(device: Device) -> Result<StreamRef> {
    let index = ffi::new_stream(device.code())?;
    let cpu_index = match device {
        Device::Cpu => index,
        Device::Gpu => ffi::new_stream(Device::Cpu.code())?,
    };
    Ok(StreamRef {
        index,
        device: device.code(),
        cpu_index,
    })
}

/// Number of queue threads alive right now (for tests and diagnostics).
pub fn live_threads() -> usize {
    LIVE_THREADS.load(Ordering::SeqCst)
}

fn serve(stream: StreamRef, rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Run(work, reply) => {
                let result =
                    catch_unwind(AssertUnwindSafe(|| work(&stream))).unwrap_or_else(|_| {
                        Err(Error::Mlx(
                            "internal error: a command queue job panicked".into(),
                        ))
                    });
                reply.send(result);
            }
            Job::Release(array) => drop(array),
            Job::Stop => break,
        }
    }
    // Whatever is still queued is answered, never silently lost.
    for job in rx.try_iter() {
        if let Job::Run(_, reply) = job {
            reply.send(Err(Error::Queue(
                "the command queue was closed before this job ran".into(),
            )));
        }
    }
}
