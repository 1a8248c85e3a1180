//! This process as one replica of the store it runs on: its name, the
//! heartbeat that keeps what it holds (its streams' leases, the outbox
//! items it is sending) its own, and its leaving when it stops. The rules
//! are the store's (`store/replicas.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::Clock;
use crate::store::{HEARTBEAT_EVERY, Replica, Store};

/// This process's replica, beating until dropped; then it leaves the
/// store, handing what it held to the others at once.
#[derive(Debug)]
pub struct Membership {
    replica: Replica,
    store: Arc<Store>,
    stop: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Membership {
    /// Registers this process on `store` (a connection of its own) and
    /// starts its heartbeat. `alone`: no other process can share the store
    /// (a SQLite file under the pid lock), so earlier runs' claims and
    /// leases are forgotten.
    pub fn join(store: Store, clock: &Clock, alone: bool) -> anyhow::Result<Self> {
        let now_us = clock.now_us();
        let host = hostname::get().map_or_else(|_| "unknown".into(), |h| h.to_string_lossy().into_owned());
        let replica = Replica {
            id: format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..)),
            host,
            pid: std::process::id(),
            started_us: now_us,
            seen_us: now_us,
        };
        store.register_replica(&replica, alone)?;
        tracing::info!(replica = %replica.id, store = %store.location(), "joined the store as a replica");
        let store = Arc::new(store);
        let stop = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (store, stop, replica, clock) = (store.clone(), stop.clone(), replica.clone(), clock.clone());
            std::thread::Builder::new()
                .name("velonotify-heartbeat".into())
                .spawn(move || beat(&store, &replica, &clock, &stop))?
        };
        Ok(Self {
            replica,
            store,
            stop,
            heartbeat: Some(heartbeat),
        })
    }

    pub fn id(&self) -> &str {
        &self.replica.id
    }
}

/// Beats every [`HEARTBEAT_EVERY`] until `stop`; a failure is said once
/// until the store takes beats again (meanwhile the others may take over
/// what this replica holds).
fn beat(store: &Store, replica: &Replica, clock: &Clock, stop: &AtomicBool) {
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        match store.heartbeat(replica, clock.now_us()) {
            Ok(true) => failing = false,
            Ok(false) => {
                tracing::warn!(replica = %replica.id, "this replica was taken for dead; it registered again");
                failing = false;
            }
            Err(error) if !failing => {
                tracing::error!(replica = %replica.id, %error, "heartbeat failed: other replicas may take over");
                failing = true;
            }
            Err(_) => {}
        }
        sleep_unless_stopped(HEARTBEAT_EVERY, stop);
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(step);
        slept += step;
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.heartbeat.take() {
            let _ = thread.join();
        }
        if let Err(error) = self.store.leave(&self.replica.id) {
            tracing::warn!(replica = %self.replica.id, %error, "could not leave the store; the others take over once it times out");
        }
    }
}
