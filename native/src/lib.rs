//! EMLX's native layer: a Rustler NIF over MLX's C++ API.
//!
//! - `ffi`: the cxx bridge (C++ in `native/bridge/`).
//! - `args`: decoding NIF arguments with actionable messages.
//! - `error`: the one error type and how it becomes an Elixir exception.
//! - `queue`: command queues, one OS thread and MLX stream each.
//! - `reply`: the one reply every queue job gets.
//! - `lifetime`: jobs for closed queues' tensors; stopping queues at exit.
//! - `inline_cpu`: the pool of CPU streams that run MLX's kernels inline.
//! - `interpose`: the exports that let CPU queues evaluate without MLX's
//!   stream threads (Linux; the C++ side is native/bridge/inline_cpu.cc).
//! - `tensor`: the resources Elixir holds.
//! - `keeper`: a BEAM binary kept alive while MLX reads it in place.
//! - `ops`: the generic lazy-op NIF over the C++ op table, and metadata.
//! - `runtime`: eval / item / to_blob jobs, queues, memory statistics.
//! - `now`: their `_now` variants, which evaluate small graphs in the NIF.
//! - `blas`: which BLAS MLX's CPU kernels use.
//! - `program`: compiled programs (`compiler: EMLX`): building and running them.
//! - `sharing`: a tensor's raw address, copies into POSIX shared memory.
//! - `shm`: the libc calls behind shared memory.
//! - `faults`: fault injection for the test suite.
//!
//! `unsafe` appears in `ffi`, `interpose`, `keeper`, `shm` and `lifetime`'s
//! `atexit` registration, each with a `SAFETY:` comment. Logic that needs
//! neither the BEAM nor MLX is in the `emlx-pure` crate (native/pure), which
//! `cargo test` unit-tests.

mod args;
mod blas;
mod error;
mod faults;
mod ffi;
mod inline_cpu;
#[cfg(target_os = "linux")]
mod interpose;
mod keeper;
mod lifetime;
mod now;
mod ops;
mod program;
mod queue;
mod reply;
mod runtime;
mod sharing;
mod shm;
mod tensor;

fn load(env: rustler::Env, _info: rustler::Term) -> bool {
    ops::init_table(env);
    faults::quiet_injected_panics();
    inline_cpu::init();
    true
}

rustler::init!("Elixir.EMLX.NIF", load = load);
