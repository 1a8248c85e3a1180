//! The IncludeFilter/ExcludeFilter model shared by both monitors
//! (docs/velociraptor.md §8.2).

use serde_json::{Map, Value};

use crate::params::{ParamError, Row};
use crate::vql::{VqlRegex, render_value};

/// One CSV row of a filter.
#[derive(Debug, Clone)]
pub(crate) struct FilterRow {
    artifact: VqlRegex,
    level: VqlRegex,
    message: VqlRegex,
    /// The `Severity` cell, as typed by the CSV reader.
    pub severity: Option<Value>,
    /// Every other column: context for the alert.
    pub extra: Map<String, Value>,
}

const MATCHED: [&str; 4] = ["Artifact", "Level", "Message", "Severity"];

impl FilterRow {
    fn from_row(param: &str, index: usize, row: &Row) -> Result<Self, ParamError> {
        let regex = |column: &str| {
            let pattern = match row.get(column) {
                None | Some(Value::Null) => String::new(),
                Some(v) => render_value(v),
            };
            VqlRegex::new(&pattern).map_err(|e| ParamError::new(param, format!("row {} {column}: {e}", index + 1)))
        };
        Ok(Self {
            artifact: regex("Artifact")?,
            level: regex("Level")?,
            message: regex("Message")?,
            severity: row.get("Severity").cloned(),
            extra: row
                .iter()
                .filter(|(k, _)| !MATCHED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }

    /// Every one of `Artifact`, `Level`, `Message` is empty or matches
    /// (case-insensitive, unanchored).
    pub fn matches(&self, artifact: &str, level: &str, message: &str) -> bool {
        self.artifact.is_match(artifact) && self.level.is_match(level) && self.message.is_match(message)
    }
}

/// IncludeFilter and ExcludeFilter.
#[derive(Debug, Clone)]
pub(crate) struct LogFilters {
    include: Vec<FilterRow>,
    exclude: Vec<FilterRow>,
}

impl LogFilters {
    pub fn from_params(include: &[Row], exclude: &[Row]) -> Result<Self, ParamError> {
        let rows = |param: &str, rows: &[Row]| -> Result<Vec<FilterRow>, ParamError> {
            rows.iter()
                .enumerate()
                .map(|(i, r)| FilterRow::from_row(param, i, r))
                .collect()
        };
        Ok(Self {
            include: rows("IncludeFilter", include)?,
            exclude: rows("ExcludeFilter", exclude)?,
        })
    }

    /// An artifact is monitored when some IncludeFilter row's `Artifact`
    /// cell matches it.
    pub fn monitors(&self, artifact: &str) -> bool {
        self.include.iter().any(|r| r.artifact.is_match(artifact))
    }

    /// The first (top-most) IncludeFilter row matching the line, unless an
    /// ExcludeFilter row matches it too.
    pub fn keep(&self, artifact: &str, level: &str, message: &str) -> Option<&FilterRow> {
        let first = self.include.iter().find(|r| r.matches(artifact, level, message))?;
        if self.exclude.iter().any(|r| r.matches(artifact, level, message)) {
            return None;
        }
        Some(first)
    }
}
