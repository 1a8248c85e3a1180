//! Turning notification content into HTML and plain text, the way the
//! artifacts' helper library lays it out (docs/velociraptor.md §3), with
//! every value from an event escaped (decision D13, docs/decisions.md).
//!
//! Content is built once as [`Fields`] of [`Cell`]s and rendered twice: as
//! HTML for the `text/html` part and as text for the `text/plain` part.
//! HTML only exists as [`Html`], which can be made by escaping text or from
//! this crate's own markup, so event data cannot inject markup by mistake.

mod cell;
mod elide;
mod fill;
mod html;
mod links;
mod table;
mod template;

pub use self::cell::{Cell, Fields};
pub use self::elide::{ELLIPSIS, elide_left, elide_middle, elide_right};
pub use self::fill::{FillError, FillTemplate};
pub use self::html::Html;
pub use self::links::Links;
pub use self::table::{FullTable, TableLimits};
pub use self::template::{MailTemplate, Section};

/// Text for a mail subject: control characters (CR, LF, NUL and the rest of
/// C0, and DEL) become spaces, so no event data can end the header
/// (decision D14).
pub fn subject_safe(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_lose_line_breaks_and_control_characters() {
        assert_eq!(
            subject_safe("x\r\nBcc: attacker@evil.example\0\u{7f}\u{85}"),
            "x  Bcc: attacker@evil.example   "
        );
    }
}
