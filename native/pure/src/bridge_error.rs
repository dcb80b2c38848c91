//! Which error a C++ exception from the bridge is.
//!
//! The bridge's `trycatch` (native/bridge/bridge.h) turns every exception
//! into a message that starts with a one-letter class chosen by the
//! exception's C++ type: `A:` for bad arguments (`std::invalid_argument`,
//! `out_of_range`, `length_error`, `overflow_error`), `S:` for
//! `emlx::StreamMismatch`, `E:` for everything else. The class decides the
//! error variant; the rest is the message shown to the user.

/// The class of a bridge exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Bad input a user can fix (raised as `ArgumentError`).
    BadArg,
    /// A graph node of a stream the evaluating queue does not own.
    StreamMismatch,
    /// A failure inside MLX (raised as `EMLX.NIFError`).
    Mlx,
}

/// Splits a bridge message into its class and the text after the prefix.
/// A message without a known prefix (which the bridge never makes) is an
/// MLX failure, shown whole.
///
/// ```
/// use emlx_pure::bridge_error::{classify, Class};
/// assert_eq!(classify("A:sum: bad axis"), (Class::BadArg, "sum: bad axis"));
/// ```
pub fn classify(what: &str) -> (Class, &str) {
    match what.split_once(':') {
        Some(("A", msg)) => (Class::BadArg, msg),
        Some(("S", msg)) => (Class::StreamMismatch, msg),
        Some(("E", msg)) => (Class::Mlx, msg),
        _ => (Class::Mlx, what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_prefix_is_its_class() {
        assert_eq!(classify("A:x"), (Class::BadArg, "x"));
        assert_eq!(classify("S:x"), (Class::StreamMismatch, "x"));
        assert_eq!(classify("E:x"), (Class::Mlx, "x"));
    }

    #[test]
    fn only_the_first_colon_separates() {
        assert_eq!(
            classify("A:reshape: argument 2: bad"),
            (Class::BadArg, "reshape: argument 2: bad")
        );
    }

    #[test]
    fn the_message_text_never_decides() {
        // MLX's own riddle for a stream used off its thread, arriving as a
        // plain runtime error: an MLX failure, not a stream mismatch.
        let what = "E:There is no Stream(cpu, 3) in current thread.";
        assert_eq!(classify(what).0, Class::Mlx);
        assert_eq!(classify("E:A:looks like a prefix").0, Class::Mlx);
    }

    #[test]
    fn unknown_or_missing_prefixes_are_mlx_failures_shown_whole() {
        assert_eq!(classify("no prefix"), (Class::Mlx, "no prefix"));
        assert_eq!(classify("X:other"), (Class::Mlx, "X:other"));
        assert_eq!(classify(""), (Class::Mlx, ""));
        assert_eq!(classify("a:lowercase"), (Class::Mlx, "a:lowercase"));
    }

    #[test]
    fn empty_messages_keep_their_class() {
        assert_eq!(classify("A:"), (Class::BadArg, ""));
    }
}
