//! The cxx bridge to MLX (C++ side in `native/bridge/`).
//!
//! With `shm.rs` (libc calls), one of the two modules with `unsafe`: the
//! bridge declaration and the `Send`/`Sync` promises for the opaque MLX
//! types, each with its SAFETY argument. Bridged functions that can throw
//! return `Result`: the C++ `trycatch` override (bridge.h) turns any
//! exception into an `Err` whose message starts with a class letter that
//! [`crate::error::Error`] decodes.

// Programs take many slot lists per step.
#[allow(clippy::too_many_arguments)]
#[cxx::bridge(namespace = "emlx")]
mod bridge {
    /// A command queue's MLX streams by value: `index` on `device` (0 for
    /// the CPU, 1 for the GPU), and `cpu_index`, a CPU stream created by the
    /// same thread for ops MLX runs only on the CPU (linalg).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct StreamRef {
        index: i32,
        device: i32,
        cpu_index: i32,
    }

    /// A scalar read back from a 0-d array. `kind`: 0 signed integer,
    /// 1 unsigned integer, 2 float, 3 complex, 4 bool.
    #[derive(Clone, Copy, Debug)]
    struct Scalar {
        kind: u8,
        ival: i64,
        uval: u64,
        real: f64,
        imag: f64,
    }

    /// MLX's description of a device, and the memory its arrays can use
    /// (the machine's for the CPU, the GPU's own on CUDA), in bytes.
    #[derive(Clone, Debug)]
    struct DeviceInfo {
        name: String,
        architecture: String,
        memory: usize,
    }

    /// The BLAS MLX's CPU kernels run on (EMLX.blas_info/0): what it is, the
    /// library file, its build configuration and the kernel set (core) it
    /// picked for this CPU, its thread count, and the file libmlx's
    /// `cblas_sgemm` resolves to.
    struct BlasInfo {
        kind: String,
        library: String,
        config: String,
        core: String,
        threads: i32,
        sgemm_from: String,
    }

    extern "Rust" {
        type BinaryKeeper;
        fn bytes(self: &BinaryKeeper) -> &[u8];
    }

    // SAFETY: every declaration below matches its C++ definition in
    // native/bridge/bridge.h (cxx checks the signatures when the bridge is
    // compiled); references and slices passed in are only read for the
    // call, and each returned pointer is an owning `UniquePtr` or a slice
    // borrowed from an argument. Which thread may call what is the queue
    // policy described at the `Send`/`Sync` impls below.
    unsafe extern "C++" {
        include!("bridge.h");

        type Array;
        type ArrayList;
        type Call;

        fn gpu_available() -> bool;
        fn new_stream(device: i32) -> Result<i32>;
        fn synchronize(s: &StreamRef) -> Result<()>;
        fn device_info(device: i32) -> Result<DeviceInfo>;
        fn mlx_version() -> String;

        fn new_call() -> UniquePtr<Call>;
        fn push_array(c: Pin<&mut Call>, a: &Array);
        fn push_computed_array(c: Pin<&mut Call>, a: &Array);
        fn push_arrays(c: Pin<&mut Call>, list: &ArrayList);
        fn push_int(c: Pin<&mut Call>, v: i64);
        fn push_uint(c: Pin<&mut Call>, v: u64);
        fn push_float(c: Pin<&mut Call>, v: f64);
        fn push_bool(c: Pin<&mut Call>, v: bool);
        fn push_none(c: Pin<&mut Call>);
        fn push_str(c: Pin<&mut Call>, s: &str);
        fn push_ints(c: Pin<&mut Call>, v: &[i64]);
        fn push_floats(c: Pin<&mut Call>, v: &[f64]);
        fn new_list() -> UniquePtr<ArrayList>;
        fn list_push(list: Pin<&mut ArrayList>, a: &Array);
        fn list_len(list: &ArrayList) -> usize;
        fn list_get(list: &ArrayList, i: usize) -> UniquePtr<Array>;
        fn list_alias(list: &ArrayList, i: usize) -> i32;

        fn op_names() -> Vec<String>;
        fn run_op(op: u32, call: &Call, s: &StreamRef) -> Result<UniquePtr<ArrayList>>;

        fn clone_array(a: &Array) -> UniquePtr<Array>;
        fn from_bytes(bytes: &[u8], shape: &[i64], dtype: &str) -> Result<UniquePtr<Array>>;
        fn from_kept_bytes(
            keeper: Box<BinaryKeeper>,
            shape: &[i64],
            dtype: &str,
        ) -> Result<UniquePtr<Array>>;
        fn check_blob_shape(nbytes: usize, shape: &[i64], dtype: &str) -> Result<()>;
        fn zero_copy_available() -> bool;
        fn shape_of(a: &Array) -> Vec<i64>;
        fn strides_of(a: &Array, ready: bool) -> Vec<i64>;
        fn dtype_of(a: &Array) -> String;
        fn itemsize_of(dtype: &str) -> Result<usize>;
        fn nbytes_of(a: &Array) -> usize;
        /// MLX's status: only on the thread that evaluates `a`, or for an
        /// array no other thread can reach yet (see bridge.h).
        fn is_unscheduled(a: &Array) -> bool;
        fn born_ready(a: &Array) -> bool;

        fn eval_list(list: &ArrayList, s: &StreamRef) -> Result<()>;
        fn readable(a: &Array, s: &StreamRef) -> Result<UniquePtr<Array>>;
        fn data_bytes(a: &Array) -> Result<&[u8]>;
        fn is_row_contiguous(a: &Array) -> bool;
        fn scalar_of(a: &Array) -> Result<Scalar>;

        fn inline_cpu_init(pairs: usize) -> Result<bool>;
        fn take_inline_streams() -> StreamRef;
        fn return_inline_streams(s: &StreamRef);
        fn is_small_graph(
            list: &ArrayList,
            s: &StreamRef,
            max_nodes: usize,
            max_bytes: usize,
        ) -> bool;
        fn eval_small_graph(
            list: &ArrayList,
            s: &StreamRef,
            max_nodes: usize,
            max_bytes: usize,
        ) -> Result<bool>;
        fn bind_thread(s: &StreamRef);

        fn blas_info() -> BlasInfo;
        include!("program.h");
        type Program;
        fn program_new() -> UniquePtr<Program>;
        fn program_block(p: Pin<&mut Program>) -> u32;
        fn program_op(
            p: Pin<&mut Program>,
            block: u32,
            op: u32,
            call: &Call,
            arrays: &[i32],
            lists: &[i32],
            outs: &[i32],
        ) -> Result<()>;
        fn program_while(
            p: Pin<&mut Program>,
            block: u32,
            cond_block: u32,
            cond: i32,
            body_block: u32,
            init: &[i32],
            params: &[i32],
            body_out: &[i32],
            results: &[i32],
            count: i64,
        ) -> Result<()>;
        fn program_cond(
            p: Pin<&mut Program>,
            block: u32,
            clause_blocks: &[u32],
            preds: &[i32],
            clause_results: &[i32],
            last_block: u32,
            last_results: &[i32],
            results: &[i32],
        ) -> Result<()>;
        fn program_hook(p: Pin<&mut Program>, block: u32, id: u32, slots: &[i32]) -> Result<()>;
        fn program_check(p: Pin<&mut Program>, block: u32, flag: i32, message: &str) -> Result<()>;
        fn program_callback(
            p: Pin<&mut Program>,
            block: u32,
            id: u32,
            ins: &[i32],
            outs: &[i32],
        ) -> Result<()>;
        fn program_constant(p: Pin<&mut Program>, slot: i32, a: &Array);
        fn program_finish(
            p: Pin<&mut Program>,
            n_slots: u32,
            inputs: &[i32],
            outputs: &[i32],
            fuse: bool,
        ) -> Result<()>;
        fn program_run(
            p: &Program,
            inputs: &ArrayList,
            s: &StreamRef,
            host: &mut ProgramHost,
        ) -> Result<UniquePtr<ArrayList>>;
        type ProgramRun;
        fn program_straight_ops(p: &Program) -> usize;
        fn program_build(
            p: &Program,
            inputs: &ArrayList,
            s: &StreamRef,
        ) -> Result<UniquePtr<ProgramRun>>;
        fn program_pending(run: &ProgramRun) -> UniquePtr<ArrayList>;
        fn program_complete(
            run: Pin<&mut ProgramRun>,
            host: &mut ProgramHost,
        ) -> Result<UniquePtr<ArrayList>>;

        fn active_memory() -> usize;
        fn peak_memory() -> usize;
        fn cache_memory() -> usize;
        fn reset_peak_memory();
        fn set_cache_limit(limit: usize) -> usize;
        fn set_memory_limit(limit: usize) -> usize;
        fn clear_cache();
    }

    extern "Rust" {
        type ProgramHost;
        fn host_hook(host: &mut ProgramHost, id: u32, arrays: &ArrayList);
        fn host_callback(
            host: &mut ProgramHost,
            id: u32,
            arrays: &ArrayList,
        ) -> Result<UniquePtr<ArrayList>>;
    }
}

