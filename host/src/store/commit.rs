//! One transaction per input: everything an input caused (each module's
//! state writes, alert dedup windows, stream positions, outbox items)
//! is stored together, or none of it is.
//!
//! E-mails are throttled here, in the same transaction (decision D11):
//! within a module's `SendInterval` (or the host's mail period) an e-mail
//! is held for the digest sent when the window ends, or, with
//! `throttle_mode = "drop"`, dropped with a log line, as Velociraptor does.

use std::collections::HashMap;

use super::db::{Db, DbResult, args};

use super::outbox::{NewItem, Payload, Status, insert};
use super::replicas::{Fence, holds};
use super::retries::{self, RetryChange};
use super::state::{StateWrite, put};
use super::{Store, StoreError, db_time, follows, from_db_time};

/// What one input caused, to be stored at once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Changes<'a> {
    /// In the order they were made: a later write of a key wins.
    pub state: &'a [StateWrite],
    pub items: &'a [NewItem],
    /// Events to hand a module again, or that it is done with.
    pub retries: &'a [RetryChange],
    /// Leases the input was read under: if another replica holds one now,
    /// nothing is stored ([`StoreError::is_fenced`]).
    pub fences: &'a [Fence],
}

impl Changes<'_> {
    pub fn is_empty(&self) -> bool {
        self.state.is_empty() && self.items.is_empty() && self.retries.is_empty()
    }
}

/// How a module's throttled e-mails are handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleMode {
    /// Held and sent as one digest when the window ends.
    #[default]
    Digest,
    /// Dropped with a log line and a counter (Velociraptor's behaviour).
    Drop,
    /// Queued: each sent in its turn, one per window (SendEmail's
    /// `Period`: every message is its own, none may be folded or lost).
    Queue,
}

/// What the commit needs to throttle e-mails.
#[derive(Debug, Clone, Default)]
pub struct Throttle {
    /// Each module's mode (default: digest).
    pub modes: HashMap<String, ThrottleMode>,
    /// Least seconds between two e-mails of the whole host (0: none).
    pub mail_period_s: i64,
}

/// An item as committed: its id and the status the throttle gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub id: i64,
    pub status: Status,
}

/// The global mail period's key in the throttle table: a `host:` name,
/// which no module may take (a module named `*` once shared it).
const GLOBAL: &str = "host:mail-period";

impl Store {
    /// Stores `changes` in one transaction; items get `now_us` as their
    /// creation time and `deadline_us` as their delivery deadline. Returns
    /// each item's id and status, in order.
    pub fn commit(
        &self,
        changes: &Changes<'_>,
        now_us: u64,
        deadline_us: u64,
        throttle: &Throttle,
    ) -> Result<Vec<Committed>, StoreError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let mut lost = None;
        let committed = self.write(|tx| {
            // Checked under the write lock, which a takeover takes too: a
            // lease cannot change hands between this check and the commit.
            for fence in changes.fences {
                if !holds(tx, fence)? {
                    lost = Some(fence);
                    return Ok(Vec::new());
                }
            }
            for write in changes.state {
                put(tx, write, now_us)?;
            }
            for change in changes.retries {
                retries::apply(tx, change)?;
            }
            crate::crash_point!("store::between-writes");
            let mut committed: Vec<Committed> = Vec::with_capacity(changes.items.len());
            for item in changes.items {
                let (mut status, turn_us) = decide(tx, item, now_us, throttle)?;
                // A queued e-mail waits for its turn.
                let queued;
                let item = match turn_us {
                    Some(turn_us) => {
                        queued = NewItem {
                            release_us: Some(turn_us),
                            ..item.clone()
                        };
                        &queued
                    }
                    None => item,
                };
                let after: Vec<i64> = item
                    .follows
                    .iter()
                    .filter_map(|i| committed.get(*i).map(|c| c.id))
                    .collect();
                let mut why = None;
                if !after.is_empty() {
                    (status, why) = follows::status_of_follower(tx, &after, status)?;
                }
                let id = insert(tx, item, status, now_us, deadline_us)?;
                follows::link(tx, id, &after)?;
                if let Some(why) = why {
                    tx.execute("UPDATE outbox SET last_error = ?2 WHERE id = ?1", args![id, why])?;
                }
                committed.push(Committed { id, status });
            }
            Ok(committed)
        })?;
        match lost {
            Some(fence) => Err(StoreError::fenced(&self.location, fence)),
            None => Ok(committed),
        }
    }
}

