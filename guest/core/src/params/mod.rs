//! Artifact parameters: declared with Velociraptor's names, defaults and
//! types, parsed from the text a user copies out of their artifact
//! configuration (docs/velociraptor.md §1.7).
//!
//! Parsing is stricter than VQL's generated preamble, which turns any typo
//! into a silent `false` or `0`: an unknown name, a value of the wrong type
//! or a regex that does not compile is an error that names the parameter.

mod csv_table;

use serde_json::{Map, Value};

use crate::vql::VqlRegex;

pub use self::csv_table::parse_csv_table;

/// One CSV row, keyed by the header's column names, in column order.
pub type Row = Map<String, Value>;

/// How a parameter's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    Bool,
    Int,
    String,
    Regex,
    Csv,
    JsonArray,
    Choices,
    Multichoice,
}

/// A parameter a module accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The default, exactly as the artifact declares it.
    pub default: &'static str,
    pub description: &'static str,
    /// The allowed values of `Choices` and `Multichoice` parameters.
    pub choices: &'static [&'static str],
    /// The smallest and largest value of an `Int` parameter.
    pub range: (i64, i64),
}

/// The range of an `Int` parameter that declares none: a billion either
/// way (31 years in seconds), so that no value from a configuration can
/// overflow the arithmetic it feeds.
pub const DEFAULT_INT_RANGE: (i64, i64) = (-1_000_000_000, 1_000_000_000);

impl ParamSpec {
    pub const fn new(name: &'static str, kind: ParamKind, default: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind,
            default,
            description,
            choices: &[],
            range: DEFAULT_INT_RANGE,
        }
    }

    pub const fn with_range(mut self, min: i64, max: i64) -> Self {
        self.range = (min, max);
        self
    }

    pub const fn with_choices(mut self, choices: &'static [&'static str]) -> Self {
        self.choices = choices;
        self
    }
}

/// A parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {param}: {message}")]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

impl ParamError {
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// A parsed parameter value.
#[derive(Debug, Clone)]
enum ParamValue {
    Bool(bool),
    Int(i64),
    Text(String),
    Regex(VqlRegex),
    Table(Vec<Row>),
    List(Vec<Value>),
}

/// Every parameter of a module, parsed: the given values over the
/// declared defaults.
#[derive(Debug, Clone)]
pub struct Params {
    values: Vec<(&'static str, ParamValue)>,
}

impl Params {
    /// Parses `given` (name, text) against `specs`. Names are matched
    /// exactly, as Velociraptor does.
    pub fn parse(specs: &[ParamSpec], given: &[(String, String)]) -> Result<Self, ParamError> {
        for (name, _) in given {
            if !specs.iter().any(|s| s.name == name) {
                return Err(unknown_param(specs, name));
            }
        }
        let mut values = Vec::with_capacity(specs.len());
        for spec in specs {
            let text = given
                .iter()
                .rev()
                .find(|(name, _)| name == spec.name)
                .map_or(spec.default, |(_, text)| text.as_str());
            let value = parse_value(spec, text).map_err(|message| ParamError::new(spec.name, message))?;
            values.push((spec.name, value));
        }
        Ok(Self { values })
    }

    fn get(&self, name: &str) -> &ParamValue {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("module reads undeclared parameter {name}"))
    }

    pub fn bool(&self, name: &str) -> bool {
        match self.get(name) {
            ParamValue::Bool(b) => *b,
            other => panic!("parameter {name} is not a bool: {other:?}"),
        }
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            ParamValue::Int(i) => *i,
            other => panic!("parameter {name} is not an int: {other:?}"),
        }
    }

    /// A `String` or `Choices` parameter.
    pub fn text(&self, name: &str) -> &str {
        match self.get(name) {
            ParamValue::Text(s) => s,
            other => panic!("parameter {name} is not text: {other:?}"),
        }
    }

