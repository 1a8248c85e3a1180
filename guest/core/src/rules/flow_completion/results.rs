//! Result rows in the e-mail: inline tables (docs/velociraptor.md §6.6) and
//! attached files (§6.7), with every size bounded (decision D6,
//! docs/decisions.md).

use serde_json::{Map, Value};

use super::FlowCompletionRule;
use super::content::FlowView;
use crate::action::Failure;
use crate::host::{Host, LogLevel};
use crate::mime::Attachment;
use crate::params::{ParamError, Row};
use crate::render::{FullTable, Html, MailDocument, TableLimits, csv_cell_safe, elide_right};
use crate::velociraptor::strings_at;
use crate::vql::{VqlRegex, render_value, render_value_or_empty};

/// Hard caps of result tables: rows, characters per cell, and (ours; the
/// artifact has none) columns. Header names are cut at 30.
pub(crate) const MAX_TABLE_ROWS: usize = 100;
pub(crate) const MAX_CELL_LENGTH: usize = 10_000;
pub(crate) const MAX_COLUMNS: usize = 100;
const HEADER_LENGTH: usize = 30;
/// JSON text a table may fetch from one source: a bound on what crosses
/// the component boundary, far above what 100 rows of 10 000 characters
/// render.
const TABLE_FETCH_BYTES: u64 = 8 << 20;

/// One row of `IncludeResultTableFrom` / `IncludeResultAttachmentFrom`.
#[derive(Debug, Clone)]
pub(crate) struct ResultSource {
    /// Which `artifacts_with_results` entries (case-insensitive regex).
    source: VqlRegex,
    /// Which columns (case-insensitive regex; empty: all).
    columns: VqlRegex,
    /// The row's `MaxRows` cell: None when blank or missing.
    max_rows: Option<i64>,
    /// The row's `CellLimit` cell: None when blank or missing.
    cell_limit: Option<i64>,
}

impl ResultSource {
    /// Reads the CSV rows of parameter `param`.
    pub fn from_rows(param: &str, rows: &[Row]) -> Result<Vec<Self>, ParamError> {
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                let at = |message: String| ParamError::new(param, format!("row {}: {message}", i + 1));
                let text = |name: &str| row.get(name).map(render_value_or_empty).unwrap_or_default();
                let source = text("Source");
                if source.is_empty() {
                    return Err(at("Source is empty".into()));
                }
                let number = |name: &str| -> Result<Option<i64>, ParamError> {
                    match row.get(name) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
                        Some(other) => Err(at(format!("{name} should be a whole number, got {other}"))),
                    }
                };
                let columns = text("Columns");
                Ok(Self {
                    source: VqlRegex::new(&source).map_err(|e| at(e.to_string()))?,
                    columns: VqlRegex::new(if columns.is_empty() { ".+" } else { &columns })
                        .map_err(|e| at(e.to_string()))?,
                    max_rows: number("MaxRows")?,
                    cell_limit: number("CellLimit")?,
                })
            })
            .collect()
    }
}

/// A user limit under a hard cap. Blank means the cap (D6); so do
/// zero and negative numbers, which in VQL switch the cap off.
fn capped(limit: Option<i64>, cap: usize) -> usize {
    match limit {
        Some(n) if n > 0 => (n as usize).min(cap),
        _ => cap,
    }
}

/// The `artifacts_with_results` entries each source row selects, in the
/// order of the CSV rows; an entry matched by two rows keeps its first
/// place and takes the last row's settings.
fn selected<'a>(sources: &'a [ResultSource], with_results: &[String]) -> Vec<(String, &'a ResultSource)> {
    let mut out: Vec<(String, &ResultSource)> = Vec::new();
    for source in sources {
        for entry in with_results.iter().filter(|e| source.source.is_match(e)) {
            match out.iter_mut().find(|(e, _)| e == entry) {
                Some(slot) => slot.1 = source,
                None => out.push((entry.clone(), source)),
            }
        }
    }
    out
}

/// The columns of the first row whose names match, in their order.
fn columns(rows: &[Value], wanted: &VqlRegex) -> Vec<String> {
    rows.first()
        .and_then(Value::as_object)
        .map(|first| first.keys().filter(|k| wanted.is_match(k)).cloned().collect())
        .unwrap_or_default()
}

