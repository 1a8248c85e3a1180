//! Grouping, as Alertmanager groups alerts: a module's e-mails whose
//! `group_by` labels have the same values form a group. The first waits
//! `group_wait` for the others, then the group goes out as one e-mail
//! listing them all; later members within `group_interval` of that go in
//! the group's next e-mail. A burst of one detection on 300 hosts is one
//! e-mail listing 300 hosts, not 300 e-mails.

use std::collections::HashMap;

use super::Labels;

pub const DEFAULT_GROUP_WAIT_S: u64 = 30;
pub const DEFAULT_GROUP_INTERVAL_S: u64 = 300;
/// Longest wait or interval, in seconds (a day).
pub const MAX_GROUP_S: u64 = 24 * 3600;
/// Groups remembered per module; past it, those released longest ago go.
pub const MAX_GROUPS: usize = 10_000;

/// A module's grouping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    by: Vec<String>,
    wait_us: u64,
    interval_us: u64,
}

impl Grouping {
    pub fn new(by: &[String], wait_s: Option<u64>, interval_s: Option<u64>) -> Result<Self, String> {
        if by.is_empty() {
            return Err("group_by needs at least one label".into());
        }
        if let Some(name) = by.iter().find(|n| !super::labels::is_label_name(n)) {
            return Err(format!("group_by: {name:?} cannot be a label name"));
        }
        let seconds = |value: Option<u64>, default: u64, what: &str| match value.unwrap_or(default) {
            s if s > MAX_GROUP_S => Err(format!("{what} may be at most {MAX_GROUP_S} (a day)")),
            s => Ok(s * 1_000_000),
        };
        Ok(Self {
            by: by.to_vec(),
            wait_us: seconds(wait_s, DEFAULT_GROUP_WAIT_S, "group_wait_s")?,
            interval_us: seconds(interval_s, DEFAULT_GROUP_INTERVAL_S, "group_interval_s")?.max(1),
        })
    }

    /// The group of a notification with `labels`: `{alertname="x"}`.
    fn key(&self, labels: &Labels) -> String {
        let pairs: Vec<String> = self
            .by
            .iter()
            .map(|name| format!("{name}={}", super::matchers::quoted(labels.get(name))))
            .collect();
        format!("{{{}}}", pairs.join(", "))
    }
}

impl std::fmt::Display for Grouping {
    /// `by alertname, client_id; wait 30 s, interval 300 s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "by {}; wait {} s, interval {} s",
            self.by.join(", "),
            self.wait_us / 1_000_000,
            self.interval_us / 1_000_000
        )
    }
}

/// Where each group of a module is: when its next e-mail goes.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    release_us: HashMap<String, u64>,
}

/// A notification's group and when that group's e-mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouped {
    pub key: String,
    pub until_us: u64,
}

impl Groups {
    /// Puts a notification with `labels` at `now_us` in its group.
    pub fn join(&mut self, grouping: &Grouping, labels: &Labels, now_us: u64) -> Grouped {
        let key = grouping.key(labels);
        let until_us = match self.release_us.get(&key) {
            // The group's e-mail has not gone yet: with it.
            Some(&release) if release > now_us => release,
            // It went lately: in its next one, an interval later.
            Some(&release) if now_us < release.saturating_add(grouping.interval_us) => {
                release.saturating_add(grouping.interval_us)
            }
            // A new group, or one quiet for longer than its interval.
            _ => now_us.saturating_add(grouping.wait_us),
        };
        self.release_us.insert(key.clone(), until_us);
        if self.release_us.len() > MAX_GROUPS {
            keep_newest(&mut self.release_us, MAX_GROUPS / 2);
        }
        Grouped { key, until_us }
    }
}

/// Keeps the `keep` entries with the latest times: a map past its bound
/// drops to half of it at once, so evicting is rare.
pub(crate) fn keep_newest<K: Clone + Eq + std::hash::Hash>(map: &mut HashMap<K, u64>, keep: usize) {
    let mut entries: Vec<(K, u64)> = map.iter().map(|(k, t)| (k.clone(), *t)).collect();
    entries.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.1));
    entries.truncate(keep);
    *map = entries.into_iter().collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn on(alertname: &str, client: &str) -> Labels {
        Labels::from([("alertname", alertname), ("client_id", client)])
    }

    /// The first of a group waits; the others within the wait go with it;
    /// one after it went waits for the next interval; one long after
    /// starts a new group.
    #[test]
    fn a_group_waits_for_its_members_then_goes_once_per_interval() {
        let grouping = Grouping::new(&["alertname".to_string()], Some(10), Some(60)).unwrap();
        let mut groups = Groups::default();
        let first = groups.join(&grouping, &on("Honeyfile", "C.1"), 100 * S);
        assert_eq!(
            first,
            Grouped {
                key: "{alertname=\"Honeyfile\"}".into(),
                until_us: 110 * S
            }
        );
        assert_eq!(
            groups.join(&grouping, &on("Honeyfile", "C.2"), 105 * S).until_us,
            110 * S
        );
        assert_eq!(
            groups.join(&grouping, &on("Other", "C.2"), 105 * S).until_us,
            115 * S,
            "its own group"
        );
        assert_eq!(
            groups.join(&grouping, &on("Honeyfile", "C.3"), 120 * S).until_us,
            170 * S
        );
        assert_eq!(
            groups.join(&grouping, &on("Honeyfile", "C.4"), 150 * S).until_us,
            170 * S
        );
        assert_eq!(
            groups.join(&grouping, &on("Honeyfile", "C.5"), 300 * S).until_us,
            310 * S
        );
    }

    #[test]
    fn past_its_bound_a_map_keeps_the_newest_half() {
        let mut map: HashMap<u32, u64> = (0..10).map(|i| (i, u64::from(i % 5))).collect();
        keep_newest(&mut map, 4);
        assert_eq!(map.len(), 4);
        assert!(map.values().all(|t| *t >= 3), "{map:?}");
    }

    #[test]
    fn a_bad_grouping_is_refused() {
        assert!(
            Grouping::new(&[], None, None)
                .unwrap_err()
                .contains("at least one label")
        );
        assert!(
            Grouping::new(&["a b".into()], None, None)
                .unwrap_err()
                .contains("cannot be a label name")
        );
        assert!(
            Grouping::new(&["a".into()], Some(100_000), None)
                .unwrap_err()
                .contains("group_wait_s")
        );
    }
}
