//! What the state database keeps, and for how long: finished outbox items
//! are forgotten after their retention, expired state entries go, and the
//! undelivered outbox has a bound past which the service takes no more
//! inputs (ingest answers 503, a stream waits at its position) until
//! delivery catches up, rather than filling the disk.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::Clock;

use super::outbox::{OpenOutbox, Status};
use super::{Store, StoreError};

/// Sent, digested and dropped items are kept this long, unless
/// `keep_sent_days` says.
pub const DEFAULT_KEEP_SENT_DAYS: u64 = 7;
/// Dead items (which `outbox retry` can send again) are kept this long.
pub const DEFAULT_KEEP_DEAD_DAYS: u64 = 30;
/// Undelivered items the outbox takes before inputs wait.
pub const DEFAULT_MAX_OPEN_ITEMS: u64 = 100_000;
/// Undelivered octets (payloads and bodies) the outbox takes before
/// inputs wait.
pub const DEFAULT_MAX_OPEN_MIB: u64 = 1024;

/// How often the finished items and expired state are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

const DAY_US: u64 = 86_400_000_000;

/// `[outbox]`: retention and the bound of undelivered work.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSection {
    /// Days to keep sent, digested and dropped items (default 7).
    pub keep_sent_days: Option<u64>,
    /// Days to keep dead items (default 30).
    pub keep_dead_days: Option<u64>,
    /// Undelivered items at most (default 100,000).
    pub max_open_items: Option<u64>,
    /// Undelivered MiB at most (default 1024).
    pub max_open_mib: Option<u64>,
}

impl OutboxSection {
    pub fn retention(&self) -> Retention {
        Retention {
            keep_sent_us: self
                .keep_sent_days
                .unwrap_or(DEFAULT_KEEP_SENT_DAYS)
                .saturating_mul(DAY_US),
            keep_dead_us: self
                .keep_dead_days
                .unwrap_or(DEFAULT_KEEP_DEAD_DAYS)
                .saturating_mul(DAY_US),
        }
    }

    pub fn bound(&self) -> OutboxBound {
        OutboxBound {
            max_items: self.max_open_items.unwrap_or(DEFAULT_MAX_OPEN_ITEMS).max(1),
            max_bytes: self
                .max_open_mib
                .unwrap_or(DEFAULT_MAX_OPEN_MIB)
                .max(1)
                .saturating_mul(1 << 20),
        }
    }
}

/// How long finished items are kept after their last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_sent_us: u64,
    pub keep_dead_us: u64,
}

/// What one sweep forgot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub items: usize,
    pub state_entries: usize,
    /// Silences that ended longer ago than dead items are kept.
    pub silences: usize,
}

impl Store {
    /// Forgets the finished items past their retention and the state
    /// entries expired by `now_us`.
    pub fn sweep(&self, now_us: u64, retention: &Retention) -> Result<Swept, StoreError> {
        let mut items = 0;
        for status in Status::FINISHED {
            let keep = match status {
                Status::Dead => retention.keep_dead_us,
                _ => retention.keep_sent_us,
            };
            items += self.purge(Some(status), now_us.saturating_sub(keep))?;
        }
        let state_entries = self.forget_expired_state(now_us)?;
        let silences = self.forget_silences_ended_before(
            now_us.saturating_sub(retention.keep_dead_us),
            now_us.saturating_sub(crate::noise::silence_link::LINK_LIFETIME_S * 1_000_000),
        )?;
        Ok(Swept {
            items,
            state_entries,
            silences,
        })
    }
}

