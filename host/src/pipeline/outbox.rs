//! The end of the pipeline: where the actions that passed their checks and
//! the reports about each call go. For `run`, the durable outbox
//! ([`StoreOutbox`]), committed with the input's state in one transaction;
//! for a replay, files ([`super::files::FileOutbox`]).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::noise_control::{Fate, NoiseControl};
use crate::contract::{Action, LabelOp};
use crate::metrics::Metrics;
use crate::noise::{Labels, Origin};
use crate::store::{
    self, AlertPayload, Changes, EmailPayload, Fence, Kind, LabelPayload, NewItem, Payload, RetryChange, StateWrite,
    Status, Store, StoreError, SyslogPayload, Throttle, ThrottleMode, UserMessagePayload, WebhookPayload,
};

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

impl From<crate::contract::LogLevel> for Level {
    fn from(level: crate::contract::LogLevel) -> Self {
        use crate::contract::LogLevel;
        match level {
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
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

    /// Writes the report to the process log, one line: a line break or
    /// other control character from event data (a FlowId, an artifact
    /// name) is written escaped, so it cannot forge a log line.
    pub fn trace(&self) {
        let module = self.module.as_deref().unwrap_or("-");
        let event = self.event.as_deref().unwrap_or("-");
        let message = one_log_line(&self.message);
        match self.level {
            Level::Debug => tracing::debug!(module, event, "{message}"),
            Level::Info => tracing::info!(module, event, "{message}"),
            Level::Warn => tracing::warn!(module, event, "{message}"),
            Level::Error => tracing::error!(module, event, "{message}"),
        }
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`).
pub fn one_log_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod log_line_tests {
    use super::*;

    /// A FlowId holding a line break and a fake log line stays on its line.
    #[test]
    fn a_line_break_in_event_data_cannot_forge_a_log_line() {
        let forged = "flow F.1\n2026-11-30T00:00:00Z  INFO all clear\u{1b}[0m";
        assert_eq!(
            one_log_line(forged),
            "flow F.1\\n2026-11-30T00:00:00Z  INFO all clear\\u{1b}[0m"
        );
        assert!(matches!(one_log_line("plain"), std::borrow::Cow::Borrowed(_)));
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
    /// The pipeline's time when the action was taken.
    pub now_us: u64,
    /// A webhook's host is named in the module's allowed hosts: it may
    /// resolve to a private address.
    pub may_reach_private: bool,
    /// The row the module was handling (none for a tick), and the members
    /// of it that label the notification: what silences match on.
    pub row: Option<&'a str>,
    pub labels_from: &'a [String],
    /// The id of the silence links the call put in its e-mails, if any.
    pub link_id: Option<&'a str>,
}

impl Delivery<'_> {
    /// The notification's labels (`noise::labels`).
    pub fn labels(&self) -> Labels {
        let (kind, _, title) = summarize(self.action);
        let (client_id, artifact) = match self.action {
            Action::Alert(a) => (a.client_id.as_deref(), a.artifact.as_deref()),
            Action::Label(l) => (Some(l.client_id.as_str()), None),
            _ => (None, None),
        };
        Labels::of(&Origin {
            module: self.module,
            org_id: self.org_id,
            queue: self.queue,
            row: self.row,
            kind,
            title: title.as_deref(),
            client_id,
            artifact,
            labels_from: self.labels_from,
        })
    }

    /// Whether a silence may hold it back: a notification (e-mail,
    /// webhook, user message), not a label change or an alert.
    pub fn is_notification(&self) -> bool {
        matches!(
            self.action,
            Action::Email(_) | Action::Webhook(_) | Action::UserMessage(_)
        )
    }
}

/// Takes actions and reports, and makes them durable with the input's
/// state writes.
pub trait Outbox {
    /// Takes an action that passed its checks.
    fn accept(&mut self, delivery: Delivery<'_>);
    fn report(&mut self, report: Report);
    /// Takes a change to the events to hand a module again, for the commit.
    fn defer(&mut self, change: RetryChange);
    /// Hears that `module` refused the input (or, `retried`, will be
    /// handed it again later), saying why: reported already; an ingest
    /// answer tells the poster ([`super::row_outcome`]).
    fn refused(&mut self, _module: &str, _reason: &str, _retried: bool) {}
    /// Stores what the input caused, `state` and the accepted actions, at
    /// once: an input counts as handled once this returns Ok. After an
    /// error nothing of it is stored, and the same call may be made again.
    fn commit(&mut self, state: &[StateWrite]) -> Result<(), StoreError>;
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

/// A webhook's headers as written down: an `Authorization` value (an API
/// key, a HEC token) keeps its scheme only.
fn shown_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| match name.eq_ignore_ascii_case("authorization") {
            true => {
                let scheme = value.split_whitespace().next().unwrap_or("");
                (name.clone(), format!("{scheme} (not shown)"))
            }
            false => (name.clone(), value.clone()),
        })
        .collect()
}

/// An action other than an e-mail as one JSON object (`actions.jsonl`).
pub(crate) fn action_json(action: &Action) -> Value {
    let text_or_base64 = |bytes: &[u8]| match std::str::from_utf8(bytes) {
        Ok(text) => json!({ "body": text }),
        Err(_) => json!({ "body_base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    };
    match action {
        Action::Email(e) => json!({"recipients": e.recipients, "subject": e.subject}),
        Action::Webhook(w) => {
            let mut v = json!({"url": w.url, "headers": shown_headers(&w.headers)});
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

/// A notification in a line: an e-mail's subject; a post's text (the
/// `text`, `content`, `title` or `summary` its receiver takes); else its
/// alertname.
fn summary_of(action: &Action, labels: &Labels) -> String {
    match action {
        Action::Email(e) => e.subject.clone(),
        Action::Webhook(w) => {
            let body: Value = serde_json::from_slice(&w.body).unwrap_or(Value::Null);
            [
                "/text",
                "/content",
                "/title",
                "/alert_title",
                "/payload/summary",
                "/event/message",
            ]
            .iter()
            .find_map(|path| body.pointer(path).and_then(Value::as_str))
            .unwrap_or(labels.get("alertname"))
            .to_string()
        }
        _ => labels.get("alertname").to_string(),
    }
}

/// Whether items of `kind` are notifications, which silences may hold back
/// (label changes and alerts are a module's other actions).
fn is_notification(kind: Kind) -> bool {
    matches!(kind, Kind::Email | Kind::Webhook | Kind::UserMessage)
}

/// A JSON object from a module's text (checked to be one before it got
/// here); anything else becomes an empty object.
fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// The outbox of `velonotify run`: an input's actions wait here until its
/// commit writes them, with its state, in one transaction.
pub struct StoreOutbox {
    store: Arc<Store>,
    pending: Vec<NewItem>,
    retries: Vec<RetryChange>,
    throttle: Throttle,
    retry_deadline_us: u64,
    metrics: Arc<Metrics>,
    clock: crate::clock::Clock,
    /// The Velociraptor API is configured: user messages and labels are
    /// delivered through it instead of waiting.
    api: bool,
    /// Alerts raised by modules are also written to the server's queue.
    push_alerts: bool,
    noise: NoiseControl,
    /// The receivers that keep a record of notifications.
    records: Vec<RecordCopy>,
}

/// A receiver that keeps a record of the notifications of `modules` (a
/// `[[syslog]]` section).
#[derive(Debug, Clone)]
pub struct RecordCopy {
    pub receiver: String,
    /// None: every module's.
    pub modules: Option<Vec<String>>,
}

impl RecordCopy {
    fn records(&self, module: &str) -> bool {
        self.modules
            .as_ref()
            .is_none_or(|modules| modules.iter().any(|m| m == module || m == "*"))
    }
}

impl std::fmt::Debug for StoreOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOutbox")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl StoreOutbox {
    pub fn new(
        store: Arc<Store>,
        modes: HashMap<String, ThrottleMode>,
        mail_period_s: i64,
        retry_deadline_us: u64,
        metrics: Arc<Metrics>,
        clock: crate::clock::Clock,
    ) -> Self {
        Self {
            noise: NoiseControl::new(store.clone()),
            store,
            pending: Vec::new(),
            retries: Vec::new(),
            throttle: Throttle { modes, mail_period_s },
            retry_deadline_us,
            metrics,
            clock,
            api: false,
            push_alerts: false,
            records: Vec::new(),
        }
    }

    /// Queues a record of each notification for each receiver that keeps
    /// its module's.
    pub fn with_records(mut self, records: Vec<RecordCopy>) -> Self {
        self.records = records;
        self
    }

    /// The records of a notification: one per receiver keeping its
    /// module's, made in the same commit, so a record is kept exactly when
    /// the notification is.
    fn records_of(&self, delivery: &Delivery<'_>, notification: &NewItem) -> Vec<NewItem> {
        if !delivery.is_notification() {
            return Vec::new();
        }
        self.records
            .iter()
            .filter(|copy| copy.records(delivery.module))
            .map(|copy| NewItem {
                module: notification.module.clone(),
                event: notification.event.clone(),
                status: Status::Pending,
                payload: Payload::Syslog(SyslogPayload {
                    sink: copy.receiver.clone(),
                    time_us: delivery.now_us,
                    summary: summary_of(delivery.action, &notification.labels),
                    labels: notification.labels.clone(),
                }),
                body: Vec::new(),
                follows: Vec::new(),
                labels: notification.labels.clone(),
                held_by: None,
                release_us: None,
                link_id: None,
            })
            .collect()
    }

    /// Mutes modules in their mute times (and outside their active ones).
    pub fn with_mutes(
        mut self,
        intervals: crate::noise::time_intervals::TimeIntervals,
        mutes: HashMap<String, super::noise_control::ModuleMute>,
    ) -> Self {
        self.noise =
            std::mem::replace(&mut self.noise, NoiseControl::new(self.store.clone())).with_mutes(intervals, mutes);
        self
    }

    /// Applies the configuration's inhibit rules, knowing the sources the
    /// outbox holds from before a restart.
    pub fn with_inhibit_rules(mut self, inhibitor: crate::noise::inhibition::Inhibitor) -> Result<Self, StoreError> {
        self.noise =
            std::mem::replace(&mut self.noise, NoiseControl::new(self.store.clone())).with_inhibitor(inhibitor);
        self.noise.learn_recent_sources(self.clock.now_us())?;
        Ok(self)
    }

    /// Delivers user messages and labels through the Velociraptor API, and
    /// with `push_alerts` writes raised alerts into the server's queue.
    pub fn with_api(mut self, push_alerts: bool) -> Self {
        self.api = true;
        self.push_alerts = push_alerts;
        self
    }

    /// The outbox item of an action, if it is delivered from here (alerts
    /// go to the host's own queue, and to the server's only when asked).
    fn item(&self, delivery: Delivery<'_>) -> Option<NewItem> {
        let through_api = if self.api { Status::Pending } else { Status::WaitingApi };
        let org_id = delivery.org_id.to_string();
        let (status, payload, body) = match delivery.action {
            Action::Email(e) => (
                Status::Pending,
                Payload::Email(EmailPayload {
                    secret: e.secret.clone(),
                    sender: Some(e.sender.clone()),
                    recipients: e.recipients.clone(),
                    subject: e.subject.clone(),
                    link: e.link.clone(),
                    send_interval_s: e.send_interval_seconds,
                }),
                e.message.clone(),
            ),
            Action::Webhook(w) => (
                Status::Pending,
                Payload::Webhook(WebhookPayload {
                    url: w.url.clone(),
                    headers: w.headers.clone(),
                    may_reach_private: delivery.may_reach_private,
                }),
                w.body.clone(),
            ),
            Action::UserMessage(m) => (
                through_api,
                Payload::UserMessage(UserMessagePayload {
                    org_id,
                    user: m.user.clone(),
                    message: object(&m.message),
                }),
                Vec::new(),
            ),
            Action::Label(l) => (
                through_api,
                Payload::Label(LabelPayload {
                    org_id,
                    client_id: l.client_id.clone(),
                    op: match l.op {
                        LabelOp::Set => store::LabelOp::Set,
                        LabelOp::Remove => store::LabelOp::Remove,
                    },
                    labels: l.labels.clone(),
                }),
                Vec::new(),
            ),
            Action::Alert(_) if !self.push_alerts => return None,
            Action::Alert(a) => (
                Status::Pending,
                Payload::Alert(AlertPayload {
                    org_id,
                    name: a.name.clone(),
                    timestamp: velonotify_core::vql::Timestamp::from_unix_micros(
                        i64::try_from(delivery.now_us).unwrap_or(i64::MAX),
                    )
                    .rfc3339_precise(),
                    event_data: object(&a.event_data),
                    client_id: a.client_id.clone(),
                    artifact: a.artifact.clone(),
                    artifact_type: a.artifact_type.clone(),
                    flow_id: a.flow_id.clone(),
                }),
                Vec::new(),
            ),
        };
        let follows = match delivery.action {
            Action::Label(_) => self.notifications_of_the_same_call(&delivery),
            _ => Vec::new(),
        };
        Some(NewItem {
            module: delivery.module.to_string(),
            event: delivery.event.map(str::to_string),
            status,
            payload,
            body,
            follows,
            labels: delivery.labels(),
            held_by: None,
            release_us: None,
            link_id: delivery.link_id.map(str::to_string),
        })
    }

    /// Holds back the input's notifications that a silence in force at
    /// `now_us` or an inhibit rule matches: they are kept as `silenced` or
    /// `inhibited`, naming what held them.
    fn hold_back(&mut self, now_us: u64) {
        if !self.pending.iter().any(|item| is_notification(item.payload.kind())) {
            return;
        }
        self.noise.refresh();
        if self.noise.is_idle() {
            return;
        }
        for item in &mut self.pending {
            if !is_notification(item.payload.kind()) {
                continue;
            }
            match self.noise.decide(&item.labels, now_us) {
                Fate::Notify => {}
                Fate::Silenced(held_by) => {
                    item.status = Status::Silenced;
                    item.held_by = Some(held_by);
                }
                Fate::Inhibited(held_by) => {
                    item.status = Status::Inhibited;
                    item.held_by = Some(held_by);
                }
                Fate::Grouped { held_by, until_us } => {
                    item.status = Status::Held;
                    item.held_by = Some(held_by);
                    item.release_us = Some(until_us);
                }
                Fate::Muted {
                    held_by,
                    until_us,
                    drop,
                } => {
                    // E-mails are held for one digest at the end of the
                    // mute; other notifications wait for it.
                    item.status = match (drop, item.payload.kind()) {
                        (true, _) => Status::Dropped,
                        (false, Kind::Email) => Status::Held,
                        (false, _) => item.status,
                    };
                    item.held_by = Some(held_by);
                    item.release_us = Some(until_us);
                }
            }
        }
    }

    /// The notifications (e-mails, webhooks, user messages) the call that
    /// made `delivery` made just before it, back to its previous label
    /// change: "announce A, unlabel A, announce B, unlabel B" pairs each
    /// label change with its announcement. One module's actions on one
    /// event or tick come one after the other, and the input's items are
    /// all in `pending`. A label change waits for them (decision D16).
    fn notifications_of_the_same_call(&self, delivery: &Delivery<'_>) -> Vec<usize> {
        let mut follows: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, item)| item.module == delivery.module && item.event.as_deref() == delivery.event)
            .take_while(|(_, item)| item.payload.kind() != Kind::Label)
            .filter(|(_, item)| matches!(item.payload.kind(), Kind::Email | Kind::Webhook | Kind::UserMessage))
            .map(|(index, _)| index)
            .collect();
        follows.reverse();
        follows
    }

    /// Says what the commit decided for items that do not simply wait for
    /// delivery.
    fn tell(&self, item: &NewItem, committed: store::Committed) {
        self.metrics.queued(&item.module, item.payload.kind().as_str());
        let held_back;
        let what = match (committed.status, &item.held_by) {
            (status, Some(held_by)) => {
                let reason = match status {
                    Status::Silenced | Status::Inhibited => status.as_str(),
                    _ if held_by.starts_with("group ") => "grouped",
                    _ => "muted",
                };
                self.metrics
                    .held_back(&item.module, item.payload.kind().as_str(), reason);
                let until = match (status, item.release_us) {
                    (Status::Dropped, _) => " and dropped (mute_mode = \"drop\")".to_string(),
                    (_, Some(until)) => format!(" until {}", crate::clock::rfc3339(until)),
                    _ => String::new(),
                };
                held_back = format!("held back by {held_by}{until} (its labels: {})", item.labels);
                (Level::Info, held_back.as_str())
            }
            (Status::Held, None) => {
                self.metrics.held(&item.module);
                (Level::Info, "held for the digest at the end of its SendInterval window")
            }
            (Status::Dropped, None) => {
                self.metrics.dropped(&item.module);
                (
                    Level::Warn,
                    "dropped: inside its SendInterval window (throttle_mode = \"drop\")",
                )
            }
            (Status::WaitingApi, None) => (Level::Debug, "kept: user messages and labels need the Velociraptor API"),
            (Status::Blocked, None) => (
                Level::Debug,
                "waits until the notifications its call made before it are sent",
            ),
            (Status::Dead, None) => (
                Level::Warn,
                "not done: a notification its call made before it was dropped",
            ),
            _ => return,
        };
        let subject = item.payload.subject().unwrap_or("");
        Report::new(
            what.0,
            &item.module,
            item.event.as_deref(),
            format!("outbox item {} ({subject:?}) {}", committed.id, what.1),
        )
        .trace();
    }
}

impl StoreOutbox {
    /// Commits the input in hand, unless a lease it was read under is
    /// another replica's now ([`StoreError::is_fenced`]: nothing stored,
    /// the input stays in hand for [`StoreOutbox::discard_input`]).
    pub fn commit_fenced(&mut self, state: &[StateWrite], fences: &[Fence]) -> Result<(), StoreError> {
        let now_us = self.clock.now_us();
        self.hold_back(now_us);
        let changes = Changes {
            state,
            items: &self.pending,
            retries: &self.retries,
            fences,
        };
        let deadline = now_us.saturating_add(self.retry_deadline_us);
        let committed = self.store.commit(&changes, now_us, deadline, &self.throttle)?;
        for (item, committed) in self.pending.iter().zip(committed) {
            self.tell(item, committed);
        }
        self.discard_input();
        Ok(())
    }

    /// Forgets what the input in hand caused (committed, or another
    /// replica's to handle).
    pub fn discard_input(&mut self) {
        self.pending.clear();
        self.retries.clear();
    }
}

impl Outbox for StoreOutbox {
    fn accept(&mut self, delivery: Delivery<'_>) {
        if let Some(item) = self.item(delivery) {
            let records = self.records_of(&delivery, &item);
            self.pending.push(item);
            self.pending.extend(records);
        }
    }

    fn report(&mut self, report: Report) {
        report.trace();
    }

    fn defer(&mut self, change: RetryChange) {
        self.retries.push(change);
    }

    fn commit(&mut self, state: &[StateWrite]) -> Result<(), StoreError> {
        self.commit_fenced(state, &[])
    }
}
