//! VQL's `=~` operator (docs/velociraptor.md §1.1), kept as VQL has it
//! (decision D1, docs/decisions.md).

use serde_json::Value;
use std::fmt;

use super::value::render_value;

/// A regex parameter with VQL's matching rules:
///
/// - always case-insensitive (VQL prefixes every pattern with `(?i)`);
/// - unanchored search;
/// - the patterns `""`, `"."` and `".*"` match everything, even a missing
///   value or an empty list;
/// - a list matches when any of its elements matches.
#[derive(Clone)]
pub struct VqlRegex {
    pattern: String,
    compiled: Option<regex::Regex>,
}

/// A regex that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("regex {pattern:?} does not compile: {reason}")]
pub struct RegexError {
    pub pattern: String,
    pub reason: String,
}

/// Bound the compiled size so that a hostile or careless pattern cannot
/// exhaust a module's memory.
const COMPILED_SIZE_LIMIT: usize = 2 * 1024 * 1024;

impl VqlRegex {
    /// Compiles `pattern` with VQL's rules.
    pub fn new(pattern: &str) -> Result<Self, RegexError> {
        Self::with_size_limit(pattern, COMPILED_SIZE_LIMIT)
    }

    /// As [`VqlRegex::new`], with the compiled program and its search
    /// cache bounded by `bytes` each (for regexes a host keeps many of).
    pub fn with_size_limit(pattern: &str, bytes: usize) -> Result<Self, RegexError> {
        let compiled = if matches_everything(pattern) {
            None
        } else {
            let re = regex::RegexBuilder::new(pattern)
                .case_insensitive(true)
                .size_limit(bytes)
                .dfa_size_limit(bytes)
                .build()
                .map_err(|e| RegexError {
                    pattern: pattern.to_string(),
                    reason: first_line(&e.to_string()),
                })?;
            Some(re)
        };
        Ok(Self {
            pattern: pattern.to_string(),
            compiled,
        })
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// True when the pattern matches everything, even a missing value
    /// (`""`, `.`, `.*`): a filter on it lets every row through.
    pub fn matches_everything(&self) -> bool {
        self.compiled.is_none()
    }

    /// True when the parameter is empty. The artifacts treat an empty regex
    /// as "this filter is off" (`X = "" OR value =~ X`).
    pub fn is_empty(&self) -> bool {
        self.pattern.is_empty()
    }

    /// `text =~ pattern`.
    pub fn is_match(&self, text: &str) -> bool {
        match &self.compiled {
            None => true,
            Some(re) => re.is_match(text),
        }
    }

    /// `value =~ pattern` for any JSON value: NULL only matches the
    /// match-everything patterns, a list matches if any element does, other
    /// scalars are matched as VQL prints them.
    pub fn matches_value(&self, value: Option<&Value>) -> bool {
        let Some(re) = &self.compiled else {
            return true;
        };
        match value {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => re.is_match(s),
            Some(Value::Array(items)) => items.iter().any(|item| self.matches_value(Some(item))),
            Some(other) => re.is_match(&render_value(other)),
        }
    }

    /// True if any of `items` matches (`list =~ pattern`).
    pub fn matches_any<'a>(&self, items: impl IntoIterator<Item = &'a str>) -> bool {
        match &self.compiled {
            None => true,
            Some(re) => items.into_iter().any(|item| re.is_match(item)),
        }
    }

    /// Replaces every match in `text` with `replacement` (`$1`-style group
    /// references expanded), as `regex_replace()` does.
    pub fn replace_all(&self, text: &str, replacement: &str) -> String {
        match &self.compiled {
            None => replacement.to_string(),
            Some(re) => re.replace_all(text, replacement).into_owned(),
        }
    }

    /// The replacement text of the first match, with `$1`-style references
    /// expanded from that match; None when nothing matches.
    pub fn expand_first(&self, text: &str, replacement: &str) -> Option<String> {
        match &self.compiled {
            None => Some(replacement.to_string()),
            Some(re) => re.captures(text).map(|caps| {
                let mut out = String::new();
                caps.expand(replacement, &mut out);
                out
            }),
        }
    }
}

impl fmt::Debug for VqlRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VqlRegex({:?})", self.pattern)
    }
}

impl PartialEq for VqlRegex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

/// VQL short-circuits these patterns to true without looking at the value.
fn matches_everything(pattern: &str) -> bool {
    matches!(pattern, "" | "." | ".*")
}

fn first_line(s: &str) -> String {
    // regex errors are multi-line diagrams; the last line says what is wrong.
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_is_case_insensitive_and_unanchored() {
        let re = VqlRegex::new("generic\\.client").unwrap();
        assert!(re.is_match("Custom.Generic.Client.Info"));
        assert!(!re.is_match("Windows.Sys.Users"));
    }

    #[test]
    fn empty_dot_and_dot_star_match_even_missing_values() {
        for p in ["", ".", ".*"] {
            let re = VqlRegex::new(p).unwrap();
            assert!(re.matches_value(None), "{p:?} on NULL");
            assert!(re.matches_value(Some(&json!([]))), "{p:?} on []");
            assert!(re.matches_any(std::iter::empty()), "{p:?} on no items");
        }
    }

    #[test]
    fn dot_plus_does_not_match_null_or_empty_list() {
        let re = VqlRegex::new(".+").unwrap();
        assert!(!re.matches_value(None));
        assert!(!re.matches_value(Some(&Value::Null)));
        assert!(!re.matches_value(Some(&json!([]))));
        assert!(!re.is_match(""));
        assert!(re.is_match("x"));
    }

    #[test]
    fn a_list_matches_when_any_element_matches() {
        let re = VqlRegex::new("^finance$").unwrap();
        assert!(re.matches_value(Some(&json!(["ops", "FINANCE"]))));
        assert!(!re.matches_value(Some(&json!(["ops", "finance-2"]))));
        assert!(re.matches_any(["ops", "Finance"]));
    }

    #[test]
    fn numbers_and_bools_match_as_printed() {
        let re = VqlRegex::new("^42$").unwrap();
        assert!(re.matches_value(Some(&json!(42))));
        assert!(VqlRegex::new("^true$").unwrap().matches_value(Some(&json!(true))));
    }

    #[test]
    fn a_pattern_that_does_not_compile_is_an_error() {
        let err = VqlRegex::new("(unclosed").unwrap_err();
        assert_eq!(err.pattern, "(unclosed");
        assert!(!err.reason.is_empty());
    }

    #[test]
    fn expand_first_uses_the_match_groups() {
        let re = VqlRegex::new("^crit(ical)?$").unwrap();
        assert_eq!(re.expand_first("Critical", "high-$1").as_deref(), Some("high-ical"));
        assert_eq!(re.expand_first("warning", "high"), None);
    }
}
