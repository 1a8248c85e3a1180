//! Inhibition: a notification that says the cause holds back those that
//! report its effects, as Alertmanager's inhibit rules do. "A server event
//! query failed" holds back that artifact's per-client alerts; a `critical`
//! alert on a client holds back its `high` ones for a while.
//!
//! A rule has source matchers, target matchers, the labels that must be
//! equal in both (`equal`), and a window: a target is inhibited while a
//! source with the same `equal` labels was notified (not held back itself)
//! within the window before it. A notification that matches both sides of
//! a rule does not inhibit itself.

use std::collections::HashMap;

use serde::Deserialize;

use super::{Labels, Matchers};

/// Longest window, in seconds (a week).
pub const MAX_WINDOW_S: u64 = 7 * 24 * 3600;
/// Most sources remembered per rule (distinct `equal` values); the oldest
/// go first.
pub const MAX_SOURCES_PER_RULE: usize = 100_000;

/// `[[inhibit]]` in the configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitSection {
    /// Matchers (Alertmanager's syntax, all must match) of the notifications
    /// that inhibit.
    pub source_matchers: Vec<String>,
    /// Matchers of the notifications they hold back.
    pub target_matchers: Vec<String>,
    /// Labels that must have the same value in the source and the target
    /// (e.g. `["client_id"]`); none: any source inhibits every target.
    #[serde(default)]
    pub equal: Vec<String>,
    /// How long after a source its targets are held back, in seconds
    /// (default 3600).
    pub window_s: Option<u64>,
}

/// One rule, read.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// Its place in the configuration, from 1: how items name it.
    pub number: usize,
    pub source: Matchers,
    pub target: Matchers,
    pub equal: Vec<String>,
    pub window_us: u64,
}

impl InhibitSection {
    /// The rule, checked; `number` is its place in the configuration.
    pub fn rule(&self, number: usize) -> Result<InhibitRule, String> {
        let at = format!("inhibit {number}");
        let source = Matchers::parse_all(&self.source_matchers).map_err(|e| format!("{at}: source_matchers: {e}"))?;
        let target = Matchers::parse_all(&self.target_matchers).map_err(|e| format!("{at}: target_matchers: {e}"))?;
        if source.is_empty() || target.is_empty() {
            return Err(format!("{at}: source_matchers and target_matchers each need a matcher"));
        }
        for name in &self.equal {
            if !super::labels::is_label_name(name) {
                return Err(format!("{at}: equal: {name:?} cannot be a label name"));
            }
        }
        let window_s = self.window_s.unwrap_or(3600);
        if window_s == 0 || window_s > MAX_WINDOW_S {
            return Err(format!("{at}: window_s must be between 1 and {MAX_WINDOW_S} (a week)"));
        }
        Ok(InhibitRule {
            number,
            source,
            target,
            equal: self.equal.clone(),
            window_us: window_s * 1_000_000,
        })
    }
}

impl InhibitRule {
    fn key(&self, labels: &Labels) -> Vec<String> {
        self.equal.iter().map(|name| labels.get(name).to_string()).collect()
    }

    /// How items it holds back name it.
    pub fn describe(&self) -> String {
        format!("inhibit rule {} (source {})", self.number, self.source)
    }
}

/// What an inhibited notification records: the rule and when its source
/// was notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inhibited {
    pub rule: usize,
    pub held_by: String,
}

/// The rules and the sources notified lately, per rule and `equal` values.
#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    /// Per rule: `equal` values to the last time a source was notified.
    sources: Vec<HashMap<Vec<String>, u64>>,
}

impl Inhibitor {
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        let sources = vec![HashMap::new(); rules.len()];
        Self { rules, sources }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The longest window: how far back the sources must be known.
    pub fn longest_window_us(&self) -> u64 {
        self.rules.iter().map(|r| r.window_us).max().unwrap_or(0)
    }

    /// Whether a notification with `labels` at `now_us` is held back, and
    /// by which rule.
    pub fn inhibits(&self, labels: &Labels, now_us: u64) -> Option<Inhibited> {
        for (rule, sources) in self.rules.iter().zip(&self.sources) {
            if !rule.target.matches(labels) {
                continue;
            }
            // A notification that is a source of this rule too does not
            // inhibit itself, nor is it held back by its own kind.
            if rule.source.matches(labels) {
                continue;
            }
            if let Some(&at) = sources.get(&rule.key(labels))
                && now_us.saturating_sub(at) <= rule.window_us
                && at <= now_us
            {
                return Some(Inhibited {
                    rule: rule.number,
                    held_by: rule.describe(),
                });
            }
        }
        None
    }

