//! The first events of a freshly swapped version: if it traps on too many
//! of them, the previous version (kept running beside it) comes back.

use super::ReloadSettings;
use crate::engine::Module;
use crate::sources::IncomingEvent;

/// A new version on trial, and the version it replaced.
#[derive(Debug)]
pub struct Probation {
    previous: Module,
    calls: u32,
    traps: u32,
    /// Events the new version trapped on, with their alert depth: the
    /// previous version handles them again after a rollback, so a bad
    /// build loses nothing. At most `max_probation_traps + 1`.
    trapped: Vec<(IncomingEvent, u32)>,
}

/// What one more call of the new version means for its trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbationVerdict {
    /// Still on trial.
    Continue,
    /// Trial over: the previous version can go.
    Passed,
    /// Too many traps: bring the previous version back.
    RollBack,
}

impl Probation {
    pub fn new(previous: Module) -> Self {
        Self {
            previous,
            calls: 0,
            traps: 0,
            trapped: Vec::new(),
        }
    }

    /// Counts one call of the new version (an event, or a tick when
    /// `event` is None) and whether it trapped.
    pub fn record(
        &mut self,
        trapped: bool,
        event: Option<(&IncomingEvent, u32)>,
        settings: &ReloadSettings,
    ) -> ProbationVerdict {
        self.calls += 1;
        if trapped {
            self.traps += 1;
            if let Some((event, depth)) = event {
                self.trapped.push((event.clone(), depth));
            }
        }
        if self.traps > settings.max_probation_traps {
            ProbationVerdict::RollBack
        } else if self.calls >= settings.probation_events {
            ProbationVerdict::Passed
        } else {
            ProbationVerdict::Continue
        }
    }

    /// Traps so far, and calls.
    pub fn counts(&self) -> (u32, u32) {
        (self.traps, self.calls)
    }

    /// The previous version, and the events to hand it again.
    pub fn into_rollback(self) -> (Module, Vec<(IncomingEvent, u32)>) {
        (self.previous, self.trapped)
    }
}
