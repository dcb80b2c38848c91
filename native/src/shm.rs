//! POSIX shared-memory segments (`shm_open` + `mmap`), for
//! `EMLX.tensor_to_shm/2` and `EMLX.shm_unlink/1`.
//!
//! Besides `ffi.rs`, this is the crate's only module with `unsafe`: the libc
//! calls below, each with its SAFETY argument. Everything else about a
//! segment (naming, sizing, error mapping) is safe Rust.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The longest name accepted (macOS limits shm names to 31 bytes).
const MAX_NAME: usize = 31;

/// A fresh name: `/emlx_` (the original EMLX's prefix, which tools that
/// clean up stale segments look for) + process id + counter + clock, in
/// hex, cut to every platform's limit (the clock goes first).
fn fresh_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = format!("/emlx_{:x}_{:x}_{:x}", std::process::id(), n, nanos);
    name.truncate(MAX_NAME);
    name
}

/// Checks a segment name: `/` followed by 1 to 30 bytes, no other `/`, no NUL.
pub fn checked_name(name: &str) -> Result<CString> {
    let valid = name.len() > 1
        && name.len() <= MAX_NAME
        && name.starts_with('/')
        && !name[1..].contains('/');
    let c = CString::new(name).ok().filter(|_| valid);
    c.ok_or_else(|| {
        Error::BadArg(format!(
            "invalid shared-memory name {name:?}: expected \"/\" followed by 1 to {} bytes \
             without \"/\" or NUL (as returned by EMLX.tensor_to_shm/2)",
            MAX_NAME - 1
        ))
    })
}

fn os_error(call: &str, name: &str) -> Error {
    Error::Os(format!("{call}({name}): {}", io::Error::last_os_error()))
}

/// Creates a new segment of exactly `bytes.len()` bytes holding a copy of
/// `bytes`, with permission bits `mode`; returns its name. On failure no
/// segment is left behind.
pub fn create_with(bytes: &[u8], mode: u32) -> Result<String> {
    if mode > 0o777 {
        return Err(Error::BadArg(format!(
            "permissions must be Unix mode bits between 0 and 0o777, got 0o{mode:o}"
        )));
    }
    let (name, fd) = open_fresh(mode)?;
    let filled = fill(&fd, bytes, &name);
    if filled.is_err() {
        let _ = unlink(&name);
    }
    filled.map(|()| name)
}

/// Opens a segment under a new name, exclusively (never an existing one).
fn open_fresh(mode: u32) -> Result<(String, OwnedFd)> {
    for _ in 0..8 {
        let name = fresh_name();
        let cname = checked_name(&name)?;
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
        // SAFETY: `cname` is a valid NUL-terminated string that lives across
        // the call; shm_open reads it and returns a new descriptor or -1.
        let fd = unsafe { libc::shm_open(cname.as_ptr(), flags, mode as libc::mode_t) };
        if fd >= 0 {
            // SAFETY: `fd` was just returned by shm_open, is open, and nothing
            // else owns it, so OwnedFd may close it exactly once.
            return Ok((name, unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(os_error("shm_open", &name));
        }
    }
    Err(Error::Os(
        "shm_open: could not find an unused shared-memory name".into(),
    ))
}

/// Sizes the segment and copies `bytes` in through a shared mapping.
fn fill(fd: &OwnedFd, bytes: &[u8], name: &str) -> Result<()> {
    let len = bytes.len();
    let size = libc::off_t::try_from(len)
        .map_err(|_| Error::BadArg(format!("{len} bytes do not fit in a segment")))?;
    // SAFETY: `fd` is an open descriptor owned by the caller for the call.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
        return Err(os_error("ftruncate", name));
    }
    if len == 0 {
        return Ok(());
    }
    // SAFETY: a fresh shared read-write mapping of `len` bytes of a segment
    // that was just sized to `len`; the kernel picks the address.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(os_error("mmap", name));
    }
    // SAFETY: `addr` is a writable mapping of `len` bytes that nothing else in
    // this process refers to, and `bytes` is a readable slice of `len` bytes;
    // the two cannot overlap. The mapping is unmapped right after, once.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr.cast::<u8>(), len);
        libc::munmap(addr, len);
    }
    Ok(())
}

/// Removes a segment's name. A name that does not exist (already unlinked,
/// or opened and unlinked by the receiver) is not an error.
pub fn unlink(name: &str) -> Result<()> {
    let cname = checked_name(name)?;
    // SAFETY: `cname` is a valid NUL-terminated string that lives across the call.
    if unsafe { libc::shm_unlink(cname.as_ptr()) } == 0 {
        return Ok(());
    }
    if io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
        return Ok(());
    }
    Err(os_error("shm_unlink", name))
}
