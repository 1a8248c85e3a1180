//! The HTTP ingest endpoint: `POST /v1/events` takes rows pushed by a
//! Velociraptor artifact with `http_client()` (`Server.Velonotify.Forward`),
//! as a JSON array, one JSON value of any layout (`serialize()` writes
//! indented, multi-line JSON), or JSON lines. A bearer token is required;
//! bodies are size-limited; a malformed body is refused whole, with the
//! row at fault, so a sender never has half a batch accepted.
//!
//! The answer comes once everything the rows caused is committed: 200 means
//! stored. While the store cannot take writes (a full disk) the endpoint
//! answers 503 with `Retry-After`, and the sender posts again later.
//!
//! A client is hostile until its token checks: the body is not read before
//! that. After it, a body is read within a time limit and a size limit, a
//! few at a time, and refused past a number of rows, so that neither
//! strangers nor a careless sender can make the process grow.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use crate::http::BodyRefusal;
use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::jsonl::read_envelope;
use super::{BatchReply, IncomingEvent, Input};
use crate::http::{BearerToken, Limits};
use crate::store::Health;

/// Largest body, unless `max_body_bytes` says.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

/// Rows in one body at most, unless `max_rows` says.
pub const DEFAULT_MAX_ROWS: usize = 10_000;

/// Time to send a body once its headers are in, unless `body_timeout_s`
/// says.
pub const DEFAULT_BODY_TIMEOUT_S: u64 = 30;

/// Time a batch may wait to be taken, unless `answer_timeout_s` says.
pub const DEFAULT_ANSWER_TIMEOUT_S: u64 = 60;

/// Bodies read at once; others wait (up to [`READ_TURN_WAIT`]) for their
/// turn. Each may hold `max_body_bytes` and its rows.
const BODIES_AT_ONCE: usize = 2;
const READ_TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Seconds a sender is asked to wait while the store cannot take writes.
const RETRY_AFTER_S: u32 = 5;

/// `[ingest]`: the HTTP endpoint that takes events posted to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSection {
    /// Address to listen on, e.g. `127.0.0.1:8765`.
    pub listen: String,
    /// The bearer token senders must present (or `token_file`).
    pub token: Option<String>,
    /// A file holding the token.
    pub token_file: Option<PathBuf>,
    /// The orgs that token may post rows for (default: the default org
    /// only; `"*"`: any org).
    pub orgs: Option<Vec<String>>,
    /// More senders, each with its own token and orgs.
    #[serde(default)]
    pub tokens: Vec<SenderSection>,
    /// Largest body accepted, in bytes (default 16 MiB).
    pub max_body_bytes: Option<usize>,
    /// Most rows in one body (default 10,000).
    pub max_rows: Option<usize>,
    /// Connections open at once (default 64); more are closed on arrival.
    pub max_connections: Option<usize>,
    /// Seconds to send a request's headers (default 10).
    pub header_timeout_s: Option<u64>,
    /// Seconds to send a body (default 30).
    pub body_timeout_s: Option<u64>,
    /// Seconds a batch may wait to be taken (default 60): past them the
    /// sender is answered 503 and nothing of it is kept.
    pub answer_timeout_s: Option<u64>,
}

impl IngestSection {
    /// The connection limits it sets.
    pub fn limits(&self) -> Limits {
        let defaults = Limits::default();
        Limits {
            max_connections: self.max_connections.unwrap_or(defaults.max_connections).max(1),
            header_timeout: self
                .header_timeout_s
                .map_or(defaults.header_timeout, |s| std::time::Duration::from_secs(s.max(1))),
        }
    }
}

