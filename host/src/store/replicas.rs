//! Replicas: `velonotify run` processes sharing one store.
//!
//! Each replica has a row in `replicas` that its heartbeat refreshes
//! ([`HEARTBEAT_EVERY`]); one not seen for [`REPLICA_TIMEOUT`] is taken
//! for dead. What a replica holds is held only while it is alive:
//!
//! - a **lease** (`leases`: one org's Velociraptor stream), taken by
//!   another replica as soon as its holder is dead;
//! - an outbox item's **claim** (`claimed_by`): the replica sending it.
//!   Another replica claims the item again once the claimant is dead, or
//!   once [`CLAIM_LEASE`] has passed (a claimant that is alive but stuck).
//!
//! A dead replica's work is therefore taken over within the timeout plus
//! one poll; what it sent and had not yet marked is sent again (the
//! duplicates a crash costs: at most the items it had in flight).
//!
//! On PostgreSQL, claims lock only the rows they take (`FOR UPDATE SKIP
//! LOCKED`), so replicas claiming at once get different items without
//! waiting for each other.

use std::time::Duration;

use super::db::{Db, DbResult, args};
use super::outbox::{COLUMNS, OutboxItem, Unreadable, read_item};
use super::{Store, StoreError, db_time, from_db_time};

/// How often a replica says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// A replica not seen for this long is dead: its leases and claims go to
/// the others.
pub const REPLICA_TIMEOUT: Duration = Duration::from_secs(3);

/// The longest a live replica keeps an item it claimed (longer than any
/// one attempt's timeouts).
pub const CLAIM_LEASE: Duration = Duration::from_secs(600);

/// How long the row of a replica that stopped beating is kept (for
/// `status`).
pub const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A replica's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub started_us: u64,
    pub seen_us: u64,
}

/// Who holds a lease, since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub since_us: u64,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The `seen_us` a replica must be above to be alive at `now_us`.
fn alive_after(now_us: u64) -> i64 {
    db_time(now_us).saturating_sub(micros(REPLICA_TIMEOUT))
}

impl Store {
    /// Records `replica` as alive. `alone`: this process is the only one on
    /// the store (a SQLite file, locked by its pid file), so the rows,
    /// leases and claims of earlier runs are its own to forget.
    pub fn register_replica(&self, replica: &Replica, alone: bool) -> Result<(), StoreError> {
        self.write(|tx| {
            if alone {
                tx.execute("DELETE FROM replicas", &[])?;
                tx.execute("DELETE FROM leases", &[])?;
                tx.execute(
                    "UPDATE outbox SET claimed_by = NULL, claimed_until_us = NULL WHERE claimed_by IS NOT NULL",
                    &[],
                )?;
            }
            // Replicas gone for a day are forgotten (their claims and
            // leases lapsed long ago).
            tx.execute(
                "DELETE FROM replicas WHERE seen_us < ?1",
                args![db_time(replica.started_us).saturating_sub(micros(FORGET_AFTER))],
            )?;
            tx.execute(
                "INSERT INTO replicas (id, host, pid, started_us, seen_us) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (id) DO UPDATE SET seen_us = excluded.seen_us",
                args![
                    replica.id,
                    replica.host,
                    i64::from(replica.pid),
                    db_time(replica.started_us)
                ],
            )
            .map(drop)
        })
    }

    /// Says `replica` is alive at `now_us`; false if its row was gone (a
    /// replica taken for dead that comes back registers again).
    pub fn heartbeat(&self, replica: &Replica, now_us: u64) -> Result<bool, StoreError> {
        // Not behind the write lock: a beat must not wait for the others'
        // commits (it would arrive late, and this replica look dead).
        let seen = self.write_rows(|tx| {
            tx.execute(
                "UPDATE replicas SET seen_us = ?2 WHERE id = ?1",
                args![replica.id, db_time(now_us)],
            )
        })?;
        if seen == 0 {
            self.register_replica(replica, false)?;
        }
        Ok(seen > 0)
    }

