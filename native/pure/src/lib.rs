//! The parts of EMLX's native layer that touch neither the BEAM nor MLX.
//!
//! The NIF crate (`native/src`) only links inside the BEAM (the `enif_*`
//! symbols come from the VM when it loads the library), so no Rust test
//! binary can link it. What can be decided without a term or an array lives
//! here instead, where `cargo test` runs it:
//!
//! - `bridge_error`: which error a C++ exception from the bridge is.
//! - `arg_list`: how a list argument of an op is read (integers, numbers,
//!   tensors) and which integers fit.
//! - `shm_name`: shared-memory segment names, fresh and checked.
//! - `summary`: shortening a rendered term for an error message.
//! - `blob`: how many bytes a read of a tensor returns.

pub mod arg_list;
pub mod blob;
pub mod bridge_error;
pub mod shm_name;
pub mod summary;