impl IngestSection {
    /// Who may post, and for which orgs: the section's own token, then
    /// `[[ingest.tokens]]`. Tokens come from the configuration or their
    /// files (relative to `base_dir`).
    pub fn senders(&self, base_dir: &Path, default_org: &str) -> anyhow::Result<Vec<Sender>> {
        let mut senders = Vec::new();
        // The section's own token may be left out when `[[ingest.tokens]]`
        // names the senders.
        if self.token.is_some() || self.token_file.is_some() || self.tokens.is_empty() {
            let first = SenderSection {
                token: self.token.clone(),
                token_file: self.token_file.clone(),
                orgs: self.orgs.clone().unwrap_or_else(|| vec![default_org.to_string()]),
            };
            senders.push(first.sender(base_dir, "ingest")?);
        } else if self.orgs.is_some() {
            bail!("ingest.orgs: set token or token_file with it (the orgs are that token's)");
        }
        for (index, section) in self.tokens.iter().enumerate() {
            senders.push(section.sender(base_dir, &format!("ingest.tokens[{index}]"))?);
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(index) = senders.iter().position(|s| !seen.insert(s.token.clone())) {
            let own = usize::from(senders.len() > self.tokens.len());
            bail!("ingest.tokens[{}]: the same token is given twice", index - own);
        }
        Ok(senders)
    }

    /// What the endpoint needs, resolved.
    pub fn settings(&self, base_dir: &Path, default_org: &str, max_row_bytes: usize) -> anyhow::Result<IngestSettings> {
        Ok(IngestSettings {
            listen: self.listen.clone(),
            senders: self.senders(base_dir, default_org)?,
            max_body_bytes: self.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            max_rows: self.max_rows.unwrap_or(DEFAULT_MAX_ROWS).max(1),
            body_timeout: std::time::Duration::from_secs(self.body_timeout_s.unwrap_or(DEFAULT_BODY_TIMEOUT_S).max(1)),
            answer_timeout: std::time::Duration::from_secs(
                self.answer_timeout_s.unwrap_or(DEFAULT_ANSWER_TIMEOUT_S).max(1),
            ),
            limits: self.limits(),
            default_org: default_org.to_string(),
            max_row_bytes,
        })
    }
}

/// `[[ingest.tokens]]`: one sender's token and the orgs it may post for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SenderSection {
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Org ids, or `"*"` for any.
    pub orgs: Vec<String>,
}

impl SenderSection {
    fn sender(&self, base_dir: &Path, at: &str) -> anyhow::Result<Sender> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(file)) => crate::files::read_regular_text(&base_dir.join(file), 64 << 10)
                .with_context(|| format!("{at}.token_file"))?
                .trim()
                .to_string(),
            (None, None) => bail!("{at}: set token or token_file (senders must present it as a bearer token)"),
        };
        let token = BearerToken::new(&token).map_err(|e| anyhow::anyhow!("{at}.token: {e}"))?;
        if self.orgs.is_empty() || self.orgs.iter().any(|org| org.trim().is_empty()) {
            bail!("{at}.orgs: name the orgs this token may post for (org ids, or \"*\" for any)");
        }
        let orgs = match self.orgs.iter().any(|org| org == "*") {
            true => OrgScope::Any,
            false => OrgScope::Only(self.orgs.clone()),
        };
        Ok(Sender { token, orgs })
    }
}

/// A token and the orgs it may post for.
#[derive(Debug, Clone)]
pub struct Sender {
    token: BearerToken,
    orgs: OrgScope,
}

/// The orgs a sender may post rows for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgScope {
    Any,
    Only(Vec<String>),
}

impl OrgScope {
    pub fn allows(&self, org: &str) -> bool {
        match self {
            OrgScope::Any => true,
            OrgScope::Only(orgs) => orgs.iter().any(|o| o == org),
        }
    }
}

/// What the endpoint needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub listen: String,
    pub senders: Vec<Sender>,
    pub max_body_bytes: usize,
    pub max_rows: usize,
    pub body_timeout: std::time::Duration,
    pub answer_timeout: std::time::Duration,
    pub limits: Limits,
    /// The org of rows whose request names none.
    pub default_org: String,
    pub max_row_bytes: usize,
}

#[derive(Clone)]
struct Ingest {
    senders: Arc<[Sender]>,
    sender: SyncSender<Input>,
    health: Arc<Health>,
    default_org: String,
    max_row_bytes: usize,
    max_body_bytes: usize,
    max_rows: usize,
    body_timeout: std::time::Duration,
    answer_timeout: std::time::Duration,
    /// Turns to read a body.
    reading: Arc<tokio::sync::Semaphore>,
}

#[derive(Debug, Deserialize)]
struct Params {
    /// The queue of rows without `_Source`.
    queue: Option<String>,
    org_id: Option<String>,
    /// `outcomes=true`: the answer says what became of each row (`rows`),
    /// for a poster that shows its caller (`Server.Velonotify.SendEmail`).
    #[serde(default)]
    outcomes: bool,
}

