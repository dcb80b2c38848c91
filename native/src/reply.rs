//! Replies to command-queue jobs: what a job hands back, and where it goes.
//!
//! A reply is always sent, exactly once: by `send` after the job ran, or,
//! for a job dropped without an answer (its queue thread ended, unwound by
//! a panic, or skipped it), by `Drop` with an error. The caller's `receive`
//! therefore always ends while the VM lives.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rustler::env::SavedTerm;
use rustler::{Encoder, Env, LocalPid, OwnedEnv, Term};

use crate::error::{Error, Result};

mod atoms {
    rustler::atoms! { ok, error }
}

/// What a job hands back to the caller on success.
pub enum Reply {
    Ok,
    /// A value encoded on the queue thread, inside the reply's environment.
    Term(Box<dyn for<'a> FnOnce(Env<'a>) -> Term<'a> + Send>),
}

/// Where a reply goes: `{tag, result, run_ns}` to `pid`, where `run_ns` is
/// how long the job ran on the queue thread (0 if it never ran). A job
/// refused by `submit` is `disarm`ed: its caller gets the error from the
/// NIF call itself, so no reply is sent.
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
    pub(crate) fn caller_alive(&self) -> bool {
        self.env.run(|env| env.is_process_alive(self.pid))
    }

    /// Marks the job as needing no reply (its caller is gone, or was told
    /// synchronously that the job was refused).
    pub(crate) fn disarm(&mut self) {
        self.answered = true;
    }

    pub(crate) fn send(mut self, result: Result<Reply>, run_ns: u64) {
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
