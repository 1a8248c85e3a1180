//! Events a module could not handle because a lookup failed are not
//! dropped: the failure is reported, the event is stored with the input
//! ([`RetryChange::Schedule`]) and handed to that module alone again, after
//! a wait that doubles, until the module handles it or gives up in
//! another way, or the retry window ends (reported, not silent).
//!
//! A lookup fails when the Velociraptor server is slow (past
//! `lookup_timeout_s`), unreachable, or refuses the API user a plugin: all
//! conditions an operator can fix, after which the alert still arrives.

use std::time::Duration;

use super::Pipeline;
use super::outbox::{Level, Outbox, Report};
use super::reload::TrialCall;
use crate::clock::micros;
use crate::sources::IncomingEvent;
use crate::store::{EventRetry, RetryChange};

/// When an event is handed to a module again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupRetry {
    /// The wait after the first failure; each failure doubles it.
    pub first: Duration,
    /// The longest wait.
    pub longest: Duration,
    /// No more tries this long after the first failure.
    pub give_up_after: Duration,
}

impl Default for LookupRetry {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(5),
            longest: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl LookupRetry {
    /// The wait after `failures` failed calls.
    pub fn wait(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1 << doublings).min(self.longest)
    }
}

/// How many stored events are handed again at once, at most.
pub const RETRIES_PER_INPUT: usize = 100;

impl Pipeline {
    /// Sets when events are handed again.
    pub fn set_lookup_retry(&mut self, policy: LookupRetry) {
        self.lookup_retry = policy;
    }

    /// Hands a stored event to its module again (`run`, once it is due).
    pub fn hand_again(&mut self, retry: &EventRetry, out: &mut dyn Outbox) {
        let event = IncomingEvent {
            id: retry.event_id.clone(),
            queue: retry.queue.clone(),
            row: retry.row.clone(),
            org_id: retry.org_id.clone(),
            ts_us: retry.ts_us,
        };
        // Done first: a new failure schedules it again, in place.
        out.defer(RetryChange::Done {
            module: retry.module.clone(),
            event_id: retry.event_id.clone(),
        });
        let Some(index) = self.modules.iter().position(|m| m.name() == retry.module) else {
            out.report(Report::new(
                Level::Error,
                &retry.module,
                Some(&retry.event_id),
                format!(
                    "no module of this name is configured any more: the event it could not handle ({}) is not \
                     handed again",
                    retry.last_error
                ),
            ));
            return;
        };
        self.tick_to_now(out);
        self.retrying = Some(retry.clone());
        let outcome = self.modules[index].handle(&event.to_wit(), self.now_us);
        let (call, handled) = (TrialCall::of(&outcome), outcome.result.is_ok());
        self.settle(index, Some(&event), &event.id, 0, outcome, out);
        self.on_trial(index, call, Some((&event, 0)), out);
        self.retrying = None;
        if handled {
            out.report(Report::new(
                Level::Info,
                &retry.module,
                Some(&retry.event_id),
                format!("handled on attempt {}", retry.attempts + 1),
            ));
        }
        self.drain_alerts(out);
    }

    /// Module `index` failed on `event` for want of a lookup: stores it to
    /// be handed again, or gives up once the retry window has passed.
    pub(super) fn retry_later(&mut self, index: usize, event: &IncomingEvent, why: String, out: &mut dyn Outbox) {
        let module = self.modules[index].name().to_string();
        let earlier = self
            .retrying
            .as_ref()
            .filter(|r| r.module == module && r.event_id == event.id);
        let attempts = earlier.map_or(1, |r| r.attempts + 1);
        let first_failed_us = earlier.map_or(self.now_us, |r| r.first_failed_us);
        let failing_for = Duration::from_micros(self.now_us.saturating_sub(first_failed_us));
        if failing_for >= self.lookup_retry.give_up_after {
            out.report(Report::new(
                Level::Error,
                &module,
                Some(&event.id),
                format!(
                    "{why}; given up after {attempts} attempts in {} s: the event is not handed to this module again",
                    failing_for.as_secs()
                ),
            ));
            return;
        }
        let wait = self.lookup_retry.wait(attempts);
        let level = if attempts == 1 { Level::Error } else { Level::Warn };
        out.report(Report::new(
            level,
            &module,
            Some(&event.id),
            format!("{why}; the event is handed to the module again in {wait:?} (attempt {attempts} failed)"),
        ));
        out.defer(RetryChange::Schedule(EventRetry {
            module,
            event_id: event.id.clone(),
            queue: event.queue.clone(),
            org_id: event.org_id.clone(),
            row: event.row.clone(),
            ts_us: event.ts_us,
            attempts,
            first_failed_us,
            next_attempt_us: self.now_us.saturating_add(micros(wait)),
            last_error: why,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_up_to_the_longest() {
        let policy = LookupRetry::default();
        let waits: Vec<u64> = (1..=8).map(|n| policy.wait(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(policy.wait(u32::MAX).as_secs(), 300);
    }
}
