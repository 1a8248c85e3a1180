//! The host's durable key/value state: what modules keep with
//! `state-put` (cursors, throttle windows) and what the host keeps for
//! itself (alert deduplication), in one SQLite database in WAL mode.
//!
//! Entries belong to an owner (a module instance's name, or `host:...` for
//! the host's own), so state survives module swaps and host restarts, and
//! one module never sees another's. Sizes are bounded per owner.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

/// Bounds of one owner's state.
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_ENTRIES_PER_OWNER: usize = 100_000;

/// Why the store cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("state database {path}: {source}")]
pub struct StoreError {
    path: String,
    source: rusqlite::Error,
}

/// Key/value state on SQLite.
#[derive(Debug)]
pub struct StateStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS state (
        owner      TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      BLOB NOT NULL,
        expires_us INTEGER,
        PRIMARY KEY (owner, key)
    ) WITHOUT ROWID;
";

impl Default for StateStore {
    fn default() -> Self {
        Self::in_memory()
    }
}

impl StateStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |source| StoreError {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| fail(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        }
        let conn = Connection::open(path).map_err(fail)?;
        // WAL: readers do not block the writer, and a crash loses at most
        // the transaction in flight.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(fail)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(fail)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// Leaves WAL checkpoints to a [`crate::checkpoint::Checkpointer`],
    /// so that no commit of this connection waits for one.
    pub fn leave_checkpoints_to_checkpointer(&self) -> anyhow::Result<()> {
        let conn = self.conn.lock().expect("store lock");
        Ok(crate::checkpoint::leave_checkpoints_to_checkpointer(&conn)?)
    }

    /// A store that lasts as long as the process (replays, tests).
    pub fn in_memory() -> Self {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        conn.execute_batch(SCHEMA).expect("creating the state schema");
        Self { conn: Mutex::new(conn) }
    }

    /// The value of `owner`'s `key`, unless it has expired by `now_us`.
    pub fn get(&self, owner: &str, key: &str, now_us: u64) -> Option<Vec<u8>> {
        let conn = self.conn.lock().expect("state lock");
        let found = conn
            .query_row(
                "SELECT value FROM state WHERE owner = ?1 AND key = ?2 AND (expires_us IS NULL OR expires_us > ?3)",
                params![owner, key, now_us as i64],
                |row| row.get::<_, Vec<u8>>(0),
            )
            .optional();
        match found {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(owner, key, error = %e, "reading state failed");
                None
            }
        }
    }

    /// Stores `value`, forgotten after `ttl_seconds` (0: kept until
    /// overwritten). What exceeds the bounds is refused with a log line.
    pub fn put(&self, owner: &str, key: &str, value: Vec<u8>, ttl_seconds: u32, now_us: u64) {
        if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
            tracing::warn!(
                owner,
                key_bytes = key.len(),
                value_bytes = value.len(),
                "state entry refused: too large"
            );
            return;
        }
        let expires_us = (ttl_seconds > 0).then(|| (now_us + u64::from(ttl_seconds) * 1_000_000) as i64);
        let conn = self.conn.lock().expect("state lock");
        if let Err(e) = Self::put_locked(&conn, owner, key, &value, expires_us, now_us) {
            tracing::error!(owner, key, error = %e, "writing state failed");
        }
    }

    fn put_locked(
        conn: &Connection,
        owner: &str,
        key: &str,
        value: &[u8],
        expires_us: Option<i64>,
        now_us: u64,
    ) -> rusqlite::Result<()> {
        let exists: bool = conn
            .query_row(
                "SELECT 1 FROM state WHERE owner = ?1 AND key = ?2",
                params![owner, key],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if !exists {
            let count = |conn: &Connection| -> rusqlite::Result<usize> {
                conn.query_row("SELECT count(*) FROM state WHERE owner = ?1", params![owner], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n as usize)
            };
            if count(conn)? >= MAX_ENTRIES_PER_OWNER {
                conn.execute(
                    "DELETE FROM state WHERE owner = ?1 AND expires_us <= ?2",
                    params![owner, now_us as i64],
                )?;
                if count(conn)? >= MAX_ENTRIES_PER_OWNER {
                    tracing::warn!(
                        owner,
                        "state entry refused: the owner has {MAX_ENTRIES_PER_OWNER} entries"
                    );
                    return Ok(());
                }
            }
        }
        conn.execute(
            "INSERT INTO state (owner, key, value, expires_us) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (owner, key) DO UPDATE SET value = excluded.value, expires_us = excluded.expires_us",
            params![owner, key, value, expires_us],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_after_their_ttl() {
        let s = StateStore::in_memory();
        s.put("m", "k", b"v".to_vec(), 10, 0);
        assert_eq!(s.get("m", "k", 9_999_999).as_deref(), Some(&b"v"[..]));
        assert_eq!(s.get("m", "k", 10_000_000), None);
    }

    #[test]
    fn owners_do_not_see_each_others_state() {
        let s = StateStore::in_memory();
        s.put("a", "k", b"1".to_vec(), 0, 0);
        assert_eq!(s.get("b", "k", 0), None);
    }

    #[test]
    fn oversized_entries_are_refused() {
        let s = StateStore::in_memory();
        s.put("m", "k", vec![0; MAX_VALUE_BYTES + 1], 0, 0);
        assert_eq!(s.get("m", "k", 0), None);
    }

    #[test]
    fn state_survives_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        StateStore::open(&path)
            .unwrap()
            .put("m", "cursor", b"42".to_vec(), 0, 0);
        assert_eq!(
            StateStore::open(&path).unwrap().get("m", "cursor", 0).as_deref(),
            Some(&b"42"[..])
        );
    }

    #[test]
    fn overwriting_replaces_value_and_expiry() {
        let s = StateStore::in_memory();
        s.put("m", "k", b"1".to_vec(), 1, 0);
        s.put("m", "k", b"2".to_vec(), 0, 0);
        assert_eq!(s.get("m", "k", 5_000_000).as_deref(), Some(&b"2"[..]));
    }
}
