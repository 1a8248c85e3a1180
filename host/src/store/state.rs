//! Key/value state: what modules keep with `state.put` (cursors, throttle
//! windows) and what the host keeps for itself (alert dedup windows, event
//! stream positions).
//!
//! Entries belong to an [`Owner`], so state survives module swaps and host
//! restarts, and one module never sees another's or the host's. Sizes are
//! bounded per owner.

use super::db::{Db, DbResult, args};
use super::{Store, StoreError, db_time};

/// Bounds of one owner's state.
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_ENTRIES_PER_OWNER: usize = 100_000;

/// Whose an entry is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    /// A module instance, by its configured name (a name never starts with
    /// `host:`, so modules cannot reach the host's own entries).
    Module(String),
    /// The host's alert dedup windows, per org and alert name.
    AlertDedup,
    /// How far each Velociraptor event stream has been read, per org and
    /// queue.
    StreamPositions,
}

impl Owner {
    /// The owner column's value.
    pub fn as_db(&self) -> &str {
        match self {
            Owner::Module(name) => name,
            Owner::AlertDedup => "host:alert-dedup",
            Owner::StreamPositions => "host:stream-positions",
        }
    }
}

/// One value to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateWrite {
    pub owner: Owner,
    pub key: String,
    pub value: Vec<u8>,
    /// When it is forgotten (µs); None: kept until overwritten.
    pub expires_us: Option<u64>,
}

impl StateWrite {
    /// Why the write is refused, if it is over a bound.
    pub fn oversized(&self) -> Option<String> {
        (self.key.len() > MAX_KEY_BYTES || self.value.len() > MAX_VALUE_BYTES).then(|| {
            format!(
                "state entry refused: a key of {} bytes (at most {MAX_KEY_BYTES}) or a value of {} bytes \
                 (at most {MAX_VALUE_BYTES})",
                self.key.len(),
                self.value.len()
            )
        })
    }
}

impl Store {
    /// The value of `owner`'s `key`, unless it has expired by `now_us`.
    pub fn state_get(&self, owner: &Owner, key: &str, now_us: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|db| get(db, owner, key, now_us))
    }

    /// The octets of `owner`'s keys and values, expired entries not yet
    /// forgotten included (one row read: see the schema's `state_usage`).
    pub fn state_bytes(&self, owner: &Owner) -> Result<u64, StoreError> {
        self.read(|db| {
            db.query_opt(
                "SELECT bytes FROM state_usage WHERE owner = ?1",
                args![owner.as_db()],
                |r| r.get::<i64>(0),
            )
            .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        })
    }

    /// As [`Store::state_bytes`], without the entries expired by `now_us`
    /// (counted: for a module near its quota only).
    pub fn live_state_bytes(&self, owner: &Owner, now_us: u64) -> Result<u64, StoreError> {
        self.read(|db| {
            db.query_one(
                "SELECT CAST(coalesce(sum(octet_length(key) + octet_length(value)), 0) AS BIGINT) FROM state
                  WHERE owner = ?1 AND (expires_us IS NULL OR expires_us > ?2)",
                args![owner.as_db(), db_time(now_us)],
                |r| r.get::<i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
        })
    }

    /// The octets `owner`'s `key` takes now, expired or not (0: none).
    pub fn entry_bytes(&self, owner: &Owner, key: &str) -> Result<u64, StoreError> {
        self.read(|db| {
            db.query_opt(
                "SELECT octet_length(key) + octet_length(value) FROM state WHERE owner = ?1 AND key = ?2",
                args![owner.as_db(), key],
                |r| r.get::<i64>(0),
            )
            .map(|n| n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
        })
    }

    /// Forgets every entry expired by `now_us`; returns how many.
    pub fn forget_expired_state(&self, now_us: u64) -> Result<usize, StoreError> {
        self.write(|tx| tx.execute("DELETE FROM state WHERE expires_us <= ?1", args![db_time(now_us)]))
    }

    /// Stores one value at once, in a transaction of its own (tools and
    /// tests; the pipeline stores state with [`Store::commit`]).
    pub fn state_put(&self, write: &StateWrite, now_us: u64) -> Result<(), StoreError> {
        self.write(|tx| put(tx, write, now_us).map(drop))
    }
}

fn get(db: Db<'_>, owner: &Owner, key: &str, now_us: u64) -> DbResult<Option<Vec<u8>>> {
    db.query_opt(
        "SELECT value FROM state WHERE owner = ?1 AND key = ?2 AND (expires_us IS NULL OR expires_us > ?3)",
        args![owner.as_db(), key, db_time(now_us)],
        |row| row.get(0),
    )
}

/// Writes one entry; false if the owner already has
/// [`MAX_ENTRIES_PER_OWNER`] live entries and this is a new key (refused
/// with a log line).
pub(super) fn put(tx: Db<'_>, write: &StateWrite, now_us: u64) -> DbResult<bool> {
    if let Some(problem) = write.oversized() {
        tracing::warn!(owner = write.owner.as_db(), "{problem}");
        return Ok(false);
    }
    let owner = write.owner.as_db();
    // One round trip (PostgreSQL's is a network one): whether the key is
    // there, and how many the owner has.
    let (exists, entries) = tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM state WHERE owner = ?1 AND key = ?2),
                coalesce((SELECT entries FROM state_usage WHERE owner = ?1), 0)",
        args![owner, write.key],
        |r| Ok((r.get::<bool>(0)?, r.get::<i64>(1)?)),
    )?;
    let at_bound = usize::try_from(entries).unwrap_or(usize::MAX) >= MAX_ENTRIES_PER_OWNER;
    if !exists && at_bound && !room_for_one_more(tx, owner, now_us)? {
        tracing::warn!(
            owner,
            "state entry refused: the owner has {MAX_ENTRIES_PER_OWNER} entries"
        );
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO state (owner, key, value, expires_us) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (owner, key) DO UPDATE SET value = excluded.value, expires_us = excluded.expires_us",
        args![owner, write.key, write.value, write.expires_us.map(db_time)],
    )?;
    Ok(true)
}

