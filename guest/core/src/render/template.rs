//! The artifacts' `MailTemplate`: the HTML document around a notification
//! (docs/velociraptor.md §3.2).

use super::html::Html;
use super::style;

/// An HTML notification written into one buffer in the order it reads:
/// [`begin`](Self::begin) writes the document's head, the coloured title
/// with its status in words and the summary, [`section`](Self::section)
/// each titled block, and [`finish`](Self::finish) the footer.
///
/// Written for every mail client (`style`): inline styles, table layout,
/// `lang`. Past [`HTML_BUDGET_BYTES`] the sections that do not fit are
/// left out with a note, and the whole document comes back beside the
/// cut one, for the caller to attach: Gmail clips a message whose HTML
/// passes about 102 KB, hiding its end (and the silence link) behind
/// "View entire message".
#[derive(Debug)]
pub struct MailDocument {
    out: Html,
    /// The whole document, kept once a section did not fit.
    full: Option<Html>,
    budget: usize,
}

/// The HTML of one notification, and the whole of it when sections were
/// cut to keep it under the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailHtml {
    pub html: String,
    /// Attach it (as [`FULL_REPORT_NAME`]): what the cut sections held.
    pub full: Option<String>,
}

/// The most bytes of HTML an e-mail carries in its body.
pub const HTML_BUDGET_BYTES: usize = 90 * 1024;

/// The name of the attachment holding the whole document.
pub const FULL_REPORT_NAME: &str = "full-report.html";

/// What the footer may take, kept free within the budget.
const FOOTER_BYTES: usize = 1024;

/// The document's fixed markup around the body, bytes.
const FRAME_BYTES: usize = 1536;

impl MailDocument {
    /// Starts a document: a red header saying "Needs attention" when
    /// `warning` (failures, alerts), else green and "OK". `body_bytes` is
    /// a guess of the sections' size, so that the buffer is allocated once
    /// in the common case.
    pub fn begin(title: &str, summary: &Html, warning: bool, body_bytes: usize) -> Self {
        let (colour, status) = if warning {
            (style::ATTENTION, "Status: needs attention")
        } else {
            (style::OK, "Status: OK")
        };
        let mut out = Html::with_capacity(FRAME_BYTES + 2 * title.len() + summary.len() + body_bytes);
        out.push_markup("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"UTF-8\">\n");
        out.push_markup("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">\n");
        out.push_markup("<meta name=\"color-scheme\" content=\"light\">\n<title>");
        out.push_text(title);
        out.push_markup("</title>\n</head>\n");
        out.push_markup(&format!("<body style=\"{}\">\n", style::BODY));
        out.push_markup(&format!(
            "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" \
             style=\"{}\"><tr><td align=\"center\" style=\"padding:16px 8px;\">\n",
            style::OUTER
        ));
        out.push_markup(&format!(
            "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" \
             style=\"{}\">\n",
            style::CONTAINER
        ));
        out.push_markup(&format!(
            "<tr><td bgcolor=\"{colour}\" style=\"{}background-color:{colour};\">\n<h1 style=\"{}\">",
            style::HEADER,
            style::TITLE
        ));
        out.push_text(title);
        out.push_markup(&format!(
            "</h1>\n<p style=\"{}\">{status}</p>\n</td></tr>\n",
            style::STATUS
        ));
        out.push_markup(&format!("<tr><td style=\"{}\">\n<p>", style::CONTENT));
        out.push(summary);
        out.push_markup("</p>\n");
        Self {
            out,
            full: None,
            budget: HTML_BUDGET_BYTES,
        }
    }

    /// The same document with another budget (tests, and modules that
    /// know their readers' clients).
    pub fn with_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }

    /// Adds a block under an `<h2>` title; `write` appends its body. A
    /// block whose body turns out empty is left out, title and all; one
    /// that would take the document past its budget is left out of the
    /// body (with every block after it), and kept in the whole document.
    pub fn section(&mut self, title: &str, write: impl FnOnce(&mut Html)) {
        if let Some(full) = &mut self.full {
            write_section(full, title, write);
            return;
        }
        let start = self.out.len();
        write_section(&mut self.out, title, write);
        if self.out.len() + FOOTER_BYTES > self.budget {
            let mut full = self.out.clone();
            full.reserve(full.len());
            self.out.truncate(start);
            self.out.push_markup(&format!("<p style=\"{}\">", style::NOTE));
            self.out.push_text(&format!(
                "\"{title}\" and what follows it are left out to keep this e-mail readable in every mail \
                 client: the full report is attached ({FULL_REPORT_NAME})."
            ));
            self.out.push_markup("</p>\n");
            self.full = Some(full);
        }
    }

