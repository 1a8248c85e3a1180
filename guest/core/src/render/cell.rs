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
        match self {
            Cell::Text(t) => Html::text(t),
            Cell::Link { text, url: Some(url) } => Html::link(url, text),
            Cell::Link { text, url: None } => Html::text(text),
            Cell::List(items) => match items.as_slice() {
                [] => Html::default(),
                [single] => single.to_html(),
                many => {
                    let mut out = Html::markup("<ul>");
                    for item in many {
                        out.push_markup("<li>");
                        out.push(&item.to_html());
                        out.push_markup("</li>");
                    }
                    out.push_markup("</ul>");
                    out
                }
            },
            Cell::Pairs(pairs) => key_value_table(pairs),
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Link { text, url: Some(url) } => format!("{text} ({url})"),
            Cell::Link { text, url: None } => text.clone(),
            Cell::List(items) => items.iter().map(|item| format!("\n  - {}", item.to_text())).collect(),
            Cell::Pairs(pairs) => pairs
                .iter()
                .map(|(k, v)| format!("\n  - {k}: {}", v.to_text()))
                .collect(),
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

    /// `<table>` of `<tr><td>key</td><td>value</td></tr>` rows; None when
    /// empty (the section is then left out).
    pub fn to_html(&self) -> Option<Html> {
        (!self.rows.is_empty()).then(|| key_value_table(&self.rows))
    }

    /// `key: value` lines.
    pub fn to_text(&self) -> String {
        self.rows
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn key_value_table(rows: &[(String, Cell)]) -> Html {
    let mut out = Html::markup("<table>\n");
    for (key, value) in rows {
        out.push_markup("<tr><td>");
        out.push(&Html::text(key));
        out.push_markup("</td><td>");
        out.push(&value.to_html());
        out.push_markup("</td></tr>\n");
    }
    out.push_markup("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(items: &[&str]) -> Cell {
        Cell::List(items.iter().map(|s| Cell::text(*s)).collect())
    }

    #[test]
    fn bullet_lists_render_like_the_artifacts() {
        assert_eq!(labels(&["a", "b"]).to_html().as_str(), "<ul><li>a</li><li>b</li></ul>");
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
            f.to_html().unwrap().as_str(),
            "<table>\n<tr><td>&lt;k&gt;</td><td>&lt;v&gt;</td></tr>\n</table>"
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
}
