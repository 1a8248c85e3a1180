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
//! starts over only when a writer finds it all copied, and under writes
//! that never pause that moment does not come: the writers append while it
//! copies. So once the log has grown past [`RESTART_ABOVE_PAGES`], each
//! passive checkpoint is followed by a restart checkpoint that does not
//! wait for the writers: when it gets their lock, it copies only what they
//! appended meanwhile (a second's worth at most) and syncs the log and the
//! database, holding them for that copy and two fsyncs (a few milliseconds
//! on this project's machines), and the next write starts the log over. When
//! it does not get the lock, it is a passive one, tried again next time.
//! The writers keep an automatic checkpoint of their own at ten times
//! SQLite's threshold as a backstop (about 40 MB of log), for a checkpointer
//! that cannot keep up; the commit that runs it waits for the whole copy.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the log is copied back.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Past this many log pages (SQLite's own threshold), the checkpointer
/// lets the writers start the log over.
pub const RESTART_ABOVE_PAGES: i64 = 1_000;

/// How long the restart checkpoint waits for a writer to finish its
/// transaction: writers commit often, but never wait for it.
pub const RESTART_WAITS_FOR_WRITERS: Duration = Duration::from_millis(20);

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
        // Never wait for the writers: a checkpoint that cannot take their
        // lock copies what it can and is tried again next time.
        conn.busy_timeout(Duration::ZERO)?;
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
/// no one. Then, if the log is long, a restart checkpoint that copies what
/// was appended meanwhile, so that the log starts over.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    let log_pages = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1))?;
    if log_pages >= RESTART_ABOVE_PAGES {
        conn.busy_timeout(RESTART_WAITS_FOR_WRITERS)?;
        let restarted = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
        conn.busy_timeout(Duration::ZERO)?;
        restarted?;
    }
    Ok(())
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

    /// A writer that commits without pause (only the moment it takes to
    /// handle the next input between two commits) never finds a passive
    /// checkpoint done; the restart after it lets the log start over all
    /// the same, so the
    /// log file stops growing (the writer's backstop is off here): what is
    /// written after the first 32 MiB reuses the file.
    #[test]
    fn the_log_starts_over_under_commits_that_never_pause() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let writer = Connection::open(&db).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer.busy_timeout(Duration::from_secs(5)).unwrap();
        writer.execute_batch("CREATE TABLE t (v BLOB)").unwrap();
        let write_mib = |mib: u64| {
            for _ in 0..mib * 16 {
                writer.execute("INSERT INTO t VALUES (zeroblob(65536))", []).unwrap();
                // The pipeline between two commits, handling the next input.
                std::thread::sleep(Duration::from_micros(100));
            }
        };
        let checkpointer = Checkpointer::start(&db, Duration::from_millis(10)).unwrap();
        write_mib(32);
        let early = wal_bytes(&db);
        write_mib(96);
        let late = wal_bytes(&db);
        drop(checkpointer);
        assert!(
            late < early + (48 << 20),
            "the log file grew from {early} to {late} bytes over 96 MiB more written"
        );
    }
}
