//! The artifacts' `FullTable`: a multi-column HTML table with row and
//! column caps (docs/velociraptor.md §3.1).

use super::html::Html;
use super::style;

/// Caps applied when a table is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Data rows shown; None shows all.
    pub max_rows: Option<usize>,
    /// Columns shown; the rest are replaced by one `…` cell.
    pub max_cols: usize,
}

/// A table whose cells are already formatted. The cells of every row are
/// written one after another into one buffer, so a table of many cells
/// costs a few allocations, not one per cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FullTable {
    /// Header cells; no header row is shown when empty.
    headers: Vec<Html>,
    /// Every data cell's HTML, row after row.
    cells: Html,
    /// Where each cell ends in `cells`.
    cell_ends: Vec<usize>,
    /// How many cells each row has ended with; the first row's length is
    /// the table's column count.
    row_ends: Vec<usize>,
    /// Rows the source holds (at least those pushed): the
    /// "(Showing N of M rows)" footer counts these.
    total_rows: usize,
}

impl FullTable {
    /// An empty table under `headers`, of a source holding `total_rows`.
    pub fn new(headers: Vec<Html>, total_rows: usize) -> Self {
        Self {
            headers,
            total_rows,
            ..Self::default()
        }
    }

    /// Room for `cells` cells of about `bytes` bytes in all.
    pub fn reserve(&mut self, cells: usize, bytes: usize) {
        self.cell_ends.reserve(cells);
        self.cells.reserve(bytes);
    }

    /// Adds a cell to the current row; `write` appends its HTML.
    pub fn push_cell(&mut self, write: impl FnOnce(&mut Html)) {
        write(&mut self.cells);
        self.cell_ends.push(self.cells.len());
    }

    /// Ends the current row (its cells are those pushed since the last).
    pub fn end_row(&mut self) {
        self.row_ends.push(self.cell_ends.len());
    }

    fn row(&self, index: usize) -> impl Iterator<Item = &str> {
        let first = if index == 0 { 0 } else { self.row_ends[index - 1] };
        let last = self.row_ends[index];
        (first..last).map(move |cell| {
            let start = if cell == 0 { 0 } else { self.cell_ends[cell - 1] };
            &self.cells.as_str()[start..self.cell_ends[cell]]
        })
    }

    /// The table's HTML, or None when it has no rows or no columns.
    pub fn to_html(&self, limits: TableLimits) -> Option<Html> {
        let mut out = Html::with_capacity(self.cells.len() + 32 * self.cell_ends.len() + 64);
        self.write_html(limits, &mut out).then_some(out)
    }

    /// Appends the table's HTML to `out`; false (and nothing written) when
    /// it has no rows or no columns.
    pub fn write_html(&self, limits: TableLimits, out: &mut Html) -> bool {
        let Some(&first_row_ends) = self.row_ends.first() else {
            return false;
        };
        let total_cols = first_row_ends.max(self.headers.len());
        if total_cols == 0 {
            return false;
        }
        let cols_cut = total_cols > limits.max_cols;
        let rows = self.row_ends.len();
        let shown_rows = limits.max_rows.map_or(rows, |max| rows.min(max));
        let total_rows = self.total_rows.max(rows);

        let th = format!("<th scope=\"col\" style=\"{}\">", style::HEADER_CELL);
        let td = format!("<td style=\"{}\">", style::DATA_CELL);
        out.push_markup(&format!("<table style=\"{}\">\n", style::DATA_TABLE));
        if !self.headers.is_empty() {
            out.push_markup("<tr>");
            for header in self.headers.iter().take(limits.max_cols) {
                out.push_markup(&th);
                out.push(header);
                out.push_markup("</th>");
            }
            if cols_cut {
                out.push_markup(&th);
                out.push_markup("</th>");
            }
            out.push_markup("</tr>\n");
        }
        for index in 0..shown_rows {
            out.push_markup("<tr>");
            for cell in self.row(index).take(limits.max_cols) {
                out.push_markup(&td);
                // Written through push_cell, as Html: already safe.
                out.push_markup(cell);
                out.push_markup("</td>");
            }
            if cols_cut && index == 0 {
                out.push_markup(&format!(
                    "<td rowspan=\"{shown_rows}\" style=\"{}\">…</td>",
                    style::CENTERED_CELL
                ));
            }
            out.push_markup("</tr>\n");
        }
        if shown_rows < total_rows {
            let span = limits.max_cols.min(total_cols) + usize::from(cols_cut);
            out.push_markup(&format!(
                "<tr><td colspan=\"{span}\" style=\"{}\">(Showing {shown_rows} of {total_rows} rows)</td></tr>\n",
                style::CENTERED_CELL
            ));
        }
        out.push_markup("</table>");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_row(table: &mut FullTable, cells: &[&str]) {
        for cell in cells {
            table.push_cell(|out| out.push_text(cell));
        }
        table.end_row();
    }

    fn table(rows: usize, cols: usize) -> FullTable {
        let mut table = FullTable::new((0..cols).map(|c| Html::text(&format!("h{c}"))).collect(), rows);
        for r in 0..rows {
            let cells: Vec<String> = (0..cols).map(|c| format!("r{r}c{c}")).collect();
            push_row(&mut table, &cells.iter().map(String::as_str).collect::<Vec<_>>());
        }
        table
    }

    #[test]
    fn no_rows_no_table() {
        assert_eq!(
            FullTable::default().to_html(TableLimits {
                max_rows: None,
                max_cols: 4
            }),
            None
        );
    }

    #[test]
    fn cut_rows_get_a_showing_footer() {
        let html = table(5, 2)
            .to_html(TableLimits {
                max_rows: Some(3),
                max_cols: 4,
            })
            .unwrap();
        assert_eq!(html.as_str().matches("<tr>").count(), 1 + 3 + 1);
        assert!(crate::testing::bare(html.as_str()).contains("<td colspan=\"2\">(Showing 3 of 5 rows)</td>"));
    }

    #[test]
    fn cut_columns_get_an_ellipsis_cell_spanning_the_rows() {
        let html = table(2, 6)
            .to_html(TableLimits {
                max_rows: None,
                max_cols: 4,
            })
            .unwrap();
        let s = &crate::testing::bare(html.as_str());
        assert!(s.contains("<th>h3</th><th></th></tr>"), "{s}");
        assert!(!s.contains("h4"));
        assert!(s.contains("<td>r0c3</td><td rowspan=\"2\">…</td></tr>"), "{s}");
        assert!(s.contains("<td>r1c3</td></tr>"));
    }

    #[test]
    fn headerless_tables_start_with_data() {
        let mut t = FullTable::new(vec![], 1);
        push_row(&mut t, &["k", "<v>"]);
        assert_eq!(
            crate::testing::bare(
                t.to_html(TableLimits {
                    max_rows: Some(30),
                    max_cols: 100
                })
                .unwrap()
                .as_str()
            ),
            "<table>\n<tr><td>k</td><td>&lt;v&gt;</td></tr>\n</table>"
        );
    }

    #[test]
    fn the_source_total_counts_rows_not_fetched() {
        let mut t = FullTable::new(vec![Html::text("h")], 250);
        push_row(&mut t, &["a"]);
        push_row(&mut t, &["b"]);
        let html = t
            .to_html(TableLimits {
                max_rows: Some(2),
                max_cols: 4,
            })
            .unwrap();
        assert!(html.as_str().contains("(Showing 2 of 250 rows)"));
    }
}
