//! What the modules did with one posted row, for the poster: the ingest
//! answer lists, per row, the notifications it queued and why a module
//! refused it or will take it again later, so that a notebook or an
//! artifact (`Server.Velonotify.SendEmail`) can show its caller the
//! outcome, as Velociraptor's `mail()` returns its `ErrorStatus`.

use serde::Serialize;

use super::outbox::{Delivery, Outbox, Report};
use crate::store::{RetryChange, StateWrite, StoreError};

/// Most entries kept per list of one row: a row that made more says how
/// many in `more`.
const MAX_LISTED: usize = 20;

/// One row's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RowOutcome {
    /// In a word, for a caller that shows one (`ErrorStatus`): `queued`
    /// (something was queued and no module refused the row), `handled`
    /// (nothing to queue, nothing refused), `unwatched` (no module takes
    /// its queue), else `refused: ...` or `retrying: ...` with the reasons.
    pub status: String,
    /// Actions taken into the outbox, by module and kind (`email`...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queued: Vec<Queued>,
    /// Modules that refused the row, and why (it is not handled again).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
    /// Modules that could not handle it yet (a lookup failed): it is
    /// handed to them again later.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retrying: Vec<Refused>,
    /// Entries left out past [`MAX_LISTED`] per list.
    #[serde(skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queued {
    pub module: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub module: String,
    pub reason: String,
}

impl RowOutcome {
    /// Sets `status` once the row was handed to every module; `watched`:
    /// some module takes its queue.
    pub fn settle(&mut self, watched: bool) {
        let reasons = |list: &[Refused]| {
            let said: Vec<String> = list.iter().map(|r| format!("{}: {}", r.module, r.reason)).collect();
            said.join("; ")
        };
        self.status = if !watched {
            "unwatched".into()
        } else if !self.refused.is_empty() {
            format!("refused: {}", reasons(&self.refused))
        } else if !self.retrying.is_empty() {
            format!("retrying: {}", reasons(&self.retrying))
        } else if !self.queued.is_empty() {
            "queued".into()
        } else {
            "handled".into()
        };
    }

    fn push<T>(list: &mut Vec<T>, more: &mut usize, entry: T) {
        if list.len() < MAX_LISTED {
            list.push(entry);
        } else {
            *more += 1;
        }
    }
}

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
