//! The first events of a freshly swapped version: the previous version is
//! kept running beside it, handles at once each event (or tick) the new one
//! traps or fails on, and comes back for good if the new one has too many
//! faults: traps, and failures the previous version did not have (a build
//! that answers every event with an internal error is as broken as one
//! that traps; a bad event both refuse is nobody's fault).

use super::ReloadSettings;
use crate::contract::Failure;
use crate::engine::{CallError, CallOutcome, Module};

/// A new version on trial, and the version it replaced.
#[derive(Debug)]
pub struct Probation {
    previous: Module,
    calls: u32,
    faults: u32,
}

/// How one call of a version on trial went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialCall {
    /// It answered, or failed for want of a lookup (not the build's doing).
    Answered,
    Trapped,
    /// It failed (internal error, bad event): a fault if the previous
    /// version answers the same call.
    Failed,
}

impl TrialCall {
    pub fn of(outcome: &CallOutcome) -> Self {
        match &outcome.result {
            Ok(_) | Err(CallError::Failed(Failure::Lookup(_))) => TrialCall::Answered,
            Err(CallError::Trapped { .. }) => TrialCall::Trapped,
            Err(CallError::Failed(_)) => TrialCall::Failed,
        }
    }
}

/// What one more call of the new version means for its trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbationVerdict {
    /// Still on trial.
    Continue,
    /// Trial over: the previous version can go.
    Passed,
    /// Too many faults: bring the previous version back.
    RollBack,
}

impl Probation {
    pub fn new(previous: Module) -> Self {
        Self {
            previous,
            calls: 0,
            faults: 0,
        }
    }

    /// Counts one call of the new version and whether it was a fault.
    pub fn record(&mut self, fault: bool, settings: &ReloadSettings) -> ProbationVerdict {
        self.calls += 1;
        if fault {
            self.faults += 1;
        }
        if self.faults > settings.max_probation_traps {
            ProbationVerdict::RollBack
        } else if self.calls >= settings.probation_events {
            ProbationVerdict::Passed
        } else {
            ProbationVerdict::Continue
        }
    }

    /// Faults so far, and calls.
    pub fn counts(&self) -> (u32, u32) {
        (self.faults, self.calls)
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
