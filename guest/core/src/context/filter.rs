//! Which context rows an alert e-mail shows, and how (docs/velociraptor.md
//! §7.4).

use serde_json::{Map, Value};

use super::unnest::unnest;
use crate::render::{FullTable, Html, TableLimits, elide_middle, elide_right};
use crate::vql::{VqlRegex, is_truthy, render_value_or_empty};

/// Hard caps of the Alerts artifact: key length, value length and rows
/// shown in HTML.
pub const MAX_FIELD_LIMIT: usize = 1000;
pub const MAX_VALUE_LIMIT: usize = 10_000;
pub const MAX_ROW_LIMIT: usize = 100;
/// The artifact shows every row in text mails; we stop at this many so that
/// an event cannot make an unbounded e-mail.
pub const MAX_TEXT_ROWS: usize = 1000;

/// `FlattenContext`, `ContextInclude`, `ContextExclude`, the three limits
/// and `KeepEmptyRows`.
#[derive(Debug, Clone)]
pub struct ContextFilter {
    pub flatten: bool,
    pub include: VqlRegex,
    pub exclude: VqlRegex,
    pub field_limit: usize,
    pub value_limit: usize,
    pub row_limit: usize,
    pub keep_empty: bool,
}

/// A user limit clamped to its hard cap. Zero or negative also means the
/// hard cap: in VQL they turn the cap off (a falsy `maxRows`), which would
/// let one event make an unbounded e-mail (compare decision D6,
/// docs/decisions.md).
pub fn clamp_limit(value: i64, cap: usize) -> usize {
    if value <= 0 { cap } else { (value as usize).min(cap) }
}

impl ContextFilter {
    /// The rows to show: the (flattened) context without `removed` keys,
    /// empty values (unless kept) and keys outside include/exclude.
    pub fn apply(&self, context: &Map<String, Value>, removed: &[&str]) -> ContextRows {
        let entries: Vec<(String, Value)> = if self.flatten {
            unnest(context)
        } else {
            context.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let rows = entries
            .into_iter()
            .filter(|(k, _)| !removed.contains(&k.as_str()))
            .filter(|(_, v)| self.keep_empty || is_truthy(v))
            .filter(|(k, _)| self.include.is_match(k))
            .filter(|(k, _)| self.exclude.is_empty() || !self.exclude.is_match(k))
            .collect();
        ContextRows {
            rows,
            field_limit: self.field_limit,
            value_limit: self.value_limit,
            row_limit: self.row_limit,
        }
    }
}

/// Context rows ready to render.
#[derive(Debug, Clone)]
pub struct ContextRows {
    rows: Vec<(String, Value)>,
    field_limit: usize,
    value_limit: usize,
    row_limit: usize,
}

impl ContextRows {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn rows(&self) -> &[(String, Value)] {
        &self.rows
    }

    /// A two-column table without header (keys elided in the middle,
    /// values at the right), at most `row_limit` rows and a "(Showing N of
    /// M rows)" footer; None when there are no rows.
    pub fn to_html(&self) -> Option<Html> {
        let mut out = Html::default();
        self.write_html(&mut out).then_some(out)
    }

    /// Appends [`to_html`](Self::to_html)'s table to `out`; false (and
    /// nothing written) when there are no rows.
    pub fn write_html(&self, out: &mut Html) -> bool {
        let shown = self.rows.len().min(self.row_limit);
        let mut table = FullTable::new(Vec::new(), self.rows.len());
        table.reserve(2 * shown, 64 * shown);
        for (key, value) in self.rows.iter().take(shown) {
            table.push_cell(|cell| cell.push_escaped(&elide_middle(key, self.field_limit)));
            table.push_cell(|cell| cell.push_text(&elide_right(&render_value_or_empty(value), self.value_limit)));
            table.end_row();
        }
        table.write_html(
            TableLimits {
                max_rows: Some(self.row_limit),
                max_cols: 100,
            },
            out,
        )
    }

    /// `key: value` lines (the artifacts show every row here; we stop at
    /// [`MAX_TEXT_ROWS`]).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }

