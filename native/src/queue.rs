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
//!
//! Replies. Every job gets exactly one reply (`ReplyTo`): after it ran, or
//! an error if it is dropped unanswered; a panic while encoding a result is
//! answered with an error, and a panic that escapes the job guards ends the
//! thread only after the queue is closed and every waiting job answered
//! (`DrainOnExit`). A caller's `receive` therefore needs no timeout.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use rustler::{Env, LocalPid, Monitor, Resource, ResourceArc};

use crate::error::{Error, Result};
use crate::ffi::{self, Array, StreamRef};
use crate::inline_cpu;
pub use crate::reply::{Reply, ReplyTo};

/// How many jobs may wait on a queue, unless its creator says otherwise.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// How many dropped lazy arrays may wait for the queue thread to free them.
const MAX_RELEASES: usize = 65_536;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LIVE_THREADS: AtomicUsize = AtomicUsize::new(0);

/// The application's default queue of each device (CPU, GPU): the queue that
/// serves reads of *evaluated* tensors whose own queue is closed.
pub(crate) static DEFAULTS: RwLock<[Option<Arc<Queue>>; 2]> = RwLock::new([None, None]);

mod atoms {
    rustler::atoms! { cpu, gpu }
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

    pub fn code(self) -> i32 {
        match self {
            Device::Cpu => 0,
            Device::Gpu => 1,
        }
    }
}

type Work = Box<dyn FnOnce(&StreamRef) -> Result<Reply> + Send>;

enum Job {
    Run(Work, ReplyTo),
    /// Drop the arrays waiting in `Queue::releases`.
    Release,
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
    /// Jobs run right in the calling NIF instead (small graphs on an idle
    /// queue, see `Queue::run_now`); also counted in `completed`/`failed`.
    pub inline: AtomicU64,
    /// Whether the thread is still running.
    pub running: AtomicBool,
}

pub struct Queue {
    pub id: u64,
    pub device: Device,
    pub stream: StreamRef,
    pub capacity: usize,
    tx: Sender<Job>,
    /// What the queue thread shares with the submitters.
    shared: Arc<Shared>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
    /// The monitor on the owner process, kept for as long as the queue lives.
    owner: OnceLock<ResourceArc<OwnerWatch>>,
    /// Whether this queue's CPU streams run their tasks inline (see
    /// native/bridge/inline_cpu.cc): only then may a NIF evaluate on them.
    pub inline: bool,
}

/// The state a queue's thread shares with the queue's submitters.
#[derive(Default)]
struct Shared {
    stats: Stats,
    /// `true` once closed. Submitters hold the read lock while they send, so
    /// after `close` has taken the write lock no job can enter the channel:
    /// what is in it then is all the thread has to answer.
    closed: RwLock<bool>,
    /// Held while anything evaluates on, or frees graphs of, the queue's
    /// streams: the queue thread for each job, or a NIF in `run_now`.
    eval_lock: Mutex<()>,
    /// Jobs submitted and not finished yet.
    in_flight: AtomicUsize,
    /// Lazy arrays whose graphs the queue thread is to free (see `release`),
    /// and whether a `Release` job is on its way.
    releases: Mutex<Vec<cxx::UniquePtr<Array>>>,
    release_sent: AtomicBool,
}

