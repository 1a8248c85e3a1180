//! Input turns: replicas sharing a PostgreSQL store handle their inputs
//! one at a time.
//!
//! A module decides on what it reads from the store (is this alert's dedup
//! window open, where is my cursor, what did I count so far) and stores
//! the outcome in its input's commit. Two replicas handling inputs at the
//! same moment would each read the state from before the other's commit,
//! and both send what one should (the same alert posted to both, a tick
//! of a cursor-keeping monitor on each). So a replica takes a turn before
//! the first read of an input and gives it back after the input's commit:
//! every input reads what the inputs before it, on any replica, stored.
//!
//! The turn is a session-level advisory lock ([`INPUT_LOCK`]) on the
//! connection the input is read and committed on. The session must stay
//! the one that took it: a connection made again (the server restarted,
//! the network failed) lost the lock with the old session, and
//! [`InputTurn::kept`] says so. While a turn is held the session is ended
//! by the server if it goes quiet for [`TURN_IDLE_LIMIT`] (a replica
//! frozen mid-input must not hold every other replica's inputs for ever).
//!
//! A SQLite store has one writer process (its pid file): the turn there
//! is free and takes no statement.

use std::time::Duration;

use super::db::args;
use super::{Backend, Store, StoreError};

/// The key of the advisory lock replicas take turns at inputs with
/// ("veloturn" in ASCII); writes take [`super::WRITE_LOCK`].
pub const INPUT_LOCK: i64 = 0x7665_6c6f_7475_726e;

/// How long a replica holding the turn may go without a statement before
/// the server ends its session: longer than a lookup's timeout (10 s), so
/// a slow Velociraptor server does not cost the turn.
pub const TURN_IDLE_LIMIT: Duration = Duration::from_secs(30);

/// A replica's turn at an input: given back when dropped.
#[derive(Debug)]
#[must_use = "the turn is given back when dropped"]
pub struct InputTurn<'s> {
    store: &'s Store,
    /// The session that took the lock (PostgreSQL); None on SQLite.
    session: Option<u64>,
}

impl Store {
    /// Waits for this replica's turn at an input (PostgreSQL; at once on
    /// SQLite). Waiting past the session's `lock_timeout` fails
    /// transiently: the caller tries again.
    pub fn take_input_turn(&self) -> Result<InputTurn<'_>, StoreError> {
        let session = self.read_pg(|db| {
            let idle = format!("{}ms", TURN_IDLE_LIMIT.as_millis());
            db.execute(
                "SELECT pg_advisory_lock(?1), set_config('idle_session_timeout', ?2, false)",
                args![INPUT_LOCK, idle],
            )
        })?;
        Ok(InputTurn {
            store: self,
            session: session.map(|(session, _)| session),
        })
    }
}

impl InputTurn<'_> {
    /// Whether the turn is still held: false if the connection was made
    /// again since it was taken (the lock went with the old session), so
    /// another replica may have handled an input meanwhile.
    pub fn kept(&self) -> bool {
        self.session.is_none_or(|session| session == self.store.session())
    }
}

impl Drop for InputTurn<'_> {
    fn drop(&mut self) {
        if self.session.is_none() || !self.kept() {
            return;
        }
        let given_back = self.store.read_pg(|db| {
            db.execute(
                "SELECT pg_advisory_unlock(?1), set_config('idle_session_timeout', '0', false)",
                args![INPUT_LOCK],
            )
        });
        if let Err(error) = given_back {
            // The session is broken: the server lets the lock go with it.
            tracing::warn!(%error, "could not give back the input turn");
        }
    }
}

impl Store {
    /// Runs `f` on a PostgreSQL connection and returns the session it ran
    /// in with its value; None on SQLite, where `f` is not run.
    fn read_pg<T>(
        &self,
        f: impl FnOnce(super::db::Db<'_>) -> super::db::DbResult<T>,
    ) -> Result<Option<(u64, T)>, StoreError> {
        let conn = self.lock();
        let Backend::Postgres(pg) = &*conn else {
            return Ok(None);
        };
        let value = f(super::db::Db::Postgres(pg)).map_err(|e| StoreError::db(&self.location, &e))?;
        Ok(Some((self.session(), value)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::super::Location;
    use super::*;

    /// Two connections to one store: two replicas.
    fn two_replicas() -> Option<(Store, Store)> {
        let first = Store::for_tests();
        if !matches!(first.location(), Location::Postgres(_)) {
            return None;
        }
        let second = first.reopen().unwrap();
        Some((first, second))
    }

    /// One replica's input waits until the other's is committed and its
    /// turn given back; on SQLite (one process) the turn is free.
    #[test]
    fn a_replica_waits_for_the_others_turn_to_end() {
        let Some((a, b)) = two_replicas() else {
            let store = Store::for_tests();
            let (first, second) = (store.take_input_turn().unwrap(), store.take_input_turn().unwrap());
            assert!(first.kept() && second.kept(), "turns on SQLite are free");
            return;
        };
        let turn = a.take_input_turn().unwrap();
        let (got, taken) = mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _turn = b.take_input_turn().unwrap();
                got.send(Instant::now()).unwrap();
            });
            assert!(
                taken.recv_timeout(Duration::from_millis(500)).is_err(),
                "the second replica took a turn the first one held"
            );
            let given_back = Instant::now();
            drop(turn);
            let at = taken.recv_timeout(Duration::from_secs(10)).expect("the turn passed on");
            assert!(at >= given_back);
        });
        assert!(
            a.take_input_turn().unwrap().kept(),
            "given back by the second replica too"
        );
    }

    /// A turn whose session the server ended is no longer held: the
    /// replica is told, and another replica may take the turn.
    #[test]
    fn a_turn_is_lost_with_its_session() {
        let Some((a, b)) = two_replicas() else { return };
        let turn = a.take_input_turn().unwrap();
        let pid = a
            .read(|db| db.query_one("SELECT CAST(pg_backend_pid() AS BIGINT)", args![], |r| r.get::<i64>(0)))
            .unwrap();
        // (Waiting until the session is gone.)
        b.read(|db| db.execute("SELECT pg_terminate_backend(?1, 5000)", args![pid]))
            .unwrap();
        // The first statement after finds the session gone; the next one
        // runs on a new session.
        let owner = super::super::Owner::AlertDedup;
        let _ = a.state_get(&owner, "k", 0);
        a.state_get(&owner, "k", 0).expect("a new session");
        assert!(!turn.kept());
        let other = b.take_input_turn().unwrap();
        assert!(other.kept(), "the lock went with the old session");
    }
}
