//! The artifacts' `FullTable`: a multi-column HTML table with row and
//! column caps (docs/velociraptor.md §3.1).

use super::html::Html;

/// Caps applied when a table is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableLimits {
    /// Data rows shown; None shows all.
    pub max_rows: Option<usize>,
    /// Columns shown; the rest are replaced by one `…` cell.
    pub max_cols: usize,
}

/// A table whose cells are already formatted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FullTable {
    /// Header cells; no header row is shown when empty.
    pub headers: Vec<Html>,
    /// Data rows; the first row's length is the table's column count.
    pub rows: Vec<Vec<Html>>,
    /// How many rows the source had (at least `rows.len()`), for the
    /// "(Showing N of M rows)" footer.
    pub total_rows: usize,
}

impl FullTable {
    /// Renders the table; None when there is nothing to show.
    pub fn to_html(&self, limits: TableLimits) -> Option<Html> {
        let first = self.rows.first()?;
        let total_cols = first.len().max(self.headers.len());
        if total_cols == 0 {
            return None;
        }
        let cols_cut = total_cols > limits.max_cols;
        let shown_rows = match limits.max_rows {
            Some(max) => self.rows.len().min(max),
            None => self.rows.len(),
        };
        let total_rows = self.total_rows.max(self.rows.len());

        let mut out = Html::markup("<table>\n");
        if !self.headers.is_empty() {
            out.push_markup("<tr>");
            for header in self.headers.iter().take(limits.max_cols) {
                out.push_markup("<th>");
                out.push(header);
                out.push_markup("</th>");
            }
            if cols_cut {
                out.push_markup("<th></th>");
            }
            out.push_markup("</tr>\n");
        }
        for (i, row) in self.rows.iter().take(shown_rows).enumerate() {
            out.push_markup("<tr>");
            for cell in row.iter().take(limits.max_cols) {
                out.push_markup("<td>");
                out.push(cell);
                out.push_markup("</td>");
            }
            if cols_cut && i == 0 {
                out.push_markup(&format!(
                    "<td rowspan=\"{shown_rows}\" style=\"text-align:center\">…</td>"
                ));
            }
            out.push_markup("</tr>\n");
        }
        if shown_rows < total_rows {
            let span = limits.max_cols.min(total_cols) + usize::from(cols_cut);
            out.push_markup(&format!(
                "<tr><td colspan=\"{span}\" style=\"text-align:center\">(Showing {shown_rows} of {total_rows} rows)</td></tr>\n"
            ));
        }
        out.push_markup("</table>");
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(row: &[&str]) -> Vec<Html> {
        row.iter().map(|c| Html::text(c)).collect()
    }

    fn table(rows: usize, cols: usize) -> FullTable {
        FullTable {
            headers: (0..cols).map(|c| Html::text(&format!("h{c}"))).collect(),
            rows: (0..rows)
                .map(|r| (0..cols).map(|c| Html::text(&format!("r{r}c{c}"))).collect())
                .collect(),
            total_rows: rows,
        }
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
        assert!(
            html.as_str()
                .contains("<td colspan=\"2\" style=\"text-align:center\">(Showing 3 of 5 rows)</td>")
        );
    }

    #[test]
    fn cut_columns_get_an_ellipsis_cell_spanning_the_rows() {
        let html = table(2, 6)
            .to_html(TableLimits {
                max_rows: None,
                max_cols: 4,
            })
            .unwrap();
        let s = html.as_str();
        assert!(s.contains("<th>h3</th><th></th></tr>"), "{s}");
        assert!(!s.contains("h4"));
        assert!(
            s.contains("<td>r0c3</td><td rowspan=\"2\" style=\"text-align:center\">…</td></tr>"),
            "{s}"
        );
        assert!(s.contains("<td>r1c3</td></tr>"));
    }

    #[test]
    fn headerless_tables_start_with_data() {
        let t = FullTable {
            headers: vec![],
            rows: vec![cells(&["k", "v"])],
            total_rows: 1,
        };
        assert_eq!(
            t.to_html(TableLimits {
                max_rows: Some(30),
                max_cols: 100
            })
            .unwrap()
            .as_str(),
            "<table>\n<tr><td>k</td><td>v</td></tr>\n</table>"
        );
    }

    #[test]
    fn the_source_total_counts_rows_not_fetched() {
        let mut t = table(2, 1);
        t.total_rows = 250;
        let html = t
            .to_html(TableLimits {
                max_rows: Some(2),
                max_cols: 4,
            })
            .unwrap();
        assert!(html.as_str().contains("(Showing 2 of 250 rows)"));
    }
}