/// Whether `owner`, at its bound, may add a key once its expired entries
/// are forgotten.
fn room_for_one_more(tx: Db<'_>, owner: &str, now_us: u64) -> DbResult<bool> {
    let count = || -> DbResult<usize> {
        tx.query_opt("SELECT entries FROM state_usage WHERE owner = ?1", args![owner], |r| {
            r.get::<i64>(0)
        })
        .map(|n| n.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)))
    };
    tx.execute(
        "DELETE FROM state WHERE owner = ?1 AND expires_us <= ?2",
        args![owner, db_time(now_us)],
    )?;
    Ok(count()? < MAX_ENTRIES_PER_OWNER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(owner: &str, key: &str, value: &[u8], expires_us: Option<u64>) -> StateWrite {
        StateWrite {
            owner: Owner::Module(owner.into()),
            key: key.into(),
            value: value.to_vec(),
            expires_us,
        }
    }

    #[test]
    fn values_expire_at_their_time() {
        let s = Store::for_tests();
        s.state_put(&write("m", "k", b"v", Some(10_000_000)), 0).unwrap();
        let get = |now| s.state_get(&Owner::Module("m".into()), "k", now).unwrap();
        assert_eq!(get(9_999_999).as_deref(), Some(&b"v"[..]));
        assert_eq!(get(10_000_000), None);
    }

    #[test]
    fn owners_do_not_see_each_others_state() {
        let s = Store::for_tests();
        s.state_put(&write("a", "k", b"1", None), 0).unwrap();
        assert_eq!(s.state_get(&Owner::Module("b".into()), "k", 0).unwrap(), None);
        assert_eq!(s.state_get(&Owner::AlertDedup, "k", 0).unwrap(), None);
    }

    /// The counters the quota reads follow every write, overwrite and
    /// deletion, in octets of keys and values.
    #[test]
    fn each_owners_bytes_are_counted_as_they_change() {
        let s = Store::for_tests();
        let m = Owner::Module("m".into());
        s.state_put(&write("m", "ké", &[0; 100], Some(5)), 0).unwrap();
        s.state_put(&write("m", "k2", &[0; 10], None), 0).unwrap();
        s.state_put(&write("other", "k", &[0; 1000], None), 0).unwrap();
        assert_eq!(s.state_bytes(&m).unwrap(), 3 + 100 + 2 + 10);
        s.state_put(&write("m", "k2", &[0; 50], None), 0).unwrap();
        assert_eq!(s.state_bytes(&m).unwrap(), 3 + 100 + 2 + 50);
        assert_eq!(s.entry_bytes(&m, "k2").unwrap(), 52);
        assert_eq!(s.live_state_bytes(&m, 10).unwrap(), 52, "the expired entry is not live");
        assert_eq!(s.forget_expired_state(10).unwrap(), 1);
        assert_eq!(s.state_bytes(&m).unwrap(), 52);
        assert_eq!(s.state_bytes(&Owner::Module("nobody".into())).unwrap(), 0);
    }

    #[test]
    fn oversized_entries_are_refused() {
        let s = Store::for_tests();
        s.state_put(&write("m", "k", &vec![0; MAX_VALUE_BYTES + 1], None), 0)
            .unwrap();
        assert_eq!(s.state_get(&Owner::Module("m".into()), "k", 0).unwrap(), None);
    }

    #[test]
    fn state_survives_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Store::open(&path)
            .unwrap()
            .state_put(&write("m", "cursor", b"42", None), 0)
            .unwrap();
        let reopened = Store::open(&path).unwrap();
        assert_eq!(
            reopened
                .state_get(&Owner::Module("m".into()), "cursor", 0)
                .unwrap()
                .as_deref(),
            Some(&b"42"[..])
        );
    }

    #[test]
    fn overwriting_replaces_value_and_expiry() {
        let s = Store::for_tests();
        s.state_put(&write("m", "k", b"1", Some(1_000_000)), 0).unwrap();
        s.state_put(&write("m", "k", b"2", None), 0).unwrap();
        assert_eq!(
            s.state_get(&Owner::Module("m".into()), "k", 5_000_000)
                .unwrap()
                .as_deref(),
            Some(&b"2"[..])
        );
    }
}