/// One `<source> results` section per selected source that has rows,
/// written into the e-mail's document.
pub(crate) fn write_tables(
    rule: &FlowCompletionRule,
    view: &FlowView<'_>,
    host: &dyn Host,
    document: &mut MailDocument,
) -> Result<(), Failure> {
    let with_results = strings_at(view.flow, "artifacts_with_results");
    for (entry, source) in selected(&rule.result_tables, &with_results) {
        let max_rows = capped(source.max_rows, MAX_TABLE_ROWS);
        let cell_limit = capped(source.cell_limit, MAX_CELL_LENGTH);
        let page = host.flow_results(
            &view.completion.client_id,
            &view.completion.flow_id,
            &entry,
            Some(max_rows as u32),
            Some(TABLE_FETCH_BYTES),
        )?;
        let columns = columns(&page.rows, &source.columns);
        if columns.is_empty() {
            continue;
        }
        let headers = columns
            .iter()
            .map(|c| Html::text(&elide_right(c, HEADER_LENGTH)))
            .collect();
        let total_rows = (page.total_rows as usize).max(page.rows.len());
        let mut table = FullTable::new(headers, total_rows);
        let shown = page.rows.len().min(max_rows);
        table.reserve(shown * columns.len(), 32 * shown * columns.len());
        // Rows past max_rows are counted, not shown: no need to format them.
        for row in page.rows.iter().take(shown) {
            for column in &columns {
                let cell = row.get(column).map(render_value_or_empty).unwrap_or_default();
                table.push_cell(|out| out.push_text(&elide_right(&cell, cell_limit)));
            }
            table.end_row();
        }
        let limits = TableLimits {
            max_rows: Some(max_rows),
            max_cols: rule.max_columns,
        };
        document.section(&format!("{entry} results"), |out| {
            table.write_html(limits, out);
        });
    }
    Ok(())
}

/// `AttachmentFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachmentFormat {
    Jsonl,
    Csv,
}

impl AttachmentFormat {
    /// The parameter's choices are checked before this is called.
    pub fn parse(text: &str) -> Self {
        if text == "csv" { Self::Csv } else { Self::Jsonl }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Csv => "text/csv",
        }
    }
}

/// The files of `IncludeResultAttachmentFrom`: all of them when their total
/// size is within `AttachmentsMaxMiB` and the e-mail stays within the
/// host's limit, otherwise none (the e-mail is still sent, with a log line).
pub(crate) fn attachments(
    rule: &FlowCompletionRule,
    view: &FlowView<'_>,
    body_bytes: usize,
    max_email_bytes: u64,
    host: &dyn Host,
) -> Result<Vec<Attachment>, Failure> {
    if rule.attachments.is_empty() {
        return Ok(Vec::new());
    }
    // Base64 makes 3 bytes 4; keep room for the bodies and headers.
    let email_room = max_email_bytes.saturating_sub(2 * body_bytes as u64 + 64 * 1024) / 4 * 3;
    let budget = rule.attachments_max_bytes.min(email_room);
    let flow_id = &view.completion.flow_id;
    let with_results = strings_at(view.flow, "artifacts_with_results");
    let mut files = Vec::new();
    let mut total: u64 = 0;
    for (entry, source) in selected(&rule.attachments, &with_results) {
        let max_rows = source
            .max_rows
            .filter(|n| *n > 0)
            .map(|n| n.min(u32::MAX as i64) as u32);
        let page = host.flow_results(
            &view.completion.client_id,
            flow_id,
            &entry,
            max_rows,
            Some(budget.saturating_sub(total).saturating_add(1)),
        )?;
        let expected = max_rows.map_or(page.total_rows, |m| page.total_rows.min(u64::from(m)));
        if (page.rows.len() as u64) < expected {
            // The host stopped at the byte budget: the files cannot fit.
            return Ok(too_large(rule, flow_id, None, budget, host));
        }
        if page.rows.is_empty() {
            continue;
        }
        let columns = columns(&page.rows, &source.columns);
        let data = match rule.attachment_format {
            AttachmentFormat::Jsonl => jsonl(&page.rows, &columns),
            AttachmentFormat::Csv => csv(&page.rows, &columns)?,
        };
        total += data.len() as u64;
        files.push(Attachment {
            filename: format!("{}.{}", file_stem(&entry), rule.attachment_format.extension()),
            content_type: rule.attachment_format.content_type().to_string(),
            data,
        });
    }
    if total > budget {
        return Ok(too_large(rule, flow_id, Some(total), budget, host));
    }
    Ok(files)
}

