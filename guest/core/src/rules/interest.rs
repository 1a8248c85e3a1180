//! Interests: which rows of its queues a rule may act on, declared when it
//! is configured (`interest` in `wit/types.wit`), so that the host can
//! spare the calls for the other rows. The host reads a row once and
//! evaluates every module's interest with [`RowFilter`], the same code a
//! rule's own `may_act` uses, so both read a column the same way.
//!
//! An interest only spares calls: a row that lacks a tested column, or is
//! not a JSON object, passes, and the rule decides.

use crate::vql::{RawRow, RegexError, VqlRegex};

mod shared;

pub use self::shared::{SharedIndex, SharedRow};

/// Bounds on what a module may declare: its interests come from its own
/// (possibly hostile) output, and the host keeps them and evaluates them
/// on every row, outside the module's memory limit and deadline.
pub const MAX_INTERESTS: usize = 16;
/// Tests in one interest.
pub const MAX_TESTS: usize = 16;
/// Tests in all of a module's interests.
pub const MAX_TESTS_IN_ALL: usize = 64;
/// Values of one `one-of` test.
pub const MAX_VALUES: usize = 1024;
/// Bytes of a column name, a pattern or a value.
pub const MAX_TEXT: usize = 4096;
/// Bytes of every name, pattern and value of a module's interests.
pub const MAX_TEXT_IN_ALL: usize = 64 * 1024;
/// Each regex's compiled program and search cache, in bytes (a regex
/// parameter may take eight times more).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Rows of one queue that a rule may act on: those whose columns pass
/// every test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interest {
    pub queue: String,
    pub columns: Vec<ColumnTest>,
}

/// A test on one top-level column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnTest {
    pub column: String,
    pub test: ValueTest,
}

/// How a column's value is tested (VQL's `=~` for the regexes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueTest {
    Matches(String),
    NotMatches(String),
    /// Text equal to one of these, exactly.
    OneOf(Vec<String>),
}

impl ColumnTest {
    fn text_bytes(&self) -> usize {
        self.column.len()
            + match &self.test {
                ValueTest::Matches(p) | ValueTest::NotMatches(p) => p.len(),
                ValueTest::OneOf(values) => values.iter().map(String::len).sum(),
            }
    }

    /// `column =~ regex`; nothing when the regex matches everything (the
    /// test would hold for every row).
    pub fn matches(column: &str, regex: &VqlRegex) -> Option<Self> {
        (!regex.matches_everything()).then(|| Self {
            column: column.to_string(),
            test: ValueTest::Matches(regex.pattern().to_string()),
        })
    }

    /// `NOT column =~ regex`; nothing for an empty regex (a filter that is
    /// off, as the artifacts read it).
    pub fn not_matches(column: &str, regex: &VqlRegex) -> Option<Self> {
        (!regex.is_empty()).then(|| Self {
            column: column.to_string(),
            test: ValueTest::NotMatches(regex.pattern().to_string()),
        })
    }
}

/// Why an interest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterestError {
    #[error("{0} interests declared, at most {MAX_INTERESTS} are read")]
    TooMany(usize),
    #[error(
        "{tests} tests and {bytes} bytes of names, patterns and values in all, at most {MAX_TESTS_IN_ALL} and {MAX_TEXT_IN_ALL}"
    )]
    TooMuch { tests: usize, bytes: usize },
    #[error("the interest in {queue:?} has {count} tests, at most {MAX_TESTS}")]
    TooManyTests { queue: String, count: usize },
    #[error("the test on column {column:?} lists {count} values, at most {MAX_VALUES}")]
    TooManyValues { column: String, count: usize },
    #[error("the interest in {queue:?} has a name, pattern or value longer than {MAX_TEXT} bytes")]
    TooLong { queue: String },
    #[error("the test on column {column:?}: {error}")]
    Regex { column: String, error: RegexError },
}

