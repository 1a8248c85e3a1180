//! Events from a Velociraptor server: one `watch_monitoring()` stream per
//! org over every queue its modules subscribe to, with heartbeats,
//! reconnection with backoff, and catch-up of server event queues.
//!
//! `watch_monitoring()` only sees rows written while it runs. Server event
//! queues (`Server.Internal.Alerts` and other SERVER_EVENT artifacts) are
//! also stored on the server, so after a disconnect (or a restart of
//! velonotify) the rows written meanwhile are read back with `source()`
//! from the last second seen. Rows of that second, and rows that arrive
//! both live and read back, are recognised by a fingerprint of their
//! content and handled once. Client event queues are stored per client
//! and cannot be read back fleet-wide: a gap in them is logged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{IncomingEvent, Input};
use crate::clock::Clock;
use crate::store::{Owner, StateWrite, Store, StoreError};
use crate::velociraptor::client::{ApiClient, ApiError, read_rows};
use crate::velociraptor::{ALERTS_QUEUE, PUSHED_MARK, proto, vql};

/// How far a stored queue has been read: the newest `_ts` (seconds) and
/// the fingerprints of the rows of that second already handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub ts_s: u64,
    pub seen: Vec<String>,
}

/// A cursor to keep with the event that carries it, in the same commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub org_id: String,
    pub queue: String,
    pub cursor: Cursor,
}

impl Mark {
    /// The stream position as the store keeps it.
    pub fn to_state_write(&self) -> StateWrite {
        StateWrite {
            owner: Owner::StreamPositions,
            key: position_key(&self.org_id, &self.queue),
            value: serde_json::to_vec(&self.cursor).unwrap_or_default(),
            expires_us: None,
        }
    }
}

fn position_key(org: &str, queue: &str) -> String {
    format!("cursor/{org}/{queue}")
}

/// The positions an earlier run kept for `queues` of `org`.
pub fn stored_cursors(
    store: &Store,
    org: &str,
    queues: &[String],
    now_us: u64,
) -> Result<HashMap<String, Cursor>, StoreError> {
    let mut cursors = HashMap::new();
    for queue in queues {
        if let Some(bytes) = store.state_get(&Owner::StreamPositions, &position_key(org, queue), now_us)? {
            match serde_json::from_slice::<Cursor>(&bytes) {
                Ok(cursor) => {
                    cursors.insert(queue.clone(), cursor);
                }
                Err(e) => tracing::warn!(%org, %queue, "stored stream position unreadable ({e}); starting from now"),
            }
        }
    }
    Ok(cursors)
}

/// Receives the stream's inputs (rows, and positions to keep); returns
/// false when the service is stopping.
pub type Sink = Arc<dyn Fn(Input) -> bool + Send + Sync>;

/// What one org's stream watches and how.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub org_id: String,
    pub queues: Vec<String>,
    pub heartbeat: Duration,
    pub backfill_max: Duration,
    /// Cursors kept by an earlier run, by queue.
    pub cursors: HashMap<String, Cursor>,
}

/// Starts the stream of `subscription` on the client's runtime.
pub fn spawn(client: ApiClient, subscription: Subscription, sink: Sink, clock: Clock) -> tokio::task::JoinHandle<()> {
    let runtime = client.runtime().handle().clone();
    runtime.spawn(async move { OrgStream::new(client, subscription, sink, clock).run().await })
}

/// Fingerprints of recently handled rows of one stored queue: a set to
/// look rows up in, and the same fingerprints by second to forget old ones.
#[derive(Debug, Default)]
struct Seen {
    all: HashSet<String>,
    by_second: BTreeMap<u64, Vec<String>>,
}

/// The wait before reconnecting, at first and after a session that ran for
/// at least [`HEALTHY_SESSION`]; it doubles after each short one.
const FIRST_WAIT: Duration = Duration::from_millis(250);
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// Rows older than this (before the newest) are not looked for again.
const SEEN_WINDOW_S: u64 = 600;