    /// A replica that stops: its leases and claims go at once, and its row.
    pub fn leave(&self, replica_id: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM leases WHERE holder = ?1", args![replica_id])?;
            tx.execute(
                "UPDATE outbox SET claimed_by = NULL, claimed_until_us = NULL WHERE claimed_by = ?1",
                args![replica_id],
            )?;
            tx.execute("DELETE FROM replicas WHERE id = ?1", args![replica_id])
                .map(drop)
        })
    }

    /// Every replica that has a row, the most recently started first.
    pub fn replicas(&self) -> Result<Vec<Replica>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT id, host, pid, started_us, seen_us FROM replicas ORDER BY started_us DESC, id",
                &[],
                |r| {
                    Ok(Replica {
                        id: r.get(0)?,
                        host: r.get(1)?,
                        pid: u32::try_from(r.get::<i64>(2)?).unwrap_or(0),
                        started_us: from_db_time(r.get(3)?),
                        seen_us: from_db_time(r.get(4)?),
                    })
                },
            )
        })
    }

    /// Takes lease `name` for `holder` if it is free or its holder is dead
    /// (or keeps it, if `holder` has it); the lease as held now, if
    /// `holder` holds it.
    pub fn take_lease(&self, name: &str, holder: &str, now_us: u64) -> Result<Option<Fence>, StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO leases (name, holder, since_us) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, since_us = excluded.since_us
                 WHERE leases.holder <> excluded.holder
                   AND leases.holder NOT IN (SELECT id FROM replicas WHERE seen_us > ?4)",
                args![name, holder, db_time(now_us), alive_after(now_us)],
            )?;
            let held = lease_row(tx, name)?.filter(|(now, _)| now == holder);
            Ok(held.map(|(holder, since_us)| Fence {
                lease: name.to_string(),
                holder,
                since_us,
            }))
        })
    }

    /// Whether the lease is still held as `fence` took it: by its holder,
    /// since its time (a holder that lost it and took it again holds it
    /// anew).
    pub fn still_holds(&self, fence: &Fence) -> Result<bool, StoreError> {
        self.read(|db| holds(db, fence))
    }

    /// Every lease and its holder.
    pub fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        self.read(|db| {
            db.query("SELECT name, holder, since_us FROM leases ORDER BY name", &[], |r| {
                Ok(Lease {
                    name: r.get(0)?,
                    holder: r.get(1)?,
                    since_us: from_db_time(r.get(2)?),
                })
            })
        })
    }

    /// Claims up to `limit` items due by `now_us` for `replica`: pending
    /// ones no other live replica is sending (this replica's own claims
    /// are items its last round left untried). Returned in id order.
    pub fn claim_due(
        &self,
        replica: &str,
        now_us: u64,
        limit: usize,
    ) -> Result<Vec<Result<OutboxItem, Unreadable>>, StoreError> {
        let mut claimed = self.write_rows(|db| {
            let row_locks = match db {
                Db::Postgres(_) => "FOR UPDATE SKIP LOCKED",
                Db::Sqlite(_) => "",
            };
            db.query(
                &format!(
                    "UPDATE outbox SET claimed_by = ?1, claimed_until_us = ?2
                      WHERE id IN (SELECT id FROM outbox
                                    WHERE status = 'pending' AND next_attempt_us <= ?3
                                      AND (claimed_by IS NULL OR claimed_by = ?1 OR claimed_until_us <= ?3
                                           OR claimed_by NOT IN (SELECT id FROM replicas WHERE seen_us > ?4))
                                    ORDER BY id LIMIT ?5 {row_locks})
                      RETURNING {COLUMNS}"
                ),
                args![
                    replica,
                    db_time(now_us).saturating_add(micros(CLAIM_LEASE)),
                    db_time(now_us),
                    alive_after(now_us),
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                read_item,
            )
        })?;
        claimed.sort_by_key(|row| match row {
            Ok(item) => item.id,
            Err(unreadable) => unreadable.id,
        });
        Ok(claimed)
    }

    /// How many items each replica is sending now.
    pub fn claims(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|db| {
            db.query(
                "SELECT claimed_by, count(*) FROM outbox
                  WHERE status = 'pending' AND claimed_by IS NOT NULL GROUP BY claimed_by ORDER BY claimed_by",
                &[],
                |r| Ok((r.get(0)?, u64::try_from(r.get::<i64>(1)?).unwrap_or(0))),
            )
        })
    }
}

/// A lease as one holder took it. An input read under it (rows of an
/// org's stream) is this replica's to store only while the lease is still
/// held so: a replica held up past the replicas' timeout (paused, swapped
/// out) may find on waking that another replica took its stream over and
/// read on from the stored position; the rows it read before are then
/// the other's, and their commit stores nothing. A holder that lost the
/// lease and took it back holds it anew (a later `since_us`): rows it
/// read under the old one are fenced off too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    /// When the holder took it (µs): the lease's epoch.
    pub since_us: u64,
}

