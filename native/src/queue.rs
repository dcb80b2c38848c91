//! Command queues: one OS thread per queue, owning one MLX stream.
//!
//! MLX binds a stream's command encoder to the thread that created it, so the
//! queue thread creates its stream and is the only thread that evaluates
//! arrays built on it. NIFs on BEAM schedulers build graph nodes with the
//! queue's stream passed explicitly, then send eval / item / to_blob jobs
//! over a bounded crossbeam channel; the queue thread replies to the caller
//! with a message, so no scheduler ever waits on MLX.
//!
//! Lifetime. A queue stops taking work when it is closed: explicitly, or when
//! the process that owns it dies (see `OwnerWatch`). Jobs still waiting
//! then get an error reply, the running one finishes, and the thread ends.
//! A queue nobody can reach any more (no handle, no tensor built on it) ends
//! too: its channel disconnects. Jobs whose caller died before they started
//! are skipped.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use rustler::env::SavedTerm;
use rustler::{Encoder, Env, LocalPid, Monitor, OwnedEnv, Resource, ResourceArc, Term};

use crate::error::{Error, Result};
use crate::ffi::{self, Array, StreamRef};

/// How many jobs may wait on a queue, unless its creator says otherwise.
pub const DEFAULT_CAPACITY: usize = 65_536;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LIVE_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Every queue started, weakly (for `shutdown_all`).
static ALL: Mutex<Vec<Weak<Queue>>> = Mutex::new(Vec::new());

/// The application's default queue of each device (CPU, GPU): the queue that
/// serves reads of *evaluated* tensors whose own queue is closed.
static DEFAULTS: RwLock<[Option<Arc<Queue>>; 2]> = RwLock::new([None, None]);

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

/// Where a reply goes: `{tag, result, run_ns}` to `pid`, where `run_ns` is
/// how long the job ran on the queue thread (0 if it never ran).
///
/// A reply is always sent, exactly once: by `send` after the job ran, or,
/// for a job dropped without an answer (its queue thread ended, unwound by a
/// panic, or skipped it), by `Drop` with an error. The caller's `receive`
/// therefore always ends while the VM lives. The one exception is a job
/// refused by `submit`: its caller gets the error from the NIF call itself,
/// so no reply is sent (`disarm`).
pub struct ReplyTo {
    pid: LocalPid,
    env: OwnedEnv,
    tag: SavedTerm,
    answered: bool,
}

impl ReplyTo {
    pub fn new(env: Env, tag: Term) -> ReplyTo {
        let owned = OwnedEnv::new();
        let tag = owned.save(tag);
        ReplyTo {
            pid: env.pid(),
            env: owned,
            tag,
            answered: false,
        }
    }

    /// Whether the caller is still there to read the reply. Safe off the
    /// BEAM's threads: `enif_is_process_alive` handles non-scheduler callers.
    fn caller_alive(&self) -> bool {
        self.env.run(|env| env.is_process_alive(self.pid))
    }

    /// Marks the job as needing no reply (its caller is gone, or was told
    /// synchronously that the job was refused).
    fn disarm(&mut self) {
        self.answered = true;
    }

    fn send(mut self, result: Result<Reply>, run_ns: u64) {
        self.deliver(result, run_ns);
    }

    /// Sends the reply. Encoding runs the job's own closure (`Reply::Term`);
    /// if that panics, the caller gets an error reply instead, so a panic
    /// never leaves a caller waiting.
    fn deliver(&mut self, result: Result<Reply>, run_ns: u64) {
        if self.answered {
            return;
        }
        self.answered = true;
        // OwnedEnv::send_and_clear panics on a BEAM thread: no reply can be
        // sent from one (and none is owed: see `disarm`).
        if rustler::thread::is_scheduler_thread() {
            return;
        }
        let tag = &self.tag;
        // A caller that died in the meantime simply gets no message.
        let _ = self.env.send_and_clear(&self.pid, move |env| {
            let body = catch_unwind(AssertUnwindSafe(|| encode_result(env, result)))
                .unwrap_or_else(|_| {
                    let e = Error::Internal(
                        "encoding the result of a command queue job panicked".into(),
                    );
                    (atoms::error(), e.to_pair(env)).encode(env)
                });
            (tag.load(env), body, run_ns).encode(env)
        });
    }
}

