//! The first events of a freshly swapped version: the previous version is
//! kept running beside it, handles at once each event (or tick) the new one
//! traps on, and comes back for good if the new one traps too often.

use super::ReloadSettings;
use crate::engine::Module;

/// A new version on trial, and the version it replaced.
#[derive(Debug)]
pub struct Probation {
    previous: Module,
    calls: u32,
    traps: u32,
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
        }
    }

    /// Counts one call of the new version and whether it trapped.
    pub fn record(&mut self, trapped: bool, settings: &ReloadSettings) -> ProbationVerdict {
        self.calls += 1;
        if trapped {
            self.traps += 1;
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

    /// The previous version, to handle what the new one trapped on.
    pub fn previous_mut(&mut self) -> &mut Module {
        &mut self.previous
    }

    /// The previous version, back for good.
    pub fn into_previous(self) -> Module {
        self.previous
    }
}
