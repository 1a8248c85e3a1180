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
//! [`InputTurn::kept`] says so. While a turn is held the server ends the
//! session if it goes quiet for [`TURN_IDLE_LIMIT`]: a replica frozen
//! mid-input (stopped, swapped out, its machine hung with the connection
//! up) must not hold every other replica's inputs for ever. A live
//! replica's input may go that long without a statement (lookups to a slow
//! Velociraptor server): its [`TurnKeeper`] keeps the session busy, and
//! stops with the process.
//!
//! A SQLite store has one writer process (its pid file): the turn there
//! is free and takes no statement.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::db::args;
use super::{Backend, Store, StoreError};

/// The key of the advisory lock replicas take turns at inputs with
/// ("veloturn" in ASCII); writes take [`super::WRITE_LOCK`].
pub const INPUT_LOCK: i64 = 0x7665_6c6f_7475_726e;

/// How long the session of a replica holding the turn may go without a
/// statement before the server ends it (and the turn with it).
pub const TURN_IDLE_LIMIT: Duration = Duration::from_secs(30);

/// A [`TurnKeeper`] gives the turn's session a statement once it has been
/// idle for this share of the idle limit.
const KEEP_AFTER_SHARE: u32 = 6;

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
            let idle = format!("{}ms", self.turn_idle_limit().as_millis());
            db.execute(
                "SELECT pg_advisory_lock(?1), set_config('idle_session_timeout', ?2, false)",
                args![INPUT_LOCK, idle],
            )
        })?;
        let session = session.map(|(session, _)| session);
        self.turn_held.store(session.is_some(), Ordering::SeqCst);
        Ok(InputTurn { store: self, session })
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
        self.store.turn_held.store(false, Ordering::SeqCst);
        if self.session.is_none() || !self.kept() {
            return;
        }
        // The session's own idle limit (its role's or database's) again.
        let given_back = self.store.read_pg(|db| {
            db.query_one(
                "SELECT pg_advisory_unlock(?1),
                        set_config('idle_session_timeout',
                                   (SELECT reset_val FROM pg_settings WHERE name = 'idle_session_timeout'), false)",
                args![INPUT_LOCK],
                |r| r.get::<bool>(0),
            )
        });
        match given_back {
            Ok(Some((_, true)) | None) => {}
            // Not given back on a session that lives on would hold every
            // replica's inputs: the connection is made again, and the
            // server lets the lock go with the old one.
            Ok(Some((_, false))) => {
                tracing::warn!("the input turn was not held at its end; connecting to the store again");
                self.store.reconnect_next();
            }
            Err(error) => {
                tracing::warn!(%error, "could not give back the input turn; connecting to the store again");
                self.store.reconnect_next();
            }
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

    fn turn_idle_limit(&self) -> Duration {
        Duration::from_millis(self.turn_idle_limit_ms.load(Ordering::SeqCst))
    }

    /// How long a held turn's session may be idle before its keeper gives
    /// it a statement.
    fn keep_after(&self) -> Duration {
        self.turn_idle_limit() / KEEP_AFTER_SHARE
    }

    /// Gives a held turn's session a statement if it has had none lately.
    fn keep_turn_alive(&self) {
        if !self.turn_held.load(Ordering::SeqCst) || self.idle_for() < self.keep_after() {
            return;
        }
        if let Err(error) = self.read_pg(|db| db.execute("SELECT 1", args![])) {
            tracing::debug!(%error, "could not keep the input turn's session busy");
        }
    }
}

/// Keeps the session of this process's input turn from looking idle while
/// an input takes long (see the module's documentation). Stops when
/// dropped; a frozen process freezes it too, and loses the turn.
#[derive(Debug)]
pub struct TurnKeeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TurnKeeper {
    /// Starts keeping `store`'s turns (nothing to keep on SQLite).
    pub fn start(store: Arc<Store>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match store.location() {
            super::Location::Postgres(_) => {
                let stop = stop.clone();
                Some(
                    std::thread::Builder::new()
                        .name("velonotify-turn-keeper".into())
                        .spawn(move || {
                            while !stop.load(Ordering::SeqCst) {
                                std::thread::sleep(store.keep_after() / 4);
                                store.keep_turn_alive();
                            }
                        })?,
                )
            }
            _ => None,
        };
        Ok(Self { stop, thread })
    }
}

impl Drop for TurnKeeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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

    /// An input that goes long without a statement (lookups to a slow
    /// server) keeps its turn while its process lives (the keeper); a
    /// frozen process (no keeper runs) loses it to the server's idle
    /// limit, and the other replicas go on.
    #[test]
    fn a_slow_input_keeps_its_turn_and_a_frozen_one_loses_it() {
        let Some((a, b)) = two_replicas() else { return };
        let a = Arc::new(a);
        a.turn_idle_limit_ms.store(1_200, Ordering::SeqCst);
        let owner = super::super::Owner::AlertDedup;
        {
            let _keeper = TurnKeeper::start(a.clone()).unwrap();
            let turn = a.take_input_turn().unwrap();
            std::thread::sleep(Duration::from_millis(3_000));
            a.state_get(&owner, "k", 0).expect("the session lives");
            assert!(turn.kept(), "the keeper kept the session busy");
        }
        let turn = a.take_input_turn().unwrap();
        std::thread::sleep(Duration::from_millis(3_000));
        let other = b
            .take_input_turn()
            .expect("the frozen replica's turn went with its session");
        drop(other);
        let _ = a.state_get(&owner, "k", 0);
        assert!(!turn.kept());
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
