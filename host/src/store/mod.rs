//! The typed store: one SQLite database in WAL mode holding what must
//! survive a crash: module state, alert dedup windows, event stream
//! positions, the outbox, the e-mail throttle and the events to hand a
//! module again.
//!
//! Everything one input causes is written by [`Store::commit`] in one
//! transaction, or not at all: an input counts as handled only once that
//! returns. Write transactions start with `BEGIN IMMEDIATE`, so a writer
//! that finds another one busy waits (up to [`BUSY_TIMEOUT`]) instead of
//! failing at once when its read turns into a write. Failures say whether
//! they can pass ([`StoreError::is_transient`]: busy, disk full, I/O) so
//! the service waits them out instead of exiting.
//!
//! The schema carries a version (`PRAGMA user_version`) and is migrated
//! when the database is opened ([`schema`]).

mod checkpoint;
mod commit;
mod follows;
mod outbox;
mod retention;
mod retries;
mod schema;
mod silences;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior};

pub use self::checkpoint::{CHECKPOINT_EVERY, Checkpointer};
pub use self::commit::{Changes, Committed, Throttle, ThrottleMode, window_seconds};
pub use self::follows::FailedFollower;
pub use self::outbox::{
    AlertPayload, EmailPayload, Kind, LabelOp, LabelPayload, NewDigest, NewItem, OpenOutbox, OutboxItem,
    PAYLOAD_VERSION, Payload, Status, StatusCounts, SyslogPayload, Unreadable, UserMessagePayload, WebhookPayload,
    redacted_url,
};
pub use self::retention::{OutboxBound, OutboxSection, Retention, SWEEP_EVERY, Sweeper, Swept};
pub use self::retries::{EventRetry, RetryChange};
pub use self::schema::SCHEMA_VERSION;
pub use self::silences::{Expired, FromLink, SilencesVersion, UnreadableSilence};
pub use self::state::{MAX_ENTRIES_PER_OWNER, MAX_KEY_BYTES, MAX_VALUE_BYTES, Owner, StateWrite};

/// How long a writer waits for another one to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// For replays and tests: gone with the process.
    Memory,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Memory => f.write_str("(in memory)"),
        }
    }
}

/// Why the store failed, and whether it can pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state database {location}: {message}")]
pub struct StoreError {
    location: String,
    message: String,
    transient: bool,
}

impl StoreError {
    /// The database is busy, the disk is full or an I/O call failed: the
    /// same operation may succeed later.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    fn sqlite(location: &Location, error: &rusqlite::Error) -> Self {
        let transient = matches!(
            error.sqlite_error_code(),
            Some(
                ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
                    | ErrorCode::CannotOpen
                    | ErrorCode::OutOfMemory
            )
        );
        Self {
            location: location.to_string(),
            message: error.to_string(),
            transient,
        }
    }

    /// Files of a replay that could not be written.
    pub fn files(dir: &Path, message: String) -> Self {
        Self {
            location: format!("(replay output {})", dir.display()),
            message,
            transient: false,
        }
    }

    fn permanent(location: &Location, message: impl Into<String>) -> Self {
        Self {
            location: location.to_string(),
            message: message.into(),
            transient: false,
        }
    }
}

/// A connection to the state database. Each thread that writes (the
/// pipeline, delivery, a command) opens its own.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    location: Location,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrated to the
    /// current schema.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let location = Location::File(path.to_path_buf());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::permanent(&location, format!("creating {}: {e}", dir.display())))?;
        }
        create_private(path).map_err(|e| StoreError::permanent(&location, format!("creating it: {e}")))?;
        let conn = Connection::open(path).map_err(|e| StoreError::sqlite(&location, &e))?;
        let prepare = |conn: &Connection| -> rusqlite::Result<()> {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // WAL: readers do not block the writer, and a crash loses at
            // most the transaction in flight (NORMAL: committed
            // transactions survive a crash of the process; an OS crash may
            // take the last ones).
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")
        };
        prepare(&conn).map_err(|e| StoreError::sqlite(&location, &e))?;
        Self::with_connection(conn, location)
    }

    /// A store that lasts as long as the process (replays, tests).
    pub fn in_memory() -> Self {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        Self::with_connection(conn, Location::Memory).expect("creating the schema in memory")
    }

    fn with_connection(mut conn: Connection, location: Location) -> Result<Self, StoreError> {
        schema::migrate(&mut conn, &location)?;
        Ok(Self {
            conn: Mutex::new(conn),
            location,
        })
    }

    /// Another connection to the same database, for another thread.
    pub fn reopen(&self) -> Result<Self, StoreError> {
        match &self.location {
            Location::File(path) => Self::open(path),
            Location::Memory => Err(StoreError::permanent(
                &self.location,
                "an in-memory store has one connection",
            )),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Leaves WAL checkpoints to a [`Checkpointer`], so that no commit of
    /// this connection waits for one.
    pub fn leave_checkpoints_to_checkpointer(&self) -> Result<(), StoreError> {
        self.read(checkpoint::leave_checkpoints_to_checkpointer)
    }

    /// Runs `f` on the connection, outside a transaction (reads).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&conn).map_err(|e| StoreError::sqlite(&self.location, &e))
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`), committed if it
    /// returns Ok, rolled back otherwise.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let attempt = |conn: &mut Connection| -> rusqlite::Result<T> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        };
        attempt(&mut conn).map_err(|e| StoreError::sqlite(&self.location, &e))
    }
}

/// Whether the store takes writes: the service's commit loop says, the
/// ingest endpoint reads (and answers 503 while it does not).
#[derive(Debug, Default)]
pub struct Health {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl Health {
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// What failed last, while failing.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn failed(&self, error: &StoreError) {
        self.refuse(error.to_string());
    }

    /// Inputs are refused for a reason other than a failed write (the
    /// outbox at its bound).
    pub fn refuse(&self, why: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.failing.store(true, Ordering::Relaxed);
    }

    pub fn recovered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

/// A time in microseconds as SQLite stores it (a signed 64-bit integer);
/// times past year 294,000 are the largest it holds.
/// Creates the database file readable by its owner alone, if it is not
/// there: it holds webhook URLs with their secrets and every e-mail. SQLite
/// gives its WAL and shared-memory files the database's mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

fn db_time(us: u64) -> i64 {
    i64::try_from(us).unwrap_or(i64::MAX)
}

/// A time read back from SQLite; negative ones (written by hand) are 0.
fn from_db_time(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// The database holds webhook secrets and every e-mail: only its owner
    /// may read it, its write-ahead log included.
    #[test]
    fn a_new_database_and_its_log_are_readable_by_their_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        let write = StateWrite {
            owner: Owner::Module("m".into()),
            key: "k".into(),
            value: b"v".to_vec(),
            expires_us: None,
        };
        store.state_put(&write, 1).unwrap();
        for file in ["state.db", "state.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}: {mode:o}");
        }
    }
}
