//! Silences as the state database keeps them (`silences`), so that
//! `velonotify silence add` against a configuration's database reaches a
//! running service and a replay given `--state` alike. Matchers are kept
//! as their text ([`Matchers`]' canonical form), read back when used.

use super::db::{Db, DbResult, Row, args};

use super::{Store, StoreError, db_time, from_db_time};
use crate::noise::{Matchers, NewSilence, Silence};

/// A stored silence this release cannot read (matchers edited by hand),
/// and why; it silences nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("silence {id} cannot be read: {reason}")]
pub struct UnreadableSilence {
    pub id: String,
    pub reason: String,
}

/// What expiring a silence did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expired {
    /// It ends now (it had not started: it never will).
    Now(Silence),
    /// It had ended already.
    Already(Silence),
    Unknown,
}

/// What confirming a silence link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromLink {
    Created(Silence),
    /// The link had made this silence before; nothing new was made.
    Already(Silence),
}

impl Silence {
    fn made(new: &NewSilence, now_us: u64) -> Self {
        Silence {
            id: uuid::Uuid::new_v4().to_string(),
            matchers: new.matchers.clone(),
            starts_us: new.starts_us,
            ends_us: new.ends_us,
            created_by: new.created_by.clone(),
            comment: new.comment.clone(),
            updated_us: now_us,
        }
    }
}

fn insert(tx: Db<'_>, silence: &Silence, from_link: Option<&str>, now_us: u64) -> DbResult<usize> {
    tx.execute(
        "INSERT INTO silences (id, matchers, starts_us, ends_us, created_by, comment, created_us, updated_us, from_link)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
        args![
            silence.id,
            silence.matchers.to_string(),
            db_time(silence.starts_us),
            db_time(silence.ends_us),
            silence.created_by,
            silence.comment,
            db_time(now_us),
            from_link,
        ],
    )
}

/// Changes whenever a silence is added or expired, by any connection:
/// whoever keeps the silences in memory reads them again when it moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SilencesVersion {
    count: i64,
    last_update_us: i64,
    /// Move when one is expired within the microsecond of another change
    /// (the ends summed as seconds and microseconds apart, which no count
    /// of silences overflows).
    total_ends_s: i64,
    total_ends_us: i64,
}

const COLUMNS: &str = "id, matchers, starts_us, ends_us, created_by, comment, updated_us";

fn read(row: &Row<'_>) -> DbResult<Result<Silence, UnreadableSilence>> {
    let id: String = row.get(0)?;
    let matchers: String = row.get(1)?;
    let matchers = match Matchers::parse(&matchers) {
        Ok(matchers) => matchers,
        Err(e) => {
            return Ok(Err(UnreadableSilence {
                id,
                reason: e.to_string(),
            }));
        }
    };
    Ok(Ok(Silence {
        id,
        matchers,
        starts_us: from_db_time(row.get(2)?),
        ends_us: from_db_time(row.get(3)?),
        created_by: row.get(4)?,
        comment: row.get(5)?,
        updated_us: from_db_time(row.get(6)?),
    }))
}

impl Store {
    /// Stores a silence (checked first) under a new random id.
    pub fn add_silence(&self, new: &NewSilence, now_us: u64) -> Result<Result<Silence, String>, StoreError> {
        if let Err(problem) = new.check(now_us) {
            return Ok(Err(problem));
        }
        let silence = Silence::made(new, now_us);
        self.write(|tx| insert(tx, &silence, None, now_us))?;
        Ok(Ok(silence))
    }

    /// Stores the silence an e-mail's link `link_id` makes, unless the link
    /// made one already: each link makes at most one (a forwarded e-mail
    /// cannot keep an alert silenced for the link's whole life).
    pub fn add_silence_from_link(
        &self,
        new: &NewSilence,
        link_id: &str,
        now_us: u64,
    ) -> Result<Result<FromLink, String>, StoreError> {
        if let Err(problem) = new.check(now_us) {
            return Ok(Err(problem));
        }
        let silence = Silence::made(new, now_us);
        self.write(|tx| {
            let made: Option<Result<Silence, UnreadableSilence>> = tx.query_opt(
                &format!("SELECT {COLUMNS} FROM silences WHERE from_link = ?1"),
                args![link_id],
                read,
            )?;
            Ok(match made {
                Some(Ok(made)) => Ok(FromLink::Already(made)),
                Some(Err(unreadable)) => Err(unreadable.to_string()),
                None => {
                    insert(tx, &silence, Some(link_id), now_us)?;
                    Ok(FromLink::Created(silence))
                }
            })
        })
    }

