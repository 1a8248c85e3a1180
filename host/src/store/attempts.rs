//! Every delivery attempt of an outbox item, with its outcome and error
//! (schema 8): what the console's item page lists. The item row keeps the
//! count and the last error; this keeps the history, the last
//! [`KEPT_PER_ITEM`] attempts of each item, written in the transaction that
//! records the attempt on the item and deleted with the item.

use super::db::{Db, DbResult, args};
use super::{Store, StoreError, db_time, from_db_time};

/// Attempts kept per item: an item retried for days keeps its latest.
pub const KEPT_PER_ITEM: i64 = 50;

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Sent,
    /// Failed; another attempt follows.
    Retry,
    /// Failed for good.
    Dead,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Sent => "sent",
            AttemptOutcome::Retry => "retry",
            AttemptOutcome::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [AttemptOutcome::Sent, AttemptOutcome::Retry, AttemptOutcome::Dead]
            .into_iter()
            .find(|o| o.as_str() == text)
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at_us: u64,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
}

/// Records an attempt of `item`, dropping its oldest past the bound.
pub(super) fn record(tx: Db<'_>, item: i64, at_us: u64, outcome: AttemptOutcome, error: Option<&str>) -> DbResult<()> {
    tx.execute(
        "INSERT INTO outbox_attempts (item, at_us, outcome, error) VALUES (?1, ?2, ?3, ?4)",
        args![item, db_time(at_us), outcome.as_str(), error],
    )?;
    tx.execute(
        "DELETE FROM outbox_attempts WHERE item = ?1 AND id NOT IN
           (SELECT id FROM outbox_attempts WHERE item = ?1 ORDER BY id DESC LIMIT ?2)",
        args![item, KEPT_PER_ITEM],
    )
    .map(drop)
}

/// Forgets the attempts of an item that is purged.
pub(super) fn forget(tx: Db<'_>, item: i64) -> DbResult<usize> {
    tx.execute("DELETE FROM outbox_attempts WHERE item = ?1", args![item])
}

impl Store {
    /// The attempts of `item` still kept, oldest first.
    pub fn attempts(&self, item: i64) -> Result<Vec<Attempt>, StoreError> {
        let rows: Vec<(i64, String, Option<String>)> = self.read(|c| {
            c.query(
                "SELECT at_us, outcome, error FROM outbox_attempts WHERE item = ?1 ORDER BY id",
                args![item],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
        })?;
        Ok(rows
            .into_iter()
            .map(|(at, outcome, error)| Attempt {
                at_us: from_db_time(at),
                // The table's check admits no other outcome.
                outcome: AttemptOutcome::parse(&outcome).unwrap_or(AttemptOutcome::Retry),
                error,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbox::tests::email;
    use super::super::{Changes, Status, Throttle};
    use super::*;

    fn one_item(store: &Store) -> i64 {
        let items = [email("alerts", "soc@example.org", "x", 0)];
        let changes = Changes {
            state: &[],
            items: &items,
            retries: &[],
            fences: &[],
        };
        store.commit(&changes, 10, u64::MAX, &Throttle::default()).unwrap();
        store.list(None, 1).unwrap()[0].as_ref().unwrap().id
    }

    /// A failure, the give-up, an operator's retry and the delivery: each
    /// attempt is kept with its error, across the retry that resets the
    /// item's count.
    #[test]
    fn every_attempt_is_kept_with_its_error_across_a_retry_by_hand() {
        let store = Store::for_tests();
        let id = one_item(&store);
        store.mark_retry(id, 100, "SMTP 421 try later", 20, "r1").unwrap();
        store.mark_dead(id, "SMTP 550 no such user", 30, "r1").unwrap();
        assert_eq!(store.retry(&[id], 40, u64::MAX).unwrap(), 1);
        store.mark_sent(id, 50).unwrap();
        let attempt = |at_us, outcome, error: Option<&str>| Attempt {
            at_us,
            outcome,
            error: error.map(str::to_string),
        };
        assert_eq!(
            store.attempts(id).unwrap(),
            vec![
                attempt(20, AttemptOutcome::Retry, Some("SMTP 421 try later")),
                attempt(30, AttemptOutcome::Dead, Some("SMTP 550 no such user")),
                attempt(50, AttemptOutcome::Sent, None),
            ]
        );
        // An attempt another replica settled first records nothing.
        store.mark_dead(id, "late", 60, "r2").unwrap();
        assert_eq!(store.attempts(id).unwrap().len(), 3);
    }

    #[test]
    fn an_item_keeps_its_latest_attempts_and_a_purge_forgets_them() {
        let store = Store::for_tests();
        let id = one_item(&store);
        for n in 0..(KEPT_PER_ITEM as u64 + 5) {
            store.mark_retry(id, 0, &format!("attempt {n}"), 100 + n, "r1").unwrap();
        }
        let kept = store.attempts(id).unwrap();
        assert_eq!(kept.len(), KEPT_PER_ITEM as usize);
        assert_eq!(kept[0].error.as_deref(), Some("attempt 5"));
        store.mark_dead(id, "gave up", 1_000, "r1").unwrap();
        assert_eq!(store.purge(Some(Status::Dead), u64::MAX).unwrap(), 1);
        assert!(store.attempts(id).unwrap().is_empty());
        // A late answer for an item gone records nothing.
        store.mark_sent(id, 2_000).unwrap();
        assert!(store.attempts(id).unwrap().is_empty());

        let by_hand = one_item(&store);
        store.mark_dead(by_hand, "550", 3_000, "r1").unwrap();
        assert_eq!(store.purge_dead(&[by_hand]).unwrap(), 1);
        assert!(store.attempts(by_hand).unwrap().is_empty());
    }
}
