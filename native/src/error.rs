//! The crate's one error type, and how it reaches Elixir.
//!
//! NIFs that answer synchronously raise the matching Elixir exception;
//! replies sent by a command queue carry `{:error, {module, message}}` and
//! `EMLX.NIF` raises the same exception on the caller's side.

use rustler::{Atom, Encoder, Env, Term};

mod atoms {
    rustler::atoms! {
        error,
        __struct__,
        __exception__,
        message,
        argument_error = "Elixir.ArgumentError",
        nif_error = "Elixir.EMLX.NIFError",
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
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<cxx::Exception> for Error {
    fn from(e: cxx::Exception) -> Self {
        // bridge.h prefixes every message with its class: "A:" or "E:".
        let what = e.what();
        // MLX's complaint when a stream's graph is evaluated off its thread.
        // The queues are built so that this cannot happen; if it ever does,
        // say what it means rather than pass MLX's riddle on.
        if what.contains("There is no Stream") {
            return Error::Mlx(
                "internal error in EMLX: MLX was asked to evaluate a graph on a thread that \
                 does not own its command queue's stream; please report this with the code \
                 that caused it"
                    .into(),
            );
        }
        match what.split_once(':') {
            Some(("A", msg)) => Error::BadArg(msg.to_string()),
            Some(("E", msg)) => Error::Mlx(msg.to_string()),
            _ => Error::Mlx(what.to_string()),
        }
    }
}

impl Error {
    fn module(&self) -> Atom {
        match self {
            Error::BadArg(_) | Error::Deallocated => atoms::argument_error(),
            Error::Mlx(_) | Error::Queue(_) | Error::Os(_) => atoms::nif_error(),
        }
    }

    /// `{module, message}`, as carried in a queue's error reply.
    pub fn to_pair<'a>(&self, env: Env<'a>) -> Term<'a> {
        (self.module(), self.to_string()).encode(env)
    }

    /// The exception struct itself, for raising from a NIF.
    fn exception<'a>(&self, env: Env<'a>) -> Term<'a> {
        Term::map_from_pairs(
            env,
            &[
                (atoms::__struct__().encode(env), self.module().encode(env)),
                (atoms::__exception__().encode(env), true.encode(env)),
                (atoms::message().encode(env), self.to_string().encode(env)),
            ],
        )
        .unwrap_or_else(|_| atoms::error().encode(env))
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