/// Logs why no attachment is sent; `total` is None when the rows were
/// not all fetched (they already exceeded the budget).
fn too_large(
    rule: &FlowCompletionRule,
    flow_id: &str,
    total: Option<u64>,
    budget: u64,
    host: &dyn Host,
) -> Vec<Attachment> {
    let limit = if budget < rule.attachments_max_bytes {
        format!("the largest e-mail this host sends ({budget} bytes of attachments)")
    } else {
        format!("AttachmentsMaxMiB ({} MiB)", rule.attachments_max_bytes >> 20)
    };
    let size = match total {
        Some(total) => format!("{total} bytes"),
        None => format!("more than {budget} bytes"),
    };
    host.log(
        LogLevel::Warn,
        &format!("flow {flow_id}: the result attachments ({size}) exceed {limit}; sent without attachments"),
    );
    Vec::new()
}

/// The attachment's name: the source with runs of `/` made `.`, and
/// nothing a mail client could take for a directory.
fn file_stem(entry: &str) -> String {
    let mut out = String::with_capacity(entry.len());
    for c in entry.chars() {
        match c {
            '/' if out.ends_with('.') => {}
            '/' => out.push('.'),
            '\\' => out.push('_'),
            c if c.is_control() || crate::render::is_bidi_control(c) => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

fn selected_fields(row: &Value, columns: &[String]) -> Map<String, Value> {
    columns
        .iter()
        .filter_map(|c| row.get(c).map(|v| (c.clone(), v.clone())))
        .collect()
}

fn jsonl(rows: &[Value], columns: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        out.extend_from_slice(Value::Object(selected_fields(row, columns)).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn csv(rows: &[Value], columns: &[String]) -> Result<Vec<u8>, Failure> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Failure::Internal(format!("writing CSV: {e}"));
    // Cells come from clients: none may be a formula (numbers are safe).
    writer
        .write_record(columns.iter().map(|c| csv_cell_safe(c).into_owned()))
        .map_err(fail)?;
    for row in rows {
        let cells = columns.iter().map(|c| match row.get(c) {
            None | Some(Value::Null) => String::new(),
            Some(v @ Value::Number(_)) => render_value(v),
            Some(v @ (Value::Object(_) | Value::Array(_))) => csv_cell_safe(&v.to_string()).into_owned(),
            Some(v) => csv_cell_safe(&render_value(v)).into_owned(),
        });
        writer.write_record(cells).map_err(fail)?;
    }
    writer
        .into_inner()
        .map_err(|e| Failure::Internal(format!("writing CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blank_zero_and_negative_limits_mean_the_hard_cap() {
        assert_eq!(capped(None, 100), 100);
        assert_eq!(capped(Some(0), 100), 100);
        assert_eq!(capped(Some(-1), 100), 100);
        assert_eq!(capped(Some(20), 100), 20);
        assert_eq!(capped(Some(500), 100), 100);
    }

    /// A client's result rows cannot put a formula in the analyst's
    /// spreadsheet: text cells that would run are quoted, numbers are not.
    #[test]
    fn csv_attachments_carry_no_formula() {
        let rows = [json!({"Name": "=cmd|' /C calc'!A0", "Size": -5, "Tags": ["@x"], "Path": "C:\\x"})];
        let columns: Vec<String> = ["Name", "Size", "Tags", "Path", "=Col"].map(String::from).to_vec();
        let text = String::from_utf8(csv(&rows, &columns).unwrap()).unwrap();
        assert_eq!(
            text,
            "Name,Size,Tags,Path,'=Col\n'=cmd|' /C calc'!A0,-5,\"[\"\"@x\"\"]\",C:\\x,\n"
        );
    }

    #[test]
    fn file_names_follow_the_source_with_dots_for_slashes() {
        assert_eq!(
            file_stem("Windows.KapeFiles.Targets/All File Metadata"),
            "Windows.KapeFiles.Targets.All File Metadata"
        );
        assert_eq!(file_stem("A//B"), "A.B");
        assert_eq!(file_stem("..\\..\\evil\n"), ".._.._evil_");
        assert_eq!(file_stem("Windows.Sys.\u{202e}exe.txt"), "Windows.Sys._exe.txt");
    }

    proptest::proptest! {
        /// Whatever a source is called, its attachment's name holds no
        /// path separator, control or reordering character (`scripts/test`
        /// runs a fixed number of cases; PROPTEST_CASES for more).
        #[test]
        fn no_source_name_makes_a_path_or_a_disguised_name(entry in proptest::prelude::any::<String>()) {
            let stem = file_stem(&entry);
            proptest::prop_assert!(
                !stem.chars().any(|c| matches!(c, '/' | '\\') || c.is_control() || crate::render::is_bidi_control(c)),
                "{stem:?}"
            );
        }

        /// Any text in result rows reads back from the CSV attachment as
        /// itself, but for the leading quote of a cell a spreadsheet would
        /// run: no cell of it starts a formula.
        #[test]
        fn csv_attachments_read_back_with_no_formula(cells in proptest::collection::vec(".*", 1..6)) {
            let columns: Vec<String> = (0..cells.len()).map(|i| format!("c{i}")).collect();
            let row: Map<String, Value> = columns.iter().cloned().zip(cells.iter().cloned().map(Value::String)).collect();
            let text = csv(&[Value::Object(row)], &columns).unwrap();
            let mut reader = ::csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_slice());
            let record = reader.records().next().unwrap().unwrap();
            for (read, given) in record.iter().zip(&cells) {
                let safe = csv_cell_safe(given);
                proptest::prop_assert_eq!(read, safe.as_ref());
                proptest::prop_assert!(!read.starts_with(['=', '+', '-', '@', '\t', '\r']));
            }
        }
    }

    #[test]
    fn an_entry_matched_twice_keeps_its_place_and_takes_the_last_settings() {
        let rows = crate::params::parse_csv_table("Source,Columns,MaxRows\nDiskSpace,.+,5\nUsers,Name,\nDisk,Size,7\n")
            .unwrap();
        let sources = ResultSource::from_rows("IncludeResultTableFrom", &rows).unwrap();
        let picked = selected(
            &sources,
            &["Generic.Client.DiskSpace".into(), "Windows.Sys.Users".into()],
        );
        let names: Vec<&str> = picked.iter().map(|(e, _)| e.as_str()).collect();
        assert_eq!(names, ["Generic.Client.DiskSpace", "Windows.Sys.Users"]);
        assert_eq!(picked[0].1.max_rows, Some(7));
        assert_eq!(picked[1].1.max_rows, None);
    }

    #[test]
    fn a_non_numeric_max_rows_is_a_parameter_error() {
        let rows = crate::params::parse_csv_table("Source,Columns,MaxRows\nX,,many\n").unwrap();
        let err = ResultSource::from_rows("IncludeResultTableFrom", &rows).unwrap_err();
        assert!(err.message.contains("row 1: MaxRows should be a whole number"), "{err}");
    }

    #[test]
    fn csv_files_have_a_header_and_json_for_nested_values() {
        let rows = vec![
            json!({"Name": "a,b", "Size": 3, "Meta": {"x": 1}}),
            json!({"Name": "c", "Size": null}),
        ];
        let cols = vec!["Name".to_string(), "Size".to_string(), "Meta".to_string()];
        let text = String::from_utf8(csv(&rows, &cols).unwrap()).unwrap();
        assert_eq!(text, "Name,Size,Meta\n\"a,b\",3,\"{\"\"x\"\":1}\"\nc,,\n");
        let lines = String::from_utf8(jsonl(&rows, &cols[..2])).unwrap();
        assert_eq!(lines, "{\"Name\":\"a,b\",\"Size\":3}\n{\"Name\":\"c\",\"Size\":null}\n");
    }
}
