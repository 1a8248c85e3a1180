//! Events from a Velociraptor server: one `watch_monitoring()` stream per
//! org over every queue its modules subscribe to, with heartbeats,
//! reconnection with backoff, and catch-up of server event queues.
//!
//! `watch_monitoring()` only sees rows written while it runs. Server event
//! queues (`Server.Internal.Alerts` and other SERVER_EVENT artifacts) are
//! also stored on the server, so after a disconnect (or a restart of
//! velonotify) the rows written meanwhile are read back with `source()`
//! from the last second seen, a page at a time. Rows that arrive both live
//! and read back are recognised by a key of their content, their second
//! and how many identical rows came before them in that second: rows that
//! only look alike (the same row published twice, even in the same second)
//! stay apart. The server starts watching a moment after the stream starts,
//! so each stream reads back once more two seconds in.
//!
//! Client event queues (`System.Flow.Completion` among them) are stored per
//! client and internal ones not at all: they cannot be read back
//! fleet-wide. A gap in them (a cut, or velonotify stopped) is logged with
//! its times; where the stream was last alive is kept once a minute.
//!
//! Times are the server's: the position of a queue that has none yet starts
//! at the server's clock (read from its answers), so a server whose clock
//! is behind the host's loses no gap; a difference is logged.
//!
//! Rows go to the pipeline a stream message (or a page) at a time, with the
//! positions they reach, and are committed together.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{IncomingEvent, Input};
use crate::clock::Clock;
use crate::store::{Fence, Owner, StateWrite, Store, StoreError};
use crate::velociraptor::client::{ApiClient, ApiError, problem, read_rows};
use crate::velociraptor::{ALERTS_QUEUE, PUSHED_MARK, proto, vql};

/// How far a stored queue has been read: the newest second (`_ts`) whose
/// rows were handled, and which of that second's rows they were: their
/// keys, or, when there were more than [`MAX_CURSOR_KEYS`], how many (the
/// first that many of the second, in the order the server keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub ts_s: u64,
    pub seen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Keys a cursor keeps at most (a position must fit a state value).
pub const MAX_CURSOR_KEYS: usize = 2000;

/// A cursor to keep with the events that reach it, in the same commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub org_id: String,
    pub queue: String,
    pub cursor: Cursor,
    /// The stream's lease the rows were read under (None: not fenced).
    pub fence: Option<Fence>,
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
    /// The lease this replica reads the stream under: its positions are
    /// stored only while it holds it so.
    pub fence: Option<Fence>,
}

/// Starts the stream of `subscription` on the client's runtime, read
/// whenever this replica holds its `lease`, from the positions stored when
/// it takes it.
pub fn spawn(
    client: ApiClient,
    subscription: Subscription,
    sink: Sink,
    clock: Clock,
    lease: StreamLease,
) -> tokio::task::JoinHandle<()> {
    let runtime = client.runtime().handle().clone();
    runtime.spawn(async move {
        let org = subscription.org_id.clone();
        loop {
            let fence = lease.hold(&clock).await;
            let cursors = match lease.stored_cursors(&subscription, &clock).await {
                Ok(cursors) => cursors,
                Err(error) => {
                    tracing::warn!(%org, %error, "stream positions unreadable; trying again");
                    tokio::time::sleep(LEASE_POLL).await;
                    continue;
                }
            };
            let turn = Subscription {
                cursors,
                fence: Some(fence.clone()),
                ..subscription.clone()
            };
            let stream = OrgStream::new(client.clone(), turn, sink.clone(), clock.clone());
            tokio::select! {
                () = stream.run() => return,
                () = lease.lost(&fence) => {
                    tracing::warn!(%org, "another replica took this org's event stream; this one stops reading it");
                }
            }
        }
    })
}

/// How often a replica waiting for a stream looks whether its holder
/// died, and a holder whether it still holds it.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// One org's stream is read by one replica at a time: the one holding
/// this lease (`store/replicas.rs`).
#[derive(Debug, Clone)]
pub struct StreamLease {
    store: Arc<Store>,
    replica: String,
    name: String,
}

impl StreamLease {
    pub fn new(store: Arc<Store>, replica: &str, org: &str) -> Self {
        Self {
            store,
            replica: replica.to_string(),
            name: lease_name(org),
        }
    }