/// Whether the lease is still held as `fence` took it.
pub(super) fn holds(db: Db<'_>, fence: &Fence) -> DbResult<bool> {
    let held = lease_row(db, &fence.lease)?;
    Ok(held.is_some_and(|(holder, since_us)| holder == fence.holder && since_us == fence.since_us))
}

/// A lease's holder and since when it holds it.
fn lease_row(db: Db<'_>, name: &str) -> DbResult<Option<(String, u64)>> {
    db.query_opt(
        "SELECT holder, since_us FROM leases WHERE name = ?1",
        args![name],
        |r| Ok((r.get(0)?, from_db_time(r.get(1)?))),
    )
}

#[cfg(test)]
mod tests {
    use super::super::outbox::tests::email;
    use super::super::{Changes, Fence, Location, Owner, StateWrite, Throttle};
    use super::*;

    const S: u64 = 1_000_000;

    /// Replicas "a" and "b", registered at 10 s, each on its own
    /// connection to one store: a file for SQLite (its in-memory store has
    /// one connection).
    fn two_replicas_store() -> (Store, Store, Option<tempfile::TempDir>) {
        let first = Store::for_tests();
        let (a, b, dir) = if *first.location() != Location::Memory {
            let second = first.reopen().unwrap();
            (first, second, None)
        } else {
            let dir = tempfile::tempdir().unwrap();
            let first = Store::open(&dir.path().join("state.db")).unwrap();
            let second = first.reopen().unwrap();
            (first, second, Some(dir))
        };
        a.register_replica(&replica("a", 10 * S), false).unwrap();
        b.register_replica(&replica("b", 10 * S), false).unwrap();
        (a, b, dir)
    }

    fn replica(id: &str, now_us: u64) -> Replica {
        Replica {
            id: id.into(),
            host: "test".into(),
            pid: 1,
            started_us: now_us,
            seen_us: now_us,
        }
    }

    fn add_pending(store: &Store, n: usize) {
        let items: Vec<_> = (0..n)
            .map(|i| email("alerts", "soc@example.org", &format!("{i}"), -1))
            .collect();
        let changes = Changes {
            state: &[],
            items: &items,
            retries: &[],
            fences: &[],
        };
        store.commit(&changes, S, 1 << 50, &Throttle::default()).unwrap();
    }

    fn ids(rows: &[Result<OutboxItem, Unreadable>]) -> Vec<i64> {
        rows.iter().map(|r| r.as_ref().unwrap().id).collect()
    }

    #[test]
    fn a_stream_lease_goes_to_another_replica_only_once_its_holder_is_dead() {
        let (a, b, _dir) = two_replicas_store();
        let held = a.take_lease("stream/root", "a", 10 * S).unwrap().unwrap();
        assert!(
            b.take_lease("stream/root", "b", 11 * S).unwrap().is_none(),
            "a is alive"
        );
        assert_eq!(
            a.take_lease("stream/root", "a", 11 * S).unwrap(),
            Some(held.clone()),
            "a keeps what it holds, as it took it"
        );
        // a stops beating; b goes on.
        b.heartbeat(&replica("b", 10 * S), 14 * S).unwrap();
        assert!(a.still_holds(&held).unwrap(), "late, but nobody took it");
        assert!(
            b.take_lease("stream/root", "b", 14 * S).unwrap().is_some(),
            "a is dead by then"
        );
        assert!(!a.still_holds(&held).unwrap());
        assert_eq!(b.leases().unwrap()[0].holder, "b");
        // a comes back to life (a pause): the lease stays with b, and a
        // finds it no longer holds it.
        a.heartbeat(&replica("a", 10 * S), 20 * S).unwrap();
        assert!(!a.still_holds(&held).unwrap());
        b.heartbeat(&replica("b", 10 * S), 20 * S).unwrap();
        assert!(a.take_lease("stream/root", "a", 20 * S).unwrap().is_none());
    }

