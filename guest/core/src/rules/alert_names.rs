//! `AlertMsgInclude` and `AlertMsgExclude`: which alerts, by name, the
//! modules that watch `Server.Internal.Alerts` pass on (Server.Monitor.Alerts,
//! user messages, webhooks). Declared to the host as an interest in the
//! alert rows' `name` column, and decided on a borrowed read of that column
//! before a row is built.

use super::alerts::ALERT_QUEUE;
use super::interest::{self, ColumnTest, Interest, RowFilter};
use crate::params::Params;
use crate::vql::{RawRow, VqlRegex};

/// The alert-name filter of one configured module.
#[derive(Debug, Clone)]
pub struct AlertNameFilter {
    include: VqlRegex,
    exclude: VqlRegex,
    /// The same filter as the host evaluates it, when it filters at all.
    row_filter: Option<RowFilter>,
}

impl AlertNameFilter {
    /// From the `AlertMsgInclude` and `AlertMsgExclude` parameters.
    pub fn from_params(p: &Params) -> Self {
        Self::new(p.regex("AlertMsgInclude").clone(), p.regex("AlertMsgExclude").clone())
    }

    pub fn new(include: VqlRegex, exclude: VqlRegex) -> Self {
        let mut filter = Self {
            include,
            exclude,
            row_filter: None,
        };
        // A filter past the interests' bounds (a very long list of names)
        // is decided by `passes` alone, and declared to no one.
        filter.row_filter = interest::compile(&filter.declared()).ok().and_then(|mut f| f.pop());
        filter
    }

    /// Whether an alert of this name is passed on: it matches the include
    /// regex (empty: all) and not the exclude regex (empty: none).
    pub fn passes(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.is_match(name))
            && (self.exclude.is_empty() || !self.exclude.is_match(name))
    }

    /// The filter as an interest in alert rows (none when it lets every
    /// name through, or is too long to be an interest).
    pub fn interests(&self) -> Vec<Interest> {
        if self.row_filter.is_none() {
            return Vec::new();
        }
        self.declared()
    }

    fn declared(&self) -> Vec<Interest> {
        let columns: Vec<ColumnTest> = [
            ColumnTest::matches("name", &self.include),
            ColumnTest::not_matches("name", &self.exclude),
        ]
        .into_iter()
        .flatten()
        .collect();
        if columns.is_empty() {
            return Vec::new();
        }
        vec![Interest {
            queue: ALERT_QUEUE.to_string(),
            columns,
        }]
    }

    /// Whether an alert row (its text) may be passed on, read in place: a
    /// row without a `name`, or that is not a JSON object, is left to the
    /// module, which reports it; a name that is not text is tested as VQL
    /// reads it (null never matches), as the host tests the interest.
    pub fn may_pass(&self, row_text: &str) -> bool {
        self.row_filter.is_none() || RawRow::parse(row_text).is_none_or(|row| self.admits(&row))
    }

    /// As [`AlertNameFilter::may_pass`], for a row already read in place.
    pub fn admits(&self, row: &RawRow) -> bool {
        self.row_filter.as_ref().is_none_or(|filter| filter.admits(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &str, exclude: &str) -> AlertNameFilter {
        AlertNameFilter::new(VqlRegex::new(include).unwrap(), VqlRegex::new(exclude).unwrap())
    }

    #[test]
    fn names_pass_as_the_artifacts_filter_them() {
        let f = filter("honey|sigma", "test");
        assert!(f.passes("Honey file read"));
        assert!(!f.passes("Sigma test hit"), "exclude wins");
        assert!(!f.passes("Other"));
        assert!(filter("", "").passes("anything"), "empty filters are off");
        assert!(!filter(".+", "").passes(""), "the default include wants a name");
    }

    #[test]
    fn a_filter_that_passes_everything_declares_no_interest() {
        assert!(filter("", "").interests().is_empty());
        assert!(filter(".*", "").interests().is_empty());
        assert_eq!(filter(".+", "x").interests()[0].columns.len(), 2);
        assert!(filter("", "").may_pass("not json"));
    }

    use proptest::prelude::*;

    proptest! {
        /// A row refused on its raw `name` is one the modules would have
        /// filtered out or reported: never an alert they pass on.
        #[test]
        fn a_row_refused_in_place_is_never_passed_on(
            name in proptest::option::of(proptest::prop_oneof![
                proptest::sample::select(vec!["Honey", "honey test", "", "é\"x", "Sigma"])
                    .prop_map(|s| serde_json::Value::String(s.into())),
                Just(serde_json::Value::Null),
                Just(serde_json::json!(7)),
                Just(serde_json::json!(["honey"])),
            ]),
            include in proptest::sample::select(vec!["", ".+", "honey", "^h", "7"]),
            exclude in proptest::sample::select(vec!["", "test", ".*", "honey"]),
        ) {
            let f = filter(include, exclude);
            let mut row = serde_json::Map::new();
            row.insert("client_id".into(), "server".into());
            if let Some(name) = name {
                row.insert("name".into(), name);
            }
            let text = serde_json::Value::Object(row.clone()).to_string();
            if !f.may_pass(&text) {
                let passed = crate::velociraptor::AlertRow::parse(&row).map(|a| f.passes(a.name));
                prop_assert!(!matches!(passed, Ok(true)), "{} refused in place, passed on", text);
            }
        }
    }

    #[test]
    fn a_filter_too_long_for_an_interest_is_decided_by_the_module_alone() {
        let names = (0..600)
            .map(|i| format!("alert number {i}"))
            .collect::<Vec<_>>()
            .join("|");
        assert!(names.len() > interest::MAX_TEXT);
        let f = filter(&names, "");
        assert!(f.interests().is_empty(), "declared to no one");
        assert!(f.may_pass(r#"{"name":"Other"}"#), "the module decides");
        assert!(f.passes("alert number 599") && !f.passes("Other"));
    }

    #[test]
    fn a_row_read_in_place_passes_as_its_name_does() {
        let f = filter("honey", "test");
        assert!(f.may_pass(r#"{"name":"Honey","client_id":"server"}"#));
        assert!(!f.may_pass(r#"{"name":"Honey test","client_id":"server"}"#));
        assert!(!f.may_pass(r#"{"name":"Other"}"#));
        assert!(
            f.may_pass(r#"{"client_id":"server"}"#),
            "no name: the module reports it"
        );
        assert!(f.may_pass("[]"), "not an object: the module reports it");
    }
}