/// Starts the endpoint on its own thread; returns the address it listens on.
pub fn serve(settings: IngestSettings, sender: SyncSender<Input>, health: Arc<Health>) -> anyhow::Result<SocketAddr> {
    let state = Ingest {
        senders: settings.senders.into(),
        sender,
        health,
        default_org: settings.default_org,
        max_row_bytes: settings.max_row_bytes,
        max_body_bytes: settings.max_body_bytes,
        max_rows: settings.max_rows,
        body_timeout: settings.body_timeout,
        answer_timeout: settings.answer_timeout,
        reading: Arc::new(tokio::sync::Semaphore::new(BODIES_AT_ONCE)),
    };
    let app = Router::new().route("/v1/events", post(accept)).with_state(state);
    crate::http::serve(&settings.listen, "ingest", app, settings.limits).context("ingest.listen")
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// 503 with `Retry-After`: nothing of the request was kept.
fn unavailable(why: String) -> Response {
    let mut response = answer(StatusCode::SERVICE_UNAVAILABLE, json!({"error": why}));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    response
}

/// The sender whose token the request presents. Compares with every
/// sender's token, so the time taken says nothing about the tokens.
fn authorized<'a>(headers: &HeaderMap, senders: &'a [Sender]) -> Option<&'a Sender> {
    let presented = BearerToken::presented_digest(headers);
    senders
        .iter()
        .fold(None, |found, sender| match sender.token.is(&presented) {
            true => Some(sender),
            false => found,
        })
}

