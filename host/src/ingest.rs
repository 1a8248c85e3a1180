//! The HTTP ingest endpoint: `POST /v1/events` takes rows pushed by a
//! Velociraptor artifact with `http_client()` (see `velociraptor/`), as a
//! JSON array, one JSON object, or JSON lines. A bearer token is required;
//! bodies are size-limited; a malformed body is refused whole, with the
//! line at fault, so a sender never has half a batch accepted. The answer
//! comes once the rows' actions are in the durable outbox.

use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{Config, IngestSection};
use crate::service::Input;
use crate::source::{IncomingEvent, JsonlSource};

/// Largest body by default.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;

#[derive(Clone)]
struct Ingest {
    token_digest: [u8; 32],
    sender: SyncSender<Input>,
    default_org: String,
    max_row_bytes: usize,
}

#[derive(Debug, Deserialize)]
struct Params {
    /// The queue of rows without `_Source`.
    queue: Option<String>,
    org_id: Option<String>,
}

/// The token senders must present, from the configuration or its file.
pub fn token(config: &Config, section: &IngestSection) -> anyhow::Result<String> {
    let token = match (&section.token, &section.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(file)) => std::fs::read_to_string(config.resolve(file))
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

/// Starts the endpoint on its own thread; returns the address it listens on.
pub fn serve(config: &Config, section: &IngestSection, sender: SyncSender<Input>) -> anyhow::Result<SocketAddr> {
    let token = token(config, section)?;
    let state = Ingest {
        token_digest: Sha256::digest(token.as_bytes()).into(),
        sender,
        default_org: config.default_org().to_string(),
        max_row_bytes: config.max_event_bytes(),
    };
    let limit = section.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let app = Router::new()
        .route("/v1/events", post(accept))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state);
    crate::http::serve(&section.listen, "ingest", app).context("ingest.listen")
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Compares digests, so the time taken says nothing about the token.
fn authorized(headers: &HeaderMap, token_digest: &[u8; 32]) -> bool {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
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
    let org = params.org_id.unwrap_or_else(|| ingest.default_org.clone());
    let events = match parse(&body, &org, params.queue, ingest.max_row_bytes) {
        Ok(events) => events,
        Err(message) => return answer(StatusCode::BAD_REQUEST, json!({"error": message})),
    };
    let count = events.len();
    let (done, handled) = tokio::sync::oneshot::channel();
    let sender = ingest.sender.clone();
    let queued = tokio::task::spawn_blocking(move || sender.send(Input::Batch(events, done)).is_ok()).await;
    if !matches!(queued, Ok(true)) || handled.await.is_err() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "velonotify is stopping"}),
        );
    }
    answer(StatusCode::OK, json!({"accepted": count}))
}

/// The rows of a body: a JSON array of objects, or JSON lines (one object
/// is one line). The first problem refuses the whole body.
fn parse(body: &[u8], org: &str, queue: Option<String>, max_row_bytes: usize) -> Result<Vec<IncomingEvent>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8 text: {e}"))?;
    if text.trim_start().starts_with('[') {
        let rows: Vec<Value> = serde_json::from_str(text).map_err(|e| format!("malformed JSON array: {e}"))?;
        let lines: Vec<String> = rows.iter().map(Value::to_string).collect();
        let source = JsonlSource::new(lines.join("\n").as_bytes(), "ingest", org, max_row_bytes)
            .with_default_queue(queue)
            .collect::<Result<Vec<_>, _>>();
        return source.map_err(|e| format!("row {}: {}", e.line, e.message));
    }
    JsonlSource::new(text.as_bytes(), "ingest", org, max_row_bytes)
        .with_default_queue(queue)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("line {}: {}", e.line, e.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_objects_and_lines_are_rows() {
        let lines = parse(
            b"{\"_Source\":\"Q\",\"a\":1}\n\n{\"a\":2}\n",
            "root",
            Some("D".into()),
            1000,
        )
        .unwrap();
        assert_eq!(lines.iter().map(|e| e.queue.as_str()).collect::<Vec<_>>(), ["Q", "D"]);
        let array = parse(b" [{\"a\":1},{\"a\":2}]", "root", Some("D".into()), 1000).unwrap();
        assert_eq!(array.len(), 2);
        assert_eq!(parse(b"{\"a\":1}", "root", Some("D".into()), 1000).unwrap().len(), 1);
    }

    #[test]
    fn the_first_bad_line_refuses_the_body_and_is_named() {
        let err = parse(b"{\"a\":1}\n{\"a\":\n{\"a\":3}\n", "root", Some("D".into()), 1000).unwrap_err();
        assert!(err.starts_with("line 2: malformed JSON"), "{err}");
        let err = parse(b"[{\"a\":1}, 7]", "root", Some("D".into()), 1000).unwrap_err();
        assert!(err.starts_with("row 2: expected a JSON object"), "{err}");
        let err = parse(b"{\"a\":1}\n", "root", None, 1000).unwrap_err();
        assert!(err.starts_with("line 1: row has no _Source"), "{err}");
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