    pub fn regex(&self, name: &str) -> &VqlRegex {
        match self.get(name) {
            ParamValue::Regex(r) => r,
            other => panic!("parameter {name} is not a regex: {other:?}"),
        }
    }

    pub fn table(&self, name: &str) -> &[Row] {
        match self.get(name) {
            ParamValue::Table(rows) => rows,
            other => panic!("parameter {name} is not a CSV table: {other:?}"),
        }
    }

    /// A `JsonArray` or `Multichoice` parameter.
    pub fn list(&self, name: &str) -> &[Value] {
        match self.get(name) {
            ParamValue::List(items) => items,
            other => panic!("parameter {name} is not a list: {other:?}"),
        }
    }
}

fn unknown_param(specs: &[ParamSpec], name: &str) -> ParamError {
    let message = match specs.iter().find(|s| s.name.eq_ignore_ascii_case(name)) {
        Some(close) => format!(
            "unknown parameter (names are case-sensitive: did you mean {}?)",
            close.name
        ),
        None => {
            let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
            format!("unknown parameter (this module accepts: {})", names.join(", "))
        }
    };
    ParamError::new(name, message)
}

fn parse_value(spec: &ParamSpec, text: &str) -> Result<ParamValue, String> {
    Ok(match spec.kind {
        ParamKind::Bool => ParamValue::Bool(parse_bool(text)?),
        ParamKind::Int => ParamValue::Int(parse_int(text, spec.range)?),
        ParamKind::String => ParamValue::Text(text.to_string()),
        ParamKind::Regex => ParamValue::Regex(VqlRegex::new(text).map_err(|e| e.to_string())?),
        ParamKind::Csv => ParamValue::Table(parse_csv_table(text)?),
        ParamKind::JsonArray => ParamValue::List(parse_json_array(text)?),
        ParamKind::Choices => {
            if !spec.choices.contains(&text) {
                return Err(format!("{text:?} is not one of {}", spec.choices.join(", ")));
            }
            ParamValue::Text(text.to_string())
        }
        ParamKind::Multichoice => {
            let items = parse_json_array(text)?;
            for item in &items {
                match item.as_str() {
                    Some(s) if spec.choices.contains(&s) => {}
                    _ => return Err(format!("{item} is not one of {}", spec.choices.join(", "))),
                }
            }
            ParamValue::List(items)
        }
    })
}

/// VQL's bool preamble: `Y`, `YES`, `TRUE`, `OK` (any case) are true. We
/// also name the false spellings so that a typo is an error, not `false`.
fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_uppercase().as_str() {
        "Y" | "YES" | "TRUE" | "OK" => Ok(true),
        "" | "N" | "NO" | "FALSE" => Ok(false),
        _ => Err(format!("expected a boolean (Y, N, TRUE, FALSE, YES, NO), got {text:?}")),
    }
}

fn parse_int(text: &str, (min, max): (i64, i64)) -> Result<i64, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(0);
    }
    let out_of_range = || format!("{trimmed} is out of range ({min} to {max})");
    let value = trimmed.parse::<i64>().map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => out_of_range(),
        _ => format!("expected an integer, got {text:?}"),
    })?;
    if !(min..=max).contains(&value) {
        return Err(out_of_range());
    }
    Ok(value)
}

