//! The typed store: one database holding what must survive a crash:
//! module state, alert dedup windows, event stream positions, the outbox,
//! the e-mail throttle and the events to hand a module again. It is a
//! SQLite file in WAL mode (the default), or a PostgreSQL database that
//! several replicas share (`[store] url`); the statements are the same
//! ([`db`]), the schema each engine's own ([`schema`]).
//!
//! Everything one input causes is written by [`Store::commit`] in one
//! transaction, or not at all: an input counts as handled only once that
//! returns. Write transactions start with `BEGIN IMMEDIATE`, so a writer
//! that finds another one busy waits (up to [`BUSY_TIMEOUT`]) instead of
//! failing at once when its read turns into a write. Failures say whether
//! they can pass ([`StoreError::is_transient`]: busy, disk full, I/O) so
//! the service waits them out instead of exiting.
//!
//! On PostgreSQL a write transaction first takes a transaction-level
//! advisory lock ([`WRITE_LOCK`]): writers of every replica take turns as
//! SQLite's do, so the read-then-write decisions of a commit (is a dedup
//! window open, is a module throttled, are a digest's members still held)
//! see no other replica's write half done. Delivery's claims of outbox
//! items do not take it (`FOR UPDATE SKIP LOCKED`, see [`outbox`]). The
//! reads a module's decision rests on come before the commit: replicas
//! also take turns at whole inputs ([`turns`]), and a commit of rows read
//! from a stream another replica has taken over stores nothing
//! ([`Fence`]).
//!
//! The schema carries a version (`PRAGMA user_version`) and is migrated
//! when the database is opened ([`schema`]).

mod attempts;
mod checkpoint;
mod commit;
pub(crate) mod db;
mod follows;
mod outbox;
mod postgres;
mod replicas;
mod retention;
mod retries;
mod schema;
mod silences;
mod state;
mod turns;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use self::db::{Db, DbError, DbResult, args};
use self::postgres::PgConn;

pub use self::attempts::{Attempt, AttemptOutcome, KEPT_PER_ITEM};
pub use self::checkpoint::{CHECKPOINT_EVERY, Checkpointer};
pub use self::commit::{Changes, Committed, Throttle, ThrottleMode, window_seconds};
pub use self::follows::FailedFollower;
pub use self::outbox::{
    AlertPayload, EmailPayload, Kind, LabelOp, LabelPayload, NewDigest, NewItem, OpenOutbox, OutboxFilter, OutboxItem,
    PAYLOAD_VERSION, Payload, SEARCH_SCAN, SearchPage, Status, StatusCounts, SyslogPayload, Unreadable,
    UserMessagePayload, WebhookPayload, redacted_url,
};
pub use self::postgres::CONNECT_TIMEOUT;
pub use self::replicas::{CLAIM_LEASE, Fence, HEARTBEAT_EVERY, Lease, REPLICA_TIMEOUT, Replica};
pub use self::retention::{OutboxBound, OutboxSection, Retention, SWEEP_EVERY, Sweeper, Swept};
pub use self::retries::{EventRetry, RetryChange};
pub use self::schema::SCHEMA_VERSION;
pub use self::silences::{Expired, FromLink, SilencesVersion, UnreadableSilence};
pub use self::state::{MAX_ENTRIES_PER_OWNER, MAX_KEY_BYTES, MAX_VALUE_BYTES, Owner, StateWrite};
pub use self::turns::{INPUT_LOCK, InputTurn, TURN_IDLE_LIMIT, TurnKeeper};

/// How long a writer waits for another one to finish.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The key of the advisory lock PostgreSQL writers take turns with
/// ("velonoti" in ASCII).
pub const WRITE_LOCK: i64 = 0x7665_6c6f_6e6f_7469;

/// Where a store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    /// For replays and tests: gone with the process.
    Memory,
    /// A PostgreSQL database, shared by replicas.
    Postgres(PostgresUrl),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Memory => f.write_str("(in memory)"),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

/// A PostgreSQL connection URL; shown without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// Whether `url` names PostgreSQL (`postgres://` or `postgresql://`).
    pub fn parse(url: &str) -> Option<Self> {
        let scheme_ok = ["postgres://", "postgresql://"].iter().any(|s| url.starts_with(s));
        scheme_ok.then(|| Self(url.to_string()))
    }

    fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("postgres", &self.0));
        // A password may also come as a query parameter.
        let hidden_query;
        let rest = match rest.split_once('?') {
            Some((path, query)) => {
                let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with("password=")).collect();
                hidden_query = match kept.len() < query.split('&').count() {
                    true => format!("{path}?{}", kept.join("&")),
                    false => rest.to_string(),
                };
                hidden_query.as_str()
            }
            None => rest,
        };
        match rest.split_once('@') {
            Some((user_info, host)) => {
                let user = user_info.split(':').next().unwrap_or_default();
                let hidden = if user_info.contains(':') { ":…" } else { "" };
                write!(f, "{scheme}://{user}{hidden}@{host}")
            }
            None => write!(f, "{scheme}://{rest}"),
        }
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// Why the store failed, and whether it can pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state database {location}: {message}")]
pub struct StoreError {
    location: String,
    message: String,
    transient: bool,
    fenced: bool,
}

