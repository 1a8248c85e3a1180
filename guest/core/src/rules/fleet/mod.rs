//! Monitors of the fleet's health that only a tool knowing Velociraptor
//! can offer: clients that matter gone quiet, a spike of enrolments.
//! Each reads the clients on its ticks and raises alerts that the Alerts,
//! webhook and user-message modules deliver.

pub mod enrolment;
pub mod quiet;

use serde_json::Value;

use crate::vql::get_path;

/// What a monitor reads of a client (`clients()` rows; docs/velociraptor.md
/// §2.4). A row missing a column reads it as empty or zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ClientRow {
    pub client_id: String,
    pub hostname: String,
    pub labels: Vec<String>,
    /// Epoch seconds.
    pub first_seen_s: u64,
    /// Epoch microseconds.
    pub last_seen_us: u64,
}

impl ClientRow {
    pub fn read(row: &Value) -> Self {
        let text = |path: &str| get_path(row, path).and_then(Value::as_str).unwrap_or("").to_string();
        let number = |path: &str| match get_path(row, path) {
            Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)).unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        let labels = get_path(row, "labels")
            .and_then(Value::as_array)
            .map(|ls| ls.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        Self {
            client_id: text("client_id"),
            hostname: text("os_info.hostname"),
            labels,
            first_seen_s: number("first_seen_at"),
            last_seen_us: number("last_seen_at"),
        }
    }

    /// `<hostname> (<client id>)`, or the id alone.
    pub fn shown(&self) -> String {
        match self.hostname.is_empty() {
            true => self.client_id.clone(),
            false => format!("{} ({})", self.hostname, self.client_id),
        }
    }
}

#[cfg(test)]
mod tests;
