//! Many modules' interests evaluated together. A detection deployment has
//! many rules on one queue, each testing the same column with its own
//! regex; searched one by one, the regexes are most of what a row costs
//! the host. Here each column's regexes, from every module, form one
//! `RegexSet` searched once per row, and each module's test reads its
//! pattern's bit. The answers are those of [`RowFilter::admits`]: the same
//! patterns, flags and reading of values (tested against it below).

use std::cell::OnceCell;

use regex::{RegexSet, RegexSetBuilder};
use serde_json::Value;

use super::{Compiled, REGEX_SIZE_LIMIT, RowFilter};
use crate::vql::{RawRow, render_value};

/// The interests of a list of modules (by their index in it), their
/// regexes grouped by column.
#[derive(Debug, Default)]
pub struct SharedIndex {
    /// One set per column name that some test reads with a regex.
    sets: Vec<(String, RegexSet)>,
    modules: Vec<Vec<IndexedFilter>>,
}

#[derive(Debug)]
struct IndexedFilter {
    queue: String,
    tests: Vec<(String, IndexedTest)>,
}

#[derive(Debug)]
enum IndexedTest {
    /// Pattern `slot` of the set `set`: matches, or (negated) does not.
    InSet { set: usize, slot: usize, negated: bool },
    /// Tested on its own (exact values; regexes that match everything).
    Alone(Compiled),
}

impl SharedIndex {
    /// The index of `modules`' filters (each module's list, in order).
    pub fn new(modules: &[&[RowFilter]]) -> Self {
        // Gather each column's distinct patterns.
        let mut patterns: Vec<(String, Vec<String>)> = Vec::new();
        for filter in modules.iter().flat_map(|m| m.iter()) {
            for (column, test) in &filter.tests {
                if let Some(pattern) = set_pattern(test) {
                    let at = match patterns.iter().position(|(c, _)| c == column) {
                        Some(at) => at,
                        None => {
                            patterns.push((column.clone(), Vec::new()));
                            patterns.len() - 1
                        }
                    };
                    if !patterns[at].1.iter().any(|p| p == pattern) {
                        patterns[at].1.push(pattern.to_string());
                    }
                }
            }
        }
        let mut sets = Vec::new();
        for (column, column_patterns) in patterns {
            // Bounded as each regex alone is, times the patterns; a set
            // that will not build leaves its tests to be made alone.
            let built = RegexSetBuilder::new(&column_patterns)
                .case_insensitive(true)
                .size_limit(REGEX_SIZE_LIMIT.saturating_mul(column_patterns.len()))
                .dfa_size_limit(REGEX_SIZE_LIMIT.saturating_mul(column_patterns.len()))
                .build();
            if let Ok(set) = built {
                sets.push((column, set));
            }
        }
        let modules = modules
            .iter()
            .map(|filters| filters.iter().map(|f| index_filter(f, &sets)).collect())
            .collect();
        Self { sets, modules }
    }

    /// A row's view for [`SharedIndex::admits`]: each set searched at most
    /// once, when a test first needs it.
    pub fn read<'r, 'a>(&self, row: &'r RawRow<'a>) -> SharedRow<'r, 'a> {
        SharedRow {
            row,
            hits: self.sets.iter().map(|_| OnceCell::new()).collect(),
        }
    }

    /// Whether module `module`'s interests admit a row of `queue`, as
    /// [`super::admitted`] answers for its filters.
    pub fn admits(&self, module: usize, queue: &str, row: &SharedRow) -> bool {
        let mut declared = false;
        for filter in self.modules[module].iter().filter(|f| f.queue == queue) {
            if filter
                .tests
                .iter()
                .all(|(column, test)| self.holds(test, column, row).unwrap_or(true))
            {
                return true;
            }
            declared = true;
        }
        !declared
    }

    fn holds(&self, test: &IndexedTest, column: &str, row: &SharedRow) -> Option<bool> {
        match test {
            IndexedTest::Alone(compiled) => compiled.holds(row.row, column),
            IndexedTest::InSet { set, slot, negated } => {
                let hits = row.hits[*set].get_or_init(|| search(&self.sets[*set].1, row.row, column));
                hits.as_ref().map(|hits| hits[*slot] != *negated)
            }
        }
    }
}

/// A row being tested: the row, and what each set found in it (None: the
/// row lacks the column).
#[derive(Debug)]
pub struct SharedRow<'r, 'a> {
    row: &'r RawRow<'a>,
    hits: Vec<OnceCell<Option<Vec<bool>>>>,
}

