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
mod style;
mod table;
mod template;

pub use self::cell::{Cell, Fields, write_text_lines};
pub use self::elide::{ELLIPSIS, elide_left, elide_middle, elide_right};
pub use self::fill::{FillError, FillTemplate};
pub use self::html::Html;
pub use self::links::Links;
pub use self::table::{FullTable, TableLimits};
pub use self::template::{
    FULL_REPORT_NAME, HTML_BUDGET_BYTES, MailDocument, MailHtml, SILENCE_LINK_TEXT, silence_link_line,
};

/// Text for a mail subject: control characters (CR, LF, NUL and the rest of
/// C0, and DEL) become spaces, so no event data can end the header
/// (decision D14).
pub fn subject_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() || is_bidi_control(c) { ' ' } else { c })
        .collect()
}

/// The characters that reorder text for display (U+202E makes
/// `Sys.\u{202e}exe.txt.csv` read as `Sys.vsc.txt.exe`): never shown from
/// event data in a name or a subject.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A CSV cell a spreadsheet will not run: text starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return gets a leading `'`, as OWASP
/// advises against formula injection.
pub fn csv_cell_safe(text: &str) -> std::borrow::Cow<'_, str> {
    match text.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{text}").into(),
        _ => text.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_lose_reordering_characters() {
        assert_eq!(subject_safe("Sys.\u{202e}exe.txt"), "Sys. exe.txt");
        assert_eq!(subject_safe("a\u{2066}b\u{200f}c"), "a b c");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_quoted() {
        for formula in [
            "=cmd|' /C calc'!A0",
            "+SUM(1,2)",
            "-2+3",
            "@SUM(A1)",
            "=HYPERLINK(\"x\")",
            "\tx",
            "\rx",
        ] {
            assert_eq!(csv_cell_safe(formula), format!("'{formula}"));
        }
        assert_eq!(csv_cell_safe("C:\\Windows"), "C:\\Windows");
        assert_eq!(csv_cell_safe(""), "");
    }

    #[test]
    fn subjects_lose_line_breaks_and_control_characters() {
        assert_eq!(
            subject_safe("x\r\nBcc: attacker@evil.example\0\u{7f}\u{85}"),
            "x  Bcc: attacker@evil.example   "
        );
    }
}
