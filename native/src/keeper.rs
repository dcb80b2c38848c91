//! Keeping a BEAM binary alive for as long as MLX reads it in place (the
//! zero-copy `from_blob`, see native/bridge/data_in.cc).
//!
//! A copy of the binary's term lives in a process-independent environment:
//! for a reference-counted binary (or a slice of one) that copy shares the
//! bytes and holds a reference on them, so they stay where they are, and
//! binaries never change once made. MLX drops the keeper when the last
//! array over the bytes goes, on whatever thread that happens.

use rustler::{Binary, OwnedEnv, Term};

pub struct BinaryKeeper {
    _env: OwnedEnv,
    ptr: *const u8,
    len: usize,
}

// SAFETY: `ptr` points into binary bytes that `_env` keeps alive and that
// nothing ever writes; they are only read, from any thread. The
// environment itself may be dropped from any thread (OwnedEnv is Send).
unsafe impl Send for BinaryKeeper {}

impl BinaryKeeper {
    /// Holds `term`'s bytes; `None` if it is not a binary.
    pub fn new(term: Term) -> Option<BinaryKeeper> {
        let env = OwnedEnv::new();
        let saved = env.save(term);
        let (ptr, len) = env.run(|e| {
            let bin: Binary = saved.load(e).decode().ok()?;
            Some((bin.as_slice().as_ptr(), bin.len()))
        })?;
        Some(BinaryKeeper {
            _env: env,
            ptr,
            len,
        })
    }

    /// The bytes, valid for as long as the keeper.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` came from a live binary that `_env` keeps alive
        // and unchanged for the keeper's lifetime, which bounds the slice's.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}