/// Whether an e-mail goes now, is held, is dropped or waits for its turn
/// (then: until when); other items keep their status.
fn decide(tx: Db<'_>, item: &NewItem, now_us: u64, throttle: &Throttle) -> DbResult<(Status, Option<u64>)> {
    let Payload::Email(email) = &item.payload else {
        return Ok((item.status, None));
    };
    // Held back by noise control (silenced, inhibited, muted): not sent
    // now, so it takes no room in the window.
    if item.held_by.is_some() {
        return Ok((item.status, None));
    }
    let open_until = window_open_until(tx, &item.module, email.send_interval_s, throttle.mail_period_s)?;
    let Some(end) = open_until.filter(|end| *end > now_us) else {
        record_send(tx, &item.module, now_us)?;
        return Ok((item.status, None));
    };
    Ok(match throttle.modes.get(&item.module).copied().unwrap_or_default() {
        ThrottleMode::Digest => (Status::Held, None),
        ThrottleMode::Drop => (Status::Dropped, None),
        // Its turn is the window's end, which opens the module's next
        // window. Only the module's: a burst of queued messages must not
        // push the host's mail period ahead of every other module.
        ThrottleMode::Queue => {
            reserve_turn(tx, &item.module, end)?;
            (item.status, Some(end))
        }
    })
}

/// A module's `SendInterval` as the throttle reads it, in seconds: 0 means
/// 60, negative means none.
pub fn window_seconds(send_interval_s: i64) -> Option<u64> {
    match send_interval_s {
        0 => Some(60),
        s if s > 0 => Some(s.unsigned_abs()),
        _ => None,
    }
}

