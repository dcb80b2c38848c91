//! How many bytes a read of a tensor (`to_blob`) returns.

/// The byte length of the first `limit` elements of a buffer of `total`
/// bytes holding items of `itemsize` bytes: all of it without a limit, and
/// never more than the buffer (a limit past the end, even one whose byte
/// count overflows, reads the whole buffer).
///
/// ```
/// assert_eq!(emlx_pure::blob::byte_len(Some(2), 4, 40), 8);
/// ```
pub fn byte_len(limit: Option<u64>, itemsize: usize, total: usize) -> usize {
    match limit {
        Some(n) => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .saturating_mul(itemsize)
            .min(total),
        None => total,
    }
}

#[cfg(test)]
mod tests {
    use super::byte_len;

    #[test]
    fn no_limit_reads_everything() {
        assert_eq!(byte_len(None, 8, 80), 80);
        assert_eq!(byte_len(None, 8, 0), 0);
    }

    #[test]
    fn a_limit_reads_that_many_items() {
        assert_eq!(byte_len(Some(0), 4, 40), 0);
        assert_eq!(byte_len(Some(3), 2, 40), 6);
        assert_eq!(byte_len(Some(10), 4, 40), 40);
    }

    #[test]
    fn limits_past_the_end_read_the_whole_buffer() {
        assert_eq!(byte_len(Some(11), 4, 40), 40);
        assert_eq!(byte_len(Some(u64::MAX), 8, 40), 40);
        assert_eq!(byte_len(Some(u64::MAX / 2), 16, 1 << 20), 1 << 20);
    }
}
