//! The artifacts' `MailTemplate`: the HTML document around a notification
//! (docs/velociraptor.md §3.2).

use super::html::Html;

/// An HTML notification written into one buffer in the order it reads:
/// [`begin`](Self::begin) writes the document's head, the coloured title
/// and the summary, [`section`](Self::section) each titled block, and
/// [`finish`](Self::finish) the footer.
#[derive(Debug)]
pub struct MailDocument {
    out: Html,
}

const STYLE: &str = concat!(
    "body { font-family: Arial, sans-serif; background-color: #f6f6f6; color: #333333; margin: 0; padding: 0; }\n",
    ".email-container { max-width: 750px; margin: 20px auto; background-color: #ffffff; padding: 20px; border-radius: 8px; box-shadow: 0 0 10px rgba(0, 0, 0, 0.1); }\n",
    ".header { color: #ffffff; text-align: center; font-size: 24px; font-weight: normal; padding: 20px; border-radius: 8px 8px 0 0; margin: 0; }\n",
    ".header-ok { background-color: #4CAF50; }\n",
    ".header-warning { background-color: #DF0B0B; }\n",
    ".content { padding: 0 20px; }\n",
    "h2 { font-size: 18px; font-weight: 600; color: #555555; }\n",
    ".table-container { overflow-x: auto; }\n",
    "table { width: 100%; border-collapse: collapse; }\n",
    "th, td { padding: 12px; border: 1px solid #dddddd; text-align: left; vertical-align: top; overflow-wrap: anywhere; word-break: break-word; }\n",
    "th { background-color: #f4f4f4; }\n",
    "td table { border-collapse: separate; border-spacing: 10px 0; }\n",
    "td table td, td table th { border: none; padding: 0; }\n",
    "ul { padding: 0; margin: 0; list-style-position: inside; }\n",
    ".footer { text-align: center; font-size: 12px; color: #777777; padding: 20px; }\n",
);

/// The document's fixed text around the style sheet and the body, bytes.
const FRAME_BYTES: usize = 512;

impl MailDocument {
    /// Starts a document; red header when `warning` (failures, alerts),
    /// green otherwise. `body_bytes` is a guess of the sections' size, so
    /// that the buffer is allocated once in the common case.
    pub fn begin(title: &str, summary: &Html, warning: bool, body_bytes: usize) -> Self {
        let header_class = if warning {
            "header header-warning"
        } else {
            "header header-ok"
        };
        let mut out = Html::with_capacity(FRAME_BYTES + STYLE.len() + 2 * title.len() + summary.len() + body_bytes);
        out.push_markup("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"UTF-8\">\n");
        out.push_markup("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n");
        out.push_markup("<style>\n");
        out.push_markup(STYLE);
        out.push_markup("</style>\n</head>\n<body>\n<div class=\"email-container\">\n");
        out.push_markup("<h1 class=\"");
        out.push_markup(header_class);
        out.push_markup("\">");
        out.push_text(title);
        out.push_markup("</h1>\n<div class=\"content\">\n<p>");
        out.push(summary);
        out.push_markup("</p>\n");
        Self { out }
    }

    /// Adds a block under an `<h2>` title; `write` appends its body. A
    /// block whose body turns out empty is left out, title and all.
    pub fn section(&mut self, title: &str, write: impl FnOnce(&mut Html)) {
        let start = self.out.len();
        self.out.push_markup("<h2>");
        self.out.push_text(title);
        self.out.push_markup("</h2>\n<div class=\"table-container\">");
        let body = self.out.len();
        write(&mut self.out);
        if self.out.len() == body {
            self.out.truncate(start);
        } else {
            self.out.push_markup("</div>\n");
        }
    }

    /// Ends the document with a footer line and, when the host made one,
    /// the "Silence similar" link under it.
    pub fn finish(mut self, footer: &str, silence_link: Option<&str>) -> String {
        self.out.push_markup("</div>\n<div class=\"footer\">");
        self.out.push_text(footer);
        if let Some(url) = silence_link {
            self.out.push_markup("<br>\n");
            self.out.push_link(url, SILENCE_LINK_TEXT);
        }
        self.out.push_markup("</div>\n</div>\n</body>\n</html>\n");
        self.out.into_string()
    }
}

/// The words of the link to velonotify's page that silences notifications
/// like this one (the host decides the duration: `wit/links.wit`).
pub const SILENCE_LINK_TEXT: &str = "Silence similar for 2 h";

/// The plain-text line that ends an e-mail carrying a silence link.
pub fn silence_link_line(url: &str) -> String {
    format!("{SILENCE_LINK_TEXT}: {url}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(warning: bool) -> String {
        let mut doc = MailDocument::begin("Server alert", &Html::text("An alert"), warning, 0);
        doc.section("Alert <details>", |out| out.push_text("x"));
        doc.finish("footer", None)
    }

    #[test]
    fn header_is_red_for_warnings_and_green_otherwise() {
        assert!(document(true).contains("<h1 class=\"header header-warning\">Server alert</h1>"));
        assert!(document(false).contains("<h1 class=\"header header-ok\">"));
        assert!(STYLE.contains("#DF0B0B") && STYLE.contains("#4CAF50"));
    }

    #[test]
    fn the_silence_link_ends_the_footer_escaped() {
        let doc = MailDocument::begin("t", &Html::text("s"), true, 0);
        let html = doc.finish("Sent by velonotify", Some("https://v.example/silence?t=a&b=\"c"));
        assert!(
            html.contains(
                "<div class=\"footer\">Sent by velonotify<br>\n<a href=\"https://v.example/silence?t=a&amp;b=&quot;c\">Silence similar for 2 h</a></div>"
            ),
            "{html}"
        );
    }

    #[test]
    fn section_titles_are_escaped() {
        assert!(document(true).contains("<h2>Alert &lt;details&gt;</h2>"));
    }

    #[test]
    fn a_section_with_an_empty_body_is_left_out() {
        let mut doc = MailDocument::begin("t", &Html::text("s"), false, 0);
        doc.section("Empty", |_| {});
        doc.section("Full", |out| out.push_text("body"));
        let html = doc.finish("f", None);
        assert!(!html.contains("Empty"), "{html}");
        assert!(
            html.contains(
                "<h2>Full</h2>\n<div class=\"table-container\">body</div>\n</div>\n<div class=\"footer\">f</div>"
            ),
            "{html}"
        );
    }
}