    /// A replica held up past the timeout (paused, not killed) wakes with
    /// rows it read from a stream another replica has taken over since:
    /// their commit stores nothing, neither e-mails nor the position, and
    /// the new holder, which read on from the stored position, sends them
    /// once. The same when the replica has taken the stream back since:
    /// rows read under its old lease are not its to store.
    #[test]
    fn a_commit_fenced_by_a_stream_lease_taken_over_stores_nothing() {
        let (a, b, _dir) = two_replicas_store();
        let first = a.take_lease("stream/root", "a", 10 * S).unwrap().unwrap();
        let position = |at: &str| StateWrite {
            owner: Owner::StreamPositions,
            key: "cursor/root/Server.Internal.Alerts".into(),
            value: at.as_bytes().to_vec(),
            expires_us: None,
        };
        let commit_as_a = |at: &str, fence: &Fence| {
            let (state, items) = ([position(at)], [email("alerts", "soc@example.org", at, -1)]);
            let changes = Changes {
                state: &state,
                items: &items,
                retries: &[],
                fences: std::slice::from_ref(fence),
            };
            a.commit(&changes, 11 * S, 1 << 50, &Throttle::default())
        };
        let stored_position = || a.state_get(&Owner::StreamPositions, &position("").key, 15 * S).unwrap();
        commit_as_a("1", &first).expect("a holds the stream");
        b.heartbeat(&replica("b", 10 * S), 14 * S).unwrap();
        assert!(b.take_lease("stream/root", "b", 14 * S).unwrap().is_some());
        let refused = commit_as_a("2", &first).expect_err("b reads the stream now");
        assert!(refused.is_fenced() && !refused.is_transient(), "{refused}");
        assert_eq!(a.open_count().unwrap(), 1, "the fenced e-mail was not stored");
        assert_eq!(
            stored_position().as_deref(),
            Some(&b"1"[..]),
            "the position did not move"
        );

        // b leaves; a takes the stream back, and reads it anew.
        b.leave("b").unwrap();
        a.heartbeat(&replica("a", 10 * S), 20 * S).unwrap();
        let second = a.take_lease("stream/root", "a", 20 * S).unwrap().unwrap();
        let stale = commit_as_a("3", &first).expect_err("read under the lease a lost");
        assert!(stale.is_fenced(), "{stale}");
        commit_as_a("4", &second).expect("read under the lease a holds now");
        assert_eq!(stored_position().as_deref(), Some(&b"4"[..]));
        assert_eq!(a.open_count().unwrap(), 2);
    }

    #[test]
    fn an_item_is_claimed_by_one_replica_and_a_dead_claimants_items_by_another() {
        let (a, b, _dir) = two_replicas_store();
        add_pending(&a, 3);
        let by_a = a.claim_due("a", 10 * S, 2).unwrap();
        let by_b = b.claim_due("b", 10 * S, 10).unwrap();
        assert_eq!((by_a.len(), by_b.len()), (2, 1));
        assert_eq!(b.claims().unwrap(), [("a".to_string(), 2), ("b".to_string(), 1)]);
        // b sends its item; a dies with its two in flight.
        b.mark_sent(ids(&by_b)[0], 11 * S).unwrap();
        assert!(
            b.claim_due("b", 11 * S, 10).unwrap().is_empty(),
            "a's are a's while it lives"
        );
        b.heartbeat(&replica("b", 10 * S), 14 * S).unwrap();
        assert_eq!(ids(&b.claim_due("b", 14 * S, 10).unwrap()), ids(&by_a));
    }

    #[test]
    fn a_replica_that_leaves_hands_over_at_once() {
        let (a, b, _dir) = two_replicas_store();
        add_pending(&a, 1);
        assert!(a.take_lease("stream/root", "a", 10 * S).unwrap().is_some());
        assert_eq!(a.claim_due("a", 10 * S, 10).unwrap().len(), 1);
        a.leave("a").unwrap();
        assert!(b.take_lease("stream/root", "b", 10 * S).unwrap().is_some());
        assert_eq!(b.claim_due("b", 10 * S, 10).unwrap().len(), 1);
        assert_eq!(b.replicas().unwrap().len(), 1);
    }

    /// Replicas claiming at the same moment never get the same item (each
    /// sends what it claimed before claiming more, as delivery does).
    #[test]
    fn replicas_claiming_together_share_the_items_without_overlap() {
        let (a, b, _dir) = two_replicas_store();
        add_pending(&a, 200);
        let claim_all = |store: &Store, id: &str| {
            let mut mine = Vec::new();
            loop {
                let claimed = ids(&store.claim_due(id, 10 * S, 5).unwrap());
                if claimed.is_empty() {
                    return mine;
                }
                for item in &claimed {
                    store.mark_sent(*item, 10 * S).unwrap();
                }
                mine.extend(claimed);
            }
        };
        let (by_a, by_b) = std::thread::scope(|scope| {
            let by_a = scope.spawn(|| claim_all(&a, "a"));
            let by_b = scope.spawn(|| claim_all(&b, "b"));
            (by_a.join().unwrap(), by_b.join().unwrap())
        });
        let mut all: Vec<i64> = by_a.iter().chain(&by_b).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 200, "each item once: a {} + b {}", by_a.len(), by_b.len());
        assert_eq!(by_a.len() + by_b.len(), 200);
    }
}
