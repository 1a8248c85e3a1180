//! Delivery: works through the durable outbox, sends what is due, retries
//! transient failures with backoff until their deadline, dead-letters the
//! rest with a log line, and folds held e-mails into digests when their
//! window ends (Part A #11, #15).

mod retry;
mod smtp;
mod velociraptor;
mod webhook;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use velonotify_core::digest::{Digest, Held, build_digest};
use velonotify_core::vql::Timestamp;

pub use self::retry::RetryPolicy;
pub use self::smtp::SmtpSenders;
pub use self::velociraptor::ApiActions;
pub use self::webhook::WebhookSender;
use crate::metrics::Metrics;
use crate::outbox::NewItem;
use crate::outbox::{OutboxItem, OutboxStore, Status};
use crate::pipeline::system_now_us;

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again (connection refused, timeout, 4xx, HTTP 5xx).
    Transient(String),
    /// Will fail the same way again (SMTP 5xx, HTTP 4xx, TLS failure).
    Permanent(String),
}

/// Sends what the outbox holds.
pub struct Deliverer {
    store: Arc<OutboxStore>,
    smtp: SmtpSenders,
    webhooks: WebhookSender,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    mail_period_s: i64,
    default_sender: String,
    /// Items sent at once (each on its own connection).
    workers: usize,
    /// Executes user messages, labels and alert pushes.
    api: Option<ApiActions>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Most items tried in one round.
const BATCH: usize = 100;

impl Deliverer {
    pub fn new(
        store: Arc<OutboxStore>,
        smtp: SmtpSenders,
        webhooks: WebhookSender,
        policy: RetryPolicy,
        metrics: Arc<Metrics>,
        mail_period_s: i64,
        default_sender: String,
    ) -> Self {
        Self {
            store,
            smtp,
            webhooks,
            policy,
            metrics,
            mail_period_s,
            default_sender,
            workers: 1,
            api: None,
        }
    }

    /// Executes user messages, labels and alert pushes through the
    /// Velociraptor API.
    pub fn with_api(mut self, api: ApiActions) -> Self {
        self.api = Some(api);
        self
    }

