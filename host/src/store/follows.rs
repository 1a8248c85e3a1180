//! Items that wait for others. A label change a module makes after
//! announcing a client (Clients.Online: post to the webhook, then remove the
//! watch-list label) must not happen unless the announcement went out:
//! Velociraptor's own artifact removes the label even when the post
//! failed, and the client is never announced again (decision D16).
//!
//! An item that follows others is `blocked` until every one of them is
//! sent, then `pending`; if one of them is dead-lettered or dropped, so is
//! it, saying which. A digest takes over what its held e-mails were
//! followed by. The links live in `outbox_follows (item, after)`.

use super::db::{Db, DbResult, args};
use super::db_time;
use super::outbox::Status;

/// Records that `item` waits for each of `after`.
pub(super) fn link(tx: Db<'_>, item: i64, after: &[i64]) -> DbResult<()> {
    for before in after {
        tx.execute(
            "INSERT INTO outbox_follows (item, after) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            args![item, before],
        )?;
    }
    Ok(())
}

/// Blocks every pending item that follows one not yet sent.
pub(super) fn block_waiting(tx: Db<'_>) -> DbResult<usize> {
    tx.execute(
        "UPDATE outbox SET status = 'blocked' WHERE status = 'pending' AND EXISTS (
             SELECT 1 FROM outbox_follows f JOIN outbox p ON p.id = f.after
             WHERE f.item = outbox.id AND p.status NOT IN ('sent', 'silenced', 'inhibited'))",
        &[],
    )
}

/// The status of a new item that follows `after`: dead-lettered if one of
/// them already failed for good, blocked while one is not sent.
pub(super) fn status_of_follower(tx: Db<'_>, after: &[i64], status: Status) -> DbResult<(Status, Option<String>)> {
    let mut waits = false;
    for before in after {
        let before_status: String =
            tx.query_one("SELECT status FROM outbox WHERE id = ?1", args![before], |r| r.get(0))?;
        match Status::parse(&before_status) {
            Some(failed @ (Status::Dead | Status::Dropped)) => {
                let why = format!("not done: it follows outbox item {before}, which was {failed}");
                return Ok((Status::Dead, Some(why)));
            }
            // A silenced or inhibited announcement was held back on
            // purpose: what follows it is done all the same (noise control
            // quiets notifications, not a module's other actions).
            Some(Status::Sent | Status::Silenced | Status::Inhibited) => {}
            _ => waits = true,
        }
    }
    Ok(match status {
        Status::Pending if waits => (Status::Blocked, None),
        other => (other, None),
    })
}

/// After `id` was sent: the items that follow it and nothing else unsent
/// go in line.
pub(super) fn release_followers(tx: Db<'_>, id: i64, now_us: u64) -> DbResult<usize> {
    tx.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_us = ?2, updated_us = ?2
         WHERE status = 'blocked'
           AND id IN (SELECT item FROM outbox_follows WHERE after = ?1)
           AND NOT EXISTS (SELECT 1 FROM outbox_follows f JOIN outbox p ON p.id = f.after
                           WHERE f.item = outbox.id AND p.status NOT IN ('sent', 'silenced', 'inhibited'))",
        args![id, db_time(now_us)],
    )
}

/// An item dead-lettered because one it followed failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedFollower {
    pub id: i64,
    /// Its kind as stored (`label`, ...).
    pub kind: String,
    pub why: String,
}