/// The pattern a test contributes to its column's set.
fn set_pattern(test: &Compiled) -> Option<&str> {
    match test {
        Compiled::Matches(regex) | Compiled::NotMatches(regex) if !regex.matches_everything() => Some(regex.pattern()),
        _ => None,
    }
}

fn index_filter(filter: &RowFilter, sets: &[(String, RegexSet)]) -> IndexedFilter {
    let tests = filter
        .tests
        .iter()
        .map(|(column, test)| {
            let in_set = set_pattern(test).and_then(|pattern| {
                let set = sets.iter().position(|(c, _)| c == column)?;
                let slot = sets[set].1.patterns().iter().position(|p| p == pattern)?;
                let negated = matches!(test, Compiled::NotMatches(_));
                Some(IndexedTest::InSet { set, slot, negated })
            });
            (
                column.clone(),
                in_set.unwrap_or_else(|| IndexedTest::Alone(test.clone())),
            )
        })
        .collect();
    IndexedFilter {
        queue: filter.queue.clone(),
        tests,
    }
}

/// Which of the set's patterns the column's value matches, read as
/// `VqlRegex::matches_value` reads it: a string as it is, a list when any
/// item matches, null never, other values as VQL writes them.
fn search(set: &RegexSet, row: &RawRow, column: &str) -> Option<Vec<bool>> {
    row.raw(column)?;
    let mut hits = vec![false; set.len()];
    match row.str(column) {
        Some(text) => mark(set, text, &mut hits),
        None => mark_value(set, row.value(column).as_ref(), &mut hits),
    }
    Some(hits)
}

fn mark(set: &RegexSet, text: &str, hits: &mut [bool]) {
    for slot in set.matches(text).iter() {
        hits[slot] = true;
    }
}

fn mark_value(set: &RegexSet, value: Option<&Value>, hits: &mut [bool]) {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => mark(set, text, hits),
        Some(Value::Array(items)) => items.iter().for_each(|item| mark_value(set, Some(item), hits)),
        Some(other) => mark(set, &render_value(other), hits),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{ColumnTest, Interest, ValueTest, admitted, compile};
    use super::*;

    fn filters(tests: &[(&str, ValueTest)]) -> Vec<RowFilter> {
        let interest = Interest {
            queue: "Q".into(),
            columns: tests
                .iter()
                .map(|(column, test)| ColumnTest {
                    column: column.to_string(),
                    test: test.clone(),
                })
                .collect(),
        };
        compile(&[interest]).unwrap()
    }

    fn value() -> impl Strategy<Value = Option<Value>> {
        let texts = vec!["C:\\Tools\\x.exe", "svchost.exe", "ADMIN", "x", "", "\"", "7"];
        prop::option::of(crate::testing::json_value(texts, "Image"))
    }

    fn test() -> impl Strategy<Value = ValueTest> {
        let pattern = prop::sample::select(vec![r"\\tools\\", r"\.exe$", "^admin$", "7", "^$", ".*", "true", "x"]);
        prop_oneof![
            pattern.clone().prop_map(|p| ValueTest::Matches(p.into())),
            pattern.prop_map(|p| ValueTest::NotMatches(p.into())),
            Just(ValueTest::OneOf(vec!["x".into(), "7".into()])),
        ]
    }

    proptest! {
        /// Searched together, the modules' tests answer as each module's
        /// filters answer alone, whatever the column holds.
        #[test]
        fn the_shared_index_admits_what_each_filter_admits(
            modules in prop::collection::vec(
                prop::collection::vec((prop::sample::select(vec!["Image", "User"]), test()), 0..4),
                1..6,
            ),
            image in value(),
            user in value(),
            queue in prop::sample::select(vec!["Q", "Other"]),
        ) {
            let filters: Vec<Vec<RowFilter>> = modules.iter().map(|tests| filters(tests)).collect();
            let lists: Vec<&[RowFilter]> = filters.iter().map(Vec::as_slice).collect();
            let index = SharedIndex::new(&lists);
            let mut row = serde_json::Map::new();
            for (column, value) in [("Image", image), ("User", user)] {
                if let Some(value) = value {
                    row.insert(column.into(), value);
                }
            }
            let text = Value::Object(row).to_string();
            let raw = RawRow::parse(&text).unwrap();
            let shared = index.read(&raw);
            for (module, filters) in filters.iter().enumerate() {
                prop_assert_eq!(index.admits(module, queue, &shared), admitted(filters, queue, &raw), "{}", text);
            }
        }
    }
}
