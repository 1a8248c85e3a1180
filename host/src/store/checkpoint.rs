//! WAL checkpoints off the pipeline's path.
//!
//! SQLite in WAL mode copies the log back into the database file (a
//! checkpoint, with an fsync) inside whichever commit pushes the log past
//! 1,000 pages. In `velonotify run` that commit is usually the pipeline's,
//! so every few hundred events one of them, and any hot swap waiting
//! behind it, took tens of milliseconds. The service moves that work
//! here, to a connection and a thread of their own: a passive checkpoint
//! never blocks the writers, which go on appending to the log meanwhile.
//!
//! A passive checkpoint copies what was in the log when it began; the log
//! starts over only when a writer finds it all copied. Under writes that
//! never pause, that moment may not come, so the writers keep an automatic
//! checkpoint of their own at ten times SQLite's threshold as a backstop:
//! the log stays bounded (about 40 MB) and the rare commit that runs it is
//! the old cost, ten times less often.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the log is copied back.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The writers' own automatic checkpoint, in log pages (SQLite's default
/// is 1,000): a backstop for when the [`Checkpointer`] cannot catch up.
pub const WRITER_BACKSTOP_PAGES: u32 = 10_000;

/// Leaves the checkpoints of one connection to the [`Checkpointer`],
/// but for the backstop.
pub fn leave_checkpoints_to_checkpointer(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_BACKSTOP_PAGES)
}

/// Checkpoints the database at a path every `every` until dropped; the
/// last one runs as it stops.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(path: &Path, every: Duration) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("velonotify-checkpoint".into())
            .spawn(move || {
                loop {
                    let last = !matches!(stopped.recv_timeout(every), Err(RecvTimeoutError::Timeout));
                    if let Err(e) = checkpoint(&conn) {
                        tracing::warn!(error = %e, "WAL checkpoint of the state database failed; retried later");
                    }
                    if last {
                        break;
                    }
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// A passive checkpoint: copies what no reader still needs, waits for
/// no one.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_bytes(db: &Path) -> u64 {
        std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    /// Below the backstop the writer does not checkpoint and the log only
    /// grows; the checkpointer lets the writer start it over.
    #[test]
    fn the_log_stays_small_when_writers_leave_checkpoints_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let writer = Connection::open(&db).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        leave_checkpoints_to_checkpointer(&writer).unwrap();
        writer.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        let write_mib = |conn: &Connection| {
            for _ in 0..16 {
                conn.execute("INSERT INTO t VALUES (zeroblob(65536))", []).unwrap();
            }
        };
        write_mib(&writer);
        write_mib(&writer);
        let grown = wal_bytes(&db);
        assert!(grown > 2 << 20, "the log holds both writes: {grown} bytes");
        let checkpointer = Checkpointer::start(&db, Duration::from_millis(20)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(checkpointer);
        // Checkpointed: the next write starts the log over.
        write_mib(&writer);
        let after = wal_bytes(&db);
        assert!(
            after <= grown,
            "the log was {grown} bytes, and is {after} after a checkpoint"
        );
        let rows: i64 = writer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 48);
    }
}
