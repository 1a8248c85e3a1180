use super::html::Html;

/// One value in a notification's key/value tables, before it is rendered
/// as HTML or text.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text from anywhere (events, lookups): escaped in HTML, line breaks
    /// become `<br>`.
    Text(String),
    /// A link into the Velociraptor GUI; just the text when the GUI's
    /// public URL is unknown.
    Link { text: String, url: Option<String> },
    /// The artifacts' `BulletList`: `<ul>` in HTML (a single item is shown
    /// alone), `  - item` lines in text.
    List(Vec<Cell>),
    /// A nested key/value table (`<table>` in HTML, `  - key: value` lines
    /// in text), as used for collection arguments.
    Pairs(Vec<(String, Cell)>),
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Self {
        Cell::Text(text.into())
    }

    /// VQL truthiness of the value the cell shows: rows with falsy values
    /// are dropped unless `KeepEmptyRows` is set.
    pub fn is_empty(&self) -> bool {
        match self {
            Cell::Text(t) => t.is_empty(),
            Cell::Link { text, .. } => text.is_empty(),
            Cell::List(items) => items.is_empty(),
            Cell::Pairs(pairs) => pairs.is_empty(),
        }
    }

    pub fn to_html(&self) -> Html {
        let mut out = Html::default();
        self.write_html(&mut out);
        out
    }

    /// Appends the cell's HTML to `out`.
    pub fn write_html(&self, out: &mut Html) {
        match self {
            Cell::Text(t) => out.push_text(t),
            Cell::Link { text, url: Some(url) } => out.push_link(url, text),
            Cell::Link { text, url: None } => out.push_text(text),
            Cell::List(items) => match items.as_slice() {
                [] => {}
                [single] => single.write_html(out),
                many => {
                    out.push_markup(&format!("<ul style=\"{}\">", super::style::LIST));
                    for item in many {
                        out.push_markup("<li>");
                        item.write_html(out);
                        out.push_markup("</li>");
                    }
                    out.push_markup("</ul>");
                }
            },
            Cell::Pairs(pairs) => write_key_value_table(pairs.iter().map(|(k, v)| (k.as_str(), v)), out),
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }

    /// Appends the cell's plain text to `out`.
    pub fn write_text(&self, out: &mut String) {
        match self {
            Cell::Text(t) => out.push_str(t),
            Cell::Link { text, url: Some(url) } => {
                out.push_str(text);
                out.push_str(" (");
                out.push_str(url);
                out.push(')');
            }
            Cell::Link { text, url: None } => out.push_str(text),
            Cell::List(items) => {
                for item in items {
                    out.push_str("\n  - ");
                    item.write_text(out);
                }
            }
            Cell::Pairs(pairs) => {
                for (k, v) in pairs {
                    out.push_str("\n  - ");
                    out.push_str(k);
                    out.push_str(": ");
                    v.write_text(out);
                }
            }
        }
    }
}

/// An ordered key/value table: the client, flow and alert dictionaries of
/// the e-mails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fields {
    keep_empty: bool,
    rows: Vec<(String, Cell)>,
}

impl Fields {
    /// An empty table. With `keep_empty` (the artifacts' `KeepEmptyRows`)
    /// rows with empty values are kept, otherwise they are dropped.
    pub fn new(keep_empty: bool) -> Self {
        Self {
            keep_empty,
            rows: Vec::new(),
        }
    }

    /// Adds a row, unless its value is empty and empty rows are dropped.
    pub fn push(&mut self, key: impl Into<String>, value: Cell) {
        if self.keep_empty || !value.is_empty() {
            self.rows.push((key.into(), value));
        }
    }

    /// Adds a row only when `condition` holds (the artifacts' optional rows
    /// such as `Urgent` or `New client`).
    pub fn push_if(&mut self, condition: bool, key: impl Into<String>, value: Cell) {
        if condition {
            self.push(key, value);
        }
    }

    /// Removes the row named `key`, if any.
    pub fn remove(&mut self, key: &str) {
        self.rows.retain(|(k, _)| k != key);
    }

    /// Sets `key` to `value`: in place when present, else at the end.
    pub fn set(&mut self, key: &str, value: Cell) {
        match self.rows.iter_mut().find(|(k, _)| k == key) {
            Some(row) => row.1 = value,
            None => self.push(key, value),
        }
    }

