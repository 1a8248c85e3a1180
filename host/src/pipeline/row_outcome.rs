//! Noting what the modules do with one posted row, for the ingest answer
//! ([`RowOutcome`]).

use super::outbox::{Delivery, Outbox, Report};
use crate::sources::row_outcome::{Queued, Refused, RowOutcome};
use crate::store::{RetryChange, StateWrite, StoreError};

/// An outbox that notes what one row caused, passing everything on.
pub struct Noting<'a> {
    inner: &'a mut dyn Outbox,
    pub outcome: RowOutcome,
}

impl std::fmt::Debug for Noting<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Noting")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl<'a> Noting<'a> {
    pub fn new(inner: &'a mut dyn Outbox) -> Self {
        Self {
            inner,
            outcome: RowOutcome::default(),
        }
    }
}

impl Outbox for Noting<'_> {
    fn accept(&mut self, delivery: Delivery<'_>) {
        let queued = Queued {
            module: delivery.module.to_string(),
            kind: super::outbox::summarize(delivery.action).0,
        };
        RowOutcome::push(&mut self.outcome.queued, &mut self.outcome.more, queued);
        self.inner.accept(delivery);
    }

    fn report(&mut self, report: Report) {
        self.inner.report(report);
    }

    fn defer(&mut self, change: RetryChange) {
        self.inner.defer(change);
    }

    fn refused(&mut self, module: &str, reason: &str, retried: bool) {
        let entry = Refused {
            module: module.to_string(),
            reason: reason.to_string(),
        };
        let list = match retried {
            true => &mut self.outcome.retrying,
            false => &mut self.outcome.refused,
        };
        RowOutcome::push(list, &mut self.outcome.more, entry);
        self.inner.refused(module, reason, retried);
    }

    fn commit(&mut self, state: &[StateWrite]) -> Result<(), StoreError> {
        self.inner.commit(state)
    }
}
