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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::jsonl::read_envelope;
use super::{IncomingEvent, Input};
use crate::store::Health;

/// Largest body, unless `max_body_bytes` says.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

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
    /// Largest body accepted, in bytes (default 16 MiB).
    pub max_body_bytes: Option<usize>,
}

impl IngestSection {
    /// The token senders must present, from the configuration or its file
    /// (relative to `base_dir`).
    pub fn token(&self, base_dir: &Path) -> anyhow::Result<String> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(file)) => std::fs::read_to_string(base_dir.join(file))
                .with_context(|| format!("ingest.token_file {}", file.display()))?
                .trim()
                .to_string(),
            (None, None) => bail!("ingest: set token or token_file (senders must present it as a bearer token)"),
        };
        if token.len() < 16 {
            bail!("ingest.token: use at least 16 characters");
        }
        Ok(token)
    }
}

/// What the endpoint needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    pub listen: String,
    pub token: String,
    pub max_body_bytes: usize,
    /// The org of rows whose request names none.
    pub default_org: String,
    pub max_row_bytes: usize,
}

#[derive(Clone)]
struct Ingest {
    token_digest: [u8; 32],
    sender: SyncSender<Input>,
    health: Arc<Health>,
    default_org: String,
    max_row_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct Params {
    /// The queue of rows without `_Source`.
    queue: Option<String>,
    org_id: Option<String>,
}

/// Starts the endpoint on its own thread; returns the address it listens on.
pub fn serve(settings: IngestSettings, sender: SyncSender<Input>, health: Arc<Health>) -> anyhow::Result<SocketAddr> {
    let state = Ingest {
        token_digest: Sha256::digest(settings.token.as_bytes()).into(),
        sender,
        health,
        default_org: settings.default_org,
        max_row_bytes: settings.max_row_bytes,
    };
    let app = Router::new()
        .route("/v1/events", post(accept))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .with_state(state);
    crate::http::serve(&settings.listen, "ingest", app).context("ingest.listen")
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

/// Compares digests, so the time taken says nothing about the token.
fn authorized(headers: &HeaderMap, token_digest: &[u8; 32]) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
    digest.iter().zip(token_digest).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn accept(
    State(ingest): State<Ingest>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers, &ingest.token_digest) {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        );
    }
    if ingest.health.is_failing() {
        let why = ingest.health.last_error().unwrap_or_default();
        return unavailable(format!("velonotify cannot store events now ({why}); post again later"));
    }
    let org = params.org_id.unwrap_or_else(|| ingest.default_org.clone());
    let events = match parse(&body, &org, params.queue.as_deref(), ingest.max_row_bytes) {
        Ok(events) => events,
        Err(message) => return answer(StatusCode::BAD_REQUEST, json!({"error": message})),
    };
    let count = events.len();
    let (done, handled) = tokio::sync::oneshot::channel();
    let sender = ingest.sender.clone();
    let queued = tokio::task::spawn_blocking(move || sender.send(Input::Batch(events, done)).is_ok()).await;
    if !matches!(queued, Ok(true)) || handled.await.is_err() {
        return unavailable("velonotify is stopping".into());
    }
    answer(StatusCode::OK, json!({"accepted": count}))
}

/// The rows of a body: a JSON array of objects, or JSON values one after
/// the other (JSON lines, or one object over many lines). The first problem
/// refuses the whole body, naming the row or line.
fn parse(body: &[u8], org: &str, queue: Option<&str>, max_row_bytes: usize) -> Result<Vec<IncomingEvent>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8 text: {e}"))?;
    let (rows, array) = if text.trim_start().starts_with('[') {
        let rows: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| format!("malformed JSON array: {e}"))?;
        (rows, true)
    } else {
        let rows = serde_json::Deserializer::from_str(text)
            .into_iter::<&RawValue>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("line {}: malformed JSON: {e}", e.line()))?;
        (rows, false)
    };
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
            return Err(format!(
                "{}: a row of {} bytes (at most {max_row_bytes})",
                at(),
                row.len()
            ));
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

    #[test]
    fn arrays_objects_and_lines_are_rows() {
        let lines = parse(b"{\"_Source\":\"Q\",\"a\":1}\n\n{\"a\":2}\n", "root", Some("D"), 1000).unwrap();
        assert_eq!(lines.iter().map(|e| e.queue.as_str()).collect::<Vec<_>>(), ["Q", "D"]);
        let array = parse(b" [{\"a\":1},{\"a\":2}]", "root", Some("D"), 1000).unwrap();
        assert_eq!(array.len(), 2);
        assert_eq!(parse(b"{\"a\":1}", "root", Some("D"), 1000).unwrap().len(), 1);
    }

    /// What Velociraptor's `serialize(item=..., format="json")` writes:
    /// indented JSON over many lines (0.77.2 `vql/functions/encode.go`).
    #[test]
    fn an_indented_object_or_array_is_accepted_whole() {
        let object = b"{\n  \"name\": \"Honey\",\n  \"event_data\": {\n    \"File\": \"/etc/shadow\"\n  },\n  \"_ts\": 1767000000\n}";
        let rows = parse(object, "root", Some("Server.Internal.Alerts"), 1000).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ts_us, Some(1_767_000_000_000_000));
        let value: Value = serde_json::from_str(&rows[0].row).unwrap();
        assert_eq!(value["event_data"]["File"], "/etc/shadow");
        let array = b"[\n  {\n    \"name\": \"Honey\",\n    \"_ts\": 1767000000\n  }\n]";
        assert_eq!(
            parse(array, "root", Some("Server.Internal.Alerts"), 1000)
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
        let rows = parse(body, "root", Some("Server.Internal.Alerts"), 1000).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].row.contains("\"a\""));
        let elsewhere = parse(body, "root", Some("Custom.Queue"), 1000).unwrap();
        assert_eq!(elsewhere.len(), 2, "the mark means something only on the alert queue");
    }

    #[test]
    fn the_first_bad_row_refuses_the_body_and_is_named() {
        let err = parse(b"{\"a\":1}\n{\"a\":}\n{\"a\":3}\n", "root", Some("D"), 1000).unwrap_err();
        assert!(err.starts_with("line 2: malformed JSON"), "{err}");
        let err = parse(b"[{\"a\":1}, 7]", "root", Some("D"), 1000).unwrap_err();
        assert!(err.starts_with("row 2: expected a JSON object"), "{err}");
        let err = parse(b"{\"a\":1}\n\n{\"b\":2}\n", "root", None, 1000).unwrap_err();
        assert!(err.starts_with("line 1: row has no _Source"), "{err}");
        let err = parse(
            b"{\"_Source\":\"Q\"}\n{\"_Source\":\"Q\",\"x\":\"long\"}",
            "root",
            None,
            20,
        )
        .unwrap_err();
        assert!(err.starts_with("line 2: a row of"), "{err}");
    }

    #[test]
    fn a_store_that_cannot_take_writes_is_a_503_with_retry_after() {
        let response = unavailable("the disk is full".into());
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_S.to_string());
    }

    #[test]
    fn only_the_right_token_is_authorized() {
        let digest: [u8; 32] = Sha256::digest(b"0123456789abcdef").into();
        let mut headers = HeaderMap::new();
        assert!(!authorized(&headers, &digest));
        headers.insert("authorization", "Bearer 0123456789abcdeX".parse().unwrap());
        assert!(!authorized(&headers, &digest));
        headers.insert("authorization", "Bearer 0123456789abcdef".parse().unwrap());
        assert!(authorized(&headers, &digest));
    }
}
