//! The crate's one error type, and how it reaches Elixir.
//!
//! NIFs that answer synchronously raise the matching Elixir exception;
//! replies sent by a command queue carry `{:error, {module, message}}` and
//! `EMLX.NIF` raises the same exception on the caller's side.

use emlx_pure::bridge_error::{classify, Class};
use rustler::{Atom, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        error,
        __struct__,
        __exception__,
        message,
        argument,
        argument_error = "Elixir.ArgumentError",
        nif_error = "Elixir.EMLX.NIFError",
        cross_queue_error = "Elixir.EMLX.CrossQueueError",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input a user can fix: wrong types, shapes, axes, dtypes.
    #[error("{0}")]
    BadArg(String),
    /// A failure inside MLX (allocation, evaluation), with MLX's message.
    #[error("{0}")]
    Mlx(String),
    #[error("the tensor was deallocated with EMLX.deallocate/1 and can no longer be used")]
    Deallocated,
    /// The command queue can no longer take work.
    #[error("{0}")]
    Queue(String),
    /// A failed operating-system call (shared memory), with the OS's reason.
    #[error("{0}")]
    Os(String),
    /// Argument `argument` (1-based) of op `op` is an unevaluated tensor of
    /// another command queue. Raised as `EMLX.CrossQueueError`, which
    /// `EMLX.Native.op/3` rescues by type: it evaluates that tensor on its
    /// own queue and builds the op again.
    #[error(
        "{op}: argument {argument}: the tensor is an unevaluated result of another command \
         queue; evaluate it first (EMLX.eval/1) or build it on this queue"
    )]
    CrossQueue { op: String, argument: usize },
    /// A graph node of a stream that the evaluating queue does not own (the
    /// bridge's `emlx::StreamMismatch`). The queues are built so that this
    /// cannot happen.
    #[error("{0}")]
    StreamMismatch(String),
    /// A bug in EMLX caught at run time (a panic inside a job).
    #[error("internal error in EMLX: {0}; please report it with the code that caused it")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<cxx::Exception> for Error {
    fn from(e: cxx::Exception) -> Self {
        // The bridge prefixes every message with a class chosen by the C++
        // exception's type; the class decides, never the text.
        match classify(e.what()) {
            (Class::BadArg, msg) => Error::BadArg(msg.to_string()),
            (Class::StreamMismatch, msg) => Error::StreamMismatch(msg.to_string()),
            (Class::Mlx, msg) => Error::Mlx(msg.to_string()),
        }
    }
}

impl Error {
    fn module(&self) -> Atom {
        match self {
            Error::BadArg(_) | Error::Deallocated => atoms::argument_error(),
            Error::CrossQueue { .. } => atoms::cross_queue_error(),
            Error::Mlx(_)
            | Error::Queue(_)
            | Error::Os(_)
            | Error::StreamMismatch(_)
            | Error::Internal(_) => atoms::nif_error(),
        }
    }

    /// `{module, message}`, as carried in a queue's error reply.
    pub fn to_pair<'a>(&self, env: Env<'a>) -> Term<'a> {
        (self.module(), self.to_string()).encode(env)
    }

    /// The exception struct itself, for raising from a NIF.
    fn exception<'a>(&self, env: Env<'a>) -> Term<'a> {
        let mut pairs = vec![
            (atoms::__struct__().encode(env), self.module().encode(env)),
            (atoms::__exception__().encode(env), true.encode(env)),
            (atoms::message().encode(env), self.to_string().encode(env)),
        ];
        if let Error::CrossQueue { argument, .. } = self {
            pairs.push((atoms::argument().encode(env), argument.encode(env)));
        }
        Term::map_from_pairs(env, &pairs).unwrap_or_else(|_| atoms::error().encode(env))
    }
}

struct Raise(Error);

impl Encoder for Raise {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        self.0.exception(env)
    }
}

impl From<Error> for rustler::Error {
    fn from(e: Error) -> Self {
        rustler::Error::RaiseTerm(Box::new(Raise(e)))
    }
}
