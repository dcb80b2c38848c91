//! A command queue's lifetime beyond its own thread: where jobs for the
//! tensors of a closed queue run, and stopping every queue thread when the
//! process exits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::ffi::{self, Array};
use crate::queue::{Queue, DEFAULTS};

impl Queue {
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
        while self.stats().running.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
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

/// Set when the process starts exiting (`on_exit`): from then on nothing
/// frees MLX arrays (destructors leak them), since libmlx's own static
/// objects are about to be destroyed while BEAM threads still run.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Whether the process is exiting (see `EXITING`).
pub fn exiting() -> bool {
    EXITING.load(Ordering::Acquire)
}

/// Every queue started, weakly (for `shutdown_all`).
static ALL: Mutex<Vec<Weak<Queue>>> = Mutex::new(Vec::new());

/// Records a new queue; the first one also arranges for `on_exit`.
pub fn register(queue: &Arc<Queue>) {
    let mut all = ALL.lock();
    all.retain(|q| q.strong_count() > 0);
    all.push(Arc::downgrade(queue));
    AT_EXIT.call_once(|| {
        // MLX's singletons (scheduler, streams, allocator) exist by now, so
        // their destructors were registered before this handler, which
        // therefore runs first.
        let _ = ffi::active_memory();
        // SAFETY: `atexit` only records the function; `on_exit` is a plain
        // `extern "C"` function that lives as long as the process (the NIF
        // library is never unloaded) and never unwinds.
        unsafe { libc::atexit(on_exit) };
    });
}

static AT_EXIT: std::sync::Once = std::sync::Once::new();

/// At process exit (the VM halting), before libmlx's static objects are
/// destroyed, the queue threads are stopped, so that none of them touches
/// MLX while it is torn down (a release job freeing arrays then corrupted
/// the heap).
extern "C" fn on_exit() {
    EXITING.store(true, Ordering::Release);
    let _ = std::panic::catch_unwind(|| shutdown_all(Duration::from_secs(2)));
}

/// Closes every queue and waits, up to `timeout`, for their threads to end.
/// Run when the process exits (see lib.rs): the queue threads must not
/// still be evaluating or freeing MLX arrays while libmlx's static objects
/// (its allocator, its streams) are destroyed.
pub fn shutdown_all(timeout: Duration) {
    let queues: Vec<Arc<Queue>> = ALL.lock().iter().filter_map(Weak::upgrade).collect();
    for q in &queues {
        q.close();
    }
    let deadline = Instant::now() + timeout;
    while queues
        .iter()
        .any(|q| q.stats().running.load(Ordering::SeqCst))
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(1));
    }
}
