//! The host's own `Server.Internal.Alerts` queue: an `alert` action from
//! any module becomes an alert row with `alert()` semantics
//! (docs/velociraptor.md §2.2, decision D12) and reaches the modules that
//! watch alerts, exactly as an alert raised in Velociraptor would.
//!
//! Deduplication is keyed per org and alert name and kept in the host's
//! durable state, so it survives restarts and module swaps. A window is
//! written with the input that raised the alert, in the same transaction as
//! the notifications the alert causes: a crash before that commit leaves
//! neither, and the input's retry raises the alert again.

use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use velonotify_core::vql::Timestamp;

use crate::capabilities::state::StateCapability;
use crate::contract::Alert;
use crate::sources::IncomingEvent;
use crate::store::{Owner, StateWrite};
use crate::velociraptor::ALERTS_QUEUE;

/// `alert()`'s default: the same name is suppressed for two hours.
pub const DEFAULT_DEDUP_SECONDS: i64 = 7200;

/// What became of an alert.
#[derive(Debug, Clone, PartialEq)]
pub enum Raised {
    /// A new row on the alert queue.
    Queued(IncomingEvent),
    /// The same name was raised within its dedup window.
    Suppressed { until: Timestamp, dedup_seconds: i64 },
}

/// Turns alert actions into alert rows.
#[derive(Debug, Clone)]
pub struct AlertQueue {
    state: Arc<StateCapability>,
}

impl AlertQueue {
    pub fn new(state: Arc<StateCapability>) -> Self {
        Self { state }
    }

    /// Raises `alert` for `org_id` at `now_us`; the row gets the id `id`.
    /// A `dedup_seconds` of none or 0 means 7200; a negative one means the
    /// alert is never suppressed.
    pub fn raise(&self, alert: &Alert, org_id: &str, now_us: u64, id: String) -> Raised {
        let dedup = match alert.dedup_seconds {
            None | Some(0) => DEFAULT_DEDUP_SECONDS,
            Some(seconds) => seconds,
        };
        if dedup > 0 {
            let key = dedup_key(org_id, &alert.name);
            let found = self
                .state
                .get(&Owner::AlertDedup, &key, now_us)
                .unwrap_or_else(|error| {
                    // Unreadable state must not silence an alert: raise it.
                    tracing::error!(%error, "reading an alert's dedup window failed");
                    None
                });
            if let Some(until) = found {
                let until = String::from_utf8_lossy(&until).parse::<i64>().unwrap_or(0);
                return Raised::Suppressed {
                    until: Timestamp::from_unix_micros(until),
                    dedup_seconds: dedup,
                };
            }
            let until_us = now_us.saturating_add(dedup.unsigned_abs().saturating_mul(1_000_000));
            self.state.stage(StateWrite {
                owner: Owner::AlertDedup,
                key,
                value: i64::try_from(until_us).unwrap_or(i64::MAX).to_string().into_bytes(),
                expires_us: Some(until_us),
            });
        }
        Raised::Queued(IncomingEvent {
            id,
            queue: ALERTS_QUEUE.to_string(),
            row: alert_row(alert, now_us).to_string(),
            org_id: org_id.to_string(),
            ts_us: Some(now_us),
        })
    }
}

