//! Where actions and reports go: files for a replay ([`FileOutbox`]), the
//! durable SQLite outbox that delivery works from for `run`
//! ([`StoreOutbox`]).

mod files;
mod store;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::engine::{Action, LabelOp};

pub use self::files::{Counts, FileOutbox};
pub(crate) use self::store::NewItem;
pub use self::store::{OutboxItem, OutboxStore, Status, StoreOutbox, ThrottleMode};

/// How serious a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Something to tell the operator about a module or an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub level: Level,
    pub module: Option<String>,
    pub event: Option<String>,
    pub message: String,
}

impl Report {
    pub fn new(level: Level, module: &str, event: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            level,
            module: Some(module.to_string()),
            event: event.map(str::to_string),
            message: message.into(),
        }
    }

    /// A report about the input, not about a module.
    pub fn input(level: Level, event: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            level,
            module: None,
            event: event.map(str::to_string),
            message: message.into(),
        }
    }

    /// Writes the report to the process log.
    pub fn trace(&self) {
        let module = self.module.as_deref().unwrap_or("-");
        let event = self.event.as_deref().unwrap_or("-");
        match self.level {
            Level::Debug => tracing::debug!(module, event, "{}", self.message),
            Level::Info => tracing::info!(module, event, "{}", self.message),
            Level::Warn => tracing::warn!(module, event, "{}", self.message),
            Level::Error => tracing::error!(module, event, "{}", self.message),
        }
    }
}

/// An action on its way out, with where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub module: &'a str,
    /// The org of the module.
    pub org_id: &'a str,
    pub queue: Option<&'a str>,
    pub event: Option<&'a str>,
    pub action: &'a Action,
}

/// Takes actions and reports.
pub trait Outbox {
    /// Accepts an action; an error means it could not be kept (the event
    /// must not count as processed).
    fn accept(&mut self, delivery: Delivery<'_>) -> anyhow::Result<()>;
    fn report(&mut self, report: Report);
    /// Makes what was accepted since the last commit durable: an event
    /// counts as processed once this returns.
    fn commit(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What `summary.jsonl` says of an action: its kind, who it goes to, and
/// its subject.
pub fn summarize(action: &Action) -> (&'static str, Vec<String>, Option<String>) {
    match action {
        Action::Email(e) => ("email", e.recipients.clone(), Some(e.subject.clone())),
        Action::Webhook(w) => ("webhook", vec![w.url.clone()], None),
        Action::UserMessage(m) => ("user-message", vec![m.user.clone()], None),
        Action::Label(l) => ("label", vec![l.client_id.clone()], None),
        Action::Alert(a) => ("alert", Vec::new(), Some(a.name.clone())),
    }
}

/// An action other than an e-mail as one JSON object.
pub(crate) fn action_json(action: &Action) -> Value {
    let text_or_base64 = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "body": text }),
        Err(_) => json!({ "body_base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    };
    match action {
        Action::Email(e) => json!({"recipients": e.recipients, "subject": e.subject}),
        Action::Webhook(w) => {
            let mut v = json!({"url": w.url, "headers": w.headers});
            if let (Value::Object(m), Value::Object(body)) = (&mut v, text_or_base64(&w.body)) {
                m.extend(body);
            }
            v
        }
        Action::UserMessage(m) => {
            json!({"user": m.user, "message": serde_json::from_str::<Value>(&m.message).unwrap_or(Value::Null)})
        }
        Action::Label(l) => json!({
            "client_id": l.client_id,
            "op": match l.op { LabelOp::Set => "set", LabelOp::Remove => "remove" },
            "labels": l.labels,
        }),
        Action::Alert(a) => json!({
            "name": a.name,
            "dedup_seconds": a.dedup_seconds,
            "event_data": serde_json::from_str::<Value>(&a.event_data).unwrap_or(Value::Null),
            "client_id": a.client_id,
            "artifact": a.artifact,
            "artifact_type": a.artifact_type,
            "flow_id": a.flow_id,
        }),
    }
}