fn parse_json_array(text: &str) -> Result<Vec<Value>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(format!("expected a JSON array, got {text:?}")),
        Err(e) => Err(format!("expected a JSON array: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SPECS: &[ParamSpec] = &[
        ParamSpec::new("HTML", ParamKind::Bool, "Y", ""),
        ParamSpec::new("SendInterval", ParamKind::Int, "10", ""),
        ParamSpec::new("AlertMsgInclude", ParamKind::Regex, ".+", ""),
        ParamSpec::new("Recipients", ParamKind::Csv, "Address\n", ""),
        ParamSpec::new("SeverityThreshold", ParamKind::JsonArray, "[]", ""),
        ParamSpec::new("AttachmentFormat", ParamKind::Choices, "jsonl", "").with_choices(&["csv", "jsonl"]),
        ParamSpec::new("ErrorHandling", ParamKind::Multichoice, r#"["IgnoreCancelled"]"#, "")
            .with_choices(&["IncludeHunts", "IgnoreCancelled"]),
    ];

    fn given(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let p = Params::parse(SPECS, &[]).unwrap();
        assert!(p.bool("HTML"));
        assert_eq!(p.int("SendInterval"), 10);
        assert_eq!(p.regex("AlertMsgInclude").pattern(), ".+");
        assert!(p.table("Recipients").is_empty());
        assert!(p.list("SeverityThreshold").is_empty());
        assert_eq!(p.text("AttachmentFormat"), "jsonl");
        assert_eq!(p.list("ErrorHandling"), &[json!("IgnoreCancelled")]);
    }

    #[test]
    fn bools_follow_the_vql_preamble() {
        for (text, want) in [
            ("Y", true),
            ("yes", true),
            ("TRUE", true),
            ("ok", true),
            ("N", false),
            ("", false),
            ("false", false),
        ] {
            let p = Params::parse(SPECS, &given(&[("HTML", text)])).unwrap();
            assert_eq!(p.bool("HTML"), want, "{text:?}");
        }
    }

    #[test]
    fn unknown_parameter_is_named() {
        let err = Params::parse(SPECS, &given(&[("Secret", "x")])).unwrap_err();
        assert_eq!(err.param, "Secret");
        assert!(err.message.contains("unknown parameter"), "{err}");
    }

    #[test]
    fn wrong_case_suggests_the_right_name() {
        let err = Params::parse(SPECS, &given(&[("html", "Y")])).unwrap_err();
        assert!(err.message.contains("did you mean HTML"), "{err}");
    }

    #[test]
    fn wrong_types_are_named() {
        let cases = [
            ("SendInterval", "ten", "expected an integer"),
            ("HTML", "maybe", "expected a boolean"),
            ("AlertMsgInclude", "(oops", "does not compile"),
            ("SeverityThreshold", "high", "expected a JSON array"),
            ("AttachmentFormat", "xml", "is not one of csv, jsonl"),
            ("ErrorHandling", r#"["Sometimes"]"#, "is not one of"),
        ];
        for (name, text, want) in cases {
            let err = Params::parse(SPECS, &given(&[(name, text)])).unwrap_err();
            assert_eq!(err.param, name);
            assert!(err.message.contains(want), "{name}={text:?}: {err}");
        }
    }

    /// A value that would overflow the arithmetic it feeds is refused,
    /// naming the parameter and the range, whether i64 holds it or not.
    #[test]
    fn out_of_range_ints_are_refused_with_the_range() {
        for text in ["9223372036854775807", "99999999999999999999", "-1000000001"] {
            let err = Params::parse(SPECS, &given(&[("SendInterval", text)])).unwrap_err();
            assert_eq!(err.param, "SendInterval");
            assert!(
                err.message.ends_with("is out of range (-1000000000 to 1000000000)"),
                "{text}: {err}"
            );
        }
        let narrow = [ParamSpec::new("Period", ParamKind::Int, "60", "").with_range(1, 86_400)];
        let err = Params::parse(&narrow, &given(&[("Period", "0")])).unwrap_err();
        assert_eq!(err.to_string(), "parameter Period: 0 is out of range (1 to 86400)");
    }

    #[test]
    fn empty_int_is_zero_and_negative_ints_parse() {
        let p = Params::parse(SPECS, &given(&[("SendInterval", "")])).unwrap();
        assert_eq!(p.int("SendInterval"), 0);
        let p = Params::parse(SPECS, &given(&[("SendInterval", " -1 ")])).unwrap();
        assert_eq!(p.int("SendInterval"), -1);
    }
}