pub use crate::keeper::BinaryKeeper;
use crate::program::{host_callback, host_hook, ProgramHost};
pub use bridge::*;

// SAFETY: an `mlx::core::array` is a handle to a reference-counted graph
// node (its descriptor is a `std::shared_ptr`, whose count is atomic), so
// moving a handle to another thread is sound. What is *not* immutable in a
// node is what evaluation changes: its status, data, event, and (when the
// graph is detached after evaluation) its primitive and inputs. The crate
// upholds the policy that keeps sharing sound:
// - only the thread of the queue that owns a stream evaluates arrays built
//   on it (queue.rs), and only that thread reads their status
//   (`is_unscheduled`), their primitive or their inputs;
// - BEAM scheduler threads read only what never changes (shape, dtype,
//   size), copy handles into new graph nodes, and look inside nodes only of
//   an op's new outputs, which no other thread can reach yet
//   (`born_ready`, the op registry's checks); an output that is one of the
//   op's inputs is recognised and not looked into (`list_alias`);
// - data, strides and flags are read off the queue thread only once EMLX's
//   own readiness flag (tensor.rs) says the array is computed, which the
//   queue sets with `Release` after MLX's status is final (`eval_list` and
//   `readable` wait on their arrays), so nothing writes them any more.
unsafe impl Send for Array {}
// SAFETY: shared references are used only as the policy above allows: the
// immutable accessors, copying the handle, and (on the owning queue's
// thread, or once ready) evaluation and data reads.
unsafe impl Sync for Array {}
// SAFETY: an ArrayList is a std::vector of the handles above, owned by one
// Rust value at a time; it carries the same guarantees as `Array`.
unsafe impl Send for ArrayList {}
// SAFETY: see `Array`; a shared ArrayList is only read.
unsafe impl Sync for ArrayList {}
// SAFETY: a Program is built by one Rust value (program.rs) and is read-only
// once finished: running it keeps every per-run value (slots, hooks) in the
// run itself. Its only shared mutable state, the list of compile caches that
// hold its traces and each segment's compiled function, is guarded inside
// (a mutex, std::call_once, an atomic flag). Dropping it on any thread is
// fine: MLX allows erasing compile-cache entries from another thread.
unsafe impl Send for Program {}
// SAFETY: see `Send` above; shared references only run the program.
unsafe impl Sync for Program {}
// SAFETY: a ProgramRun is the slots and hooked values of one run (handles as
// in `Array`) and a reference to its Program (Sync, above), owned by one Rust
// value at a time; moving it to the queue thread that completes it is
// moving those handles. program.rs keeps its Program alive longer.
unsafe impl Send for ProgramRun {}