    /// Sends up to `workers` items at once. One SMTP session waits for the
    /// server's reply at every step, so parallel sessions are what makes a
    /// burst go out quickly; at most `workers` messages are in flight.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Delivers until `stop` is set, or, once `draining` is set, until
    /// nothing is left to deliver.
    pub fn run(&self, stop: &AtomicBool, draining: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let now = system_now_us();
            let worked = match self.round(now) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "delivery round failed");
                    0
                }
            };
            let open = self.store.open_count().unwrap_or(0);
            self.metrics.set_queue_depth(open);
            if draining.load(Ordering::Relaxed) && open == 0 {
                return;
            }
            if worked == 0 {
                let next = self.store.next_due_us().ok().flatten().unwrap_or(u64::MAX);
                let wait = next.saturating_sub(system_now_us()).clamp(10_000, 250_000);
                std::thread::sleep(Duration::from_micros(wait));
            }
        }
    }

    /// Makes the digests that are due, then tries the items that are due.
    /// Returns how many items it tried.
    pub fn round(&self, now_us: u64) -> anyhow::Result<usize> {
        self.make_digests(now_us)?;
        let due = self.store.due(now_us, BATCH)?;
        let next = AtomicUsize::new(0);
        let failure = Mutex::new(None);
        let work = || {
            while let Some(item) = due.get(next.fetch_add(1, Ordering::Relaxed)) {
                let attempt = self.attempt(item);
                if let Err(e) = self.settle(item, attempt, system_now_us()) {
                    *failure.lock().expect("failure lock") = Some(e);
                    return;
                }
            }
        };
        match self.workers.min(due.len()) {
            0 | 1 => work(),
            n => std::thread::scope(|scope| {
                for _ in 0..n {
                    scope.spawn(work);
                }
            }),
        }
        match failure.into_inner().expect("failure lock") {
            Some(e) => Err(e),
            None => Ok(due.len()),
        }
    }

    fn attempt(&self, item: &OutboxItem) -> Attempt {
        match item.kind.as_str() {
            "email" => {
                let from = item.sender.as_deref().unwrap_or(&self.default_sender);
                self.smtp
                    .send(item.secret.as_deref(), from, &item.recipients, &item.payload)
            }
            "webhook" => match webhook_request(&item.payload) {
                Ok((url, headers, body)) => self.webhooks.post(&url, &headers, &body),
                Err(e) => Attempt::Permanent(format!("malformed webhook in the outbox: {e}")),
            },
            kind @ ("user-message" | "label" | "alert") => match &self.api {
                Some(api) => api.execute(kind, &item.module, &item.payload),
                None => Attempt::Transient("waiting for the Velociraptor API to be configured".into()),
            },
            other => Attempt::Permanent(format!("{other} actions are not delivered by this host")),
        }
    }

    fn settle(&self, item: &OutboxItem, attempt: Attempt, now_us: u64) -> anyhow::Result<()> {
        let what = describe(item);
        match attempt {
            Attempt::Delivered => {
                self.store.mark_sent(item.id, now_us)?;
                self.metrics.sent(&item.kind);
                tracing::debug!(item = item.id, module = %item.module, "delivered {what}");
            }
            Attempt::Permanent(error) => {
                self.store.mark_dead(item.id, &error, now_us)?;
                self.metrics.dead_lettered(&item.kind);
                tracing::error!(item = item.id, module = %item.module, "dead-lettered {what}: {error}");
            }
            Attempt::Transient(error) => {
                let attempts = item.attempts + 1;
                let next = now_us + self.policy.wait(attempts).as_micros() as u64;
                if next > item.deadline_us {
                    let error = format!("gave up after {attempts} attempts: {error}");
                    self.store.mark_dead(item.id, &error, now_us)?;
                    self.metrics.dead_lettered(&item.kind);
                    tracing::error!(item = item.id, module = %item.module, "dead-lettered {what}: {error}");
                } else {
                    self.store.mark_retry(item.id, next, &error, now_us)?;
                    self.metrics.retried(&item.kind);
                    let wait = Duration::from_micros(next - now_us);
                    tracing::warn!(item = item.id, module = %item.module, "{what} failed ({error}); retrying in {wait:.1?}");
                }
            }
        }
        Ok(())
    }

    /// One digest per module and recipient list whose window has ended.
    fn make_digests(&self, now_us: u64) -> anyhow::Result<()> {
        let released = self.store.released(now_us, self.mail_period_s)?;
        if released.is_empty() {
            return Ok(());
        }
        let now = Timestamp::from_unix_micros(now_us as i64);
        let mut digests = Vec::new();
        for module_items in released {
            let mut by_recipients: BTreeMap<Vec<String>, Vec<&OutboxItem>> = BTreeMap::new();
            for item in &module_items {
                by_recipients.entry(item.recipients.clone()).or_default().push(item);
            }
            for (recipients, items) in by_recipients {
                let module = &items[0].module;
                let sender = items[0].sender.clone().unwrap_or_else(|| self.default_sender.clone());
                let held: Vec<Held> = items
                    .iter()
                    .map(|i| Held {
                        subject: i.subject.clone().unwrap_or_default(),
                        link: i.link.clone(),
                        at: Timestamp::from_unix_micros(i.created_us as i64),
                    })
                    .collect();
                let window = match items.last().map(|i| i.send_interval) {
                    Some(0) => Some(60),
                    Some(s) if s > 0 => Some(s as u64),
                    _ => None,
                };
                let identity = format!("digest/{module}/{}/{}", items[0].id, now_us);
                let (subject, message) = build_digest(&Digest {
                    module,
                    sender: &sender,
                    recipients: &recipients,
                    held: &held,
                    window_seconds: window,
                    now,
                    identity: &identity,
                });
                let ids: Vec<i64> = items.iter().map(|i| i.id).collect();
                let digest = NewItem {
                    module: module.clone(),
                    kind: "email",
                    event: None,
                    secret: items[0].secret.clone(),
                    sender: Some(sender),
                    recipients,
                    subject: Some(subject),
                    link: None,
                    payload: message,
                    send_interval: -1,
                    status: Status::Pending,
                };
                digests.push((ids, digest));
            }
        }
        let deadline = now_us + self.policy.deadline.as_micros() as u64;
        let ids = self.store.fold_into_digests(&digests, now_us, deadline)?;
        for ((held, digest), id) in digests.iter().zip(ids) {
            self.metrics.digest();
            tracing::info!(
                module = %digest.module,
                "{} held e-mails go out as one digest (outbox item {id})",
                held.len()
            );
        }
        Ok(())
    }
}

/// What went wrong with TLS, if `error` (or one of its causes) is a TLS
/// failure: a certificate that does not verify, a failed handshake.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // io::Error::source() skips the error it wraps: look inside.
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        next = error.source();
    }
    None
}

/// "e-mail 12 to a@b (Subject)" for log lines.
fn describe(item: &OutboxItem) -> String {
    let to = item.recipients.join(", ");
    match &item.subject {
        Some(subject) => format!("{} {} to {to} ({subject:?})", item.kind, item.id),
        None => format!("{} {} to {to}", item.kind, item.id),
    }
}

/// A webhook's URL, headers and body, as stored in the outbox.
type WebhookRequest = (String, Vec<(String, String)>, Vec<u8>);

/// The URL, headers and body of a webhook stored in the outbox.
fn webhook_request(payload: &[u8]) -> Result<WebhookRequest, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let url = value["url"].as_str().ok_or("no url")?.to_string();
    let headers = value["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter_map(|h| Some((h.get(0)?.as_str()?.to_string(), h.get(1)?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let body = match (value["body"].as_str(), value["body_base64"].as_str()) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| e.to_string())?,
        (None, None) => Vec::new(),
    };
    Ok((url, headers, body))
}