impl Shared {
    /// Frees the arrays waiting in `releases` (taken under the lock, freed
    /// outside it, with nothing evaluating meanwhile), or leaks them when the
    /// process is exiting (see `lifetime::exiting`).
    fn free_releases(&self) {
        self.release_sent.store(false, Ordering::Release);
        let waiting = std::mem::take(&mut *self.releases.lock());
        if crate::lifetime::exiting() {
            std::mem::forget(waiting);
        } else {
            let _running = self.eval_lock.lock();
            drop(waiting);
        }
    }
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
        let (ready_tx, ready_rx) = bounded::<Result<(StreamRef, bool)>>(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared::default());
        let thread_shared = shared.clone();
        LIVE_THREADS.fetch_add(1, Ordering::SeqCst);
        shared.stats.running.store(true, Ordering::SeqCst);
        let spawned = thread::Builder::new()
            .name(format!("emlx-queue-{id}"))
            .spawn(move || {
                let created = create_streams(device);
                let streams = created.as_ref().ok().copied();
                let _ = ready_tx.send(created);
                if let Some((stream, pooled)) = streams {
                    // A panic that escapes the jobs' own guards ends the
                    // thread; `serve`'s drain guard has answered every job
                    // by then, and the flags below still go down.
                    let _ = catch_unwind(AssertUnwindSafe(|| serve(stream, &rx, &thread_shared)));
                    if pooled && !crate::lifetime::exiting() {
                        ffi::return_inline_streams(&stream);
                    }
                }
                thread_shared.stats.running.store(false, Ordering::SeqCst);
                LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
            });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                shared.stats.running.store(false, Ordering::SeqCst);
                LIVE_THREADS.fetch_sub(1, Ordering::SeqCst);
                return Err(Error::Queue(format!(
                    "cannot start a command queue thread: {e}"
                )));
            }
        };
        let (stream, pooled) = ready_rx
            .recv()
            .map_err(|_| Error::Queue("the command queue thread died while starting".into()))??;
        let queue = Arc::new(Queue {
            id,
            device,
            stream,
            capacity,
            tx,
            shared,
            thread: Mutex::new(Some(handle)),
            owner: OnceLock::new(),
            inline: pooled && inline_cpu::active(),
        });
        crate::lifetime::register(&queue);
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

    /// Sends a job that `run` or `cancel` will answer (and count out of
    /// `in_flight`).
    fn send_job(&self, mut job: Job) -> Result<()> {
        let closed = self.shared.closed.read();
        if *closed {
            job.disarm();
            return Err(self.closed_error());
        }
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let sent = self.tx.try_send(job);
        if sent.is_err() {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        match sent {
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

    /// Runs `work` right here, on the calling thread, when the queue is open,
    /// runs its tasks inline and is idle: no job submitted before is still
    /// waiting or running, and nothing else evaluates on it. `work` answers
    /// `None` when it would rather be a job after all (its graph is too
    /// large). Returns `None` whenever the caller should submit a job. The
    /// run is counted as a completed (or failed) job.
    pub fn run_now<T>(
        &self,
        work: impl FnOnce(&StreamRef) -> Option<Result<T>>,
    ) -> Option<Result<T>> {
        let start = Instant::now();
        let result = self
            .when_idle(|| {
                ffi::bind_thread(&self.stream);
                work(&self.stream)
            })
            .flatten()?;
        let s = &self.shared.stats;
        s.busy_ns
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        s.inline.fetch_add(1, Ordering::Relaxed);
        let counter = if result.is_ok() {
            &s.completed
        } else {
            &s.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(result)
    }

    /// Runs `f` right here when the queue evaluates inline and is open and
    /// idle: no job submitted before is waiting or running, and nothing
    /// evaluates on (or frees graphs of) its streams while `f` runs, so `f`
    /// may look inside graphs built on them. A job submitted meanwhile waits
    /// until `f` is done. `None` (and `f` not run) otherwise. A queue whose
    /// streams keep MLX's own threads (builds with a GPU, or
    /// EMLX_CPU_STREAM_THREADS=1) is never idle in this sense: a finished
    /// job does not mean those threads are done with its graph.
    pub fn when_idle<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        if !self.inline || self.shared.in_flight.load(Ordering::SeqCst) != 0 || self.is_closed() {
            return None;
        }
        let _running = self.shared.eval_lock.try_lock()?;
        Some(f())
    }

    /// Drops an array, on the queue thread when it may still hold a graph
    /// (freeing a large unevaluated graph can take long), inline when it is
    /// `ready` (computed: its graph is gone). Whether it still holds a graph
    /// is EMLX's own readiness flag, never MLX's status, which the queue
    /// thread may be writing right now.
    ///
    /// Arrays for the queue thread wait in a list that one `Release` job
    /// empties: a garbage collection that frees thousands of lazy tensors
    /// wakes the thread once, not once per tensor. Past `MAX_RELEASES`
    /// waiting, or on a closed queue, the array is dropped here.
    pub fn release(&self, array: cxx::UniquePtr<Array>, ready: bool) {
        if array.is_null() || ready {
            return;
        }
        let closed = self.shared.closed.read();
        if *closed {
            return;
        }
        {
            let mut waiting = self.shared.releases.lock();
            if waiting.len() >= MAX_RELEASES {
                return;
            }
            waiting.push(array);
        }
        if !self.shared.release_sent.swap(true, Ordering::AcqRel) {
            // A full channel only delays the drop until the next release
            // finds the job missing.
            if self.tx.try_send(Job::Release).is_err() {
                self.shared.release_sent.store(false, Ordering::Release);
            }
        }
    }

    /// Stops taking jobs; the ones waiting get an error reply, the running
    /// one finishes, then the thread ends. Idempotent and non-blocking.
    pub fn close(&self) {
        {
            let mut closed = self.shared.closed.write();
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

    /// Closed, or the process is exiting (then no op may build MLX arrays
    /// any more either: see `lifetime::exiting`).
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.read() || crate::lifetime::exiting()
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

    /// The queue's job counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Makes this queue the one that serves reads of evaluated tensors of
    /// its device whose own queue has closed.
    pub fn make_default(self: &Arc<Self>) {
        DEFAULTS.write()[self.device.code() as usize] = Some(self.clone());
    }
}

/// Creates the queue's streams on the calling (queue) thread: its main stream
/// and a companion CPU stream for the ops MLX only runs on the CPU (linalg).
/// Both belong to this thread, so this thread can evaluate graphs that mix
/// them. A CPU queue gets a companion too, so that the path a GPU queue
/// takes (a graph over two streams of one thread) runs, and is tested,
/// everywhere.
///
/// A CPU queue takes its two streams from the inline pool while it lasts
/// (the second element of the result says so); they go back when the
/// thread ends.
fn create_streams(device: Device) -> Result<(StreamRef, bool)> {
    if device == Device::Cpu {
        let pooled = ffi::take_inline_streams();
        if pooled.index >= 0 {
            ffi::bind_thread(&pooled);
            return Ok((pooled, true));
        }
    }
    let index = ffi::new_stream(device.code())?;
    let cpu_index = ffi::new_stream(Device::Cpu.code())?;
    Ok((
        StreamRef {
            index,
            device: device.code(),
            cpu_index,
        },
        false,
    ))
}

/// Number of queue threads alive right now (for tests and diagnostics).
pub fn live_threads() -> usize {
    LIVE_THREADS.load(Ordering::SeqCst)
}

fn serve(stream: StreamRef, rx: &Receiver<Job>, q: &Shared) {
    let mut drain = DrainOnExit {
        rx,
        q,
        normal: false,
    };
    while let Ok(job) = next_job(rx) {
        if *q.closed.read() {
            cancel(job, q, CLOSED);
            break;
        }
        match job {
            Job::Run(work, reply) => run(&stream, work, reply, q),
            Job::Release => q.free_releases(),
            Job::Crash(_reply) => crate::faults::inject(),
            Job::Stop => break,
        }
    }
    drain.normal = true;
}

/// How long a queue thread that has just finished a job keeps looking for
/// the next one before it sleeps (`EMLX_QUEUE_SPIN_US`, default 50 us; 0:
/// never). A caller that reads a result and sends the next job at once (a
/// loop of small jobs) then finds the thread awake: waking a sleeping thread
/// costs 5-40 us on the VMs measured, more than a small job. Bounded, so an
/// idle queue costs nothing after it.
fn spin() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        let us = std::env::var("EMLX_QUEUE_SPIN_US")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(50);
        Duration::from_micros(us.min(10_000))
    })
}

/// The next job: briefly polled for (see `spin`), then waited for.
fn next_job(rx: &Receiver<Job>) -> std::result::Result<Job, crossbeam_channel::RecvError> {
    let spin = spin();
    let start = Instant::now();
    loop {
        match rx.try_recv() {
            Ok(job) => return Ok(job),
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                return Err(crossbeam_channel::RecvError)
            }
            Err(crossbeam_channel::TryRecvError::Empty) if start.elapsed() < spin => {
                std::thread::yield_now()
            }
            Err(crossbeam_channel::TryRecvError::Empty) => return rx.recv(),
        }
    }
}

