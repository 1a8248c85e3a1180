use std::fmt;

/// A fragment of HTML that is safe to insert into a page: either text that
/// was escaped, or markup written by this crate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// An empty fragment with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(String::with_capacity(capacity))
    }

    /// Escapes text for an element's content or an attribute value, and
    /// turns line breaks into `<br>` (the artifacts' `FormatString`).
    pub fn text(text: &str) -> Self {
        let mut out = Self::with_capacity(text.len() + 8);
        out.push_text(text);
        out
    }

    /// Escapes text without turning line breaks into `<br>` (for keys and
    /// attribute values).
    pub fn escaped(text: &str) -> Self {
        let mut out = Self::with_capacity(text.len() + 8);
        out.push_escaped(text);
        out
    }

    /// A link, if `url` is an `http`, `https` or `mailto` address;
    /// otherwise just the escaped `text` (decision D13, docs/decisions.md).
    pub fn link(url: &str, text: &str) -> Self {
        let mut out = Self::with_capacity(url.len() + text.len() + 16);
        out.push_link(url, text);
        out
    }

    /// `<b>text</b>`.
    pub fn bold(inner: &Html) -> Self {
        Self(format!("<b>{}</b>", inner.0))
    }

    pub fn push(&mut self, other: &Html) {
        self.0.push_str(&other.0);
    }

    /// Appends `text` as [`Html::text`] makes it, without a fragment of
    /// its own in between.
    pub fn push_text(&mut self, text: &str) {
        let mut rest = text;
        while let Some(pos) = rest.find('\n') {
            let line = rest[..pos].strip_suffix('\r').unwrap_or(&rest[..pos]);
            escape_into(&mut self.0, line);
            self.0.push_str("<br>");
            rest = &rest[pos + 1..];
        }
        escape_into(&mut self.0, rest);
    }

    /// Appends `text` as [`Html::escaped`] makes it.
    pub fn push_escaped(&mut self, text: &str) {
        escape_into(&mut self.0, text);
    }

    /// Appends what [`Html::link`] makes.
    pub fn push_link(&mut self, url: &str, text: &str) {
        if !is_linkable(url) {
            return self.push_text(text);
        }
        self.0.push_str("<a href=\"");
        escape_into(&mut self.0, url);
        self.0.push_str("\">");
        self.push_text(text);
        self.0.push_str("</a>");
    }

    pub(crate) fn push_markup(&mut self, markup: &str) {
        self.0.push_str(markup);
    }

    /// Room for `additional` more bytes.
    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Drops what was written after `len` bytes (a section that turned
    /// out empty). `len` must be a length this fragment had before.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.0.truncate(len);
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Html({:?})", self.0)
    }
}

impl fmt::Display for Html {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The characters the artifacts' `SortOfEscapeHTML` replaces, so that
/// rendered values look the same; enough for element content and quoted
/// attribute values.
fn escape_into(out: &mut String, text: &str) {
    // Runs of ordinary text are copied whole; every replaced character is
    // ASCII, so the cuts fall on character boundaries.
    let mut copied = 0;
    for (at, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            b'\\' => "&#92;",
            _ => continue,
        };
        out.push_str(&text[copied..at]);
        out.push_str(entity);
        copied = at + 1;
    }
    out.push_str(&text[copied..]);
}

fn is_linkable(url: &str) -> bool {
    url.split_once(':').is_some_and(|(scheme, _)| {
        ["http", "https", "mailto"]
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_tags_are_escaped() {
        assert_eq!(
            Html::text("<script>alert(1)</script>").as_str(),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped_and_newlines_become_br() {
        assert_eq!(
            Html::text("C:\\a \"b\" 'c'\r\nd\ne").as_str(),
            "C:&#92;a &quot;b&quot; &#39;c&#39;<br>d<br>e"
        );
        assert_eq!(Html::escaped("a\nb").as_str(), "a\nb");
    }

    #[test]
    fn only_web_and_mail_links_are_made() {
        assert_eq!(
            Html::link("https://v.example/app?a=1&b=\"2\"", "x<y").as_str(),
            "<a href=\"https://v.example/app?a=1&amp;b=&quot;2&quot;\">x&lt;y</a>"
        );
        assert_eq!(Html::link("javascript:alert(1)", "click").as_str(), "click");
        assert_eq!(Html::link("/relative#/host/C.1", "C.1").as_str(), "C.1");
        assert!(Html::link("MAILTO:a@b.example", "a").as_str().starts_with("<a href"));
    }
}