    /// The silence link `link_id` made, if it made one.
    pub fn silence_from_link(&self, link_id: &str) -> Result<Option<Result<Silence, UnreadableSilence>>, StoreError> {
        self.read(|db| {
            db.query_opt(
                &format!("SELECT {COLUMNS} FROM silences WHERE from_link = ?1"),
                args![link_id],
                read,
            )
        })
    }

    /// Every silence, those ending last first.
    pub fn silences(&self) -> Result<Vec<Result<Silence, UnreadableSilence>>, StoreError> {
        self.read(|db| {
            db.query(
                &format!("SELECT {COLUMNS} FROM silences ORDER BY ends_us DESC, id"),
                &[],
                read,
            )
        })
    }

    /// The silences that have not ended by `now_us` (active or pending).
    pub fn silences_in_force(&self, now_us: u64) -> Result<Vec<Result<Silence, UnreadableSilence>>, StoreError> {
        self.read(|db| {
            db.query(
                &format!("SELECT {COLUMNS} FROM silences WHERE ends_us > ?1 ORDER BY ends_us DESC, id"),
                args![db_time(now_us)],
                read,
            )
        })
    }

    pub fn silence(&self, id: &str) -> Result<Option<Result<Silence, UnreadableSilence>>, StoreError> {
        self.read(|db| {
            db.query_opt(
                &format!("SELECT {COLUMNS} FROM silences WHERE id = ?1"),
                args![id],
                read,
            )
        })
    }

    /// Ends a silence at `now_us` (a pending one never starts).
    pub fn expire_silence(&self, id: &str, now_us: u64) -> Result<Result<Expired, UnreadableSilence>, StoreError> {
        let Some(found) = self.silence(id)? else {
            return Ok(Ok(Expired::Unknown));
        };
        let mut silence = match found {
            Ok(silence) => silence,
            Err(unreadable) => return Ok(Err(unreadable)),
        };
        if silence.ends_us <= now_us {
            return Ok(Ok(Expired::Already(silence)));
        }
        silence.starts_us = silence.starts_us.min(now_us);
        silence.ends_us = now_us;
        silence.updated_us = now_us;
        self.write(|tx| {
            tx.execute(
                "UPDATE silences SET starts_us = ?2, ends_us = ?3, updated_us = ?3 WHERE id = ?1",
                args![id, db_time(silence.starts_us), db_time(now_us)],
            )
        })?;
        Ok(Ok(Expired::Now(silence)))
    }