/// Long names are hashed to fit a state key.
fn dedup_key(org_id: &str, name: &str) -> String {
    let key = format!("{org_id}/{name}");
    if key.len() <= 200 {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{org_id}/sha256:{hex}")
}

/// The row as Velociraptor's AlertMessage serialises it, with the queue's
/// decorations.
fn alert_row(alert: &Alert, now_us: u64) -> Value {
    let event_data = serde_json::from_str::<Value>(&alert.event_data)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(Map::new()));
    let mut row = json!({
        "client_id": alert.client_id.as_deref().filter(|c| !c.is_empty()).unwrap_or("server"),
        "name": alert.name,
        "timestamp": Timestamp::from_unix_micros(now_us as i64).rfc3339_precise(),
        "event_data": event_data,
    });
    let map = row.as_object_mut().expect("a JSON object");
    for (key, value) in [
        ("artifact", &alert.artifact),
        ("artifact_type", &alert.artifact_type),
        ("flow_id", &alert.flow_id),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            map.insert(key.into(), Value::String(value.to_string()));
        }
    }
    map.insert("_ts".into(), Value::from(now_us / 1_000_000));
    map.insert("_Source".into(), Value::String(ALERTS_QUEUE.into()));
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Changes, Store, Throttle};

    fn alert(name: &str, dedup: Option<i64>) -> Alert {
        Alert {
            name: name.into(),
            dedup_seconds: dedup,
            event_data: r#"{"File": "/etc/shadow"}"#.into(),
            client_id: Some("C.1".into()),
            artifact: Some("Linux.Detection.Honeyfiles".into()),
            artifact_type: Some("CLIENT_EVENT".into()),
            flow_id: None,
        }
    }

    const T: u64 = 1_778_400_000_000_000;
    const S: u64 = 1_000_000;

    fn queued(raised: &Raised) -> bool {
        matches!(raised, Raised::Queued(_))
    }

    #[test]
    fn the_same_name_inside_the_window_is_suppressed_and_sent_after_it() {
        let q = AlertQueue::new(Arc::new(StateCapability::in_memory()));
        assert!(queued(&q.raise(&alert("x", Some(300)), "root", T, "1".into())));
        assert!(!queued(&q.raise(
            &alert("x", Some(300)),
            "root",
            T + 299 * S,
            "2".into()
        )));
        assert!(queued(&q.raise(
            &alert("x", Some(300)),
            "root",
            T + 300 * S,
            "3".into()
        )));
    }

    #[test]
    fn a_suppressed_alert_does_not_extend_the_window() {
        let q = AlertQueue::new(Arc::new(StateCapability::in_memory()));
        q.raise(&alert("x", Some(100)), "root", T, "1".into());
        q.raise(&alert("x", Some(100)), "root", T + 90 * S, "2".into());
        assert!(queued(&q.raise(
            &alert("x", Some(100)),
            "root",
            T + 100 * S,
            "3".into()
        )));
    }

    #[test]
    fn the_default_window_is_two_hours() {
        for dedup in [None, Some(0)] {
            let q = AlertQueue::new(Arc::new(StateCapability::in_memory()));
            q.raise(&alert("x", dedup), "root", T, "1".into());
            assert!(!queued(&q.raise(&alert("x", dedup), "root", T + 7199 * S, "2".into())));
            assert!(queued(&q.raise(&alert("x", dedup), "root", T + 7200 * S, "3".into())));
        }
    }

    #[test]
    fn a_negative_dedup_never_suppresses() {
        let q = AlertQueue::new(Arc::new(StateCapability::in_memory()));
        for i in 0..5 {
            assert!(queued(&q.raise(&alert("x", Some(-1)), "root", T + i, i.to_string())));
        }
    }

    #[test]
    fn dedup_is_per_org_and_name() {
        let q = AlertQueue::new(Arc::new(StateCapability::in_memory()));
        assert!(queued(&q.raise(&alert("x", None), "root", T, "1".into())));
        assert!(queued(&q.raise(&alert("y", None), "root", T, "2".into())));
        assert!(queued(&q.raise(&alert("x", None), "O123", T, "3".into())));
    }

    /// The window is a write of the input: never stored unless the input
    /// commits (a crash before the commit leaves no window behind).
    #[test]
    fn a_window_not_committed_does_not_suppress_the_retry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = Arc::new(StateCapability::new(Arc::new(Store::open(&path).unwrap())));
        assert!(queued(&AlertQueue::new(state.clone()).raise(
            &alert("x", None),
            "root",
            T,
            "1".into()
        )));
        drop(state);
        let again = Arc::new(StateCapability::new(Arc::new(Store::open(&path).unwrap())));
        assert!(queued(&AlertQueue::new(again).raise(
            &alert("x", None),
            "root",
            T,
            "1".into()
        )));
    }

    #[test]
    fn dedup_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let state = Arc::new(StateCapability::new(Arc::new(Store::open(&path).unwrap())));
        let first = AlertQueue::new(state.clone());
        assert!(queued(&first.raise(&alert("x", None), "root", T, "1".into())));
        // The window is stored with the input that raised the alert.
        let changes = Changes {
            state: &state.take_staged(),
            items: &[],
            retries: &[],
            fences: &[],
        };
        state.store().commit(&changes, T, T, &Throttle::default()).unwrap();
        drop((first, state));
        let second = AlertQueue::new(Arc::new(StateCapability::new(Arc::new(Store::open(&path).unwrap()))));
        assert!(!queued(&second.raise(
            &alert("x", None),
            "root",
            T + 60 * S,
            "2".into()
        )));
    }

    #[test]
    fn rows_carry_the_attribution_of_section_2_2() {
        let q = AlertQueue::new(Arc::new(StateCapability::in_memory()));
        let Raised::Queued(event) = q.raise(&alert("Honey", None), "root", T + 123_456, "e#alert1".into()) else {
            panic!("queued");
        };
        assert_eq!(event.queue, ALERTS_QUEUE);
        let row: Value = serde_json::from_str(&event.row).unwrap();
        assert_eq!(
            row,
            json!({"client_id": "C.1", "name": "Honey", "timestamp": "2026-05-10T08:00:00.123456Z",
                   "event_data": {"File": "/etc/shadow"}, "artifact": "Linux.Detection.Honeyfiles",
                   "artifact_type": "CLIENT_EVENT", "_ts": 1_778_400_000, "_Source": "Server.Internal.Alerts"})
        );
        let keys: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys[..4], ["client_id", "name", "timestamp", "event_data"]);
    }

    #[test]
    fn long_names_are_deduplicated_too() {
        let q = AlertQueue::new(Arc::new(StateCapability::in_memory()));
        let long = "x".repeat(5000);
        assert!(queued(&q.raise(&alert(&long, None), "root", T, "1".into())));
        assert!(!queued(&q.raise(&alert(&long, None), "root", T + S, "2".into())));
    }
}