impl Drop for ReplyTo {
    fn drop(&mut self) {
        if !self.answered {
            let e = Error::Queue(
                "the command queue's thread ended before answering this job \
                 (an internal error in EMLX; the queue is closed now)"
                    .into(),
            );
            // Never let a panic out of a destructor (it may run while
            // unwinding, where a second panic aborts the VM).
            let _ = catch_unwind(AssertUnwindSafe(|| self.deliver(Err(e), 0)));
        }
    }
}

fn encode_result<'a>(env: Env<'a>, result: Result<Reply>) -> Term<'a> {
    match result {
        Ok(Reply::Ok) => atoms::ok().encode(env),
        Ok(Reply::Term(f)) => (atoms::ok(), f(env)).encode(env),
        Err(e) => (atoms::error(), e.to_pair(env)).encode(env),
    }
}

type Work = Box<dyn FnOnce(&StreamRef) -> Result<Reply> + Send>;

enum Job {
    Run(Work, ReplyTo),
    Release(cxx::UniquePtr<Array>),
    /// Fault injection (tests only): the queue thread panics outside any
    /// job, as a bug in EMLX would, while holding this job's reply.
    Crash(ReplyTo),
    Stop,
}

impl Job {
    /// Marks a job that never entered the channel as needing no reply.
    fn disarm(&mut self) {
        if let Job::Run(_, reply) | Job::Crash(reply) = self {
            reply.disarm();
        }
    }
}

/// Counters a queue keeps about its jobs (read with `Queue::stats`).
#[derive(Default)]
pub struct Stats {
    /// Jobs that ran and succeeded.
    pub completed: AtomicU64,
    /// Jobs that ran and failed (an MLX error, bad input found on the queue).
    pub failed: AtomicU64,
    /// Jobs skipped because their caller had died.
    pub dropped: AtomicU64,
    /// Jobs answered with an error because the queue closed first.
    pub cancelled: AtomicU64,
    /// Total time spent running jobs, in nanoseconds.
    pub busy_ns: AtomicU64,
    /// Whether the thread is still running.
    pub running: AtomicBool,
}

pub struct Queue {
    pub id: u64,
    pub device: Device,
    pub stream: StreamRef,
    pub capacity: usize,
    pub stats: Arc<Stats>,
    tx: Sender<Job>,
    /// `true` once closed. Submitters hold the read lock while they send, so
    /// after `close` has taken the write lock no job can enter the channel:
    /// what is in it then is all the thread has to answer.
    closed: Arc<RwLock<bool>>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// The monitor on the owner process, kept for as long as the queue lives.
    owner: OnceLock<ResourceArc<OwnerWatch>>,
}

/// Watches the process that owns a queue: the VM calls `down` when that
/// process exits, and the queue closes. The queue holds the watch, so the
/// monitor lasts exactly as long as the queue (whether or not Elixir still
/// holds a handle); the watch holds the queue weakly.
pub struct OwnerWatch(Weak<Queue>);

#[rustler::resource_impl]
impl Resource for OwnerWatch {
    fn down<'a>(&'a self, _env: Env<'a>, _pid: LocalPid, _monitor: Monitor) {
        if let Some(queue) = self.0.upgrade() {
            queue.close();
        }
    }
}