    /// Deletes the silences that ended before `before_us` (the outbox
    /// items they held back keep their id), but not one an e-mail's link
    /// made after `links_live_after_us`: while the link lives, the silence
    /// says it made one (a link makes one).
    pub(super) fn forget_silences_ended_before(
        &self,
        before_us: u64,
        links_live_after_us: u64,
    ) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM silences WHERE ends_us < ?1 AND (from_link IS NULL OR created_us < ?2)",
                args![db_time(before_us), db_time(links_live_after_us)],
            )
        })
    }

    /// The key that signs the e-mails' silence links: the one stored, else
    /// `candidate`, stored now. Every process on this database gets the
    /// same key, whichever stored it first.
    pub fn link_key(&self, candidate: &[u8], now_us: u64) -> Result<Vec<u8>, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO link_keys (id, key, created_us) VALUES (0, ?1, ?2) ON CONFLICT DO NOTHING",
                args![candidate, db_time(now_us)],
            )?;
            tx.query_one("SELECT key FROM link_keys WHERE id = 0", &[], |r| r.get(0))
        })
    }

    /// See [`SilencesVersion`]: one small read.
    pub fn silences_version(&self) -> Result<SilencesVersion, StoreError> {
        self.read(|db| {
            db.query_one(
                "SELECT count(*), coalesce(max(updated_us), 0), CAST(coalesce(sum(ends_us / 1000000), 0) AS BIGINT),
                        CAST(coalesce(sum(ends_us % 1000000), 0) AS BIGINT)
                   FROM silences",
                &[],
                |r| {
                    Ok(SilencesVersion {
                        count: r.get(0)?,
                        last_update_us: r.get(1)?,
                        total_ends_s: r.get(2)?,
                        total_ends_us: r.get(3)?,
                    })
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn new(matchers: &str, starts_s: u64, ends_s: u64) -> NewSilence {
        NewSilence {
            matchers: Matchers::parse(matchers).unwrap(),
            starts_us: starts_s * S,
            ends_us: ends_s * S,
            created_by: "alice".into(),
            comment: "IR-1234".into(),
        }
    }

    #[test]
    fn a_silence_is_kept_listed_and_expired() {
        let store = Store::for_tests();
        let before = store.silences_version().unwrap();
        let added = store
            .add_silence(&new("{client_id=\"C.7\"}", 100, 200), 100 * S)
            .unwrap()
            .unwrap();
        assert_ne!(store.silences_version().unwrap(), before, "a change is seen");
        assert_eq!(added.id.len(), 36, "a UUID");
        let listed: Vec<Silence> = store.silences().unwrap().into_iter().map(Result::unwrap).collect();
        assert_eq!(listed, std::slice::from_ref(&added));
        assert_eq!(store.silences_in_force(150 * S).unwrap().len(), 1);

        let Expired::Now(expired) = store.expire_silence(&added.id, 150 * S).unwrap().unwrap() else {
            panic!("expired now")
        };
        assert_eq!((expired.starts_us, expired.ends_us), (100 * S, 150 * S));
        assert!(store.silences_in_force(150 * S).unwrap().is_empty());
        assert!(matches!(
            store.expire_silence(&added.id, 160 * S).unwrap().unwrap(),
            Expired::Already(_)
        ));
        assert_eq!(
            store.expire_silence("nope", 160 * S).unwrap().unwrap(),
            Expired::Unknown
        );
    }

    #[test]
    fn a_link_makes_one_silence_kept_while_the_link_lives() {
        let store = Store::for_tests();
        let made = store
            .add_silence_from_link(&new("alertname=x", 100, 200), "l1", 100 * S)
            .unwrap()
            .unwrap();
        assert!(matches!(made, FromLink::Created(_)));
        let again = store
            .add_silence_from_link(&new("alertname=x", 110, 300), "l1", 110 * S)
            .unwrap()
            .unwrap();
        assert_eq!(
            again,
            FromLink::Already(match made {
                FromLink::Created(silence) => silence,
                FromLink::Already(_) => unreachable!(),
            })
        );
        assert_eq!(store.silences().unwrap().len(), 1);
        // Ended, past retention, but its link still opens the page.
        assert_eq!(store.forget_silences_ended_before(300 * S, 50 * S).unwrap(), 0);
        assert_eq!(store.forget_silences_ended_before(300 * S, 150 * S).unwrap(), 1);
    }

    #[test]
    fn the_first_link_key_stored_is_the_key_of_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let first = Store::open(&path).unwrap().link_key(&[1; 32], S).unwrap();
        let second = Store::open(&path).unwrap().link_key(&[2; 32], 2 * S).unwrap();
        assert_eq!((first, second), (vec![1; 32], vec![1; 32]));
    }

    #[test]
    fn a_pending_silence_expired_never_starts_and_a_bad_one_is_refused() {
        let store = Store::for_tests();
        let pending = store
            .add_silence(&new("alertname=x", 300, 400), 100 * S)
            .unwrap()
            .unwrap();
        let Expired::Now(expired) = store.expire_silence(&pending.id, 150 * S).unwrap().unwrap() else {
            panic!("expired")
        };
        assert_eq!((expired.starts_us, expired.ends_us), (150 * S, 150 * S));
        let refused = store.add_silence(&new("alertname=x", 100, 120), 150 * S).unwrap();
        assert!(refused.unwrap_err().contains("in the future"));
    }
}
