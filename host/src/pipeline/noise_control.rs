//! Noise control applied to each input's notifications when it is
//! committed (`run`) or written (a replay): the silences of the state
//! database and the configuration's inhibit rules. What is held back is
//! kept, with what held it (`noise`).
//!
//! Silences are read again whenever one is added or expired, by this
//! process or another (`velonotify silence add` while `run` serves): a
//! small read per input that has notifications. Inhibit rules remember the
//! sources notified lately; `run` learns them again from the outbox at
//! start.

use std::collections::HashMap;
use std::sync::Arc;

use crate::noise::inhibition::Inhibitor;
use crate::noise::time_intervals::{MuteTiming, TimeIntervals};
use crate::noise::{ActiveSilences, Labels};
use crate::store::{SilencesVersion, Store, StoreError, ThrottleMode};

/// What becomes of one notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Notify,
    /// Held back by a silence: `silence <id>`.
    Silenced(String),
    /// Held back by an inhibit rule: `inhibit rule N (source ...)`.
    Inhibited(String),
    /// In a module's mute time: held until `until_us` (e-mails go out as
    /// one digest then), or dropped (`mute_mode = "drop"`).
    Muted {
        held_by: String,
        until_us: u64,
        drop: bool,
    },
    /// An e-mail of a group: held until its group's e-mail goes, at
    /// `until_us`; `held_by` is `group {alertname="x"}`.
    Grouped {
        held_by: String,
        until_us: u64,
    },
}

/// A module's mute and active times, and what becomes of what they mute.
#[derive(Debug, Clone, Default)]
pub struct ModuleMute {
    pub timing: MuteTiming,
    pub mode: ThrottleMode,
    /// Its e-mails' grouping, if it groups them.
    pub grouping: Option<crate::noise::grouping::Grouping>,
}

#[derive(Debug)]
pub struct NoiseControl {
    store: Arc<Store>,
    /// The version the silences in memory were read at.
    read_at: Option<SilencesVersion>,
    silences: ActiveSilences,
    inhibitor: Inhibitor,
    intervals: TimeIntervals,
    /// By module name; modules without mute times or grouping are not here.
    mutes: HashMap<String, ModuleMute>,
    /// By module name: where each group is.
    groups: HashMap<String, crate::noise::grouping::Groups>,
    /// By module name: the minute a mute's end was last found for, and it.
    mute_ends: HashMap<String, (u64, u64)>,
}

impl NoiseControl {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            read_at: None,
            silences: ActiveSilences::default(),
            inhibitor: Inhibitor::default(),
            intervals: TimeIntervals::default(),
            mutes: HashMap::new(),
            groups: HashMap::new(),
            mute_ends: HashMap::new(),
        }
    }

    /// Applies inhibit rules.
    pub fn with_inhibitor(mut self, inhibitor: Inhibitor) -> Self {
        self.inhibitor = inhibitor;
        self
    }

    /// Mutes modules in their mute times (and outside their active ones).
    pub fn with_mutes(mut self, intervals: TimeIntervals, mutes: HashMap<String, ModuleMute>) -> Self {
        self.intervals = intervals;
        self.mutes = mutes
            .into_iter()
            .filter(|(_, m)| !m.timing.is_empty() || m.grouping.is_some())
            .collect();
        self
    }

    /// Learns the sources of the inhibit rules notified within their
    /// longest window before `now_us` from the outbox (after a restart).
    pub fn learn_recent_sources(&mut self, now_us: u64) -> Result<(), StoreError> {
        if self.inhibitor.is_empty() {
            return Ok(());
        }
        let since = now_us.saturating_sub(self.inhibitor.longest_window_us());
        for (labels, created_us) in self.store.notified_since(since)? {
            self.inhibitor.notified(&labels, created_us);
        }
        Ok(())
    }

    /// Reads the silences again if they changed. A read that fails keeps
    /// the silences known (said); a silence that cannot be read silences
    /// nothing, and is said.
    pub fn refresh(&mut self) {
        let version = match self.store.silences_version() {
            Ok(version) if Some(version) == self.read_at => return,
            Ok(version) => version,
            Err(e) => {
                tracing::warn!("could not read the silences ({e}); applying those read before");
                return;
            }
        };
        match self.store.silences() {
            Ok(rows) => {
                let mut silences = Vec::with_capacity(rows.len());
                for row in rows {
                    match row {
                        Ok(silence) => silences.push(silence),
                        Err(unreadable) => tracing::error!("{unreadable}; it silences nothing"),
                    }
                }
                self.silences = ActiveSilences::new(silences);
                self.read_at = Some(version);
            }
            Err(e) => tracing::warn!("could not read the silences ({e}); applying those read before"),
        }
    }

    /// Whether nothing can hold a notification back.
    pub fn is_idle(&self) -> bool {
        self.silences.is_empty() && self.inhibitor.is_empty() && self.mutes.is_empty()
    }

    /// The fate of a notification with `labels` at `now_us`; one that goes
    /// out, now or when its module's mute ends, is remembered as a source
    /// of the rules it matches.
    pub fn decide(&mut self, labels: &Labels, now_us: u64) -> Fate {
        if let Some(silence) = self.silences.silencing(labels, now_us) {
            return Fate::Silenced(format!("silence {}", silence.id));
        }
        if let Some(inhibited) = self.inhibitor.inhibits(labels, now_us) {
            return Fate::Inhibited(inhibited.held_by);
        }
        let fate = self.mute_or_group(labels, now_us);
        // What goes out, now or later, is a source; what is dropped is not.
        if !matches!(fate, Fate::Muted { drop: true, .. }) {
            self.inhibitor.notified(labels, now_us);
        }
        fate
    }

    fn mute_or_group(&mut self, labels: &Labels, now_us: u64) -> Fate {
        let module = labels.get("module");
        let Some(mute) = self.mutes.get(module) else {
            return Fate::Notify;
        };
        if let Some(why) = mute.timing.muted_by(&self.intervals, now_us) {
            // The end depends only on the minute: found once per module
            // and minute, not per notification of a burst.
            let minute = now_us / 60_000_000;
            let until_us = match self.mute_ends.get(module) {
                Some(&(at, end)) if at == minute => end,
                _ => {
                    let end = mute.timing.mute_ends(&self.intervals, now_us);
                    self.mute_ends.insert(module.to_string(), (minute, end));
                    end
                }
            };
            return Fate::Muted {
                held_by: why,
                until_us,
                drop: mute.mode == ThrottleMode::Drop,
            };
        }
        // E-mails and webhooks are grouped (a group is one e-mail, or one
        // post); user messages go one by one.
        match &mute.grouping {
            Some(grouping) if matches!(labels.get("kind"), "email" | "webhook") => {
                let groups = self.groups.entry(module.to_string()).or_default();
                let grouped = groups.join(grouping, labels, now_us);
                Fate::Grouped {
                    held_by: format!("group {}", grouped.key),
                    until_us: grouped.until_us,
                }
            }
            _ => Fate::Notify,
        }
    }
}