impl Queue {
    /// Starts the queue's thread and waits until it has created its stream.
    pub fn start(device: Device, capacity: usize) -> Result<Arc<Queue>> {
        if device == Device::Gpu && !ffi::gpu_available() {
            return Err(Error::BadArg(
                "this MLX build has no GPU: use device: :cpu (Linux CPU builds of MLX have no GPU; \
                 build with EMLX_MLX_VARIANT=cuda for NVIDIA GPUs)"
                    .into(),
            ));
        }
        if capacity == 0 {
            return Err(Error::BadArg(
                "a command queue's capacity must be at least 1".into(),
            ));
        }
        let (tx, rx) = bounded::<Job>(capacity);
        let (ready_tx, ready_rx) = bounded::<Result<StreamRef>>(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(Stats::default());
        let closed = Arc::new(RwLock::new(false));
        let (thread_stats, thread_closed) = (stats.clone(), closed.clone());
        LIVE_THREADS.fetch_add(1, Ordering::SeqCst);
        stats.running.store(true, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name(format!("emlx-queue-{id}"))
            .spawn(move || {
                let created = create_streams(device);
                let stream = created.as_ref().ok().copied();
                let _ = ready_tx.send(created);
                if let Some(stream) = stream {
                    // A panic that escapes the jobs' own guards ends the
                    // thread; `serve`'s drain guard has answered every job
                    // by then, and the flags below still go down.
                    let _ = catch_unwind(AssertUnwindSafe(|| {
                        serve(stream, &rx, &thread_stats, &thread_closed)
                    }));
                }
                thread_stats.running.store(false, Ordering::SeqCst);
                LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
            });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                stats.running.store(false, Ordering::SeqCst);
                LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::Queue(format!(
                    "cannot start a command queue thread: {e}"
                )));
            }
        };
        let stream = ready_rx
            .recv()
            .map_err(|_| Error::Queue("the command queue thread died while starting".into()))??;
        let queue = Arc::new(Queue {
            id,
            device,
            stream,
            capacity,
            stats,
            tx,
            closed,
            thread: Mutex::new(Some(handle)),
            owner: OnceLock::new(),
        });
        let mut all = ALL.lock();
        all.retain(|q| q.strong_count() > 0);
        all.push(Arc::downgrade(&queue));
        AT_EXIT.call_once(|| {
            // MLX's singletons (scheduler, streams, allocator) exist by now,
            // so their destructors were registered before this handler,
            // which therefore runs first.
            let _ = ffi::active_memory();
            // SAFETY: `atexit` only records the function; `on_exit` is a
            // plain `extern "C"` function that lives as long as the process
            // (the NIF library is never unloaded) and never unwinds.
            unsafe { libc::atexit(on_exit) };
        });
        Ok(queue)
    }

    /// Closes the queue when `pid` exits. Fails if `pid` is not alive.
    pub fn watch_owner(self: &Arc<Self>, env: Env, pid: &LocalPid) -> Result<()> {
        let watch = ResourceArc::new(OwnerWatch(Arc::downgrade(self)));
        if watch.monitor(Some(env), pid).is_none() {
            return Err(Error::BadArg(
                "the owner of a new command queue must be a live local process".into(),
            ));
        }
        if self.owner.set(watch).is_err() {
            return Err(Error::BadArg(
                "the command queue already has an owner".into(),
            ));
        }
        Ok(())
    }

    /// Sends a job; its result goes to `reply`.
    pub fn submit(&self, reply: ReplyTo, work: Work) -> Result<()> {
        self.send_job(Job::Run(work, reply))
    }

    /// Fault injection for tests: makes the queue thread panic outside any
    /// job, with this job's reply in hand (see `Job::Crash`).
    pub fn submit_crash(&self, reply: ReplyTo) -> Result<()> {
        self.send_job(Job::Crash(reply))
    }

    fn send_job(&self, mut job: Job) -> Result<()> {
        let closed = self.closed.read();
        if *closed {
            job.disarm();
            return Err(self.closed_error());
        }
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(mut job)) => {
                job.disarm();
                Err(Error::Queue(format!(
                    "command queue {} is full: {} jobs are already waiting; wait for replies \
                     before sending more, or create the queue with a larger :capacity",
                    self.id, self.capacity
                )))
            }
            Err(TrySendError::Disconnected(mut job)) => {
                job.disarm();
                Err(self.closed_error())
            }
        }
    }

    /// Drops an array, on the queue thread when it may still hold a graph
    /// (freeing a large unevaluated graph can take long), inline when it is
    /// `ready` (computed: its graph is gone). Whether it still holds a graph
    /// is EMLX's own readiness flag, never MLX's status, which the queue
    /// thread may be writing right now.
    pub fn release(&self, array: cxx::UniquePtr<Array>, ready: bool) {
        if array.is_null() || ready {
            return;
        }
        let closed = self.closed.read();
        // Releases take at most half of the channel, so that a burst of
        // dropped graphs (a garbage collection freeing thousands of lazy
        // tensors) never makes the callers' own jobs find the queue full.
        // Past that, or on a closed queue, the array is dropped here.
        if !*closed && self.tx.len() < self.capacity / 2 {
            let _ = self.tx.try_send(Job::Release(array));
        }
    }

    /// Stops taking jobs; the ones waiting get an error reply, the running
    /// one finishes, then the thread ends. Idempotent and non-blocking.
    pub fn close(&self) {
        {
            let mut closed = self.closed.write();
            if *closed {
                return;
            }
            *closed = true;
        }
        // Wakes an idle thread. If the channel is full the thread is busy and
        // sees the flag when it takes its next job.
        let _ = self.tx.try_send(Job::Stop);
    }

    /// Closes the queue and waits for its thread to end.
    pub fn join(&self) {
        self.close();
        let handle = self.thread.lock().take();
        if let Some(handle) = handle {
            // Never join from the queue's own thread (it would wait forever).
            if handle.thread().id() != thread::current().id() {
                let _ = handle.join();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.read()
    }

    /// Jobs waiting in the channel now.
    pub fn pending(&self) -> usize {
        self.tx.len()
    }

    pub fn closed_error(&self) -> Error {
        Error::Queue(format!(
            "command queue {} is closed (closed explicitly, or its owner process exited)",
            self.id
        ))
    }

    /// Makes this queue the one that serves reads of evaluated tensors of
    /// its device whose own queue has closed.
    pub fn make_default(self: &Arc<Self>) {
        DEFAULTS.write()[self.device.code() as usize] = Some(self.clone());
    }

    /// Where a job for a tensor built on `self` runs: on `self` while it is
    /// open; once it is closed, on the default queue of its device
    /// (evaluated arrays are shared freely across queues). Whether a tensor
    /// that is not known to be `ready` was evaluated anyway (as part of a
    /// larger graph) can only be asked of MLX on a thread that no other
    /// evaluates it on: the route then has the serving job ask, once the
    /// closed queue's thread has ended (`Route::check`).
    pub fn route(self: &Arc<Self>, ready: bool) -> Result<Route> {
        if !self.is_closed() {
            return Ok(Route {
                queue: self.clone(),
                closed_owner: None,
            });
        }
        match &DEFAULTS.read()[self.device.code() as usize] {
            Some(q) if !q.is_closed() => Ok(Route {
                queue: q.clone(),
                closed_owner: (!ready).then(|| self.clone()),
            }),
            _ => Err(self.closed_error()),
        }
    }

    fn lazy_on_closed_error(&self) -> Error {
        Error::Queue(format!(
            "the tensor is an unevaluated result of command queue {}, which is closed \
             (closed explicitly, or its owner process exited): only that queue could \
             evaluate it; evaluate results before their queue closes",
            self.id
        ))
    }

    /// Waits until the queue's thread has ended (it is closed: it finishes
    /// its running job, answers the waiting ones and ends).
    fn wait_ended(&self) {
        while self.stats.running.load(Ordering::SeqCst) {
            thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// The queue that serves a job, from [`Queue::route`].
pub struct Route {
    pub queue: Arc<Queue>,
    /// The closed queue that built the job's tensors, when they are not
    /// known to be ready.
    closed_owner: Option<Arc<Queue>>,
}

impl Route {
    /// Run by the job on the serving queue's thread before it reads
    /// `array`: for a tensor of a closed queue that is not known to be
    /// ready, waits for that queue's thread to end, then refuses the array
    /// if it was never evaluated (nothing can evaluate it any more).
    pub fn check(&self, array: &Array) -> Result<()> {
        if let Some(owner) = &self.closed_owner {
            owner.wait_ended();
            if ffi::is_unscheduled(array) {
                return Err(owner.lazy_on_closed_error());
            }
        }
        Ok(())
    }
}

/// Creates the queue's streams on the calling (queue) thread: its main stream
/// and a companion CPU stream for the ops MLX only runs on the CPU (linalg).
/// Both belong to this thread, so this thread can evaluate graphs that mix
/// them. A CPU queue gets a companion too, so that the path a GPU queue
/// takes (a graph over two streams of one thread) runs, and is tested,
/// everywhere.
fn create_streams(device: Device) -> Result<StreamRef> {
    let index = ffi::new_stream(device.code())?;
    let cpu_index = ffi::new_stream(Device::Cpu.code())?;
    Ok(StreamRef {
        index,
        device: device.code(),
        cpu_index,
    })
}

static AT_EXIT: std::sync::Once = std::sync::Once::new();

/// At process exit (the VM halting), before libmlx's static objects are
/// destroyed, the queue threads are stopped, so that none of them touches
/// MLX while it is torn down (a release job freeing arrays then corrupted
/// the heap).
extern "C" fn on_exit() {
    let _ = catch_unwind(|| shutdown_all(std::time::Duration::from_secs(2)));
}

/// Closes every queue and waits, up to `timeout`, for their threads to end.
/// Run when the process exits (see lib.rs): the queue threads must not
/// still be evaluating or freeing MLX arrays while libmlx's static objects
/// (its allocator, its streams) are destroyed.
pub fn shutdown_all(timeout: std::time::Duration) {
    let queues: Vec<Arc<Queue>> = ALL.lock().iter().filter_map(Weak::upgrade).collect();
    for q in &queues {
        q.close();
    }
    let deadline = Instant::now() + timeout;
    while queues
        .iter()
        .any(|q| q.stats.running.load(Ordering::SeqCst))
        && Instant::now() < deadline
    {
        thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Number of queue threads alive right now (for tests and diagnostics).
pub fn live_threads() -> usize {
    LIVE_THREADS.load(Ordering::SeqCst)
}

fn serve(stream: StreamRef, rx: &Receiver<Job>, stats: &Stats, closed: &RwLock<bool>) {
    let mut drain = DrainOnExit {
        rx,
        stats,
        closed,
        normal: false,
    };
    while let Ok(job) = rx.recv() {
        if *closed.read() {
            cancel(job, stats, CLOSED);
            break;
        }
        match job {
            Job::Run(work, reply) => run(&stream, work, reply, stats),
            Job::Release(array) => drop(array),
            Job::Crash(_reply) => crate::faults::inject(),
            Job::Stop => break,
        }
    }
    drain.normal = true;
}

const CLOSED: &str = "the command queue was closed before this job ran \
                      (closed explicitly, or its owner process exited)";
const DIED: &str = "the command queue's thread ended before running this job \
                    (an internal error in EMLX; the queue is closed now)";

/// Answers whatever is still queued when `serve` ends, normally or by a
/// panic: the queue is marked closed first, so that no job can enter
/// afterwards (submitters hold the read lock while they send), and every job
/// in the channel then gets an error reply, never silently lost.
struct DrainOnExit<'a> {
    rx: &'a Receiver<Job>,
    stats: &'a Stats,
    closed: &'a RwLock<bool>,
    normal: bool,
}

impl Drop for DrainOnExit<'_> {
    fn drop(&mut self) {
        *self.closed.write() = true;
        let why = if self.normal { CLOSED } else { DIED };
        for job in self.rx.try_iter() {
            cancel(job, self.stats, why);
        }
    }
}

fn run(stream: &StreamRef, work: Work, mut reply: ReplyTo, stats: &Stats) {
    if !reply.caller_alive() {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        reply.disarm();
        return;
    }
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| work(stream)))
        .unwrap_or_else(|_| Err(Error::Internal("a command queue job panicked".into())));
    let run_ns = start.elapsed().as_nanos() as u64;
    stats.busy_ns.fetch_add(run_ns, Ordering::Relaxed);
    let counter = if result.is_ok() {
        &stats.completed
    } else {
        &stats.failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    // `send` catches a panic while encoding and answers with an error.
    reply.send(result, run_ns);
}

fn cancel(job: Job, stats: &Stats, why: &str) {
    if let Job::Run(_, reply) | Job::Crash(reply) = job {
        stats.cancelled.fetch_add(1, Ordering::Relaxed);
        reply.send(Err(Error::Queue(why.into())), 0);
    }
}
