//! CSV parameters: a header row, then rows typed cell by cell as
//! Velociraptor's CSV reader types them (docs/velociraptor.md §1.7).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::Row;

/// Parses a CSV parameter. A value that starts with `[` is taken as a JSON
/// array of objects instead, as when a calling artifact passes a list.
pub fn parse_csv_table(text: &str) -> Result<Vec<Row>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return parse_json_rows(trimmed);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let header: Vec<String> = loop {
        match records.next() {
            None => return Ok(Vec::new()),
            Some(Err(e)) => return Err(format!("invalid CSV: {e}")),
            Some(Ok(record)) if is_blank(&record) => continue,
            Some(Ok(record)) => break record.iter().map(|c| c.trim().to_string()).collect(),
        }
    };
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| format!("invalid CSV: {e}"))?;
        if is_blank(&record) {
            continue;
        }
        let mut row = Map::new();
        for (name, cell) in header.iter().zip(record.iter()) {
            row.insert(name.clone(), type_cell(cell));
        }
        rows.push(row);
    }
    Ok(rows)
}

fn is_blank(record: &csv::StringRecord) -> bool {
    record.iter().all(|c| c.trim().is_empty())
}

fn parse_json_rows(text: &str) -> Result<Vec<Row>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON table: {e}"))?;
    let Value::Array(items) = value else {
        return Err("expected a JSON array of objects".into());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(row) => Ok(row),
            other => Err(format!("row {} of the JSON table is not an object: {other}", i + 1)),
        })
        .collect()
}

/// Velociraptor's cell typing: a leading space is dropped; `true`/`false`
/// become bools; `base64:` text is decoded; `{...}` and `[...]` become JSON
/// when they parse; integers and floats become numbers; anything else stays
/// text.
fn type_cell(cell: &str) -> Value {
    let cell = cell.trim_start();
    match cell {
        "" => return Value::String(String::new()),
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    if let Some(encoded) = cell.strip_prefix("base64:")
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded)
    {
        return Value::String(String::from_utf8_lossy(&bytes).into_owned());
    }
    if (cell.starts_with('{') || cell.starts_with('['))
        && let Ok(v @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(cell)
    {
        return v;
    }
    if looks_numeric(cell) {
        if let Ok(i) = cell.parse::<i64>() {
            return Value::from(i);
        }
        if let Ok(f) = cell.parse::<f64>()
            && let Some(n) = serde_json::Number::from_f64(f)
        {
            return Value::Number(n);
        }
    }
    Value::String(cell.to_string())
}

/// Rust would also parse "inf", "NaN" and "1e5x"-free words as floats;
/// Velociraptor only types text made of digits, sign, dot and exponent.
fn looks_numeric(cell: &str) -> bool {
    cell.bytes().any(|b| b.is_ascii_digit())
        && cell
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_row_names_the_columns() {
        let rows = parse_csv_table("Member,Regex,Replace\nlevel,(?i)warn,medium\nSeverity,,\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Member"], json!("level"));
        assert_eq!(rows[0]["Regex"], json!("(?i)warn"));
        assert_eq!(rows[1]["Regex"], json!(""));
    }

    #[test]
    fn header_only_is_no_rows() {
        assert!(parse_csv_table("Address\n").unwrap().is_empty());
        assert!(parse_csv_table("").unwrap().is_empty());
    }

    #[test]
    fn cells_are_typed_like_velociraptor() {
        let rows = parse_csv_table("a,b,c,d,e,f,g,h\ntrue, 42,1.5,{\"x\":1},[1 2,base64:aGk=,007x,\n").unwrap();
        let r = &rows[0];
        assert_eq!(r["a"], json!(true));
        assert_eq!(r["b"], json!(42), "leading space dropped, then an int");
        assert_eq!(r["c"], json!(1.5));
        assert_eq!(r["d"], json!({"x": 1}));
        assert_eq!(r["e"], json!("[1 2"), "not JSON, so text");
        assert_eq!(r["f"], json!("hi"));
        assert_eq!(r["g"], json!("007x"));
        assert_eq!(r["h"], json!(""));
    }

    #[test]
    fn quoted_cells_may_hold_commas_and_newlines() {
        let rows = parse_csv_table("Address,Note\n\"a@b.example\",\"x, y\nz\"\n").unwrap();
        assert_eq!(rows[0]["Note"], json!("x, y\nz"));
    }

    #[test]
    fn short_rows_lack_the_missing_columns() {
        let rows = parse_csv_table("Artifact,Level,Message,Severity\n.+,ERROR\n").unwrap();
        assert_eq!(rows[0].get("Message"), None);
    }

    #[test]
    fn a_json_array_of_objects_is_accepted() {
        let rows = parse_csv_table(r#"[{"Address": "soc@example.org"}]"#).unwrap();
        assert_eq!(rows[0]["Address"], json!("soc@example.org"));
        assert!(parse_csv_table("[1]").is_err());
    }

    #[test]
    fn the_vql_error_catalogue_parses() {
        let text = include_str!("../../../../tests/data/velociraptor/vql_error_catalogue.IncludeFilter.csv");
        let rows = parse_csv_table(text).unwrap();
        assert_eq!(rows.len(), 100);
        assert_eq!(rows[0]["Level"], json!("ERROR"));
        assert_eq!(rows[0]["Severity"], json!("high"));
    }
}