impl Seen {
    fn from_cursor(cursor: &Cursor) -> Self {
        let mut seen = Seen::default();
        for fingerprint in &cursor.seen {
            seen.insert(cursor.ts_s, fingerprint);
        }
        seen.by_second.entry(cursor.ts_s).or_default();
        seen
    }

    /// Records a row; false if it was handled already.
    fn insert(&mut self, ts_s: u64, fingerprint: &str) -> bool {
        if !self.all.insert(fingerprint.to_string()) {
            return false;
        }
        self.by_second.entry(ts_s).or_default().push(fingerprint.to_string());
        let horizon = self.newest().saturating_sub(SEEN_WINDOW_S);
        while let Some(entry) = self.by_second.first_entry().filter(|e| *e.key() < horizon) {
            for old in entry.remove() {
                self.all.remove(&old);
            }
        }
        true
    }

    fn newest(&self) -> u64 {
        self.by_second.keys().next_back().copied().unwrap_or(0)
    }

    fn cursor(&self) -> Cursor {
        let ts_s = self.newest();
        let mut seen: Vec<String> = self.by_second.get(&ts_s).cloned().unwrap_or_default();
        seen.sort();
        Cursor { ts_s, seen }
    }
}

struct OrgStream {
    client: ApiClient,
    sub: Subscription,
    sink: Sink,
    /// Stored (SERVER_EVENT) queues, once known.
    stored: Option<HashSet<String>>,
    seen: HashMap<String, Seen>,
    stopping: bool,
    clock: Clock,
}

impl OrgStream {
    fn new(client: ApiClient, sub: Subscription, sink: Sink, clock: Clock) -> Self {
        let seen = sub
            .cursors
            .iter()
            .map(|(q, c)| (q.clone(), Seen::from_cursor(c)))
            .collect();
        Self {
            client,
            sub,
            sink,
            stored: None,
            seen,
            stopping: false,
            clock,
        }
    }