/// Compiles a module's interests, refusing the whole list if any part is
/// out of bounds or does not compile (the host then calls the module for
/// every row, which loses nothing).
pub fn compile(interests: &[Interest]) -> Result<Vec<RowFilter>, InterestError> {
    if interests.len() > MAX_INTERESTS {
        return Err(InterestError::TooMany(interests.len()));
    }
    let tests: usize = interests.iter().map(|i| i.columns.len()).sum();
    let bytes: usize = interests
        .iter()
        .flat_map(|i| &i.columns)
        .map(ColumnTest::text_bytes)
        .sum();
    if tests > MAX_TESTS_IN_ALL || bytes > MAX_TEXT_IN_ALL {
        return Err(InterestError::TooMuch { tests, bytes });
    }
    interests.iter().map(RowFilter::compile).collect()
}

/// Whether a row of `queue` may act for a module with these interests:
/// one of the module's interests in that queue admits it, or it declared
/// none there.
pub fn admitted(filters: &[RowFilter], queue: &str, row: &RawRow) -> bool {
    let mut declared = false;
    for filter in filters.iter().filter(|f| f.queue == queue) {
        if filter.admits(row) {
            return true;
        }
        declared = true;
    }
    !declared
}

/// An interest ready to test rows with (its regexes compiled).
#[derive(Debug, Clone)]
pub struct RowFilter {
    queue: String,
    tests: Vec<(String, Compiled)>,
}

#[derive(Debug, Clone)]
enum Compiled {
    Matches(VqlRegex),
    NotMatches(VqlRegex),
    OneOf(Vec<String>),
}

impl RowFilter {
    fn compile(interest: &Interest) -> Result<Self, InterestError> {
        let queue = &interest.queue;
        if interest.columns.len() > MAX_TESTS {
            return Err(InterestError::TooManyTests {
                queue: queue.clone(),
                count: interest.columns.len(),
            });
        }
        let too_long = || InterestError::TooLong { queue: queue.clone() };
        if queue.len() > MAX_TEXT {
            return Err(too_long());
        }
        let mut tests = Vec::with_capacity(interest.columns.len());
        for ColumnTest { column, test } in &interest.columns {
            if column.len() > MAX_TEXT {
                return Err(too_long());
            }
            let regex = |pattern: &str| {
                if pattern.len() > MAX_TEXT {
                    return Err(too_long());
                }
                VqlRegex::with_size_limit(pattern, REGEX_SIZE_LIMIT).map_err(|error| InterestError::Regex {
                    column: column.clone(),
                    error,
                })
            };
            let compiled = match test {
                ValueTest::Matches(p) => Compiled::Matches(regex(p)?),
                ValueTest::NotMatches(p) => Compiled::NotMatches(regex(p)?),
                ValueTest::OneOf(values) if values.len() > MAX_VALUES => {
                    return Err(InterestError::TooManyValues {
                        column: column.clone(),
                        count: values.len(),
                    });
                }
                ValueTest::OneOf(values) if values.iter().any(|v| v.len() > MAX_TEXT) => return Err(too_long()),
                ValueTest::OneOf(values) => Compiled::OneOf(values.clone()),
            };
            tests.push((column.clone(), compiled));
        }
        Ok(Self {
            queue: queue.clone(),
            tests,
        })
    }

    /// The queue whose rows this filter tests.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether a row (read in place) may act: every test holds, or cannot
    /// be made because the row lacks its column.
    pub fn admits(&self, row: &RawRow) -> bool {
        self.tests
            .iter()
            .all(|(column, test)| test.holds(row, column).unwrap_or(true))
    }
}

impl Compiled {
    fn holds(&self, row: &RawRow, column: &str) -> Option<bool> {
        match self {
            Compiled::Matches(regex) => column_matches(regex, row, column),
            Compiled::NotMatches(regex) => column_matches(regex, row, column).map(|m| !m),
            Compiled::OneOf(values) => {
                row.raw(column)?;
                Some(row.str(column).is_some_and(|text| values.iter().any(|v| v == text)))
            }
        }
    }
}