const CLOSED: &str = "the command queue was closed before this job ran \
                      (closed explicitly, or its owner process exited)";
const DIED: &str = "the command queue's thread ended before running this job \
                    (an internal error in EMLX; the queue is closed now)";

/// Answers whatever is still queued when `serve` ends, normally or by a
/// panic: the queue is marked closed first, so that no job can enter
/// afterwards (submitters hold the read lock while they send), and every job
/// in the channel then gets an error reply, never silently lost. Arrays
/// waiting to be freed go too.
struct DrainOnExit<'a> {
    rx: &'a Receiver<Job>,
    q: &'a Shared,
    normal: bool,
}

impl Drop for DrainOnExit<'_> {
    fn drop(&mut self) {
        *self.q.closed.write() = true;
        let why = if self.normal { CLOSED } else { DIED };
        for job in self.rx.try_iter() {
            cancel(job, self.q, why);
        }
        self.q.free_releases();
    }
}

fn run(stream: &StreamRef, work: Work, mut reply: ReplyTo, q: &Shared) {
    let stats = &q.stats;
    if !reply.caller_alive() {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        q.in_flight.fetch_sub(1, Ordering::SeqCst);
        reply.disarm();
        return;
    }
    let start = Instant::now();
    let result = {
        let _running = q.eval_lock.lock();
        catch_unwind(AssertUnwindSafe(|| work(stream)))
            .unwrap_or_else(|_| Err(Error::Internal("a command queue job panicked".into())))
    };
    let run_ns = start.elapsed().as_nanos() as u64;
    stats.busy_ns.fetch_add(run_ns, Ordering::Relaxed);
    let counter = if result.is_ok() {
        &stats.completed
    } else {
        &stats.failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
    // Finished before its reply leaves, so that the caller's next call finds
    // the queue idle.
    q.in_flight.fetch_sub(1, Ordering::SeqCst);
    // `send` catches a panic while encoding and answers with an error.
    reply.send(result, run_ns);
}

fn cancel(job: Job, q: &Shared, why: &str) {
    if let Job::Run(_, reply) | Job::Crash(reply) = job {
        q.in_flight.fetch_sub(1, Ordering::SeqCst);
        q.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        reply.send(Err(Error::Queue(why.into())), 0);
    }
}