    async fn run(mut self) {
        let mut wait = FIRST_WAIT;
        while !self.stopping {
            let started = std::time::Instant::now();
            let ended = self.session().await;
            // A session that fails at once (a server that answers, then
            // sends what the stream cannot take) must not be retried at
            // once forever: the wait starts over only after a good run.
            if started.elapsed() >= HEALTHY_SESSION {
                wait = FIRST_WAIT;
            }
            let error = match ended {
                Ok(()) => continue,
                Err(error) => error,
            };
            let wait_s = wait.as_secs_f64();
            tracing::warn!(org = %self.sub.org_id, "event stream: {error}; reconnecting in {wait_s:.1} s");
            tokio::time::sleep(wait.mul_f64(0.75 + fastrand::f64() * 0.5)).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// One connection: subscribe, catch up, then follow the stream until it
    /// fails.
    async fn session(&mut self) -> Result<(), ApiError> {
        let org = self.sub.org_id.clone();
        let mut env: Vec<(String, String)> = self
            .sub
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (format!("Queue{i}"), q.clone()))
            .collect();
        env.push((
            "HeartbeatSeconds".into(),
            self.sub.heartbeat.as_secs().max(1).to_string(),
        ));
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let mut stream = self
            .client
            .stream(&vql::event_stream(self.sub.queues.len()), &env, &org)
            .await?;
        // The server's first message (its "Starting query" log line) says
        // the watchers are in place: only then is catching up complete.
        let first = self.next(&mut stream).await?;
        tracing::info!(%org, queues = ?self.sub.queues, "subscribed to the Velociraptor event queues");
        if self.stored.is_none() {
            self.stored = Some(self.stored_queues().await);
        }
        self.catch_up().await?;
        self.absorb(first)?;
        loop {
            let response = self.next(&mut stream).await?;
            self.absorb(response)?;
            if self.stopping {
                return Ok(());
            }
        }
    }

    async fn next(&self, stream: &mut tonic::Streaming<proto::VqlResponse>) -> Result<proto::VqlResponse, ApiError> {
        let dead_after = self.sub.heartbeat * 3;
        let unavailable = |message: String| ApiError::Unavailable {
            address: self.client.address().to_string(),
            message,
        };
        match tokio::time::timeout(dead_after, stream.message()).await {
            Err(_) => Err(unavailable(format!("no heartbeat for {} s", dead_after.as_secs()))),
            Ok(Err(status)) => Err(self.client.status_error(&status)),
            Ok(Ok(None)) => Err(unavailable("the server ended the stream".into())),
            Ok(Ok(Some(response))) => Ok(response),
        }
    }

    /// Which of the subscribed queues the server stores.
    async fn stored_queues(&self) -> HashSet<String> {
        let names = serde_json::to_string(&self.sub.queues).unwrap_or_default();
        let answer = self
            .client
            .query(
                vql::ARTIFACT_TYPES,
                &[("Names", names)],
                &self.sub.org_id,
                Duration::from_secs(30),
            )
            .await;
        let mut stored: HashSet<String> = match answer {
            Ok(output) => output
                .rows()
                .iter()
                .filter(|r| {
                    r["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case("server_event"))
                })
                .filter_map(|r| r["name"].as_str().map(str::to_string))
                .collect(),
            Err(error) => {
                tracing::warn!(org = %self.sub.org_id, "could not learn the queues' types ({error}); only {ALERTS_QUEUE} will be caught up after a disconnect");
                HashSet::new()
            }
        };
        stored.extend(self.sub.queues.iter().filter(|q| *q == ALERTS_QUEUE).cloned());
        stored.retain(|q| self.sub.queues.contains(q));
        stored
    }

    /// Reads back what stored queues received since their cursor.
    async fn catch_up(&mut self) -> Result<(), ApiError> {
        let stored: Vec<String> = self.stored.iter().flatten().cloned().collect();
        let now_s = self.clock.now_us() / 1_000_000;
        for queue in stored {
            let Some(seen) = self.seen.get(&queue) else {
                // Nothing seen yet: catch up from now on, after a reconnect
                // or a restart alike, so the position is kept at once.
                let cursor = Cursor {
                    ts_s: now_s,
                    seen: vec![],
                };
                self.seen.insert(queue.clone(), Seen::from_cursor(&cursor));
                let mark = Mark {
                    org_id: self.sub.org_id.clone(),
                    queue,
                    cursor,
                };
                if !(self.sink)(Input::Position(mark)) {
                    self.stopping = true;
                }
                continue;
            };
            let since = seen.newest().max(now_s.saturating_sub(self.sub.backfill_max.as_secs()));
            let output = self
                .client
                .query(
                    vql::BACKFILL,
                    &[("Queue", queue.clone()), ("Since", since.to_string())],
                    &self.sub.org_id,
                    Duration::from_secs(120),
                )
                .await?;
            let before = self.seen.get(&queue).map_or(0, Seen::newest);
            self.report_unreadable(&output.unreadable, &format!("the catch-up of {queue}"));
            let mut handled = 0;
            for row in output.rows() {
                let Value::Object(row) = row.clone() else { continue };
                if self.handle_row(row, Some(&queue))? {
                    handled += 1;
                }
            }
            if handled > 0 {
                tracing::info!(org = %self.sub.org_id, %queue, handled, since = before, "caught up on rows written while disconnected");
            }
        }
        Ok(())
    }

    /// Handles the rows of one stream message. A row that cannot be read is
    /// reported and left out on its own: the rows beside it go on.
    fn absorb(&mut self, response: proto::VqlResponse) -> Result<(), ApiError> {
        if let Some(error) = response.log.strip_prefix("ERROR:") {
            tracing::warn!(org = %self.sub.org_id, "event stream: {}", error.trim());
        }
        if response.response.is_empty() {
            return Ok(());
        }
        let (rows, unreadable) = read_rows(&response.response)?;
        self.report_unreadable(&unreadable, "the event stream");
        for row in rows {
            if let Value::Object(row) = row {
                self.handle_row(row, None)?;
            }
        }
        Ok(())
    }

    /// Says, once per row, which rows could not be read.
    fn report_unreadable(&self, unreadable: &[String], whence: &str) {
        for reason in unreadable {
            tracing::error!(org = %self.sub.org_id, "a row from {whence} cannot be read and is left out: {reason}");
        }
    }

    /// Passes one row on unless it was handled already; `read_back` names
    /// the queue of a row read back with `source()`. True if passed on.
    fn handle_row(&mut self, mut row: Map<String, Value>, read_back: Option<&str>) -> Result<bool, ApiError> {
        let queue = match read_back {
            Some(queue) => queue.to_string(),
            None => match row.get("_Source").and_then(Value::as_str) {
                Some(queue) => queue.to_string(),
                None => return Ok(false),
            },
        };
        let own_alert = queue == ALERTS_QUEUE
            && row
                .get(PUSHED_MARK)
                .is_some_and(|m| m.as_str().is_some_and(|m| !m.is_empty()));
        if queue == vql::HEARTBEAT_SOURCE || own_alert {
            return Ok(false);
        }
        let ts_s = row_seconds(&row);
        // Rows read back carry `_ts` in milliseconds and may lack `_Source`.
        row.insert("_Source".into(), Value::String(queue.clone()));
        row.insert("_ts".into(), Value::from(ts_s));
        let fingerprint = fingerprint(&row);
        let mark = match self.seen.get_mut(&queue) {
            Some(seen) => {
                if !seen.insert(ts_s, &fingerprint) {
                    return Ok(false);
                }
                Some(Mark {
                    org_id: self.sub.org_id.clone(),
                    queue: queue.clone(),
                    cursor: seen.cursor(),
                })
            }
            None => None,
        };
        let event = IncomingEvent {
            id: format!("api:{}:{queue}:{ts_s}:{}", self.sub.org_id, &fingerprint[..12]),
            queue,
            row: Value::Object(row).to_string(),
            org_id: self.sub.org_id.clone(),
            ts_us: Some(ts_s * 1_000_000),
        };
        if !(self.sink)(Input::Event(event, mark)) {
            self.stopping = true;
        }
        Ok(true)
    }
}

/// A row's `_ts` in seconds: live rows carry seconds, rows read back from
/// a stored queue milliseconds.
fn row_seconds(row: &Map<String, Value>) -> u64 {
    let ts = row.get("_ts").and_then(Value::as_f64).unwrap_or(0.0);
    let seconds = if ts > 1e11 { ts / 1000.0 } else { ts };
    seconds.max(0.0) as u64
}

/// The same row read live or read back gives the same fingerprint: the
/// queue decorations are left out and the columns put in order.
fn fingerprint(row: &Map<String, Value>) -> String {
    let columns: BTreeMap<&String, &Value> = row.iter().filter(|(k, _)| *k != "_ts" && *k != "_Source").collect();
    let digest = Sha256::digest(serde_json::to_vec(&columns).unwrap_or_default());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_row_read_back_has_the_fingerprint_it_had_live() {
        let live = object(json!({"name": "a", "event_data": {"x": 1}, "_ts": 1767000000, "_Source": ALERTS_QUEUE}));
        let back = object(json!({"event_data": {"x": 1}, "name": "a", "_ts": 1767000000123u64}));
        assert_eq!(fingerprint(&live), fingerprint(&back));
        assert_eq!(row_seconds(&live), row_seconds(&back));
        let other = object(json!({"name": "b", "event_data": {"x": 1}}));
        assert_ne!(fingerprint(&live), fingerprint(&other));
    }

    #[test]
    fn seen_rows_are_recognised_and_the_cursor_keeps_the_last_second() {
        let mut seen = Seen::from_cursor(&Cursor {
            ts_s: 100,
            seen: vec!["a".into()],
        });
        assert!(!seen.insert(100, "a"), "kept from the earlier run");
        assert!(seen.insert(100, "b"));
        assert!(seen.insert(101, "c"));
        assert!(!seen.insert(101, "b"), "a row comes once whatever its second");
        assert_eq!(
            seen.cursor(),
            Cursor {
                ts_s: 101,
                seen: vec!["c".into()]
            }
        );
        assert!(seen.insert(100 + SEEN_WINDOW_S + 5, "d"));
        assert!(seen.insert(100, "a"), "forgotten after the window");
    }
}
