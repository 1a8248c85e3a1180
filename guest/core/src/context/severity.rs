//! `SeverityTransforms` and `SeverityThreshold` (docs/velociraptor.md §7.3),
//! with decision D5 (docs/decisions.md).

use serde_json::{Map, Value};

use crate::params::{ParamError, Row};
use crate::vql::{VqlRegex, get_member_path, is_truthy, render_value};

/// One `SeverityTransforms` row: where to read a severity and how to
/// rewrite it.
#[derive(Debug, Clone)]
pub struct SeverityRule {
    /// Dotted path into the (unflattened) alert context; case-sensitive.
    pub member: String,
    pub regex: VqlRegex,
    pub replace: String,
}

/// The `SeverityTransforms` table.
#[derive(Debug, Clone, Default)]
pub struct SeverityRules {
    rules: Vec<SeverityRule>,
}

impl SeverityRules {
    /// Reads the `Member,Regex,Replace` table of parameter `param`.
    pub fn from_rows(param: &str, rows: &[Row]) -> Result<Self, ParamError> {
        let mut rules = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let cell = |name: &str| row.get(name).map(render_cell).unwrap_or_default();
            let member = cell("Member");
            if member.is_empty() {
                return Err(ParamError::new(param, format!("row {} has no Member", i + 1)));
            }
            let regex =
                VqlRegex::new(&cell("Regex")).map_err(|e| ParamError::new(param, format!("row {}: {e}", i + 1)))?;
            rules.push(SeverityRule {
                member,
                regex,
                replace: cell("Replace"),
            });
        }
        Ok(Self { rules })
    }

    /// The members the table reads: they are removed from the displayed
    /// context whether or not a severity was derived.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.member.as_str())
    }

    /// Derives the alert's severity. A row applies when its member exists
    /// and its Regex matches the member's value: a row with a Replace then
    /// gives the Replace text (`$1` references expanded from the match),
    /// a row without one passes the value through. The last applying row
    /// with a non-empty result wins.
    ///
    /// This is the documented meaning (D5). Velociraptor's VQL also
    /// passes non-matching values through Replace rows, so that `warning`
    /// with the row `level,(?i)warn,medium` becomes `mediuming`.
    pub fn derive(&self, context: &Map<String, Value>) -> Option<String> {
        let mut severity = None;
        for rule in &self.rules {
            let Some(value) = get_member_path(context, &rule.member).filter(|v| !v.is_null()) else {
                continue;
            };
            let text = render_value(value);
            let candidate = if rule.replace.is_empty() {
                rule.regex.is_match(&text).then(|| value.clone())
            } else {
                rule.regex.expand_first(&text, &rule.replace).map(Value::String)
            };
            if let Some(candidate) = candidate.filter(is_truthy) {
                severity = Some(render_value(&candidate));
            }
        }
        severity
    }
}

/// `SeverityThreshold`: the severities that may notify.
#[derive(Debug, Clone, Default)]
pub struct SeverityThreshold {
    allowed: Vec<String>,
}

impl SeverityThreshold {
    pub fn from_list(items: &[Value]) -> Self {
        Self {
            allowed: items.iter().map(render_cell).collect(),
        }
    }

    /// An alert passes when it has no severity, when the threshold is
    /// empty, or when its severity is listed (exact, case-sensitive).
    pub fn allows(&self, severity: Option<&str>) -> bool {
        match severity {
            None => true,
            Some(s) => self.allowed.is_empty() || self.allowed.iter().any(|a| a == s),
        }
    }
}

fn render_cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        other => render_value(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::parse_csv_table;
    use serde_json::json;

    const DEFAULT_TRANSFORMS: &str = "Member,Regex,Replace\nlevel,(?i)warn,medium\nlevel,(?i)error,high\nLevel,(?i)warn,medium\nLevel,(?i)error,high\nseverity,,\nSeverity,,\n";

    fn rules(csv: &str) -> SeverityRules {
        SeverityRules::from_rows("SeverityTransforms", &parse_csv_table(csv).unwrap()).unwrap()
    }

    fn derive(csv: &str, context: Value) -> Option<String> {
        rules(csv).derive(context.as_object().unwrap())
    }

    #[test]
    fn warning_becomes_medium_not_mediuming() {
        // D5: VQL's regex_replace would give "mediuming".
        assert_eq!(
            derive(DEFAULT_TRANSFORMS, json!({"level": "warning"})).as_deref(),
            Some("medium")
        );
    }

    #[test]
    fn default_table_maps_error_to_high_and_warn_to_medium() {
        assert_eq!(
            derive(DEFAULT_TRANSFORMS, json!({"level": "ERROR"})).as_deref(),
            Some("high")
        );
        assert_eq!(
            derive(DEFAULT_TRANSFORMS, json!({"Level": "warn"})).as_deref(),
            Some("medium")
        );
    }

    #[test]
    fn the_documented_example_keeps_warnings_as_medium() {
        // The knowledge base's example, which the VQL gets wrong (docs/velociraptor.md §7.3).
        let table = "Member,Regex,Replace\nlevel,(?i)warning,medium\nlevel,(?i)critical,high\n";
        assert_eq!(derive(table, json!({"level": "Warning"})).as_deref(), Some("medium"));
        assert_eq!(derive(table, json!({"level": "critical"})).as_deref(), Some("high"));
        assert_eq!(derive(table, json!({"level": "info"})), None);
    }

    #[test]
    fn an_empty_regex_and_replace_pass_the_value_through_and_the_last_row_wins() {
        assert_eq!(
            derive(DEFAULT_TRANSFORMS, json!({"level": "error", "Severity": "critical"})).as_deref(),
            Some("critical")
        );
    }

    #[test]
    fn replace_expands_group_references() {
        let table = "Member,Regex,Replace\nDetails.Level,^(high|critical)$,sev-$1\n";
        assert_eq!(
            derive(table, json!({"Details": {"Level": "CRITICAL"}})).as_deref(),
            Some("sev-CRITICAL")
        );
    }

    #[test]
    fn a_missing_member_gives_no_severity() {
        assert_eq!(derive(DEFAULT_TRANSFORMS, json!({"other": "error"})), None);
        assert_eq!(
            derive(DEFAULT_TRANSFORMS, json!({"Severity": ""})),
            None,
            "empty is not a severity"
        );
    }

    #[test]
    fn threshold_lets_alerts_without_severity_through() {
        let t = SeverityThreshold::from_list(&[json!("medium"), json!("high")]);
        assert!(t.allows(None));
        assert!(t.allows(Some("high")));
        assert!(!t.allows(Some("low")));
        assert!(!t.allows(Some("High")), "equality is case-sensitive");
        assert!(SeverityThreshold::from_list(&[]).allows(Some("anything")));
    }
}
