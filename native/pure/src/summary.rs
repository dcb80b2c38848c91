//! Shortening a rendered term for an error message.

/// `text` cut to at most `max` bytes (on a character boundary) with `...`
/// appended when it was longer; unchanged otherwise.
///
/// ```
/// assert_eq!(emlx_pure::summary::shorten("abcdef".into(), 3), "abc...");
/// ```
pub fn shorten(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::shorten;

    #[test]
    fn short_texts_stay() {
        assert_eq!(shorten("abc".into(), 3), "abc");
        assert_eq!(shorten(String::new(), 0), "");
    }

    #[test]
    fn long_texts_are_cut_and_marked() {
        assert_eq!(shorten("abcd".into(), 3), "abc...");
        assert_eq!(shorten("abcd".into(), 0), "...");
    }

    #[test]
    fn cuts_never_split_a_character() {
        // "é" is two bytes: a cut inside it moves back before it.
        assert_eq!(shorten("aé".into(), 2), "a...");
        assert_eq!(shorten("日本".into(), 4), "日...");
    }
}
