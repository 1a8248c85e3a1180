//! Velociraptor's objects as the e-mails show them: the client and flow
//! dictionaries both the FlowCompletion and Alerts artifacts build
//! (docs/velociraptor.md §6.5), and small readers for their JSON.

pub mod activity;
mod alert_row;
mod client;
mod flow;

pub use self::alert_row::AlertRow;
pub use self::client::{ClientDetails, MetadataField, client_fields, metadata_fields};
pub(crate) use self::flow::duration_text;
pub use self::flow::{FlowFieldsOptions, flow_fields, hunt_id_of_flow};

use serde_json::Value;

use crate::vql::{Timestamp, humanize_duration_since};

/// The text at `path` (dotted), or "" when missing or not text.
pub(crate) fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    crate::vql::get_path(value, path).and_then(Value::as_str).unwrap_or("")
}

/// The unsigned number at `path`, or 0 when missing, negative or not a
/// number (numeric text counts: protobuf's JSON writes 64-bit ints as text).
pub(crate) fn u64_at(value: &Value, path: &str) -> u64 {
    match crate::vql::get_path(value, path) {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// The list of texts at `path`; non-text elements are skipped.
pub(crate) fn strings_at(value: &Value, path: &str) -> Vec<String> {
    crate::vql::get_path(value, path)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The artifacts' `TimestampString`: `<RFC 3339> (<humanized>)`, or
/// `(never)` for times at or before the epoch.
pub fn timestamp_string(time: Timestamp, now: Timestamp) -> String {
    if time.unix_seconds() > 0 {
        format!("{} ({})", time.rfc3339(), humanize_duration_since(time, now))
    } else {
        "(never)".to_string()
    }
}

/// When an audit row (`Server.Audit.Logs`) was written, from its `_ts`,
/// in milliseconds: live rows carry seconds, rows read back from the
/// server's store milliseconds (docs/velociraptor.md §2.6).
pub fn audit_written_ms(row: &Value) -> u64 {
    let ts = match row.get("_ts") {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)).unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    };
    if ts < 100_000_000_000 {
        ts.saturating_mul(1000)
    } else {
        ts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamp_string_humanizes_and_says_never_for_zero() {
        let now = Timestamp::from_unix_seconds(1_767_000_010);
        assert_eq!(
            timestamp_string(Timestamp::from_unix_seconds(1_767_000_000), now),
            "2025-12-29T09:20:00Z (10 seconds ago)"
        );
        assert_eq!(timestamp_string(Timestamp::zero(), now), "(never)");
    }

    #[test]
    fn readers_tolerate_missing_and_mistyped_fields() {
        let v = json!({"a": {"b": "x", "n": "42", "f": 1.0, "neg": -3}, "l": ["p", 1, "q"]});
        assert_eq!(str_at(&v, "a.b"), "x");
        assert_eq!(str_at(&v, "a.n.z"), "");
        assert_eq!(u64_at(&v, "a.n"), 42);
        assert_eq!(u64_at(&v, "a.f"), 1);
        assert_eq!(u64_at(&v, "a.neg"), 0);
        assert_eq!(strings_at(&v, "l"), ["p", "q"]);
    }
}