/// After `id` failed for good (`status` dead or dropped): the items that
/// follow it, and those that follow them, are dead-lettered, naming it.
pub(super) fn fail_followers(tx: Db<'_>, id: i64, status: Status, now_us: u64) -> DbResult<Vec<FailedFollower>> {
    let mut done = Vec::new();
    let mut failed = vec![(id, status)];
    while let Some((before, status)) = failed.pop() {
        let followers: Vec<(i64, String)> = tx.query(
            "SELECT i.id, i.kind FROM outbox_follows f JOIN outbox i ON i.id = f.item
             WHERE f.after = ?1 AND i.status IN ('blocked', 'pending', 'waiting-api')",
            args![before],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (follower, kind) in followers {
            let why = format!("not done: it follows outbox item {before}, which was {status}");
            tx.execute(
                "UPDATE outbox SET status = 'dead', last_error = ?2, updated_us = ?3 WHERE id = ?1",
                args![follower, why, db_time(now_us)],
            )?;
            failed.push((follower, Status::Dead));
            done.push(FailedFollower {
                id: follower,
                kind,
                why,
            });
        }
    }
    Ok(done)
}

/// `held` were folded into `digest`: what followed them follows the digest
/// (once: an item that followed two of them gets one link).
pub(super) fn follow_digest(tx: Db<'_>, held: &[i64], digest: i64) -> DbResult<()> {
    for id in held {
        tx.execute(
            "INSERT INTO outbox_follows (item, after) SELECT item, ?2 FROM outbox_follows WHERE after = ?1
             ON CONFLICT DO NOTHING",
            args![id, digest],
        )?;
        tx.execute("DELETE FROM outbox_follows WHERE after = ?1", args![id])?;
    }
    Ok(())
}

/// The dead items that `ids` follow, directly or not: retrying an item
/// retries what it waits for.
pub(super) fn dead_predecessors(tx: Db<'_>, ids: &[i64]) -> DbResult<Vec<i64>> {
    let mut found = Vec::new();
    let mut frontier = ids.to_vec();
    while let Some(id) = frontier.pop() {
        let before: Vec<i64> = tx.query(
            "SELECT p.id FROM outbox_follows f JOIN outbox p ON p.id = f.after
             WHERE f.item = ?1 AND p.status = 'dead'",
            args![id],
            |r| r.get(0),
        )?;
        for id in before {
            if !found.contains(&id) {
                found.push(id);
                frontier.push(id);
            }
        }
    }
    Ok(found)
}

/// Forgets the links of an item that is purged, both ways (each way has
/// its index: no scan of the table).
pub(super) fn forget(tx: Db<'_>, item: i64) -> DbResult<usize> {
    tx.execute("DELETE FROM outbox_follows WHERE item = ?1 OR after = ?1", args![item])
}

#[cfg(test)]
mod tests {
    use super::super::outbox::tests::email;
    use super::super::outbox::{LabelOp, LabelPayload, NewItem, Payload, WebhookPayload};
    use super::super::{Changes, Store, Throttle, ThrottleMode};
    use super::*;

    fn announcement() -> NewItem {
        NewItem {
            module: "online".into(),
            event: Some("tick:online@1".into()),
            status: Status::Pending,
            payload: Payload::Webhook(WebhookPayload {
                url: "http://hook.example.org/".into(),
                headers: Vec::new(),
                may_reach_private: false,
            }),
            body: b"{}".to_vec(),
            follows: Vec::new(),
            labels: crate::noise::Labels::default(),
            held_by: None,
            release_us: None,
            link_id: None,
        }
    }

    fn unlabel(follows: Vec<usize>) -> NewItem {
        NewItem {
            payload: Payload::Label(LabelPayload {
                org_id: "root".into(),
                client_id: "C.1".into(),
                op: LabelOp::Remove,
                labels: vec!["Slack".into()],
            }),
            body: Vec::new(),
            follows,
            ..announcement()
        }
    }

    /// Commits `items` as one input; returns their ids.
    fn commit(store: &Store, items: &[NewItem], throttle: &Throttle) -> Vec<i64> {
        let changes = Changes {
            state: &[],
            items,
            retries: &[],
            fences: &[],
        };
        let committed = store.commit(&changes, 10, 1_000_000_000, throttle).unwrap();
        committed.iter().map(|c| c.id).collect()
    }

    fn status(store: &Store, id: i64) -> (Status, Option<String>) {
        let item = store.item(id).unwrap().unwrap().unwrap();
        (item.status, item.last_error)
    }

    fn due_ids(store: &Store) -> Vec<i64> {
        store
            .due(u64::MAX >> 2, 100)
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().id)
            .collect()
    }

    fn links(store: &Store) -> Vec<(i64, i64)> {
        store
            .read(|c| {
                c.query("SELECT item, after FROM outbox_follows ORDER BY item", &[], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .unwrap()
    }

    /// Purging forgets the links of what it deletes, both ways, and no
    /// other.
    #[test]
    fn a_purge_forgets_the_links_of_the_items_it_deletes() {
        let store = Store::for_tests();
        let sent = commit(&store, &[announcement(), unlabel(vec![0])], &Throttle::default());
        let dead = commit(&store, &[announcement(), unlabel(vec![0])], &Throttle::default());
        let kept = commit(&store, &[announcement(), unlabel(vec![0])], &Throttle::default());
        assert_eq!(links(&store).len(), 3);
        store.mark_sent(sent[0], 20).unwrap();
        store.mark_sent(sent[1], 20).unwrap();
        store.mark_dead(dead[0], "550", 20, "local").unwrap();
        assert_eq!(store.purge(Some(Status::Sent), u64::MAX >> 2).unwrap(), 2);
        assert_eq!(links(&store), [(dead[1], dead[0]), (kept[1], kept[0])]);
        assert_eq!(store.purge_dead(&[dead[0]]).unwrap(), 1);
        assert_eq!(
            links(&store),
            [(kept[1], kept[0])],
            "the dead item's follower keeps no link to it"
        );
    }

    #[test]
    fn a_label_change_waits_until_its_announcement_is_sent() {
        let store = Store::for_tests();
        let ids = commit(&store, &[announcement(), unlabel(vec![0])], &Throttle::default());
        assert_eq!(status(&store, ids[1]).0, Status::Blocked);
        assert_eq!(due_ids(&store), [ids[0]]);
        store.mark_sent(ids[0], 20).unwrap();
        assert_eq!(status(&store, ids[1]).0, Status::Pending);
        assert_eq!(due_ids(&store), [ids[1]]);
    }

    /// A silence quiets the announcement, not the module's response: the
    /// label change after it is done.
    #[test]
    fn a_label_change_after_a_silenced_announcement_goes_ahead() {
        let store = Store::for_tests();
        let silenced = NewItem {
            status: Status::Silenced,
            held_by: Some("silence s1".into()),
            ..announcement()
        };
        let ids = commit(&store, &[silenced, unlabel(vec![0])], &Throttle::default());
        assert_eq!(status(&store, ids[0]).0, Status::Silenced);
        assert_eq!(status(&store, ids[1]).0, Status::Pending);
        assert_eq!(due_ids(&store), [ids[1]]);
    }

    #[test]
    fn a_label_change_is_dead_lettered_with_its_announcement_and_says_why() {
        let store = Store::for_tests();
        let ids = commit(&store, &[announcement(), unlabel(vec![0])], &Throttle::default());
        store.mark_dead(ids[0], "HTTP 500", 20, "local").unwrap();
        let (label_status, why) = status(&store, ids[1]);
        assert_eq!(label_status, Status::Dead);
        assert_eq!(
            why.unwrap(),
            format!("not done: it follows outbox item {}, which was dead", ids[0])
        );
        assert!(due_ids(&store).is_empty());
    }

    #[test]
    fn retrying_a_label_change_retries_its_announcement_and_waits_for_it_again() {
        let store = Store::for_tests();
        let ids = commit(&store, &[announcement(), unlabel(vec![0])], &Throttle::default());
        store.mark_dead(ids[0], "HTTP 500", 20, "local").unwrap();
        assert_eq!(store.retry(&[ids[1]], 30, 1_000_000_000).unwrap(), 2);
        assert_eq!(status(&store, ids[0]).0, Status::Pending);
        assert_eq!(status(&store, ids[1]).0, Status::Blocked);
    }

    #[test]
    fn an_e_mail_dropped_by_the_throttle_takes_its_label_change_with_it() {
        let store = Store::for_tests();
        let throttle = Throttle {
            modes: [("online".to_string(), ThrottleMode::Drop)].into(),
            mail_period_s: 0,
        };
        let mail = || NewItem {
            event: Some("tick:online@1".into()),
            ..email("online", "soc@example.org", "online", 600)
        };
        commit(&store, &[mail()], &throttle);
        let ids = commit(&store, &[mail(), unlabel(vec![0])], &throttle);
        assert_eq!(status(&store, ids[0]).0, Status::Dropped);
        let (label_status, why) = status(&store, ids[1]);
        assert_eq!(label_status, Status::Dead);
        assert!(why.unwrap().contains("which was dropped"));
    }

    /// A held announcement and the label change after it: the change
    /// waits for the digest the announcement is folded into.
    fn held_then_blocked(store: &Store) -> [i64; 2] {
        let throttle = Throttle::default();
        let mail = || NewItem {
            event: Some("tick:online@1".into()),
            ..email("online", "soc@example.org", "online", 600)
        };
        commit(store, &[mail()], &throttle);
        let ids = commit(store, &[mail(), unlabel(vec![0])], &throttle);
        assert_eq!(status(store, ids[0]).0, Status::Held);
        assert_eq!(status(store, ids[1]).0, Status::Blocked);
        [ids[0], ids[1]]
    }

    fn fold(store: &Store, held: i64, refused: Option<&str>) -> (i64, Vec<FailedFollower>) {
        let digest = super::super::NewDigest {
            held: vec![held],
            item: email("online", "soc@example.org", "digest", -1),
            refused: refused.map(str::to_string),
        };
        store
            .fold_into_digests(&[digest], 40, 1 << 40)
            .unwrap()
            .remove(0)
            .expect("its item was held")
    }

    #[test]
    fn a_label_change_after_a_held_e_mail_waits_for_the_digest() {
        let store = Store::for_tests();
        let [held, label] = held_then_blocked(&store);
        let (digest, failed) = fold(&store, held, None);
        assert!(failed.is_empty());
        assert_eq!(status(&store, label).0, Status::Blocked);
        store.mark_sent(digest, 50).unwrap();
        assert_eq!(status(&store, label).0, Status::Pending);
    }

    /// A digest refused by the checks is dead at once, and the label
    /// change waiting for it is dead-lettered with it, not blocked forever.
    #[test]
    fn a_refused_digest_takes_the_label_change_after_it_with_it() {
        let store = Store::for_tests();
        let [held, label] = held_then_blocked(&store);
        let (digest, failed) = fold(&store, held, Some("an action of 9000 bytes (max_action_bytes 8000)"));
        assert_eq!(status(&store, digest).0, Status::Dead);
        assert_eq!(failed.iter().map(|f| f.id).collect::<Vec<_>>(), [label]);
        let (label_status, why) = status(&store, label);
        assert_eq!(label_status, Status::Dead);
        assert!(why.unwrap().contains("which was dead"));
    }
}
