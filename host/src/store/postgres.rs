//! A connection to PostgreSQL for the store's synchronous calls.
//!
//! tokio-postgres is asynchronous: a `Client` sends requests to a
//! `Connection` future that owns the socket. Every connection of the
//! process is driven on one small runtime of its own ([`driver`]), and the
//! store's threads wait for their answers with a plain executor, so a
//! store call behaves like a SQLite one: it blocks its thread, wherever
//! that thread is (a pipeline thread, a delivery worker, an HTTP handler
//! inside the service's runtime, which a second tokio runtime would refuse).
//!
//! Statements are prepared once per connection and kept ([`PgConn::statement`]),
//! as rusqlite's `prepare_cached` keeps them.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

use super::db::{Arg, DbError, DbResult, numbered_for_postgres};

/// How long connecting may take before the store counts it as failed (and
/// transient: the server may be starting).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Limits of every session (milliseconds): a transaction left idle (its
/// replica frozen) ends after 10 s; a wait for a lock, the write lock
/// included, fails after 30 s and a statement after 60 s (both transient:
/// the store's callers try again).
const SESSION_LIMITS: &str =
    "-c idle_in_transaction_session_timeout=10000 -c lock_timeout=30000 -c statement_timeout=60000";

/// One connection: the client, and the statements it has prepared.
pub(crate) struct PgConn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
    /// Set while a transaction is open (a panic inside one leaves it set).
    in_transaction: AtomicBool,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

/// The runtime that drives every connection's socket.
fn driver() -> &'static tokio::runtime::Runtime {
    static DRIVER: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    DRIVER.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("velonotify-postgres")
            .enable_all()
            .build()
            .expect("starting the PostgreSQL connections' runtime")
    })
}

impl PgConn {
    /// Connects to `url` (a `postgres://` URL or a key=value string).
    pub(crate) fn connect(url: &str) -> DbResult<Self> {
        let mut config = tokio_postgres::Config::from_str(url)?;
        // A replica frozen or cut off inside a transaction must not hold
        // the write lock, and so every other replica, for long: the server
        // ends such a transaction, and notices a dead peer within seconds
        // (keepalives), not the system's two hours.
        config
            .application_name("velonotify")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(5))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .options(SESSION_LIMITS);
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        driver().spawn(async move {
            match config.connect(NoTls).await {
                Ok((client, connection)) => {
                    let _ = reply.send(Ok(client));
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "a PostgreSQL connection ended");
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        });
        let client = answer
            .recv()
            .map_err(|_| DbError::value("the PostgreSQL connection's driver stopped"))??;
        Ok(Self {
            client,
            statements: Mutex::new(HashMap::new()),
            in_transaction: AtomicBool::new(false),
        })
    }

    /// Whether the server closed the connection (or it broke): the store
    /// connects again.
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    fn statement(&self, sql: &str) -> DbResult<Statement> {
        if let Some(statement) = self.lock_statements().get(sql) {
            return Ok(statement.clone());
        }
        let statement = wait(self.client.prepare(&numbered_for_postgres(sql)))?;
        self.lock_statements().insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn lock_statements(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        self.statements.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a transaction: committed if it returns Ok, rolled back
    /// otherwise. A transaction a panic left open is rolled back first.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce(&Self) -> DbResult<T>) -> DbResult<T> {
        if self.in_transaction.swap(true, Ordering::SeqCst) {
            self.batch("ROLLBACK")?;
        }
        self.batch("BEGIN")?;
        let result = f(self).and_then(|value| self.batch("COMMIT").map(|()| value));
        if result.is_err() {
            // A failed COMMIT has ended the transaction already; ROLLBACK
            // then only warns.
            let _ = self.batch("ROLLBACK");
        }
        self.in_transaction.store(false, Ordering::SeqCst);
        result
    }

    /// Ends a transaction a panic left open (its caller never got to
    /// COMMIT or ROLLBACK), so that what runs next is not inside it, and
    /// the write lock it may hold goes.
    pub(crate) fn end_abandoned_transaction(&self) {
        if self.in_transaction.swap(false, Ordering::SeqCst) {
            let _ = self.batch("ROLLBACK");
        }
    }

    pub(crate) fn execute(&self, sql: &str, args: &[Arg<'_>]) -> DbResult<usize> {
        let statement = self.statement(sql)?;
        let n = wait(self.client.execute(&statement, &params(args)))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    pub(crate) fn query(&self, sql: &str, args: &[Arg<'_>]) -> DbResult<Vec<tokio_postgres::Row>> {
        let statement = self.statement(sql)?;
        Ok(wait(self.client.query(&statement, &params(args)))?)
    }

    pub(crate) fn batch(&self, sql: &str) -> DbResult<()> {
        Ok(wait(self.client.batch_execute(sql))?)
    }
}

fn params<'a>(args: &'a [Arg<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|arg| arg as &(dyn ToSql + Sync)).collect()
}

/// Waits for a client future on this thread (the driver does the I/O).
fn wait<T>(future: impl Future<Output = Result<T, tokio_postgres::Error>>) -> Result<T, tokio_postgres::Error> {
    futures_executor::block_on(future)
}

/// Whether a PostgreSQL failure can pass: the connection broke or was
/// refused, the server is starting or shutting down, out of resources, or
/// the transaction lost a serialization race or a deadlock.
pub(crate) fn is_transient(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        // No answer from the server: the connection is down or could not
        // be made. (A value that did not convert is no such failure.)
        let io = std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>());
        return error.is_closed() || io || error.to_string().contains("timeout");
    };
    let code = db.code().code();
    // 55P03: a lock wait past lock_timeout; 57014: a statement past
    // statement_timeout (or cancelled).
    ["08", "53", "57P", "58"].iter().any(|class| code.starts_with(class))
        || matches!(code, "40001" | "40P01" | "55P03" | "57014")
}
