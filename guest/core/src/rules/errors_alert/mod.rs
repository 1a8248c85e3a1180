//! Server.Monitor.Errors.Alert and Server.Monitor.Client.Errors.Alert:
//! raise an alert when an event query's monitoring log shows an error
//! (docs/velociraptor.md §8, §9).
//!
//! Better than the artifacts' sliding window (§8.3): each (client,
//! artifact) log is read from a cursor kept in the host's state, so no log
//! line is examined twice or skipped, across ticks and restarts.

mod client;
mod filter;
mod server;

pub use self::client::ClientErrorsRule;
pub use self::server::ServerErrorsRule;

use serde_json::{Map, Value};

use self::filter::FilterRow;
use crate::host::{Answer, Host, LogLevel, Lookup};
use crate::velociraptor::timestamp_string;
use crate::vql::{RawRow, Timestamp, render_value};

/// One log line of an event query.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LogLine {
    pub level: String,
    pub message: String,
    /// The row's own time (`Timestamp` of server rows, the client clock's
    /// `client_time` of client rows).
    pub time: Option<Timestamp>,
    /// When the server wrote it (`_ts`, milliseconds): the cursor's unit.
    pub written_ms: u64,
}

impl LogLine {
    /// Reads a `monitoring_logs()` row; server rows name their columns
    /// `Timestamp, Level, Message`, client rows `client_time, level,
    /// message` (very old rows have the integer level 0). Only those
    /// columns and `_ts` are built: a tick reads thousands of rows.
    pub fn read(answer: &Answer) -> Lookup<Self> {
        let Some(row) = RawRow::parse(answer.text()) else {
            // Not an object: nothing to read, if it is JSON at all.
            answer.value()?;
            return Ok(Self::default());
        };
        let column = |names: &[&str]| names.iter().find_map(|n| row.value(n));
        let text = |names: &[&str]| {
            column(names)
                .map(|v| match v {
                    Value::Number(n) if n.as_i64() == Some(0) => "DEFAULT".to_string(),
                    Value::Null => String::new(),
                    Value::String(s) => s,
                    other => render_value(&other),
                })
                .unwrap_or_default()
        };
        let time = column(&["Timestamp", "client_time"]).and_then(|v| crate::vql::parse_timestamp(&v));
        let written_ms = match row.value("_ts") {
            Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
            Some(Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        };
        Ok(Self {
            level: text(&["Level", "level"]),
            message: text(&["Message", "message"]),
            time,
            written_ms,
        })
    }
}

/// Reads one log from its cursor, and returns the first line the filters
/// keep (one alert per artifact per tick is all the dedup lets through).
pub(crate) struct CursorRead<'a> {
    pub host: &'a dyn Host,
    /// State key of the cursor.
    pub key: String,
    /// Where a log without a cursor starts (the artifact's window).
    pub start_ms: u64,
}

impl CursorRead<'_> {
    pub fn since(&self) -> u64 {
        self.host
            .state_get(&self.key)
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.start_ms)
    }

    /// Moves the cursor past `lines`.
    pub fn advance(&self, since: u64, lines: &[LogLine]) {
        let newest = lines.iter().map(|l| l.written_ms).max().unwrap_or(since).max(since);
        if newest != since || self.host.state_get(&self.key).is_none() {
            self.host.state_put(&self.key, newest.to_string().as_bytes(), 0);
        }
    }
}

/// The alert's context (docs/velociraptor.md §8.4): the matching row's
/// severity (under `SeverityField`) and extra columns, then `Level`,
/// `Error`, `Log timestamp` and `Artifact`; later keys override earlier
/// ones.
pub(crate) fn alert_context(
    row: &FilterRow,
    severity_field: &str,
    artifact: &str,
    line: &LogLine,
    now: Timestamp,
) -> Map<String, Value> {
    let mut context = Map::new();
    if !severity_field.is_empty() {
        context.insert(severity_field.to_string(), row.severity.clone().unwrap_or(Value::Null));
    }
    for (key, value) in &row.extra {
        context.insert(key.clone(), value.clone());
    }
    context.retain(|_, v| v.as_str() != Some(""));
    context.insert("Level".into(), Value::String(line.level.clone()));
    context.insert("Error".into(), Value::String(line.message.clone()));
    let logged = line
        .time
        .map_or_else(|| "(never)".to_string(), |t| timestamp_string(t, now));
    context.insert("Log timestamp".into(), Value::String(logged));
    context.insert("Artifact".into(), Value::String(artifact.to_string()));
    context
}

/// Logs `Monitoring event artifact <A>` the first time a monitor sees `A`.
pub(crate) fn announce(host: &dyn Host, seen: &mut Vec<String>, artifact: &str, label: Option<&str>) {
    let key = format!("{artifact}\u{0}{}", label.unwrap_or(""));
    if !seen.contains(&key) {
        let message = match label {
            Some(label) => format!("Monitoring event artifact {artifact} for label \"{label}\""),
            None => format!("Monitoring event artifact {artifact}"),
        };
        host.log(LogLevel::Debug, &message);
        seen.push(key);
    }
}

/// The specs' artifact names of an event table (`…specs[*].artifact`).
pub(crate) fn spec_artifacts(specs: Option<&Value>) -> Vec<String> {
    specs
        .and_then(Value::as_array)
        .map(|specs| {
            specs
                .iter()
                .filter_map(|s| s.get("artifact").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
