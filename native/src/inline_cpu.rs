//! Whether CPU queues evaluate without MLX's stream threads: the pool of
//! CPU streams whose tasks run inline, created when the NIF loads (see
//! native/bridge/inline_cpu.cc). Queues take their streams from it
//! (`queue::create_streams`).

use std::sync::OnceLock;

use crate::ffi;

/// How many CPU queues at once get streams that run inline.
const INLINE_POOL: usize = 64;

static INLINE_ACTIVE: OnceLock<bool> = OnceLock::new();

/// Creates the inline pool (once, when the NIF loads, before anything can
/// evaluate: see inline_cpu.cc) and says whether inline CPU evaluation
/// works in this process. With `EMLX_CPU_STREAM_THREADS=1` in the
/// environment, CPU queues keep MLX's own stream threads.
pub fn init() -> bool {
    *INLINE_ACTIVE.get_or_init(|| {
        std::env::var_os("EMLX_CPU_STREAM_THREADS").is_none_or(|v| v != "1")
            && !ffi::gpu_available()
            && ffi::inline_cpu_init(INLINE_POOL).unwrap_or(false)
    })
}

/// Whether CPU queues evaluate inline (see `init`).
pub fn active() -> bool {
    INLINE_ACTIVE.get().copied().unwrap_or(false)
}
