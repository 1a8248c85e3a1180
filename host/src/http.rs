//! The HTTP endpoints of `velonotify run`: Prometheus metrics here, the
//! ingest endpoint in `sources/ingest.rs`; both served the same way, with
//! the same defences against clients that hold connections open: at most
//! [`Limits::max_connections`] at once (more are closed on arrival), and a
//! connection that does not send a request's headers within
//! [`Limits::header_timeout`] (also while idle between requests) is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// What one endpoint allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Time to send a request's headers, and to start the next request on
    /// a kept-alive connection.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// A bearer token clients must present, kept as its SHA-256 digest and
/// compared in constant time (every byte of every token compared), so the
/// time an answer takes says nothing about the token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    /// A token of at least 16 bytes.
    pub fn new(token: &str) -> anyhow::Result<Self> {
        if token.len() < 16 {
            anyhow::bail!("use at least 16 characters");
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// The digest of the token a request presents (`Authorization: Bearer
    /// ...`; the scheme's name is case-blind, RFC 9110 §11.1); the empty
    /// token's when it presents none.
    pub fn presented_digest(headers: &HeaderMap) -> [u8; 32] {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
            .unwrap_or_default();
        Sha256::digest(presented.trim().as_bytes()).into()
    }

    /// Whether `presented` (a [`BearerToken::presented_digest`]) is this
    /// token's.
    pub fn is(&self, presented: &[u8; 32]) -> bool {
        presented
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether the request presents this token.
    pub fn presented_in(&self, headers: &HeaderMap) -> bool {
        self.is(&Self::presented_digest(headers))
    }
}

/// Why a request body was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefusal {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the body did not arrive within {} s", .0.as_secs())]
    TooSlow(Duration),
    #[error("the body could not be read: {0}")]
    Unreadable(String),
}

impl BodyRefusal {
    /// The HTTP status that says it.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyRefusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyRefusal::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            BodyRefusal::Unreadable(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a body of at most `max_bytes` that arrives within `timeout`.
pub async fn read_bounded(
    body: axum::body::Body,
    max_bytes: usize,
    timeout: Duration,
) -> Result<axum::body::Bytes, BodyRefusal> {
    use http_body_util::{BodyExt as _, LengthLimitError, Limited};
    match tokio::time::timeout(timeout, Limited::new(body, max_bytes).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyRefusal::TooLarge(max_bytes)),
        Ok(Err(e)) => Err(BodyRefusal::Unreadable(e.to_string())),
        Err(_) => Err(BodyRefusal::TooSlow(timeout)),
    }
}

/// Serves `GET /metrics` on `listen` from a thread of its own.
pub fn serve_metrics(listen: &str, metrics: Arc<Metrics>) -> anyhow::Result<std::net::SocketAddr> {
    let app = Router::new().route("/metrics", get(move || async move { metrics.render() }));
    serve(listen, "metrics", app, Limits::default())
}

/// Serves `app` on `listen` from a thread of its own, named after `what`.
/// The address is bound before this returns, so a busy port stops start-up.
pub fn serve(listen: &str, what: &'static str, app: Router, limits: Limits) -> anyhow::Result<std::net::SocketAddr> {
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("{what}: listening on {listen}"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    std::thread::Builder::new()
        .name(format!("velonotify-{what}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, what, app, limits).await,
                    Err(e) => tracing::error!(error = %e, "{what} endpoint could not start"),
                }
            });
        })?;
    Ok(address)
}

/// Takes connections while there is room, each served on its own task.
async fn accept_loop(listener: tokio::net::TcpListener, what: &'static str, app: Router, limits: Limits) {
    let room = Arc::new(Semaphore::new(limits.max_connections));
    let turned_away = AtomicU64::new(0);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to
                // come back rather than spin.
                tracing::warn!(error = %e, "{what}: could not accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = room.clone().try_acquire_owned() else {
            drop(stream);
            let n = turned_away.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                tracing::warn!(
                    "{what}: {} connections open, the most allowed: new ones are closed ({} so far)",
                    limits.max_connections,
                    n + 1
                );
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "{what}: connection ended");
            }
        });
    }
}
