use std::fmt;

/// A fragment of HTML that is safe to insert into a page: either text that
/// was escaped, or markup written by this crate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Escapes text for an element's content or an attribute value, and
    /// turns line breaks into `<br>` (the artifacts' `FormatString`).
    pub fn text(text: &str) -> Self {
        let mut out = String::with_capacity(text.len() + 8);
        let mut rest = text;
        while let Some(pos) = rest.find('\n') {
            let line = rest[..pos].strip_suffix('\r').unwrap_or(&rest[..pos]);
            escape_into(&mut out, line);
            out.push_str("<br>");
            rest = &rest[pos + 1..];
        }
        escape_into(&mut out, rest);
        Self(out)
    }

    /// Escapes text without turning line breaks into `<br>` (for keys and
    /// attribute values).
    pub fn escaped(text: &str) -> Self {
        let mut out = String::with_capacity(text.len() + 8);
        escape_into(&mut out, text);
        Self(out)
    }

    /// Markup written by this crate. Never pass event data here.
    pub(crate) fn markup(markup: impl Into<String>) -> Self {
        Self(markup.into())
    }

    /// A link, if `url` is an `http`, `https` or `mailto` address;
    /// otherwise just the escaped `text` (decision D13, docs/decisions.md).
    pub fn link(url: &str, text: &str) -> Self {
        if !is_linkable(url) {
            return Self::text(text);
        }
        Self(format!(
            "<a href=\"{}\">{}</a>",
            Self::escaped(url).0,
            Self::text(text).0
        ))
    }

    /// `<b>text</b>`.
    pub fn bold(inner: &Html) -> Self {
        Self(format!("<b>{}</b>", inner.0))
    }

    pub fn push(&mut self, other: &Html) {
        self.0.push_str(&other.0);
    }

    pub(crate) fn push_markup(&mut self, markup: &str) {
        self.0.push_str(markup);
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
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\\' => out.push_str("&#92;"),
            c => out.push(c),
        }
    }
}

fn is_linkable(url: &str) -> bool {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    matches!(scheme.as_deref(), Some("http" | "https" | "mailto"))
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
