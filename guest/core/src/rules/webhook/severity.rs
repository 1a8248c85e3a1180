//! An alert's severity in the receivers' words: the alert's own
//! `Severity` (or `severity`) member, read case-insensitively.

use serde_json::{Map, Value};

/// What an alert says of its severity, on the scale the receivers share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
    /// Information, not a problem (a finished collection).
    Info,
    /// The alert said nothing, or a word none of the scales knows.
    Unstated,
}

impl Severity {
    /// The severity the values a template could use say: the alert's
    /// `event_data.Severity`.
    pub fn of(facts: &Map<String, Value>) -> Self {
        let said = facts
            .get("event_data")
            .and_then(|d| d.get("Severity").or_else(|| d.get("severity")))
            .and_then(Value::as_str);
        said.map_or(Self::Unstated, Self::from_word)
    }

    /// A severity word as detections and syslog write it, in any case.
    pub fn from_word(word: &str) -> Self {
        match word.to_ascii_lowercase().as_str() {
            "critical" | "crit" | "fatal" | "emergency" => Self::Critical,
            "high" | "error" | "err" => Self::High,
            "medium" | "warning" | "warn" => Self::Medium,
            "low" | "notice" => Self::Low,
            "info" | "informational" | "debug" => Self::Info,
            _ => Self::Unstated,
        }
    }

    /// An alert with no (known) severity still wants a person; a client
    /// coming online or enrolling (no alert `name`) is news.
    pub fn or_default_for(self, facts: &Map<String, Value>) -> Self {
        match self {
            Self::Unstated if facts.contains_key("name") => Self::High,
            Self::Unstated => Self::Info,
            stated => stated,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn of(value: Value) -> Severity {
        let facts = value.as_object().unwrap().clone();
        Severity::of(&facts).or_default_for(&facts)
    }

    #[test]
    fn the_alerts_own_word_sets_the_severity_and_silence_defaults_by_kind() {
        let with = |word: &str| of(json!({"name": "x", "event_data": {"Severity": word}}));
        assert_eq!(
            ["CRITICAL", "high", "Medium", "low", "whatever"].map(with),
            [
                Severity::Critical,
                Severity::High,
                Severity::Medium,
                Severity::Low,
                Severity::High
            ]
        );
        assert_eq!(of(json!({"client_id": "C.1"})), Severity::Info, "an announcement");
        assert_eq!(
            ["informational", "DEBUG", "notice"].map(Severity::from_word),
            [Severity::Info, Severity::Info, Severity::Low]
        );
    }
}