    /// Appends [`to_text`](Self::to_text)'s lines to `out`.
    pub fn write_text(&self, out: &mut String) {
        for (i, (key, value)) in self.rows.iter().take(MAX_TEXT_ROWS).enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&elide_middle(key, self.field_limit));
            out.push_str(": ");
            out.push_str(&elide_right(&render_value_or_empty(value), self.value_limit));
        }
        if self.rows.len() > MAX_TEXT_ROWS {
            out.push_str(&format!("\n(Showing {MAX_TEXT_ROWS} of {} rows)", self.rows.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter() -> ContextFilter {
        ContextFilter {
            flatten: true,
            include: VqlRegex::new(".+").unwrap(),
            exclude: VqlRegex::new("").unwrap(),
            field_limit: 100,
            value_limit: 1000,
            row_limit: 30,
            keep_empty: false,
        }
    }

    fn keys(rows: &ContextRows) -> Vec<&str> {
        rows.rows().iter().map(|(k, _)| k.as_str()).collect()
    }

    fn ctx(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn include_and_exclude_see_flattened_names() {
        let mut f = filter();
        f.include = VqlRegex::new("^Details\\.").unwrap();
        f.exclude = VqlRegex::new("Hashes").unwrap();
        let rows = f.apply(
            &ctx(json!({"PID": 4, "Details": {"Image": "x", "Hashes": {"SHA256": "y"}}})),
            &[],
        );
        assert_eq!(keys(&rows), ["Details.Image"]);
    }

    #[test]
    fn without_flattening_nested_values_print_as_json() {
        let mut f = filter();
        f.flatten = false;
        let rows = f.apply(&ctx(json!({"Details": {"a": 1}})), &[]);
        assert_eq!(rows.to_text(), "Details: {\"a\":1}");
    }

    #[test]
    fn removed_keys_are_matched_exactly_against_flattened_names() {
        let rows = filter().apply(
            &ctx(json!({"Severity": "high", "ClientId": "C.1", "level": "x", "Details": {"level": "y"}})),
            &["Severity", "ClientId", "level"],
        );
        assert_eq!(keys(&rows), ["Details.level"]);
    }

    #[test]
    fn empty_values_are_dropped_unless_kept() {
        let c = ctx(json!({"a": "", "b": 0, "c": null, "d": -1, "e": "x"}));
        assert_eq!(keys(&filter().apply(&c, &[])), ["e"]);
        let mut keep = filter();
        keep.keep_empty = true;
        assert_eq!(keys(&keep.apply(&c, &[])), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn html_rows_are_capped_with_a_footer_but_text_shows_all() {
        let mut f = filter();
        f.row_limit = 3;
        let c: Map<String, Value> = (0..5).map(|i| (format!("k{i}"), json!(i + 1))).collect();
        let rows = f.apply(&c, &[]);
        let html = rows.to_html().unwrap();
        assert!(html.as_str().contains("(Showing 3 of 5 rows)"));
        assert_eq!(rows.to_text().lines().count(), 5);
    }

    #[test]
    fn keys_and_values_are_elided_to_their_limits() {
        let mut f = filter();
        f.field_limit = 4;
        f.value_limit = 5;
        let rows = f.apply(&ctx(json!({"abcdefgh": "0123456789"})), &[]);
        assert_eq!(rows.to_text(), "ab…gh: 01234…");
    }

    #[test]
    fn values_are_escaped_in_html() {
        let rows = filter().apply(&ctx(json!({"cmd": "<script>alert(1)</script>"})), &[]);
        let html = rows.to_html().unwrap();
        assert!(html.as_str().contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.as_str().contains("<script>"));
    }

    #[test]
    fn limits_are_clamped_to_the_hard_caps() {
        assert_eq!(clamp_limit(5000, MAX_FIELD_LIMIT), 1000);
        assert_eq!(clamp_limit(30, MAX_ROW_LIMIT), 30);
        assert_eq!(clamp_limit(0, MAX_ROW_LIMIT), 100);
        assert_eq!(clamp_limit(-1, MAX_VALUE_LIMIT), 10_000);
    }
}