impl StoreError {
    /// The database is busy, the disk is full or an I/O call failed: the
    /// same operation may succeed later.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// A commit refused because a lease it depended on is another
    /// replica's now ([`Fence`]): nothing was stored, and nothing should
    /// be (the other replica handles what the input held).
    pub fn is_fenced(&self) -> bool {
        self.fenced
    }

    fn fenced(location: &Location, fence: &Fence) -> Self {
        Self {
            location: location.to_string(),
            message: format!(
                "{} is no longer held by replica {} as it was when the input was read (another replica took \
                 it over, or it was given up)",
                fence.lease, fence.holder
            ),
            transient: false,
            fenced: true,
        }
    }

    fn db(location: &Location, error: &DbError) -> Self {
        let transient = match error {
            DbError::Sqlite(e) => sqlite_is_transient(e),
            DbError::Postgres(e) => postgres::is_transient(e),
            DbError::Value(_) => false,
        };
        Self {
            location: location.to_string(),
            message: error.to_string(),
            transient,
            fenced: false,
        }
    }

    fn sqlite(location: &Location, error: &rusqlite::Error) -> Self {
        Self {
            location: location.to_string(),
            message: error.to_string(),
            transient: sqlite_is_transient(error),
            fenced: false,
        }
    }

    /// Files of a replay that could not be written.
    pub fn files(dir: &Path, message: String) -> Self {
        Self {
            location: format!("(replay output {})", dir.display()),
            message,
            transient: false,
            fenced: false,
        }
    }

    fn permanent(location: &Location, message: impl Into<String>) -> Self {
        Self {
            location: location.to_string(),
            message: message.into(),
            transient: false,
            fenced: false,
        }
    }
}

/// A connection to the state database. Each thread that writes (the
/// pipeline, delivery, a command) opens its own.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Backend>,
    location: Location,
    /// Counts the connections made again (PostgreSQL): a session-level
    /// lock ([`InputTurn`]) is held only by the session that took it.
    sessions: AtomicU64,
    /// The connection is made again before its next statement, even if
    /// it is up (to let go of what its session holds).
    reconnect: AtomicBool,
    /// Whether an [`InputTurn`] is held on this connection.
    turn_held: AtomicBool,
    /// When the connection last ran a statement (ms on [`mono_ms`]'s clock).
    last_used_ms: AtomicU64,
    /// [`TURN_IDLE_LIMIT`], in ms (shorter in tests).
    turn_idle_limit_ms: AtomicU64,
}