/// Sweeps the store at start and every `every` after, on a thread and a
/// connection of its own, until dropped.
#[derive(Debug)]
pub struct Sweeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub fn start(store: Store, retention: Retention, every: Duration, clock: Clock) -> anyhow::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("velonotify-sweep".into())
            .spawn(move || {
                loop {
                    match store.sweep(clock.now_us(), &retention) {
                        Ok(swept) if swept != Swept::default() => tracing::info!(
                            items = swept.items,
                            state_entries = swept.state_entries,
                            silences = swept.silences,
                            "forgot finished outbox items past their retention, expired state and ended silences"
                        ),
                        Ok(_) => {}
                        Err(error) => tracing::warn!(%error, "sweeping the state database failed; tried again later"),
                    }
                    if !matches!(stopped.recv_timeout(every), Err(RecvTimeoutError::Timeout)) {
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

impl Drop for Sweeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How much undelivered work the outbox takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBound {
    pub max_items: u64,
    pub max_bytes: u64,
}

impl OutboxBound {
    /// Why inputs must wait, when `open` has reached the bound.
    pub fn reached_by(&self, open: OpenOutbox) -> Option<String> {
        if open.items >= self.max_items {
            return Some(format!(
                "the outbox holds {} undelivered items (outbox.max_open_items {})",
                open.items, self.max_items
            ));
        }
        (open.bytes >= self.max_bytes).then(|| {
            format!(
                "the outbox holds {} MiB undelivered (outbox.max_open_mib {})",
                open.bytes >> 20,
                self.max_bytes >> 20
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::outbox::tests::email;
    use super::super::{Changes, Throttle};
    use super::*;
    use crate::store::state::{Owner, StateWrite};

    const DAY: u64 = DAY_US;

    /// With the defaults, a sent item goes after 7 days, a dead one after
    /// 30, an undelivered one never; expired state goes at once.
    #[test]
    fn finished_items_are_forgotten_after_their_retention_and_open_ones_never() {
        let store = Store::for_tests();
        let items = [0, 1, 2].map(|_| email("alerts", "a@example.org", "A", -1));
        let changes = Changes {
            items: &items,
            ..Changes::default()
        };
        let ids: Vec<i64> = store
            .commit(&changes, DAY, 100 * DAY, &Throttle::default())
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        store.mark_sent(ids[0], DAY).unwrap();
        store.mark_dead(ids[1], "550 no such user", DAY, "local").unwrap();
        let expiring = StateWrite {
            owner: Owner::Module("m".into()),
            key: "k".into(),
            value: b"v".to_vec(),
            expires_us: Some(2 * DAY),
        };
        store.state_put(&expiring, DAY).unwrap();
        let silence = crate::noise::NewSilence {
            matchers: crate::noise::Matchers::parse("alertname=A").unwrap(),
            starts_us: DAY,
            ends_us: 2 * DAY,
            created_by: "alice".into(),
            comment: "c".into(),
        };
        store.add_silence(&silence, DAY).unwrap().unwrap();
        let retention = OutboxSection::default().retention();

        let swept = store.sweep(3 * DAY, &retention).unwrap();
        assert_eq!(
            swept,
            Swept {
                items: 0,
                state_entries: 1,
                silences: 0,
            }
        );
        assert_eq!(store.sweep(8 * DAY + 1, &retention).unwrap().items, 1);
        assert!(store.item(ids[0]).unwrap().is_none(), "sent 7 days ago");
        assert!(store.item(ids[1]).unwrap().is_some(), "dead is kept longer");
        let swept = store.sweep(32 * DAY + 1, &retention).unwrap();
        assert_eq!(
            (swept.items, swept.silences),
            (1, 1),
            "a silence ended 30 days ago goes"
        );
        assert!(store.item(ids[1]).unwrap().is_none());
        assert!(store.item(ids[2]).unwrap().is_some(), "undelivered is never swept");
    }

    #[test]
    fn the_bound_is_reached_by_items_or_bytes() {
        let bound = OutboxSection {
            max_open_items: Some(10),
            max_open_mib: Some(1),
            ..OutboxSection::default()
        }
        .bound();
        let open = |items, bytes| OpenOutbox { items, bytes };
        assert_eq!(bound.reached_by(open(9, 1000)), None);
        let why = bound.reached_by(open(10, 1000)).unwrap();
        assert_eq!(why, "the outbox holds 10 undelivered items (outbox.max_open_items 10)");
        let why = bound.reached_by(open(1, 1 << 20)).unwrap();
        assert_eq!(why, "the outbox holds 1 MiB undelivered (outbox.max_open_mib 1)");
    }
}