    /// Ends the document with a footer line and, when the host made one,
    /// the "Silence similar" link under it.
    pub fn finish(mut self, footer: &str, silence_link: Option<&str>) -> MailHtml {
        write_footer(&mut self.out, footer, silence_link);
        let full = self.full.map(|mut full| {
            write_footer(&mut full, footer, silence_link);
            full.into_string()
        });
        MailHtml {
            html: self.out.into_string(),
            full,
        }
    }
}

fn write_section(out: &mut Html, title: &str, write: impl FnOnce(&mut Html)) {
    let start = out.len();
    out.push_markup(&format!("<h2 style=\"{}\">", style::SECTION_TITLE));
    out.push_text(title);
    out.push_markup("</h2>\n");
    let body = out.len();
    write(out);
    if out.len() == body {
        out.truncate(start);
    } else {
        out.push_markup("\n");
    }
}

fn write_footer(out: &mut Html, footer: &str, silence_link: Option<&str>) {
    out.push_markup(&format!("</td></tr>\n<tr><td style=\"{}\">", style::FOOTER));
    out.push_text(footer);
    if let Some(url) = silence_link {
        out.push_markup("<br>\n");
        out.push_link(url, SILENCE_LINK_TEXT);
    }
    out.push_markup("</td></tr>\n</table>\n</td></tr></table>\n</body>\n</html>\n");
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
        doc.finish("footer", None).html
    }

    /// Colour is never the only cue: the status is said in words, and the
    /// header's colour is an attribute too, for Outlook.
    #[test]
    fn the_header_says_its_status_in_words_and_colour() {
        let warning = document(true);
        assert!(
            warning.contains(&format!("bgcolor=\"{}\"", style::ATTENTION)),
            "{warning}"
        );
        assert!(warning.contains(">Status: needs attention</p>"), "{warning}");
        let ok = document(false);
        assert!(ok.contains(&format!("bgcolor=\"{}\"", style::OK)) && ok.contains(">Status: OK</p>"));
    }

    #[test]
    fn the_document_has_a_language_presentation_layout_and_no_style_sheet() {
        let html = document(true);
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"), "{html}");
        assert_eq!(html.matches("<table role=\"presentation\"").count(), 2, "{html}");
        assert!(!html.contains("<style") && !html.contains("class="), "{html}");
        assert!(html.contains("<title>Server alert</title>"));
    }

    #[test]
    fn the_silence_link_ends_the_footer_escaped() {
        let doc = MailDocument::begin("t", &Html::text("s"), true, 0);
        let html = doc
            .finish("Sent by velonotify", Some("https://v.example/silence?t=a&b=\"c"))
            .html;
        assert!(
            html.contains(
                "Sent by velonotify<br>\n<a href=\"https://v.example/silence?t=a&amp;b=&quot;c\">Silence similar for 2 h</a></td>"
            ),
            "{html}"
        );
    }

    #[test]
    fn section_titles_are_escaped() {
        assert!(document(true).contains(">Alert &lt;details&gt;</h2>"));
    }

    #[test]
    fn a_section_with_an_empty_body_is_left_out() {
        let mut doc = MailDocument::begin("t", &Html::text("s"), false, 0);
        doc.section("Empty", |_| {});
        doc.section("Full", |out| out.push_text("body"));
        let html = doc.finish("f", None).html;
        assert!(!html.contains("Empty"), "{html}");
        assert!(html.contains(">Full</h2>\nbody\n</td></tr>"), "{html}");
    }

    /// Past the budget, the section that does not fit and those after it
    /// are left out with a note; the whole document comes back to be
    /// attached, footer and silence link included in both.
    #[test]
    fn sections_past_the_budget_are_left_out_and_the_whole_is_kept() {
        let mut doc = MailDocument::begin("t", &Html::text("s"), false, 0).with_budget(6 * 1024);
        doc.section("Small", |out| out.push_text("small body"));
        doc.section("Big", |out| out.push_text(&"x".repeat(8 * 1024)));
        doc.section("After", |out| out.push_text("after body"));
        let MailHtml { html, full } = doc.finish("f", Some("https://v.example/s"));
        assert!(html.len() <= 6 * 1024, "{}", html.len());
        assert!(html.contains("small body") && !html.contains("xxxx") && !html.contains("after body"));
        assert!(
            html.contains("&quot;Big&quot; and what follows it are left out"),
            "{html}"
        );
        assert!(html.contains("Silence similar for 2 h"));
        let full = full.expect("the whole document");
        assert!(full.contains(&"x".repeat(8 * 1024)) && full.contains("after body") && full.contains("small body"));
        assert!(full.contains("Silence similar for 2 h"));
        let small = MailDocument::begin("t", &Html::text("s"), false, 0).finish("f", None);
        assert_eq!(small.full, None, "nothing cut, nothing attached");
    }
}
