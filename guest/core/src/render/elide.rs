//! The artifacts' `ElideRight`, `ElideLeft` and `ElideMiddle`
//! (docs/velociraptor.md §3).
//!
//! Lengths are in bytes, as in VQL, but cuts never split a UTF-8 sequence:
//! VQL's byte slicing can leave half a character, which shows as a
//! replacement character in mail clients.

use std::borrow::Cow;

/// The elision mark.
pub const ELLIPSIS: &str = "…";

/// `text` if at most `max` bytes, else its first `max` bytes and `…`.
pub fn elide_right(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    format!("{}{ELLIPSIS}", &text[..floor_boundary(text, max)]).into()
}

/// `text` if at most `max` bytes, else `…` and its last `max` bytes.
pub fn elide_left(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    format!("{ELLIPSIS}{}", &text[ceil_boundary(text, text.len() - max)..]).into()
}

/// `text` if at most `max` bytes, else its first and last `max / 2` bytes
/// around `…`.
pub fn elide_middle(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let half = max / 2;
    format!(
        "{}{ELLIPSIS}{}",
        &text[..floor_boundary(text, half)],
        &text[ceil_boundary(text, text.len() - half)..]
    )
    .into()
}

fn floor_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

fn ceil_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_keeps_the_first_bytes() {
        assert_eq!(
            elide_right("Server event query error in TEST.ErrorMessage", 30),
            "Server event query error in TE…"
        );
        assert_eq!(elide_right("short", 30), "short");
    }

    #[test]
    fn left_and_middle_keep_the_ends() {
        assert_eq!(elide_left("/home/user/secret/id_rsa", 10), "…ret/id_rsa");
        assert_eq!(elide_middle("abcdefghij", 4), "ab…ij");
    }

    #[test]
    fn cuts_never_split_a_character() {
        // "é" is two bytes: a cut at byte 3 of "aéé" falls inside the second.
        assert_eq!(elide_right("aéé", 4), "aé…");
        assert_eq!(elide_right("ééé", 3), "é…");
        assert_eq!(elide_left("ééé", 3), "…é");
        assert_eq!(elide_middle("日本語のテキスト", 7), "日…ト");
    }
}