/// Milliseconds on a clock that only goes forward, from the first call.
fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(START.get_or_init(std::time::Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The engine behind a [`Store`].
#[derive(Debug)]
enum Backend {
    Sqlite(Connection),
    Postgres(PgConn),
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
        Self::with_backend(Backend::Sqlite(conn), location)
    }

    /// Connects to a PostgreSQL database, migrated to the current schema
    /// (the first replica to connect migrates it; the others wait).
    pub fn connect(url: &PostgresUrl) -> Result<Self, StoreError> {
        let location = Location::Postgres(url.clone());
        let conn = PgConn::connect(url.secret()).map_err(|e| StoreError::db(&location, &e))?;
        Self::with_backend(Backend::Postgres(conn), location)
    }

    /// Opens the store a configuration names.
    pub fn open_at(location: &Location) -> Result<Self, StoreError> {
        match location {
            Location::File(path) => Self::open(path),
            Location::Memory => Ok(Self::in_memory()),
            Location::Postgres(url) => Self::connect(url),
        }
    }

    /// A store that lasts as long as the process (replays, tests).
    pub fn in_memory() -> Self {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        Self::with_backend(Backend::Sqlite(conn), Location::Memory).expect("creating the schema in memory")
    }

    fn with_backend(mut backend: Backend, location: Location) -> Result<Self, StoreError> {
        schema::migrate(&mut backend, &location)?;
        Ok(Self {
            conn: Mutex::new(backend),
            location,
            sessions: AtomicU64::new(0),
            reconnect: AtomicBool::new(false),
            turn_held: AtomicBool::new(false),
            last_used_ms: AtomicU64::new(mono_ms()),
            turn_idle_limit_ms: AtomicU64::new(u64::try_from(TURN_IDLE_LIMIT.as_millis()).unwrap_or(u64::MAX)),
        })
    }

    /// Another connection to the same database, for another thread.
    pub fn reopen(&self) -> Result<Self, StoreError> {
        match &self.location {
            Location::Memory => Err(StoreError::permanent(
                &self.location,
                "an in-memory store has one connection",
            )),
            location => Self::open_at(location),
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Leaves WAL checkpoints to a [`Checkpointer`], so that no commit of
    /// this connection waits for one (SQLite's; PostgreSQL checkpoints on
    /// its own).
    pub fn leave_checkpoints_to_checkpointer(&self) -> Result<(), StoreError> {
        let conn = self.lock();
        match &*conn {
            Backend::Sqlite(conn) => {
                checkpoint::leave_checkpoints_to_checkpointer(conn).map_err(|e| StoreError::sqlite(&self.location, &e))
            }
            Backend::Postgres(_) => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backend> {
        let mut conn = self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A connection the server closed (a restart, a network failure) is
        // made again; if that fails, the call fails as the closed one
        // would, transiently.
        if let (Backend::Postgres(pg), Location::Postgres(url)) = (&*conn, &self.location) {
            pg.end_abandoned_transaction();
            let asked = self.reconnect.load(Ordering::SeqCst);
            if (pg.is_closed() || asked)
                && let Ok(again) = PgConn::connect(url.secret())
            {
                *conn = Backend::Postgres(again);
                self.sessions.fetch_add(1, Ordering::SeqCst);
                self.reconnect.store(false, Ordering::SeqCst);
            }
        }
        self.last_used_ms.store(mono_ms(), Ordering::SeqCst);
        conn
    }

    /// Makes the connection again before its next statement.
    fn reconnect_next(&self) {
        self.reconnect.store(true, Ordering::SeqCst);
    }

    /// How long since the connection last ran a statement.
    fn idle_for(&self) -> Duration {
        Duration::from_millis(mono_ms().saturating_sub(self.last_used_ms.load(Ordering::SeqCst)))
    }

    /// Which session the connection is (changes when it is made again).
    fn session(&self) -> u64 {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Runs `f` on the connection, outside a transaction (reads).
    fn read<T>(&self, f: impl FnOnce(Db<'_>) -> DbResult<T>) -> Result<T, StoreError> {
        let conn = self.lock();
        let db = match &*conn {
            Backend::Sqlite(conn) => Db::Sqlite(conn),
            Backend::Postgres(conn) => Db::Postgres(conn),
        };
        f(db).map_err(|e| StoreError::db(&self.location, &e))
    }

    /// Runs `f` in a write transaction, committed if it returns Ok, rolled
    /// back otherwise. SQLite's is `BEGIN IMMEDIATE`; PostgreSQL's takes
    /// the [`WRITE_LOCK`] first, so writers take turns there too.
    fn write<T>(&self, f: impl FnOnce(Db<'_>) -> DbResult<T>) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let result = match &mut *conn {
            Backend::Sqlite(conn) => (|| {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = f(Db::Sqlite(&tx))?;
                tx.commit()?;
                Ok(value)
            })(),
            Backend::Postgres(conn) => conn.transaction(|conn| {
                Db::Postgres(conn).execute("SELECT pg_advisory_xact_lock(?1)", args![WRITE_LOCK])?;
                f(Db::Postgres(conn))
            }),
        };
        result.map_err(|e| StoreError::db(&self.location, &e))
    }

    /// Runs `f` in a transaction that takes no turn with the writers
    /// (PostgreSQL's claims of outbox items lock only the rows they take;
    /// SQLite's writers always take turns).
    fn write_rows<T>(&self, f: impl FnOnce(Db<'_>) -> DbResult<T>) -> Result<T, StoreError> {
        let conn = self.lock();
        match &*conn {
            Backend::Postgres(conn) => conn
                .transaction(|conn| f(Db::Postgres(conn)))
                .map_err(|e| StoreError::db(&self.location, &e)),
            Backend::Sqlite(_) => {
                drop(conn);
                self.write(f)
            }
        }
    }
}

#[cfg(test)]
impl Store {
    /// The store a unit test runs on: in memory, or a database of its own
    /// on the test process's PostgreSQL server when the suite runs there
    /// (`VELONOTIFY_TEST_STORE=postgres`, as scripts/test runs it once).
    pub(crate) fn for_tests() -> Self {
        use velonotify_test_support::postgres;
        if postgres::testing_on_postgres() {
            let url = postgres::server().database();
            return Self::connect(&PostgresUrl::parse(&url).expect("a postgres:// URL")).expect("a test database");
        }
        Self::in_memory()
    }
}

fn sqlite_is_transient(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
        )
    )
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

    /// Logs and `status` name the database a replica uses, never its
    /// password.
    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        let url = PostgresUrl::parse("postgres://velonotify:s3cr3t@db.example.org:5432/alerts").unwrap();
        assert_eq!(url.to_string(), "postgres://velonotify:…@db.example.org:5432/alerts");
        assert!(!format!("{:?}", Location::Postgres(url)).contains("s3cr3t"));
        assert!(PostgresUrl::parse("/var/lib/velonotify.db").is_none());
        let in_query = PostgresUrl::parse("postgres://v@db/alerts?password=s3cr3t&sslmode=disable").unwrap();
        assert_eq!(in_query.to_string(), "postgres://v@db/alerts?sslmode=disable");
    }

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
