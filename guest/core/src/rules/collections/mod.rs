//! Monitors of what the server collects: hunts in trouble and collections
//! that hang. Each reads the server's running hunts or unfinished
//! collections on its ticks (the `running-hunts` and `active-flows`
//! lookups) and raises alerts that the Alerts, webhook and user-message
//! modules deliver. What was already reported is kept in the host's state
//! with the alerts, so each trouble is reported once, across restarts.

pub mod hunts;
pub mod stuck;

use serde_json::Value;

use crate::vql::{Timestamp, get_path};

/// A number at `path` of a row, 0 when missing (the server leaves zero
/// fields out; the REST gateway sends 64-bit numbers as text).
pub(crate) fn number_at(row: &Value, path: &str) -> u64 {
    match get_path(row, path) {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)).unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// The text at `path`, "" when missing or not text.
pub(crate) fn text_at(row: &Value, path: &str) -> String {
    get_path(row, path).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The strings of the list at `path`.
pub(crate) fn texts_at(row: &Value, path: &str) -> Vec<String> {
    get_path(row, path)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The longest client, flow or hunt id taken.
const MAX_ID_BYTES: usize = 64;

/// Whether `id` can be a Velociraptor id (`C.` and 16 hex digits, `F.` or
/// `H.` and 13 characters, `server`): short, of letters, digits and
/// `.-_`. Others are neither keys of the state nor names of alerts.
pub(crate) fn is_velociraptor_id(id: &str) -> bool {
    (1..=MAX_ID_BYTES).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A time in microseconds since the epoch.
pub(crate) fn micros(us: u64) -> Timestamp {
    Timestamp::from_unix_micros(i64::try_from(us).unwrap_or(i64::MAX))
}

/// Text cut to at most `max` bytes on a character boundary, marked when cut
/// (hunt descriptions and artifact names come from users).
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests;