async fn accept(
    State(ingest): State<Ingest>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Nothing of the body is read before the token and the org check.
    let Some(sender) = authorized(&headers, &ingest.senders) else {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        );
    };
    let org = params.org_id.unwrap_or_else(|| ingest.default_org.clone());
    if !sender.orgs.allows(&org) {
        let why = format!("this token may not post rows for org {org:?} (its ingest orgs)");
        return answer(StatusCode::FORBIDDEN, json!({"error": why}));
    }
    if ingest.health.is_failing() {
        let why = ingest.health.last_error().unwrap_or_default();
        return unavailable(format!("velonotify cannot store events now ({why}); post again later"));
    }
    let body = match read_body(&ingest, &headers, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let limits = RowLimits {
        max_rows: ingest.max_rows,
        max_row_bytes: ingest.max_row_bytes,
    };
    let events = match parse(&body, &org, params.queue.as_deref(), limits) {
        Ok(events) => events,
        Err(BodyError::TooManyRows) => {
            let why = format!(
                "more than {} rows in one body (ingest.max_rows): post them in smaller bodies",
                ingest.max_rows
            );
            return answer(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": why}));
        }
        Err(BodyError::Malformed(message)) => return answer(StatusCode::BAD_REQUEST, json!({"error": message})),
    };
    drop(body);
    let count = events.len();
    let (reply, mut wait) = BatchReply::new();
    let sender = ingest.sender.clone();
    let queued = tokio::task::spawn_blocking(move || sender.send(Input::Batch(events, reply)).is_ok()).await;
    if !matches!(queued, Ok(true)) {
        return unavailable("velonotify is stopping".into());
    }
    let answered = match tokio::time::timeout(ingest.answer_timeout, &mut wait.handled).await {
        Ok(answered) => answered,
        // Not taken in time: the sender is told nothing was kept, unless
        // the service took the batch meanwhile (then its answer comes).
        Err(_) if wait.abandon() => {
            let why = format!(
                "the rows were not taken within {} s (velonotify is holding inputs back); nothing was kept: post \
                 again later",
                ingest.answer_timeout.as_secs()
            );
            return unavailable(why);
        }
        Err(_) => wait.handled.await,
    };
    let Ok(handled) = answered else {
        return unavailable("velonotify is stopping".into());
    };
    let mut answered = json!({"accepted": count, "unwatched": handled.unwatched});
    if params.outcomes {
        answered["rows"] = json!(handled.rows);
    }
    answer(StatusCode::OK, answered)
}

/// Reads an authorized request's body: its turn among [`BODIES_AT_ONCE`],
/// within `body_timeout`, at most `max_body_bytes` (a declared length over
/// it is refused before a byte is read).
async fn read_body(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        let why = format!(
            "the body is over {} bytes (ingest.max_body_bytes)",
            ingest.max_body_bytes
        );
        answer(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": why}))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > ingest.max_body_bytes as u64) {
        return Err(too_large());
    }
    let Ok(Ok(_turn)) = tokio::time::timeout(READ_TURN_WAIT, ingest.reading.clone().acquire_owned()).await else {
        return Err(unavailable(
            "velonotify is reading other bodies; post again later".into(),
        ));
    };
    match crate::http::read_bounded(body, ingest.max_body_bytes, ingest.body_timeout).await {
        Ok(bytes) => Ok(bytes),
        Err(BodyRefusal::TooLarge(_)) => Err(too_large()),
        Err(refusal @ BodyRefusal::TooSlow(_)) => Err(answer(
            refusal.status(),
            json!({"error": format!("{refusal} (ingest.body_timeout_s)")}),
        )),
        Err(refusal) => Err(answer(refusal.status(), json!({"error": refusal.to_string()}))),
    }
}

/// What a body may hold.
#[derive(Debug, Clone, Copy)]
struct RowLimits {
    max_rows: usize,
    max_row_bytes: usize,
}

/// Why a body is refused whole.
#[derive(Debug, PartialEq, Eq)]
enum BodyError {
    /// Named at the first bad row or line.
    Malformed(String),
    TooManyRows,
}

impl From<String> for BodyError {
    fn from(message: String) -> Self {
        BodyError::Malformed(message)
    }
}

/// A JSON array's elements, refused past `max` without reading further.
struct BoundedArray {
    max: usize,
}

/// The message a [`BoundedArray`] fails with, told apart from JSON errors.
const TOO_MANY_ROWS: &str = "velonotify: too many rows";

impl<'de> DeserializeSeed<'de> for BoundedArray {
    type Value = Vec<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedArray {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut rows = Vec::new();
        while let Some(row) = seq.next_element::<&'de RawValue>()? {
            if rows.len() == self.max {
                return Err(A::Error::custom(TOO_MANY_ROWS));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

/// The rows of `text` as raw JSON values, and whether it was an array.
fn split_rows(text: &str, max_rows: usize) -> Result<(Vec<&RawValue>, bool), BodyError> {
    if text.trim_start().starts_with('[') {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let rows = BoundedArray { max: max_rows }
            .deserialize(&mut deserializer)
            .and_then(|rows| deserializer.end().map(|()| rows))
            .map_err(|e| match e.to_string().starts_with(TOO_MANY_ROWS) {
                true => BodyError::TooManyRows,
                false => BodyError::Malformed(format!("malformed JSON array: {e}")),
            })?;
        return Ok((rows, true));
    }
    let mut rows = Vec::new();
    for row in serde_json::Deserializer::from_str(text).into_iter::<&RawValue>() {
        let row = row.map_err(|e| format!("line {}: malformed JSON: {e}", e.line()))?;
        if rows.len() == max_rows {
            return Err(BodyError::TooManyRows);
        }
        rows.push(row);
    }
    Ok((rows, false))
}

/// The rows of a body: a JSON array of objects, or JSON values one after
/// the other (JSON lines, or one object over many lines). The first problem
/// refuses the whole body, naming the row or line.
fn parse(body: &[u8], org: &str, queue: Option<&str>, limits: RowLimits) -> Result<Vec<IncomingEvent>, BodyError> {
    let max_row_bytes = limits.max_row_bytes;
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8 text: {e}"))?;
    let (rows, array) = split_rows(text, limits.max_rows)?;
    let mut events = Vec::with_capacity(rows.len());
    for (index, raw) in rows.into_iter().enumerate() {
        let row = raw.get();
        // Where the row is, named only when something is wrong with it.
        let at = || {
            if array {
                format!("row {}", index + 1)
            } else {
                format!("line {}", line_of(text, row))
            }
        };
        if row.len() > max_row_bytes {
            return Err(BodyError::Malformed(format!(
                "{}: a row of {} bytes (at most {max_row_bytes})",
                at(),
                row.len()
            )));
        }
        let envelope = read_envelope(row, queue).map_err(|e| format!("{}: {e}", at()))?;
        if envelope.is_own_alert() {
            tracing::debug!(
                "{}: an alert velonotify pushed itself, forwarded back: not handled again",
                at()
            );
            continue;
        }
        events.push(IncomingEvent {
            id: format!("ingest:{}", index + 1),
            queue: envelope.queue,
            row: row.to_string(),
            org_id: org.to_string(),
            ts_us: envelope.ts_us,
        });
    }
    Ok(events)
}

/// The line (from 1) where `part`, a slice of `text`, starts.
fn line_of(text: &str, part: &str) -> usize {
    let offset = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_row_bytes: usize) -> RowLimits {
        RowLimits {
            max_rows: 100,
            max_row_bytes,
        }
    }

    /// The message of a body refused as malformed.
    fn malformed(parsed: Result<Vec<IncomingEvent>, BodyError>) -> String {
        match parsed.unwrap_err() {
            BodyError::Malformed(message) => message,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arrays_objects_and_lines_are_rows() {
        let lines = parse(
            b"{\"_Source\":\"Q\",\"a\":1}\n\n{\"a\":2}\n",
            "root",
            Some("D"),
            limits(1000),
        )
        .unwrap();
        assert_eq!(lines.iter().map(|e| e.queue.as_str()).collect::<Vec<_>>(), ["Q", "D"]);
        let array = parse(b" [{\"a\":1},{\"a\":2}]", "root", Some("D"), limits(1000)).unwrap();
        assert_eq!(array.len(), 2);
        assert_eq!(parse(b"{\"a\":1}", "root", Some("D"), limits(1000)).unwrap().len(), 1);
    }

    /// What Velociraptor's `serialize(item=..., format="json")` writes:
    /// indented JSON over many lines (0.77.2 `vql/functions/encode.go`).
    #[test]
    fn an_indented_object_or_array_is_accepted_whole() {
        let object = b"{\n  \"name\": \"Honey\",\n  \"event_data\": {\n    \"File\": \"/etc/shadow\"\n  },\n  \"_ts\": 1767000000\n}";
        let rows = parse(object, "root", Some("Server.Internal.Alerts"), limits(1000)).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ts_us, Some(1_767_000_000_000_000));
        let value: Value = serde_json::from_str(&rows[0].row).unwrap();
        assert_eq!(value["event_data"]["File"], "/etc/shadow");
        let array = b"[\n  {\n    \"name\": \"Honey\",\n    \"_ts\": 1767000000\n  }\n]";
        assert_eq!(
            parse(array, "root", Some("Server.Internal.Alerts"), limits(1000))
                .unwrap()
                .len(),
            1
        );
    }

    /// `Server.Velonotify.Forward` keeps the `velonotify_module` column, null
    /// for alerts raised in Velociraptor: only velonotify's own alerts,
    /// pushed to the server and forwarded back, are left out.
    #[test]
    fn alerts_velonotify_pushed_itself_are_not_handled_again() {
        let body =
            b"[{\"name\": \"a\", \"velonotify_module\": null},\n {\"name\": \"b\", \"velonotify_module\": \"detect\"}]";
        let rows = parse(body, "root", Some("Server.Internal.Alerts"), limits(1000)).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].row.contains("\"a\""));
        let elsewhere = parse(body, "root", Some("Custom.Queue"), limits(1000)).unwrap();
        assert_eq!(elsewhere.len(), 2, "the mark means something only on the alert queue");
    }

    #[test]
    fn the_first_bad_row_refuses_the_body_and_is_named() {
        let err = malformed(parse(
            b"{\"a\":1}\n{\"a\":}\n{\"a\":3}\n",
            "root",
            Some("D"),
            limits(1000),
        ));
        assert!(err.starts_with("line 2: malformed JSON"), "{err}");
        let err = malformed(parse(b"[{\"a\":1}, 7]", "root", Some("D"), limits(1000)));
        assert!(err.starts_with("row 2: expected a JSON object"), "{err}");
        let err = malformed(parse(b"{\"a\":1}\n\n{\"b\":2}\n", "root", None, limits(1000)));
        assert!(err.starts_with("line 1: row has no _Source"), "{err}");
        let err = malformed(parse(
            b"{\"_Source\":\"Q\"}\n{\"_Source\":\"Q\",\"x\":\"long\"}",
            "root",
            None,
            limits(20),
        ));
        assert!(err.starts_with("line 2: a row of"), "{err}");
    }

    /// What a module's own parse would refuse is refused here, naming the
    /// line, rather than accepted and failed inside every module.
    #[test]
    fn rows_only_a_full_parse_refuses_are_named_at_their_line() {
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(200_000), "]".repeat(200_000));
        let cases = [
            (deep.as_str(), "recursion limit exceeded"),
            ("{\"a\":\"\\ud800\"}", "escape"),
            ("{\"a\":1e999}", "number out of range"),
            ("{\"a\":{\"\\udfff\":1}}", "escape"),
        ];
        for (row, why) in cases {
            let body = format!("{{\"a\":1}}\n{row}\n");
            let err = malformed(parse(body.as_bytes(), "root", Some("D"), limits(usize::MAX)));
            assert!(err.starts_with("line 2: malformed JSON"), "{err}");
            assert!(err.contains(why), "{err}");
        }
        let fine = "{\"a\":[{\"b\":\"\\ud83d\\ude00\"}],\"n\":1e300,\"m\":-12345678901234567890}";
        assert_eq!(
            parse(fine.as_bytes(), "root", Some("D"), limits(1000)).unwrap().len(),
            1
        );
    }

    /// A body of countless tiny rows is refused at the first row past the
    /// limit, before any of them is made an event.
    #[test]
    fn a_body_past_max_rows_is_refused_without_reading_on() {
        let lines = "{}\n".repeat(101);
        assert_eq!(
            parse(lines.as_bytes(), "root", Some("D"), limits(10)).unwrap_err(),
            BodyError::TooManyRows
        );
        let array = format!("[{}{{}}]", "{},".repeat(100));
        assert_eq!(
            parse(array.as_bytes(), "root", Some("D"), limits(10)).unwrap_err(),
            BodyError::TooManyRows
        );
        let hundred = format!("[{}{{}}]", "{},".repeat(99));
        assert_eq!(
            parse(hundred.as_bytes(), "root", Some("D"), limits(10)).unwrap().len(),
            100
        );
    }

    #[test]
    fn a_store_that_cannot_take_writes_is_a_503_with_retry_after() {
        let response = unavailable("the disk is full".into());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_S.to_string());
    }

    fn section(toml_text: &str) -> IngestSection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn only_the_right_token_is_authorized() {
        let senders = section("listen = \"x\"\ntoken = \"0123456789abcdef\"")
            .senders(Path::new("."), "root")
            .unwrap();
        let authorized = |headers: &HeaderMap| authorized(headers, &senders).is_some();
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers));
        headers.insert("authorization", "Bearer 0123456789abcdeX".parse().unwrap());
        assert!(!authorized(&headers));
        headers.insert("authorization", "Bearer 0123456789abcdef".parse().unwrap());
        assert!(authorized(&headers));
        headers.insert("authorization", "bearer 0123456789abcdef".parse().unwrap());
        assert!(authorized(&headers), "the scheme is case-blind");
        headers.insert("authorization", "Basic 0123456789abcdef".parse().unwrap());
        assert!(!authorized(&headers));
    }

    /// A token posts for the orgs it is given: the default org unless
    /// `orgs` says; each of `[[ingest.tokens]]` for its own.
    #[test]
    fn each_token_is_bound_to_its_orgs() {
        let senders = section(
            "listen = \"x\"\ntoken = \"root-token-0123456\"\n\
             [[tokens]]\ntoken = \"o1-token-012345678\"\norgs = [\"O1\", \"O2\"]\n\
             [[tokens]]\ntoken = \"any-token-01234567\"\norgs = [\"*\"]",
        )
        .senders(Path::new("."), "root")
        .unwrap();
        let scope = |token: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
            authorized(&headers, &senders).map(|s| s.orgs.clone())
        };
        let root = scope("root-token-0123456").unwrap();
        assert!(root.allows("root") && !root.allows("O1"));
        let o1 = scope("o1-token-012345678").unwrap();
        assert!(o1.allows("O1") && o1.allows("O2") && !o1.allows("root"));
        assert_eq!(scope("any-token-01234567"), Some(OrgScope::Any));

        let twice = section(
            "listen = \"x\"\ntoken = \"root-token-0123456\"\n[[tokens]]\ntoken = \"root-token-0123456\"\norgs = [\"O1\"]",
        );
        let err = twice.senders(Path::new("."), "root").unwrap_err().to_string();
        assert!(err.contains("ingest.tokens[0]: the same token"), "{err}");
        let none = section("listen = \"x\"\ntoken = \"root-token-0123456\"\norgs = []");
        let err = none.senders(Path::new("."), "root").unwrap_err().to_string();
        assert!(err.contains("ingest.orgs: name the orgs"), "{err}");

        let only_tokens = section("listen = \"x\"\n[[tokens]]\ntoken = \"o1-token-012345678\"\norgs = [\"O1\"]");
        assert_eq!(only_tokens.senders(Path::new("."), "root").unwrap().len(), 1);
        let err = section("listen = \"x\"")
            .senders(Path::new("."), "root")
            .unwrap_err()
            .to_string();
        assert!(err.contains("ingest: set token or token_file"), "{err}");
    }
}