/// When the module's (and the host's) window ends, if one is open.
pub(super) fn window_open_until(
    db: Db<'_>,
    module: &str,
    send_interval_s: i64,
    mail_period_s: i64,
) -> DbResult<Option<u64>> {
    // Both last sends in one round trip (PostgreSQL's is a network one).
    let sends: Vec<(String, i64)> = db.query(
        "SELECT key, last_sent_us FROM throttle WHERE key IN (?1, ?2)",
        args![module, GLOBAL],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let last = |key: &str| sends.iter().find(|(k, _)| k == key).map(|(_, at)| from_db_time(*at));
    let seconds = |s: u64| s.saturating_mul(1_000_000);
    let mut end = None;
    if let (Some(interval), Some(last)) = (window_seconds(send_interval_s), last(module)) {
        end = Some(last.saturating_add(seconds(interval)));
    }
    if mail_period_s > 0
        && let Some(last) = last(GLOBAL)
    {
        let global_end = last.saturating_add(seconds(mail_period_s.unsigned_abs()));
        end = Some(end.map_or(global_end, |e: u64| e.max(global_end)));
    }
    Ok(end)
}

/// Every e-mail sent moves its module's and the host's last send (as
/// Velociraptor's `last_mail`, even for modules that are not throttled).
pub(super) fn record_send(tx: Db<'_>, module: &str, now_us: u64) -> DbResult<()> {
    tx.execute(
        "INSERT INTO throttle (key, last_sent_us) VALUES (?1, ?3), (?2, ?3)
         ON CONFLICT (key) DO UPDATE SET last_sent_us = excluded.last_sent_us",
        args![module, GLOBAL, db_time(now_us)],
    )
    .map(drop)
}

/// Books a queued e-mail's turn at `at_us` in its module's window.
fn reserve_turn(tx: Db<'_>, module: &str, at_us: u64) -> DbResult<()> {
    set_last_sent(tx, module, at_us)
}

fn set_last_sent(tx: Db<'_>, key: &str, at_us: u64) -> DbResult<()> {
    tx.execute(
        "INSERT INTO throttle (key, last_sent_us) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET last_sent_us = excluded.last_sent_us",
        args![key, db_time(at_us)],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Owner;
    use crate::store::outbox::tests::email;

    const S: u64 = 1_000_000;

    fn dedup_and_email() -> (Vec<StateWrite>, Vec<NewItem>) {
        let state = vec![StateWrite {
            owner: Owner::AlertDedup,
            key: "root/Honey".into(),
            value: b"1".to_vec(),
            expires_us: None,
        }];
        (state, vec![email("alerts", "soc@example.org", "Honey", -1)])
    }

    /// Commits an e-mail of module `alerts` (SendInterval 300 s) at `now_us`
    /// under `mode`: the status it gets.
    fn commit_email(store: &Store, mode: ThrottleMode, subject: &str, now_us: u64) -> Status {
        let items = [email("alerts", "soc@example.org", subject, 300)];
        let changes = Changes {
            state: &[],
            items: &items,
            retries: &[],
            fences: &[],
        };
        store
            .commit(&changes, now_us, now_us + 100 * S, &throttle(mode))
            .unwrap()[0]
            .status
    }

    fn throttle(mode: ThrottleMode) -> Throttle {
        Throttle {
            modes: [("alerts".to_string(), mode)].into(),
            mail_period_s: 0,
        }
    }

    #[test]
    fn state_and_items_of_one_input_are_stored_together() {
        let store = Store::for_tests();
        let (state, items) = dedup_and_email();
        let changes = Changes {
            state: &state,
            items: &items,
            retries: &[],
            fences: &[],
        };
        let committed = store.commit(&changes, 5 * S, 100 * S, &Throttle::default()).unwrap();
        assert_eq!(committed.len(), 1);
        assert_eq!(committed[0].status, Status::Pending);
        assert!(
            store
                .state_get(&Owner::AlertDedup, "root/Honey", 6 * S)
                .unwrap()
                .is_some()
        );
        assert_eq!(store.open_count().unwrap(), 1);
    }

    /// A failed transaction leaves no trace: the dedup window of an alert
    /// whose e-mail was not stored must not suppress its retry.
    #[test]
    fn a_failed_commit_stores_nothing() {
        let store = Store::for_tests();
        let refuse_items = match store.location() {
            crate::store::Location::Postgres(_) => {
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$;
                 CREATE TRIGGER fail BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse()"
            }
            _ => "CREATE TRIGGER fail BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'no'); END",
        };
        store.read(|c| c.batch(refuse_items)).unwrap();
        let (state, items) = dedup_and_email();
        let changes = Changes {
            state: &state,
            items: &items,
            retries: &[],
            fences: &[],
        };
        assert!(store.commit(&changes, 5 * S, 100 * S, &Throttle::default()).is_err());
        assert_eq!(store.state_get(&Owner::AlertDedup, "root/Honey", 6 * S).unwrap(), None);
    }

    #[test]
    fn e_mails_inside_the_window_are_held_or_dropped() {
        for (mode, expected) in [
            (ThrottleMode::Digest, Status::Held),
            (ThrottleMode::Drop, Status::Dropped),
        ] {
            let store = Store::for_tests();
            let commit = |subject: &str, now_us| commit_email(&store, mode, subject, now_us);
            let (first, second, third) = (commit("1", 10 * S), commit("2", 20 * S), commit("3", 310 * S));
            assert_eq!([first, second, third], [Status::Pending, expected, Status::Pending]);
        }
    }

    /// In queue mode (SendEmail's `Period`) each e-mail inside the window
    /// waits for its own turn, one window after the one before: none is
    /// folded, none is lost, and none goes early.
    #[test]
    fn queued_e_mails_go_one_per_window_in_turn() {
        let store = Store::for_tests();
        let commit = |subject: &str, now_us| commit_email(&store, ThrottleMode::Queue, subject, now_us);
        let statuses = [commit("1", 10 * S), commit("2", 20 * S), commit("3", 30 * S)];
        assert_eq!(statuses, [Status::Pending; 3]);
        let subjects_due = |at_us| -> Vec<String> {
            let mut due: Vec<String> = store
                .due(at_us, 100)
                .unwrap()
                .into_iter()
                .map(|i| i.unwrap().payload.subject().unwrap_or("").to_string())
                .collect();
            due.sort();
            due
        };
        assert_eq!(subjects_due(30 * S), ["1"]);
        assert_eq!(
            subjects_due(310 * S),
            ["1", "2"],
            "the second at the first window's end"
        );
        assert_eq!(subjects_due(609 * S), ["1", "2"]);
        assert_eq!(subjects_due(610 * S), ["1", "2", "3"], "the third one window later");
    }

    /// A silenced e-mail is not sent: the next one of its module is not
    /// held for a window it did not open. It keeps its labels and what
    /// held it back.
    #[test]
    fn a_silenced_e_mail_opens_no_window() {
        let store = Store::for_tests();
        let silenced = NewItem {
            status: Status::Silenced,
            held_by: Some("silence s1".into()),
            labels: crate::noise::Labels::from([("alertname", "Honey")]),
            ..email("alerts", "soc@example.org", "1", 300)
        };
        let commit = |item: NewItem, now_us| {
            let items = [item];
            let changes = Changes {
                state: &[],
                items: &items,
                retries: &[],
                fences: &[],
            };
            store
                .commit(&changes, now_us, now_us + 100 * S, &throttle(ThrottleMode::Digest))
                .unwrap()[0]
        };
        let first = commit(silenced, 10 * S);
        assert_eq!(first.status, Status::Silenced);
        let next = commit(email("alerts", "soc@example.org", "2", 300), 20 * S);
        assert_eq!(next.status, Status::Pending);
        let kept = store.item(first.id).unwrap().unwrap().unwrap();
        assert_eq!(kept.held_by.as_deref(), Some("silence s1"));
        assert_eq!(kept.labels.get("alertname"), "Honey");
    }

    /// A module named `*` has a window of its own: its e-mails neither
    /// start nor are held by the host-wide mail period.
    #[test]
    fn a_module_named_like_a_wildcard_does_not_share_the_hosts_mail_period() {
        let store = Store::for_tests();
        let throttle = Throttle {
            modes: HashMap::new(),
            mail_period_s: 0,
        };
        let commit = |module: &str, send_interval_s, now_us| {
            let items = [email(module, "soc@example.org", "x", send_interval_s)];
            let changes = Changes {
                state: &[],
                items: &items,
                retries: &[],
                fences: &[],
            };
            store.commit(&changes, now_us, now_us + 100 * S, &throttle).unwrap()[0].status
        };
        assert_eq!(commit("alerts", -1, 10 * S), Status::Pending);
        // The host's last send is now; a module named "*" with a window
        // must not find it as its own.
        assert_eq!(commit("*", 300, 11 * S), Status::Pending);
    }
}