    /// Waits until this replica holds the lease; returns it as held.
    async fn hold(&self, clock: &Clock) -> Fence {
        let mut said = false;
        loop {
            match self.take(clock).await {
                Ok(Some(fence)) => {
                    tracing::info!(lease = %self.name, replica = %self.replica, "this replica reads the stream");
                    return fence;
                }
                Ok(None) if !said => {
                    tracing::info!(lease = %self.name, "another replica reads the stream; waiting to take over");
                    said = true;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(lease = %self.name, %error, "could not ask for the stream's lease"),
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// Returns once another replica has taken the lease (a store that
    /// cannot be asked is not taken for a loss: the others take over only
    /// once this replica's beats have stopped for the timeout).
    async fn lost(&self, fence: &Fence) {
        loop {
            tokio::time::sleep(LEASE_POLL).await;
            let (store, fence) = (self.store.clone(), fence.clone());
            let held = tokio::task::spawn_blocking(move || store.still_holds(&fence)).await;
            if let Ok(Ok(false)) = held {
                return;
            }
        }
    }

    async fn take(&self, clock: &Clock) -> Result<Option<Fence>, StoreError> {
        let (store, name, replica, now_us) = (
            self.store.clone(),
            self.name.clone(),
            self.replica.clone(),
            clock.now_us(),
        );
        tokio::task::spawn_blocking(move || store.take_lease(&name, &replica, now_us))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    async fn stored_cursors(
        &self,
        subscription: &Subscription,
        clock: &Clock,
    ) -> Result<HashMap<String, Cursor>, StoreError> {
        let (store, org, queues, now_us) = (
            self.store.clone(),
            subscription.org_id.clone(),
            subscription.queues.clone(),
            clock.now_us(),
        );
        tokio::task::spawn_blocking(move || stored_cursors(&store, &org, &queues, now_us))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// The lease of one org's stream.
pub fn lease_name(org: &str) -> String {
    format!("stream/{org}")
}

/// The rows of one stored queue handled lately: their keys, by second, to
/// recognise a row that comes both live and read back.
#[derive(Debug, Default)]
struct Seen {
    keys: HashSet<RowKey>,
    by_second: BTreeMap<u64, Vec<RowKey>>,
    /// How many rows of each second and content were handled.
    alike: HashMap<(u64, [u8; 12]), u32>,
    /// Rows of a second known only by their number (a cursor that had too
    /// many to keep their keys): the first that many read back are skipped.
    counted: Option<(u64, u64)>,
}

/// A row's identity: its second, its content, and how many rows identical
/// to it came before it in that second (in one pass over the queue).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RowKey {
    ts_s: u64,
    content: [u8; 12],
    occurrence: u32,
}

impl RowKey {
    fn text(&self) -> String {
        let hex: String = self.content.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}#{}", self.occurrence)
    }

    fn parse(ts_s: u64, text: &str) -> Option<Self> {
        let (hex, occurrence) = text.split_once('#').unwrap_or((text, "0"));
        let mut content = [0u8; 12];
        for (i, byte) in content.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(Self {
            ts_s,
            content,
            occurrence: occurrence.parse().ok()?,
        })
    }
}

/// The wait before reconnecting, at first and after a session that ran for
/// at least [`HEALTHY_SESSION`]; it doubles after each short one.
const FIRST_WAIT: Duration = Duration::from_millis(250);
const HEALTHY_SESSION: Duration = Duration::from_secs(10);

/// Rows older than this (before the newest) are not looked for again.
const SEEN_WINDOW_S: u64 = 600;

/// How far before the newest row handled a read-back starts. Rows of one
/// queue are not written in the order of their `_ts` (writers race), so a
/// row dated a little before the newest may be written after it; the rows
/// of those seconds are known and recognised when read again.
const REORDER_SLACK_S: u64 = 60;

/// How much earlier than the session's start a row the catch-up reads may
/// be dated and still come live too (its second, and the writers' race).
const OVERLAP_TOLERANCE_S: u64 = 5;

/// Rows read back per query at first; a page of a single second doubles.
const FIRST_PAGE_ROWS: usize = 5000;

/// How far ahead of the server's clock a row may be dated (seconds).
const FUTURE_TOLERANCE_S: u64 = 300;

/// How often, at most, where the stream was last alive is kept (seconds).
const KEEP_ALIVE_EVERY_S: u64 = 60;

/// When, after a stream starts, the rows written before the server watched
/// its queues are read back: once when it surely watches them, and once
/// more for a loaded server that took longer (rows read back twice are
/// recognised, as those that come both live and read back are).
const WATCHERS_SETTLE: [Duration; 2] = [Duration::from_secs(2), Duration::from_secs(10)];

/// A server clock further than this from the host's is logged.
const NOTABLE_SKEW: Duration = Duration::from_secs(30);

impl Seen {
    fn from_cursor(cursor: &Cursor) -> Self {
        let mut seen = Seen::default();
        for key in cursor.seen.iter().filter_map(|k| RowKey::parse(cursor.ts_s, k)) {
            seen.insert(key);
        }
        if let Some(count) = cursor.count {
            seen.counted = Some((cursor.ts_s, count));
        }
        seen.by_second.entry(cursor.ts_s).or_default();
        seen
    }

    /// Records a row; false if it was handled already.
    fn insert(&mut self, key: RowKey) -> bool {
        if !self.keys.insert(key.clone()) {
            return false;
        }
        *self.alike.entry((key.ts_s, key.content)).or_default() += 1;
        self.by_second.entry(key.ts_s).or_default().push(key);
        let horizon = self.newest().saturating_sub(SEEN_WINDOW_S);
        while let Some(entry) = self.by_second.first_entry().filter(|e| *e.key() < horizon) {
            for old in entry.remove() {
                self.alike.remove(&(old.ts_s, old.content));
                self.keys.remove(&old);
            }
        }
        true
    }

    /// The key of a live row: live rows are all new (but for the overlap
    /// with a catch-up), so it is the next of its second and content
    /// after those handled, whichever way they came.
    fn next_live_key(&self, ts_s: u64, content: [u8; 12]) -> RowKey {
        RowKey {
            ts_s,
            content,
            occurrence: self.alike.get(&(ts_s, content)).copied().unwrap_or(0),
        }
    }

    /// Whether a row read back is among the first of its second that a
    /// cursor knew only by their number.
    fn counted_before(&self, ts_s: u64, index_in_second: u64) -> bool {
        self.counted
            .is_some_and(|(second, count)| second == ts_s && index_in_second < count)
    }

    fn newest(&self) -> u64 {
        self.by_second.keys().next_back().copied().unwrap_or(0)
    }

    /// Where reading the queue back starts: [`REORDER_SLACK_S`] before the
    /// newest second, but not before the rows known (after a restart, only
    /// the cursor's second is).
    fn read_back_from(&self) -> u64 {
        let oldest = self.by_second.keys().next().copied().unwrap_or(0);
        self.newest().saturating_sub(REORDER_SLACK_S).max(oldest)
    }

    /// The position to keep: the newest second and its rows (their keys,
    /// or their number past [`MAX_CURSOR_KEYS`]).
    fn cursor(&self) -> Cursor {
        let ts_s = self.newest();
        let keys = self.by_second.get(&ts_s).map(Vec::as_slice).unwrap_or_default();
        let counted = match self.counted {
            Some((second, count)) if second == ts_s => count,
            _ => 0,
        };
        if keys.len() <= MAX_CURSOR_KEYS && counted == 0 {
            let mut seen: Vec<String> = keys.iter().map(RowKey::text).collect();
            seen.sort();
            return Cursor {
                ts_s,
                seen,
                count: None,
            };
        }
        Cursor {
            ts_s,
            seen: Vec::new(),
            count: Some(counted.max(keys.len() as u64)),
        }
    }
}

/// Counts identical rows within one pass over a queue (a live session, or
/// one catch-up), so that the n-th identical row of a second has the same
/// key whichever way it comes.
#[derive(Debug, Default)]
struct Pass {
    occurrences: HashMap<(u64, [u8; 12]), u32>,
    /// Rows of each second so far (read back: their order in the queue).
    per_second: HashMap<u64, u64>,
}

impl Pass {
    fn key(&mut self, ts_s: u64, content: [u8; 12]) -> (RowKey, u64) {
        let occurrence = self.occurrences.entry((ts_s, content)).or_default();
        let key = RowKey {
            ts_s,
            content,
            occurrence: *occurrence,
        };
        *occurrence += 1;
        let index = self.per_second.entry(ts_s).or_default();
        let in_second = *index;
        *index += 1;
        (key, in_second)
    }
}

/// The rows of one message or page on their way to the pipeline, with the
/// positions they reach.
#[derive(Debug, Default)]
struct Outgoing {
    events: Vec<IncomingEvent>,
    queues: Vec<String>,
}

struct OrgStream {
    client: ApiClient,
    sub: Subscription,
    sink: Sink,
    /// Stored (SERVER_EVENT) queues, once known.
    stored: Option<HashSet<String>>,
    /// Per stored queue, the rows handled lately.
    seen: HashMap<String, Seen>,
    /// Per queue that cannot be read back, the server's second of the
    /// stream's last message: where a gap in it starts.
    alive_until_s: HashMap<String, u64>,
    /// When `alive_until_s` was last kept in the store.
    alive_kept_s: u64,
    /// The live rows of the session in progress.
    live: Pass,
    /// Per stored queue, the rows this session's catch-up handled that may
    /// come live too (see [`OrgStream::overlaps_catch_up`]).
    overlap: HashMap<String, HashMap<(u64, [u8; 12]), u32>>,
    /// The read-back in progress is the catch-up of a session start.
    catching_up: bool,
    /// The server's second of the session's first message (the watchers
    /// come right after it): rows dated well before cannot come live.
    session_started_s: u64,
    /// The server's second the catch-up ended at: live rows dated later
    /// cannot be in it.
    caught_up_s: u64,
    stopping: bool,
    clock: Clock,
    /// The server's clock minus the host's, in µs, from its answers.
    server_offset_us: i64,
    skew_logged: bool,
}

impl OrgStream {
    fn new(client: ApiClient, sub: Subscription, sink: Sink, clock: Clock) -> Self {
        Self {
            client,
            sub,
            sink,
            stored: None,
            seen: HashMap::new(),
            alive_until_s: HashMap::new(),
            alive_kept_s: 0,
            live: Pass::default(),
            overlap: HashMap::new(),
            catching_up: false,
            session_started_s: 0,
            caught_up_s: 0,
            stopping: false,
            clock,
            server_offset_us: 0,
            skew_logged: false,
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
        self.live = Pass::default();
        // The server's first message (its "Starting query" log line) says
        // the watchers are in place: only then is catching up complete.
        let first = self.next(&mut stream).await?;
        self.learn_server_clock(&first);
        self.session_started_s = self.server_now_s();
        tracing::info!(%org, queues = ?self.sub.queues, "subscribed to the Velociraptor event queues");
        if self.stored.is_none() {
            self.stored = Some(self.stored_queues().await);
            self.take_kept_positions();
        }
        self.report_gaps();
        let reached = self.catch_up().await?;
        self.absorb(first)?;
        // The server starts watching a queue a moment after the query
        // starts: rows written in between come neither live nor in the
        // catch-up above. Reading back once more from where it ended, once
        // the watchers are surely in place, finds them; the rows that came
        // both ways are recognised.
        let started = tokio::time::Instant::now();
        let mut settles = WATCHERS_SETTLE.iter().map(|after| started + *after);
        let mut read_again_at = settles.next();
        loop {
            let message = match read_again_at {
                Some(at) => tokio::select! {
                    message = self.next(&mut stream) => Some(message?),
                    () = tokio::time::sleep_until(at) => None,
                },
                None => Some(self.next(&mut stream).await?),
            };
            match message {
                Some(response) => self.absorb(response)?,
                None => {
                    read_again_at = settles.next();
                    for (queue, since) in &reached {
                        self.read_back(queue, *since, "written while the server started watching")
                            .await?;
                    }
                }
            }
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

    /// Takes the server's clock from the time it stamps an answer with, and
    /// says once when it is far from the host's.
    fn learn_server_clock(&mut self, response: &proto::VqlResponse) {
        if response.timestamp == 0 {
            return;
        }
        let server = i64::try_from(response.timestamp).unwrap_or(i64::MAX);
        let host = i64::try_from(self.clock.now_us()).unwrap_or(i64::MAX);
        self.server_offset_us = server.saturating_sub(host);
        let skew = Duration::from_micros(self.server_offset_us.unsigned_abs());
        if skew > NOTABLE_SKEW && !self.skew_logged {
            self.skew_logged = true;
            let way = if self.server_offset_us < 0 {
                "behind"
            } else {
                "ahead of"
            };
            tracing::warn!(
                org = %self.sub.org_id,
                "the Velociraptor server's clock is {} s {way} this host's; stream positions follow the server's",
                skew.as_secs()
            );
        }
    }

    /// The server's time now, in seconds.
    fn server_now_s(&self) -> u64 {
        let host = i64::try_from(self.clock.now_us()).unwrap_or(i64::MAX);
        u64::try_from(host.saturating_add(self.server_offset_us)).unwrap_or(0) / 1_000_000
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
            Ok(output) if output.rows().is_empty() && !output.problems().is_empty() => {
                let problems = output.problems().join("; ");
                tracing::warn!(org = %self.sub.org_id, "could not learn the queues' types ({problems}); only {ALERTS_QUEUE} will be caught up after a disconnect");
                HashSet::new()
            }
            Ok(output) => {
                let types = queue_types(output.rows());
                self.report_queues_without_events(&types);
                types
                    .into_iter()
                    .filter(|(_, kind)| kind.eq_ignore_ascii_case("server_event"))
                    .map(|(name, _)| name)
                    .collect()
            }
            Err(error) => {
                tracing::warn!(org = %self.sub.org_id, "could not learn the queues' types ({error}); only {ALERTS_QUEUE} will be caught up after a disconnect");
                HashSet::new()
            }
        };
        stored.extend(self.sub.queues.iter().filter(|q| *q == ALERTS_QUEUE).cloned());
        stored.retain(|q| self.sub.queues.contains(q));
        stored
    }

    /// Says which subscribed queues will never carry a row: the server's
    /// `watch_monitoring()` ends quietly on a name it does not know and
    /// never fires for an artifact that is not an event artifact.
    fn report_queues_without_events(&self, types: &HashMap<String, String>) {
        for queue in &self.sub.queues {
            match types.get(queue) {
                None if queue == ALERTS_QUEUE => {}
                None => tracing::error!(org = %self.sub.org_id, %queue,
                    "the Velociraptor server does not know the queue {queue:?} (misspelt, or not in this org?): \
                     no row will come from it"),
                Some(kind) if !kind.to_ascii_lowercase().ends_with("_event") => tracing::error!(
                    org = %self.sub.org_id, %queue,
                    "{queue:?} is a {kind} artifact, not an event queue: no row will come from it; \
                     watch an event artifact (SERVER_EVENT or CLIENT_EVENT)"),
                Some(_) => {}
            }
        }
    }

    /// The positions an earlier run kept: a stored queue's rows, or where
    /// the stream of another queue was last alive.
    fn take_kept_positions(&mut self) {
        let stored = self.stored.clone().unwrap_or_default();
        for (queue, cursor) in std::mem::take(&mut self.sub.cursors) {
            if stored.contains(&queue) {
                self.seen.insert(queue, Seen::from_cursor(&cursor));
            } else {
                self.alive_until_s.insert(queue, cursor.ts_s);
            }
        }
    }

    fn not_stored(&self) -> Vec<String> {
        let stored = self.stored.as_ref();
        self.sub
            .queues
            .iter()
            .filter(|q| stored.is_none_or(|s| !s.contains(*q)))
            .cloned()
            .collect()
    }

    /// Says, per queue that cannot be read back (client event queues are
    /// stored per client, internal ones not at all), which stretch of its
    /// rows this stream missed: from its last message before the cut (or
    /// before the last run stopped, to the minute) to now.
    fn report_gaps(&self) {
        let now_s = self.server_now_s();
        for queue in self.not_stored() {
            let Some(&from_s) = self.alive_until_s.get(&queue) else {
                continue;
            };
            if from_s > now_s {
                continue;
            }
            tracing::warn!(org = %self.sub.org_id, %queue, from_s, to_s = now_s,
                "event stream: rows of {queue} written between {} and {} (server time) were not received and \
                 cannot be read back: it is not a server event queue; look at that stretch in Velociraptor",
                utc(from_s), utc(now_s));
        }
    }

    /// Notes that the stream was alive at the server's second `now_s` for
    /// the queues that cannot be read back, and keeps it in the store once
    /// a minute, so a restart knows where its gap starts.
    fn note_alive(&mut self, now_s: u64) {
        let queues = self.not_stored();
        for queue in &queues {
            self.alive_until_s.insert(queue.clone(), now_s);
        }
        if queues.is_empty() || now_s < self.alive_kept_s.saturating_add(KEEP_ALIVE_EVERY_S) {
            return;
        }
        self.alive_kept_s = now_s;
        let marks = queues
            .into_iter()
            .map(|queue| Mark {
                org_id: self.sub.org_id.clone(),
                fence: self.sub.fence.clone(),
                queue,
                cursor: Cursor {
                    ts_s: now_s,
                    ..Cursor::default()
                },
            })
            .collect();
        self.deliver(Input::Rows(Vec::new(), marks));
    }

    /// Reads back what stored queues received since their cursor. Returns
    /// the second each queue's next read-back starts from.
    async fn catch_up(&mut self) -> Result<Vec<(String, u64)>, ApiError> {
        self.overlap.clear();
        self.catching_up = true;
        let caught_up = self.catch_up_stored().await;
        self.catching_up = false;
        self.caught_up_s = self.server_now_s() + 1;
        caught_up
    }

    async fn catch_up_stored(&mut self) -> Result<Vec<(String, u64)>, ApiError> {
        let stored: Vec<String> = self.stored.iter().flatten().cloned().collect();
        let now_s = self.server_now_s();
        for queue in &stored {
            let queue = queue.clone();
            let Some(seen) = self.seen.get(&queue) else {
                // Nothing seen yet: catch up from now on (the server's now),
                // after a reconnect or a restart alike, so the position is
                // kept at once.
                let cursor = Cursor {
                    ts_s: now_s,
                    ..Cursor::default()
                };
                self.seen.insert(queue.clone(), Seen::from_cursor(&cursor));
                let mark = Mark {
                    org_id: self.sub.org_id.clone(),
                    fence: self.sub.fence.clone(),
                    queue,
                    cursor,
                };
                self.deliver(Input::Position(mark));
                continue;
            };
            let since = seen
                .read_back_from()
                .max(now_s.saturating_sub(self.sub.backfill_max.as_secs()));
            self.read_back(&queue, since, "written while disconnected").await?;
        }
        Ok(stored
            .into_iter()
            .filter_map(|queue| {
                let since = self.seen.get(&queue)?.read_back_from();
                Some((queue, since))
            })
            .collect())
    }

    /// Reads `queue` back from second `since`, a page at a time: each page
    /// from the last second of the one before (its rows recognised), a page
    /// that a single second fills twice as large.
    async fn read_back(&mut self, queue: &str, mut since: u64, whence: &str) -> Result<(), ApiError> {
        let mut page_rows = FIRST_PAGE_ROWS;
        let (mut read, mut handled) = (0, 0);
        loop {
            let output = self
                .client
                .query(
                    &vql::backfill_page(page_rows),
                    &[("Queue", queue.to_string()), ("Since", since.to_string())],
                    &self.sub.org_id,
                    Duration::from_secs(120),
                )
                .await?;
            self.report_unreadable(&output.unreadable, &format!("the catch-up of {queue}"));
            let rows = output.rows();
            let last_second = rows.last().and_then(Value::as_object).map(row_seconds);
            let mut pass = Pass::default();
            let mut out = Outgoing::default();
            for row in rows {
                if let Value::Object(row) = row
                    && self.take_row(row.clone(), Some(queue), &mut pass, &mut out)
                {
                    handled += 1;
                }
            }
            read += rows.len();
            self.send(out);
            if rows.len() + output.unreadable.len() < page_rows {
                break;
            }
            match last_second {
                Some(second) if second > since => since = second,
                _ => page_rows = page_rows.saturating_mul(2),
            }
        }
        if handled > 0 {
            tracing::info!(org = %self.sub.org_id, %queue, read, handled, already_handled = read - handled,
                "caught up on rows {whence}");
        }
        Ok(())
    }

    /// Handles the rows of one stream message. A row that cannot be read is
    /// reported and left out on its own: the rows beside it go on.
    fn absorb(&mut self, response: proto::VqlResponse) -> Result<(), ApiError> {
        self.learn_server_clock(&response);
        if self.stored.is_some() {
            self.note_alive(self.server_now_s());
        }
        // A branch of the stream that fails (a queue the server does not
        // know) says so in a log line, plain or ERROR, and ends quietly.
        if let Some(problem) = problem(&response.log) {
            tracing::warn!(org = %self.sub.org_id, "event stream: {problem}");
        }
        if response.response.is_empty() {
            return Ok(());
        }
        let (rows, unreadable) = read_rows(&response.response)?;
        self.report_unreadable(&unreadable, "the event stream");
        let mut pass = std::mem::take(&mut self.live);
        let mut out = Outgoing::default();
        for row in rows {
            if let Value::Object(row) = row {
                self.take_row(row, None, &mut pass, &mut out);
            }
        }
        self.live = pass;
        self.send(out);
        Ok(())
    }

    /// Says, once per row, which rows could not be read.
    fn report_unreadable(&self, unreadable: &[String], whence: &str) {
        for reason in unreadable {
            tracing::error!(org = %self.sub.org_id, "a row from {whence} cannot be read and is left out: {reason}");
        }
    }

    /// Adds one row to `out` unless it was handled already; `read_back`
    /// names the queue of a row read back with `source()`. True if added.
    fn take_row(
        &mut self,
        mut row: Map<String, Value>,
        read_back: Option<&str>,
        pass: &mut Pass,
        out: &mut Outgoing,
    ) -> bool {
        let queue = match read_back {
            Some(queue) => queue.to_string(),
            None => match row.get("_Source").and_then(Value::as_str) {
                Some(queue) => queue.to_string(),
                None => return false,
            },
        };
        let own_alert = queue == ALERTS_QUEUE
            && row
                .get(PUSHED_MARK)
                .is_some_and(|m| m.as_str().is_some_and(|m| !m.is_empty()));
        if queue == vql::HEARTBEAT_SOURCE || own_alert {
            return false;
        }
        let ts_s = self.plausible_second(row_seconds(&row), &queue);
        // Rows read back carry `_ts` in milliseconds and may lack `_Source`.
        row.insert("_Source".into(), Value::String(queue.clone()));
        row.insert("_ts".into(), Value::from(ts_s));
        let content = fingerprint(&row);
        // A live row the catch-up of this session handled already.
        if read_back.is_none() && self.seen.contains_key(&queue) && self.overlaps_catch_up(&queue, ts_s, content) {
            return false;
        }
        let key = match (self.seen.get_mut(&queue), read_back) {
            // A stored queue read back: the n-th such row of its second in
            // the queue (a page starts at a whole second).
            (Some(seen), Some(_)) => {
                let (key, in_second) = pass.key(ts_s, content);
                if seen.counted_before(ts_s, in_second) || !seen.insert(key.clone()) {
                    return false;
                }
                // Only rows written since the watchers (give or take the
                // writers' race) can come live too.
                if self.catching_up && ts_s + OVERLAP_TOLERANCE_S >= self.session_started_s {
                    *self
                        .overlap
                        .entry(queue.clone())
                        .or_default()
                        .entry((ts_s, content))
                        .or_default() += 1;
                }
                key
            }
            (Some(seen), None) => {
                let key = seen.next_live_key(ts_s, content);
                seen.insert(key.clone());
                key
            }
            // Not stored: the key only names the event.
            (None, _) => pass.key(ts_s, content).0,
        };
        if self.seen.contains_key(&queue) && !out.queues.contains(&queue) {
            out.queues.push(queue.clone());
        }
        out.events.push(IncomingEvent {
            id: format!("api:{}:{queue}:{ts_s}:{}", self.sub.org_id, key.text()),
            queue,
            row: Value::Object(row).to_string(),
            org_id: self.sub.org_id.clone(),
            ts_us: Some(ts_s.saturating_mul(1_000_000)),
        });
        true
    }

    /// Whether a live row of a stored queue is one the catch-up already
    /// handled. The server watches before the catch-up reads the queue, so
    /// the rows written in between come both ways. A live row dated no
    /// later than the catch-up's end that matches a row the catch-up
    /// handled (dated since the session started, give or take the writers'
    /// race) is that row, once. (The same row written again within that
    /// second would be taken for it: the price of not doubling every row
    /// of the overlap.) The rows to match are forgotten at the next
    /// catch-up.
    fn overlaps_catch_up(&mut self, queue: &str, ts_s: u64, content: [u8; 12]) -> bool {
        let Some(pending) = self.overlap.get_mut(queue) else {
            return false;
        };
        // Dated after the catch-up ended: new (a row dated ahead of its
        // time does not end the matching for those that follow).
        if ts_s > self.caught_up_s {
            return false;
        }
        match pending.get_mut(&(ts_s, content)) {
            Some(count) if *count > 0 => {
                *count -= 1;
                true
            }
            _ => false,
        }
    }

    /// A row's second, as far as positions go: a row dated further ahead
    /// of the server's clock than [`FUTURE_TOLERANCE_S`] (a client's or a
    /// detection's own `_ts`) would move its queue's position past rows
    /// still to come, so it counts as written now, and is said.
    fn plausible_second(&self, ts_s: u64, queue: &str) -> u64 {
        let latest = self.server_now_s().saturating_add(FUTURE_TOLERANCE_S);
        if ts_s <= latest {
            return ts_s;
        }
        tracing::warn!(org = %self.sub.org_id, %queue, ts_s,
            "a row dated {} s ahead of the server's clock counts as written now", ts_s - self.server_now_s());
        self.server_now_s()
    }

    /// Hands the rows of one message or page to the pipeline with the
    /// positions of their stored queues.
    fn send(&mut self, out: Outgoing) {
        if out.events.is_empty() {
            return;
        }
        let marks = out
            .queues
            .into_iter()
            .filter_map(|queue| {
                let cursor = self.seen.get(&queue)?.cursor();
                Some(Mark {
                    org_id: self.sub.org_id.clone(),
                    fence: self.sub.fence.clone(),
                    queue,
                    cursor,
                })
            })
            .collect();
        self.deliver(Input::Rows(out.events, marks));
    }

    fn deliver(&mut self, input: Input) {
        if !(self.sink)(input) {
            self.stopping = true;
        }
    }
}

/// A second as an RFC 3339 UTC time.
fn utc(second: u64) -> String {
    i64::try_from(second)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| format!("{second} s"), |t| t.to_string())
}

/// `name` -> `type` of the rows of [`vql::ARTIFACT_TYPES`].
fn queue_types(rows: &[Value]) -> HashMap<String, String> {
    rows.iter()
        .filter_map(|r| Some((r["name"].as_str()?.to_string(), r["type"].as_str()?.to_string())))
        .collect()
}

/// A row's `_ts` in seconds: live rows carry seconds, rows read back from
/// a stored queue milliseconds.
fn row_seconds(row: &Map<String, Value>) -> u64 {
    let ts = row.get("_ts").and_then(Value::as_f64).unwrap_or(0.0);
    let seconds = if ts > 1e11 { ts / 1000.0 } else { ts };
    (seconds.max(0.0) as u64).min(crate::clock::LATEST_S)
}

/// The same row read live or read back gives the same fingerprint: the
/// queue decorations are left out (the row's second is part of its key)
/// and the columns put in order.
fn fingerprint(row: &Map<String, Value>) -> [u8; 12] {
    let columns: BTreeMap<&String, &Value> = row.iter().filter(|(k, _)| *k != "_ts" && *k != "_Source").collect();
    let digest = Sha256::digest(serde_json::to_vec(&columns).unwrap_or_default());
    let mut content = [0u8; 12];
    content.copy_from_slice(&digest[..12]);
    content
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

    fn content(n: u8) -> [u8; 12] {
        [n; 12]
    }

    /// The same row published twice, in the same second or seconds apart,
    /// is two rows; the same row seen live and read back is one.
    #[test]
    fn rows_alike_stay_apart_and_a_row_read_back_is_recognised() {
        let mut seen = Seen::default();
        let mut live = Pass::default();
        let (a0, _) = live.key(100, content(1));
        let (a1, _) = live.key(100, content(1));
        let (a_later, _) = live.key(105, content(1));
        assert!(seen.insert(a0) && seen.insert(a1) && seen.insert(a_later), "three rows");
        let mut back = Pass::default();
        for (second, expected_new) in [(100, false), (100, false), (100, true), (105, false)] {
            let (key, _) = back.key(second, content(1));
            assert_eq!(seen.insert(key), expected_new, "second {second}");
        }
    }

    /// A catch-up read a row of second 100; the same row written again in
    /// that second then comes live: it is the second such row, not the
    /// first seen again (a new session's count would start at zero).
    #[test]
    fn a_live_row_alike_one_read_back_is_counted_after_it() {
        let mut seen = Seen::default();
        let (read_back, _) = Pass::default().key(100, content(1));
        assert!(seen.insert(read_back.clone()));
        let live = seen.next_live_key(100, content(1));
        assert_ne!(live, read_back);
        assert!(seen.insert(live), "a new row");
        // Read back again (a cut): both are recognised.
        let mut again = Pass::default();
        assert!(!seen.insert(again.key(100, content(1)).0));
        assert!(!seen.insert(again.key(100, content(1)).0));
    }

    /// A row dated before the newest handled may be written after it: a
    /// read-back starts a minute back, within the rows known, and after a
    /// restart at the cursor's second (the only one known).
    #[test]
    fn a_read_back_starts_before_the_newest_row_within_what_is_known() {
        let mut seen = Seen::default();
        let mut pass = Pass::default();
        for second in [1_000, 1_030, 1_100] {
            seen.insert(pass.key(second, content(1)).0);
        }
        assert_eq!(seen.read_back_from(), 1_040);
        seen.insert(pass.key(1_120, content(1)).0);
        assert_eq!(seen.read_back_from(), 1_060);
        assert_eq!(Seen::from_cursor(&seen.cursor()).read_back_from(), 1_120);
        let mut young = Seen::default();
        young.insert(pass.key(1_010, content(2)).0);
        young.insert(pass.key(1_030, content(2)).0);
        assert_eq!(young.read_back_from(), 1_010, "not before the first row known");
    }

    #[test]
    fn the_cursor_keeps_the_keys_of_the_last_second_and_a_restart_recognises_them() {
        let mut seen = Seen::default();
        let mut pass = Pass::default();
        for (second, row) in [(100, 1), (101, 2), (101, 2), (101, 3)] {
            seen.insert(pass.key(second, content(row)).0);
        }
        let cursor = seen.cursor();
        assert_eq!((cursor.ts_s, cursor.seen.len(), cursor.count), (101, 3, None));
        let mut restarted = Seen::from_cursor(&cursor);
        let mut back = Pass::default();
        let fresh: Vec<bool> = [2, 2, 3, 4]
            .iter()
            .map(|row| restarted.insert(back.key(101, content(*row)).0))
            .collect();
        assert_eq!(fresh, [false, false, false, true]);
        assert!(restarted.insert(Pass::default().key(100 + SEEN_WINDOW_S + 200, content(9)).0));
        assert!(
            restarted.insert(Pass::default().key(101, content(2)).0),
            "forgotten after the window"
        );
    }

    /// A burst past what a position can list is kept as a number: the first
    /// that many rows of the second read back are recognised.
    #[test]
    fn a_burst_in_one_second_is_kept_as_a_number_that_fits_a_state_value() {
        let mut seen = Seen::default();
        let mut pass = Pass::default();
        for row in 0..(MAX_CURSOR_KEYS as u32 + 500) {
            let mut bytes = [0u8; 12];
            bytes[..4].copy_from_slice(&row.to_le_bytes());
            seen.insert(pass.key(200, bytes).0);
        }
        let cursor = seen.cursor();
        assert_eq!(cursor.count, Some(MAX_CURSOR_KEYS as u64 + 500));
        assert!(serde_json::to_vec(&cursor).unwrap().len() < 1024);
        let restarted = Seen::from_cursor(&cursor);
        assert!(restarted.counted_before(200, MAX_CURSOR_KEYS as u64 + 499));
        assert!(!restarted.counted_before(200, MAX_CURSOR_KEYS as u64 + 500));
        assert!(!restarted.counted_before(201, 0));
    }

    #[test]
    fn keys_read_back_from_a_cursor_are_the_keys_written() {
        let key = RowKey {
            ts_s: 7,
            content: content(0xab),
            occurrence: 3,
        };
        assert_eq!(RowKey::parse(7, &key.text()), Some(key));
        let old = RowKey::parse(7, "abababababababababababab").unwrap();
        assert_eq!(old.occurrence, 0, "positions of earlier releases had no occurrence");
    }
}
