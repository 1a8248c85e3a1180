//! Events a module could not handle because a lookup failed (the
//! Velociraptor server slow, unreachable, or refusing the API user): kept
//! here, with the input that failed, and handed to that module again
//! until it handles them or the pipeline gives up. Nothing else of the
//! event is repeated: the other modules handled it already.
//!
//! Rows live in `event_retries`, one per module and event.

use super::db::{Db, DbError, DbResult, Row, args};
use super::{Store, StoreError, db_time, from_db_time};

/// An event to hand one module again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRetry {
    /// The module instance's name.
    pub module: String,
    pub event_id: String,
    pub queue: String,
    pub org_id: String,
    /// The row's JSON text, as read.
    pub row: String,
    pub ts_us: Option<u64>,
    /// Calls that failed so far.
    pub attempts: u32,
    pub first_failed_us: u64,
    pub next_attempt_us: u64,
    pub last_error: String,
}

/// What an input changes of the events to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryChange {
    /// Hand the event to the module again at `next_attempt_us`.
    Schedule(EventRetry),
    /// The module is done with the event (handled, or given up on).
    Done { module: String, event_id: String },
}

/// Stores one change, as part of an input's commit.
pub(super) fn apply(tx: Db<'_>, change: &RetryChange) -> DbResult<()> {
    match change {
        RetryChange::Schedule(r) => tx
            .execute(
                "INSERT INTO event_retries (module, event_id, queue, org_id, row, ts_us, attempts,
                     first_failed_us, next_attempt_us, last_error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (module, event_id) DO UPDATE SET queue = excluded.queue, org_id = excluded.org_id,
                     row = excluded.row, ts_us = excluded.ts_us, attempts = excluded.attempts,
                     first_failed_us = excluded.first_failed_us, next_attempt_us = excluded.next_attempt_us,
                     last_error = excluded.last_error",
                args![
                    r.module,
                    r.event_id,
                    r.queue,
                    r.org_id,
                    r.row,
                    r.ts_us.map(db_time),
                    i64::from(r.attempts),
                    db_time(r.first_failed_us),
                    db_time(r.next_attempt_us),
                    r.last_error
                ],
            )
            .map(drop),
        RetryChange::Done { module, event_id } => tx
            .execute(
                "DELETE FROM event_retries WHERE module = ?1 AND event_id = ?2",
                args![module, event_id],
            )
            .map(drop),
    }
}

fn from_row(row: &Row<'_>) -> DbResult<EventRetry> {
    Ok(EventRetry {
        module: row.get(0)?,
        event_id: row.get(1)?,
        queue: row.get(2)?,
        org_id: row.get(3)?,
        row: row.get(4)?,
        ts_us: row.get::<Option<i64>>(5)?.map(from_db_time),
        attempts: u32::try_from(row.get::<i64>(6)?).map_err(DbError::value)?,
        first_failed_us: from_db_time(row.get(7)?),
        next_attempt_us: from_db_time(row.get(8)?),
        last_error: row.get(9)?,
    })
}

impl Store {
    /// Up to `limit` events due by `now_us`, the longest waiting first.
    pub fn due_retries(&self, now_us: u64, limit: usize) -> Result<Vec<EventRetry>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT module, event_id, queue, org_id, row, ts_us, attempts, first_failed_us, next_attempt_us,
                        last_error
                 FROM event_retries WHERE next_attempt_us <= ?1 ORDER BY next_attempt_us LIMIT ?2",
                args![db_time(now_us), limit as i64],
                from_row,
            )
        })
    }

    /// How many events wait to be handed to a module again.
    pub fn retries_waiting(&self) -> Result<u64, StoreError> {
        self.read(|db| {
            db.query_one("SELECT count(*) FROM event_retries", &[], |r| r.get::<i64>(0))
                .map(|n| n as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Changes, Throttle};
    use super::*;

    fn retry(event_id: &str, next_attempt_us: u64) -> EventRetry {
        EventRetry {
            module: "alerts".into(),
            event_id: event_id.into(),
            queue: "Server.Internal.Alerts".into(),
            org_id: "root".into(),
            row: r#"{"name":"x"}"#.into(),
            ts_us: Some(7),
            attempts: 1,
            first_failed_us: 10,
            next_attempt_us,
            last_error: "lookup unavailable: timeout".into(),
        }
    }

    fn commit(store: &Store, retries: &[RetryChange]) {
        let changes = Changes {
            state: &[],
            items: &[],
            retries,
            fences: &[],
        };
        store.commit(&changes, 1, 2, &Throttle::default()).unwrap();
    }

    #[test]
    fn a_retry_is_due_at_its_time_rescheduled_in_place_and_forgotten_when_done() {
        let store = Store::for_tests();
        commit(&store, &[RetryChange::Schedule(retry("e1", 100))]);
        assert!(store.due_retries(99, 10).unwrap().is_empty());
        assert_eq!(store.due_retries(100, 10).unwrap(), [retry("e1", 100)]);
        let again = EventRetry {
            attempts: 2,
            ..retry("e1", 300)
        };
        commit(&store, &[RetryChange::Schedule(again.clone())]);
        assert_eq!(store.retries_waiting().unwrap(), 1);
        assert_eq!(store.due_retries(300, 10).unwrap(), [again]);
        let done = RetryChange::Done {
            module: "alerts".into(),
            event_id: "e1".into(),
        };
        commit(&store, &[done]);
        assert_eq!(store.retries_waiting().unwrap(), 0);
    }
}