    /// Appends every row of `other`; a key already present takes the new
    /// value in its old position (VQL's `dict + dict`).
    pub fn extend(&mut self, other: Fields) {
        for (k, v) in other.rows {
            self.set(&k, v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[(String, Cell)] {
        &self.rows
    }

    /// The rows as they read after `over`'s rows were [`set`](Self::set)
    /// on them (`extend`), borrowed: what a merged table shows, without
    /// copying either.
    pub fn overlaid<'a>(&'a self, over: &'a Fields) -> Vec<(&'a str, &'a Cell)> {
        let mut rows: Vec<(&str, &Cell)> = self.rows.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for (key, value) in &over.rows {
            match rows.iter_mut().find(|(k, _)| k == key) {
                Some(row) => row.1 = value,
                None if self.keep_empty || !value.is_empty() => rows.push((key, value)),
                None => {}
            }
        }
        rows
    }

    /// `<table>` of `<tr><td>key</td><td>value</td></tr>` rows; None when
    /// empty (the section is then left out).
    pub fn to_html(&self) -> Option<Html> {
        (!self.rows.is_empty()).then(|| {
            let mut out = Html::default();
            self.write_html(&mut out);
            out
        })
    }

    /// Appends a two-column table of the rows; nothing when there are none.
    pub fn write_html(&self, out: &mut Html) {
        if !self.rows.is_empty() {
            write_key_value_table(self.rows.iter().map(|(k, v)| (k.as_str(), v)), out);
        }
    }

    /// `key: value` lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }

    /// Appends `key: value` lines.
    pub fn write_text(&self, out: &mut String) {
        write_text_lines(self.rows.iter().map(|(k, v)| (k.as_str(), v)), out);
    }
}

/// `key: value` lines, as [`Fields::write_text`] writes them, of any rows.
pub fn write_text_lines<'a>(rows: impl IntoIterator<Item = (&'a str, &'a Cell)>, out: &mut String) {
    for (i, (key, value)) in rows.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(key);
        out.push_str(": ");
        value.write_text(out);
    }
}

/// Keys are row headers (`<th scope="row">`), so a screen reader names
/// each value by its key.
fn write_key_value_table<'a>(rows: impl Iterator<Item = (&'a str, &'a Cell)>, out: &mut Html) {
    use super::style;
    out.push_markup(&format!("<table style=\"{}\">\n", style::DATA_TABLE));
    for (key, value) in rows {
        out.push_markup(&format!("<tr><th scope=\"row\" style=\"{}\">", style::HEADER_CELL));
        out.push_text(key);
        out.push_markup(&format!("</th><td style=\"{}\">", style::DATA_CELL));
        value.write_html(out);
        out.push_markup("</td></tr>\n");
    }
    out.push_markup("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[&str]) -> Cell {
        Cell::List(items.iter().map(|s| Cell::text(*s)).collect())
    }

    #[test]
    fn bullet_lists_render_like_the_artifacts() {
        assert_eq!(
            crate::testing::bare(labels(&["a", "b"]).to_html().as_str()),
            "<ul><li>a</li><li>b</li></ul>"
        );
        assert_eq!(labels(&["only"]).to_html().as_str(), "only");
        assert_eq!(labels(&["a", "b"]).to_text(), "\n  - a\n  - b");
    }

    #[test]
    fn empty_rows_are_dropped_unless_kept() {
        let mut f = Fields::new(false);
        f.push("FQDN", Cell::text(""));
        f.push("Labels", labels(&[]));
        f.push("System", Cell::text("linux"));
        assert_eq!(f.to_text(), "System: linux");

        let mut kept = Fields::new(true);
        kept.push("FQDN", Cell::text(""));
        assert_eq!(kept.to_text(), "FQDN: ");
    }

    #[test]
    fn keys_and_values_are_escaped_in_html() {
        let mut f = Fields::new(false);
        f.push("<k>", Cell::text("<v>"));
        assert_eq!(
            crate::testing::bare(f.to_html().unwrap().as_str()),
            "<table>\n<tr><th>&lt;k&gt;</th><td>&lt;v&gt;</td></tr>\n</table>"
        );
    }

    #[test]
    fn links_show_their_address_in_text() {
        let link = Cell::Link {
            text: "C.1".into(),
            url: Some("https://v.example/#/host/C.1".into()),
        };
        assert_eq!(link.to_text(), "C.1 (https://v.example/#/host/C.1)");
        let bare = Cell::Link {
            text: "C.1".into(),
            url: None,
        };
        assert_eq!(bare.to_text(), "C.1");
        assert_eq!(bare.to_html().as_str(), "C.1");
    }

    #[test]
    fn extend_overwrites_in_place() {
        let mut a = Fields::new(false);
        a.push("x", Cell::text("1"));
        a.push("y", Cell::text("2"));
        let mut b = Fields::new(false);
        b.push("x", Cell::text("3"));
        b.push("z", Cell::text("4"));
        a.extend(b);
        assert_eq!(a.to_text(), "x: 3\ny: 2\nz: 4");
    }

    #[test]
    fn overlaid_rows_read_as_extend_makes_them() {
        let mut a = Fields::new(false);
        a.push("x", Cell::text("1"));
        a.push("y", Cell::text("2"));
        a.push("x", Cell::text("second x"));
        let mut b = Fields::new(true);
        b.push("x", Cell::text("3"));
        b.push("z", Cell::text("4"));
        b.push("empty", Cell::text(""));
        b.push("z", Cell::text("5"));
        let mut text = String::new();
        write_text_lines(a.overlaid(&b), &mut text);
        a.extend(b);
        assert_eq!(text, a.to_text());
        assert_eq!(text, "x: 3\ny: 2\nx: second x\nz: 5");
    }
}