    /// Remembers a notification that went out (was not held back), for
    /// the rules it is a source of.
    pub fn notified(&mut self, labels: &Labels, at_us: u64) {
        for (rule, sources) in self.rules.iter().zip(&mut self.sources) {
            if !rule.source.matches(labels) {
                continue;
            }
            let last = sources.entry(rule.key(labels)).or_default();
            *last = (*last).max(at_us);
            // Past the bound, the oldest half goes at once (their targets
            // are then let through, never held back wrongly).
            if sources.len() > MAX_SOURCES_PER_RULE {
                super::grouping::keep_newest(sources, MAX_SOURCES_PER_RULE / 2);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn rule(source: &[&str], target: &[&str], equal: &[&str], window_s: u64) -> InhibitRule {
        InhibitSection {
            source_matchers: source.iter().map(|s| s.to_string()).collect(),
            target_matchers: target.iter().map(|s| s.to_string()).collect(),
            equal: equal.iter().map(|s| s.to_string()).collect(),
            window_s: Some(window_s),
        }
        .rule(1)
        .unwrap()
    }

    /// A failing server event query holds back the client alerts of the
    /// same artifact, for its window, and no other artifact's.
    #[test]
    fn a_source_holds_back_targets_with_the_same_equal_labels_within_its_window() {
        let mut inhibitor = Inhibitor::new(vec![rule(
            &["alertname=\"Server event query error\""],
            &["client_id=~\"C\\\\..*\""],
            &["artifact"],
            600,
        )]);
        let error = Labels::from([("alertname", "Server event query error"), ("artifact", "Custom.Hunt")]);
        let target =
            |artifact: &str| Labels::from([("alertname", "hit"), ("client_id", "C.1"), ("artifact", artifact)]);
        assert_eq!(
            inhibitor.inhibits(&target("Custom.Hunt"), 10 * S),
            None,
            "no source yet"
        );
        assert_eq!(inhibitor.inhibits(&error, 10 * S), None, "a source is not a target");
        inhibitor.notified(&error, 10 * S);
        let held = inhibitor.inhibits(&target("Custom.Hunt"), 20 * S).unwrap();
        assert!(held.held_by.contains("inhibit rule 1"), "{held:?}");
        assert_eq!(
            inhibitor.inhibits(&target("Other.Artifact"), 20 * S),
            None,
            "equal labels differ"
        );
        assert!(inhibitor.inhibits(&target("Custom.Hunt"), 610 * S).is_some());
        assert_eq!(
            inhibitor.inhibits(&target("Custom.Hunt"), 611 * S),
            None,
            "past the window"
        );
    }

    /// `critical` holds back `high` on the same client; a notification
    /// matching both sides does not hold itself back.
    #[test]
    fn a_notification_that_is_source_and_target_does_not_inhibit_itself() {
        let mut inhibitor = Inhibitor::new(vec![rule(
            &["severity=~\"critical|high\""],
            &["severity=~\"high|medium\""],
            &["client_id"],
            60,
        )]);
        let high = Labels::from([("severity", "high"), ("client_id", "C.1")]);
        let medium = Labels::from([("severity", "medium"), ("client_id", "C.1")]);
        inhibitor.notified(&high, S);
        assert_eq!(inhibitor.inhibits(&high, 2 * S), None);
        assert!(inhibitor.inhibits(&medium, 2 * S).is_some());
    }

    #[test]
    fn a_bad_rule_is_refused_naming_it() {
        let bad = |source: &str, window_s| {
            InhibitSection {
                source_matchers: vec![source.to_string()],
                target_matchers: vec!["severity=high".into()],
                equal: vec!["client id".into()],
                window_s: Some(window_s),
            }
            .rule(2)
            .unwrap_err()
        };
        assert!(bad("{alertname=x", 60).starts_with("inhibit 2: source_matchers: bad matcher"));
        assert!(bad("alertname=x", 60).contains("equal: \"client id\""));
    }
}
