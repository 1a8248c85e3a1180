//! What the modules did with one posted row, for the poster: the ingest
//! answer lists, per row, the notifications it queued and why a module
//! refused it or will take it again later, so that a notebook or an
//! artifact (`Server.Velonotify.SendEmail`) can show its caller the
//! outcome, as Velociraptor's `mail()` returns its `ErrorStatus`. The
//! pipeline notes it as it hands the row on (`pipeline::row_outcome`).

use serde::Serialize;

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

    pub(crate) fn push<T>(list: &mut Vec<T>, more: &mut usize, entry: T) {
        if list.len() < MAX_LISTED {
            list.push(entry);
        } else {
            *more += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(reason: &str) -> Refused {
        Refused {
            module: "mailer".into(),
            reason: reason.into(),
        }
    }

    /// A refusal outweighs what another module queued: the caller must
    /// hear that part of its request was not done.
    #[test]
    fn the_status_says_the_worst_that_happened() {
        let settled = |mut outcome: RowOutcome, watched| {
            outcome.settle(watched);
            outcome.status
        };
        let queued = RowOutcome {
            queued: vec![Queued {
                module: "alerts".into(),
                kind: "email",
            }],
            ..RowOutcome::default()
        };
        assert_eq!(settled(queued.clone(), true), "queued");
        assert_eq!(settled(RowOutcome::default(), true), "handled");
        assert_eq!(settled(RowOutcome::default(), false), "unwatched");
        let both = RowOutcome {
            refused: vec![refused("bad event: Recipients: no recipient")],
            ..queued.clone()
        };
        assert_eq!(
            settled(both, true),
            "refused: mailer: bad event: Recipients: no recipient"
        );
        let later = RowOutcome {
            retrying: vec![refused("lookup failed: x")],
            ..RowOutcome::default()
        };
        assert_eq!(settled(later, true), "retrying: mailer: lookup failed: x");
    }
}