/// `column =~ regex` on a row read in place (VQL's rules: a string as it
/// is, other values as VQL writes them); nothing when the row lacks the
/// column.
pub fn column_matches(regex: &VqlRegex, row: &RawRow, column: &str) -> Option<bool> {
    row.raw(column)?;
    Some(match row.str(column) {
        Some(text) => regex.is_match(text),
        None => regex.matches_value(row.value(column).as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(columns: Vec<ColumnTest>) -> RowFilter {
        let interest = Interest {
            queue: "Q".into(),
            columns,
        };
        compile(&[interest]).unwrap().remove(0)
    }

    fn test(column: &str, test: ValueTest) -> ColumnTest {
        ColumnTest {
            column: column.into(),
            test,
        }
    }

    fn admits(filter: &RowFilter, row: &str) -> bool {
        filter.admits(&RawRow::parse(row).unwrap())
    }

    #[test]
    fn a_row_passes_when_every_test_holds_or_its_column_is_missing() {
        let f = filter(vec![
            test("Image", ValueTest::Matches(r"\\tools\\".into())),
            test("User", ValueTest::NotMatches("^svc_".into())),
            test("Kind", ValueTest::OneOf(vec!["start".into(), "exec".into()])),
        ]);
        assert!(admits(
            &f,
            r#"{"Image":"C:\\TOOLS\\x.exe","User":"ann","Kind":"start"}"#
        ));
        assert!(!admits(
            &f,
            r#"{"Image":"C:\\Windows\\x.exe","User":"ann","Kind":"start"}"#
        ));
        assert!(!admits(
            &f,
            r#"{"Image":"C:\\tools\\x.exe","User":"SVC_backup","Kind":"start"}"#
        ));
        assert!(
            !admits(&f, r#"{"Image":"C:\\tools\\x.exe","User":"ann","Kind":"Start"}"#),
            "one-of is exact"
        );
        assert!(
            !admits(&f, r#"{"Image":"C:\\tools\\x.exe","User":"ann","Kind":1}"#),
            "one-of is text"
        );
        assert!(admits(&f, r#"{"Other":1}"#), "missing columns: the module decides");
    }

    #[test]
    fn values_are_tested_as_vql_tests_them() {
        let f = filter(vec![test("V", ValueTest::Matches("^(7|true|b)$".into()))]);
        assert!(admits(&f, r#"{"V":7}"#), "a number as VQL writes it");
        assert!(admits(&f, r#"{"V":true}"#));
        assert!(admits(&f, r#"{"V":["a","B"]}"#), "a list when any item matches");
        assert!(!admits(&f, r#"{"V":null}"#), "null never");
        assert!(!admits(&f, r#"{"V":"x","V":"a"}"#), "the last of repeated names");
        let everything = filter(vec![test("V", ValueTest::Matches(".*".into()))]);
        assert!(admits(&everything, r#"{"V":null}"#));
    }

    #[test]
    fn hostile_interests_are_refused_naming_what_is_wrong() {
        let too_many = vec![
            Interest {
                queue: "Q".into(),
                columns: Vec::new()
            };
            MAX_INTERESTS + 1
        ];
        assert_eq!(
            compile(&too_many).unwrap_err(),
            InterestError::TooMany(MAX_INTERESTS + 1)
        );
        let bad = Interest {
            queue: "Q".into(),
            columns: vec![test("Image", ValueTest::Matches("(".into()))],
        };
        let error = compile(&[bad]).unwrap_err().to_string();
        assert!(
            error.contains("column \"Image\"") && error.contains("does not compile"),
            "{error}"
        );
        let long = Interest {
            queue: "Q".into(),
            columns: vec![test("V", ValueTest::OneOf(vec!["x".repeat(MAX_TEXT + 1)]))],
        };
        assert!(matches!(compile(&[long]), Err(InterestError::TooLong { .. })));
        let many_values = Interest {
            queue: "Q".into(),
            columns: vec![test("V", ValueTest::OneOf(vec!["x".repeat(1000); 100]))],
        };
        assert!(matches!(compile(&[many_values]), Err(InterestError::TooMuch { .. })));
        let huge = Interest {
            queue: "Q".into(),
            columns: vec![test("V", ValueTest::Matches(r"\w{1000}".into()))],
        };
        assert!(
            matches!(compile(&[huge]), Err(InterestError::Regex { .. })),
            "compiled size bounded"
        );
    }
}
