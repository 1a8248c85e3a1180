//! Hot swap: a module's component file changes while `run` serves, and the
//! new build replaces the running one without losing or repeating an event.
//!
//! ```text
//!  modules dir ──poll / SIGHUP / `velonotify reload`──▶ Reloader thread
//!        compile (cache) ▸ WIT version ▸ self-test events ▸ describe + configure
//!        refused: one log line, counted; the running version goes on
//!                                  │ Candidate (through the service's input queue)
//!                                  ▼
//!  pipeline thread: swapped between two events ▸ probation of M events
//!        each event it traps on handled at once by the previous version;
//!        more than N traps: rolled back to the previous version
//! ```
//!
//! The candidate is built entirely off the pipeline thread; the swap
//! itself is a move of an already configured instance, so events keep
//! flowing while a new build compiles. State lives in the host's store
//! under the module's name, so the new version sees what the old one kept.

mod probation;
mod reloader;

pub use self::probation::{Probation, ProbationVerdict, TrialCall};
pub use self::reloader::{ModuleFile, Reloader, StopOnDrop, selftest_path};

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::Module;

/// `[reload]`: hot swap of changed module components while `run` serves.
/// When a module's component file changes (or on SIGHUP, or `velonotify
/// reload`), the new build is compiled and validated beside the running
/// one, then swapped in between two events.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadSection {
    /// Watch the module files for changes (default true; SIGHUP and
    /// `velonotify reload` work either way).
    pub watch: Option<bool>,
    /// How often the files are looked at, in milliseconds (default 1000).
    pub poll_ms: Option<u64>,
    /// A new version is on probation for its first this many events
    /// (default 100) ...
    pub probation_events: Option<u32>,
    /// ... and is rolled back when it traps on more than this many of them
    /// (default 3).
    pub max_probation_traps: Option<u32>,
}

/// What the reload section of the configuration decides.
#[derive(Debug, Clone, Copy)]
pub struct ReloadSettings {
    /// Look at the module files every `poll` (None: only on request).
    pub poll: Option<Duration>,
    /// A new version's first this many events are its probation ...
    pub probation_events: u32,
    /// ... and more traps than this among them roll it back.
    pub max_probation_traps: u32,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self {
            poll: Some(Duration::from_secs(1)),
            probation_events: 100,
            max_probation_traps: 3,
        }
    }
}

impl ReloadSettings {
    pub fn from_config(section: &ReloadSection) -> Self {
        let defaults = Self::default();
        Self {
            poll: section
                .watch
                .unwrap_or(true)
                .then(|| Duration::from_millis(section.poll_ms.unwrap_or(1000).max(10))),
            probation_events: section.probation_events.unwrap_or(defaults.probation_events),
            max_probation_traps: section.max_probation_traps.unwrap_or(defaults.max_probation_traps),
        }
    }
}

/// New versions on their way from the reloader to the pipeline. The
/// pipeline looks here before every event (an atomic load), so a swap
/// waits for the event in hand, not for every event queued before it.
#[derive(Debug, Default)]
pub struct SwapSlot {
    ready: AtomicBool,
    candidates: Mutex<Vec<Candidate>>,
}

impl SwapSlot {
    pub fn put(&self, candidate: Candidate) {
        self.candidates.lock().expect("swap slot").push(candidate);
        self.ready.store(true, Ordering::Release);
    }

    /// The versions waiting, oldest first (usually none).
    pub fn take(&self) -> Vec<Candidate> {
        // A load first: on the hot path the slot is nearly always empty,
        // and a plain load costs less than a swap.
        if !self.ready.load(Ordering::Relaxed) || !self.ready.swap(false, Ordering::Acquire) {
            return Vec::new();
        }
        std::mem::take(&mut *self.candidates.lock().expect("swap slot"))
    }
}

/// A new version of a running module: compiled, validated and configured
/// with the running module's parameters, ready to take the next event.
#[derive(Debug)]
pub struct Candidate {
    pub module: Module,
    /// When the change was noticed: the swap latency runs from here.
    pub noticed: Instant,
}
