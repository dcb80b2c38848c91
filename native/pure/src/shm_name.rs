//! Names of POSIX shared-memory segments (`EMLX.tensor_to_shm/2`).

/// The longest name accepted, in bytes (macOS limits shm names to 31).
pub const MAX_NAME: usize = 31;

/// A fresh name: `/emlx_` (the original EMLX's prefix, which tools that
/// clean up stale segments look for) + process id + counter + clock
/// nanoseconds, in hex, cut to [`MAX_NAME`] bytes, the clock first (the
/// counter keeps names of one process apart, the pid those of different
/// processes, the clock those of a restarted process with a recycled pid).
///
/// ```
/// assert_eq!(emlx_pure::shm_name::fresh(255, 1, 16), "/emlx_ff_1_10");
/// ```
pub fn fresh(pid: u32, counter: u64, nanos: u32) -> String {
    let mut name = format!("/emlx_{pid:x}_{counter:x}_{nanos:x}");
    name.truncate(MAX_NAME);
    name
}

/// Whether `name` is a segment name EMLX accepts: `/` followed by 1 to 30
/// bytes, with no other `/` and no NUL.
pub fn is_valid(name: &str) -> bool {
    name.len() > 1
        && name.len() <= MAX_NAME
        && name.starts_with('/')
        && !name[1..].contains('/')
        && !name.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_names_are_valid_even_at_the_largest_values() {
        for (pid, n, ns) in [(0, 0, 0), (1, 2, 3), (u32::MAX, u64::MAX, u32::MAX)] {
            let name = fresh(pid, n, ns);
            assert!(is_valid(&name), "{name}");
            assert!(name.len() <= MAX_NAME);
        }
    }

    #[test]
    fn fresh_names_differ_by_pid_and_counter() {
        assert_ne!(fresh(1, 1, 0), fresh(1, 2, 0));
        assert_ne!(fresh(1, 1, 0), fresh(2, 1, 0));
        assert_eq!(fresh(0x1a2b, 0x3c, 0x4d), "/emlx_1a2b_3c_4d");
    }

    #[test]
    fn only_a_slash_and_1_to_30_bytes_are_valid() {
        assert!(is_valid("/a"));
        assert!(is_valid(&format!("/{}", "x".repeat(30))));
        assert!(!is_valid(&format!("/{}", "x".repeat(31))));
        assert!(!is_valid("/"));
        assert!(!is_valid(""));
        assert!(!is_valid("noslash"));
        assert!(!is_valid("/a/b"));
        assert!(!is_valid("/a\0b"));
    }
}
