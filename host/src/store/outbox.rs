//! The outbox: every action waiting to be delivered, and what became of
//! it. Delivery works from this table, so a restart resumes where the last
//! run stopped.
//!
//! An item is typed: its [`Kind`] and [`Status`] are enums, its
//! [`Payload`] a serde type of a versioned schema ([`PAYLOAD_VERSION`]),
//! and its body (an e-mail's message, a webhook's request body) raw bytes.
//! A row that cannot be read (a payload of an unknown version, a status
//! this release does not know) is reported as [`Unreadable`] with its id
//! and the reason, never taken for something else.

use std::collections::BTreeMap;

use super::db::{Db, DbError, DbResult, Row, args};
use serde::{Deserialize, Serialize};

use super::attempts::{self, AttemptOutcome};
use super::follows::FailedFollower;
use super::{Store, StoreError, db_time, follows, from_db_time};
use crate::noise::Labels;

/// The schema version of [`Payload`] written by this release.
pub const PAYLOAD_VERSION: i64 = 1;

/// What an item does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Email,
    Webhook,
    UserMessage,
    Label,
    /// An alert written into the Velociraptor server's own alert queue.
    Alert,
    /// A record of a notification for a syslog receiver.
    Syslog,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Email,
        Kind::Webhook,
        Kind::UserMessage,
        Kind::Label,
        Kind::Alert,
        Kind::Syslog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Webhook => "webhook",
            Kind::UserMessage => "user-message",
            Kind::Label => "label",
            Kind::Alert => "alert",
            Kind::Syslog => "syslog",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Waiting for its (next) delivery attempt.
    Pending,
    /// Throttled: waits for its module's window to end, then goes out in a
    /// digest.
    Held,
    /// Folded into a digest that was sent instead.
    Digested,
    Sent,
    /// Failed permanently, or transiently until its deadline.
    Dead,
    /// Throttled in `drop` mode.
    Dropped,
    /// A user message or label change: executed through the Velociraptor
    /// API, which this host has not configured.
    WaitingApi,
    /// Waits until the items it follows are sent (a label change after
    /// its call's announcement; see `follows.rs`).
    Blocked,
    /// Held back by a silence (its `held_by` names it): kept, not sent.
    Silenced,
    /// Held back by an inhibit rule (its `held_by` names it): kept, not
    /// sent.
    Inhibited,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Pending,
        Status::Held,
        Status::Digested,
        Status::Sent,
        Status::Dead,
        Status::Dropped,
        Status::WaitingApi,
        Status::Blocked,
        Status::Silenced,
        Status::Inhibited,
    ];

    /// Statuses of items delivery is working through: what the outbox
    /// bound counts (the schema's `outbox_open` triggers list them). Items
    /// waiting for a Velociraptor API that is not configured are not among
    /// them: no delivery drains those, so they cannot hold events back.
    pub const OPEN: [Status; 3] = [Status::Pending, Status::Held, Status::Blocked];

    /// Statuses an item never leaves (but by `outbox retry` for dead ones).
    pub const FINISHED: [Status; 6] = [
        Status::Sent,
        Status::Dead,
        Status::Dropped,
        Status::Digested,
        Status::Silenced,
        Status::Inhibited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Held => "held",
            Status::Digested => "digested",
            Status::Sent => "sent",
            Status::Dead => "dead",
            Status::Dropped => "dropped",
            Status::WaitingApi => "waiting-api",
            Status::Blocked => "blocked",
            Status::Silenced => "silenced",
            Status::Inhibited => "inhibited",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An e-mail: its envelope and what throttling and listing need; the
/// message is the item's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    /// The SMTP Creds secret to send with (None: `[smtp]`).
    pub secret: Option<String>,
    /// Envelope sender (None: the host's default sender).
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub subject: String,
    /// A link to what the e-mail is about, for digests.
    pub link: Option<String>,
    /// The module's `SendInterval` (0: 60 s, negative: none).
    pub send_interval_s: i64,
}

/// A webhook request; the request body is the item's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Its host is named in the module's allowed hosts, so it may resolve
    /// to a private address. Items of earlier releases passed their
    /// checks: true.
    #[serde(default = "named_before")]
    pub may_reach_private: bool,
}

fn named_before() -> bool {
    true
}

/// A webhook URL as logs and listings show it: scheme, host and port.
/// The path and query, where services keep the secret that lets anyone
/// post (Slack's `/services/T/B/secret`, Teams' `sig=`), and any user info
/// are left out.
pub fn redacted_url(url: &str) -> String {
    let uri = url.parse::<http::Uri>().ok();
    match uri
        .as_ref()
        .and_then(|u| Some((u.scheme_str()?, u.host()?, u.port_u16())))
    {
        Some((scheme, host, Some(port))) => format!("{scheme}://{host}:{port}/…"),
        Some((scheme, host, None)) => format!("{scheme}://{host}/…"),
        None => "(a URL that does not parse)".into(),
    }
}

/// A message for a GUI user's notification panel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMessagePayload {
    pub org_id: String,
    pub user: String,
    /// A JSON object.
    pub message: serde_json::Map<String, serde_json::Value>,
}

/// Adds or removes labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelOp {
    Set,
    Remove,
}

impl LabelOp {
    pub fn as_str(self) -> &'static str {
        match self {
            LabelOp::Set => "set",
            LabelOp::Remove => "remove",
        }
    }
}

/// A change to a client's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelPayload {
    pub org_id: String,
    pub client_id: String,
    pub op: LabelOp,
    pub labels: Vec<String>,
}

/// An alert row for the server's `Server.Internal.Alerts` queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertPayload {
    pub org_id: String,
    pub name: String,
    /// When it was raised, RFC 3339.
    pub timestamp: String,
    /// A JSON object.
    pub event_data: serde_json::Map<String, serde_json::Value>,
    pub client_id: Option<String>,
    pub artifact: Option<String>,
    pub artifact_type: Option<String>,
    pub flow_id: Option<String>,
}

/// A record of one notification for a `[[syslog]]` receiver, rendered
/// (RFC 5424 or CEF) when it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyslogPayload {
    /// The `[[syslog]]` section's name.
    pub sink: String,
    /// When the notification was made, in microseconds.
    pub time_us: u64,
    /// What the notification said, in a line: an e-mail's subject, a
    /// webhook's text.
    pub summary: String,
    /// The notification's labels (`alertname`, `client_id`, `severity`...).
    pub labels: Labels,
}

/// What an item carries besides its body, by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Payload {
    Email(EmailPayload),
    Webhook(WebhookPayload),
    UserMessage(UserMessagePayload),
    Label(LabelPayload),
    Alert(AlertPayload),
    Syslog(SyslogPayload),
}

impl Payload {
    pub fn kind(&self) -> Kind {
        match self {
            Payload::Email(_) => Kind::Email,
            Payload::Webhook(_) => Kind::Webhook,
            Payload::UserMessage(_) => Kind::UserMessage,
            Payload::Label(_) => Kind::Label,
            Payload::Alert(_) => Kind::Alert,
            Payload::Syslog(_) => Kind::Syslog,
        }
    }

    /// Who it goes to: e-mail recipients, a webhook's URL, a user, a client.
    /// Who it goes to, as logs and listings show it (a webhook's URL
    /// without its secret: [`redacted_url`]).
    pub fn recipients(&self) -> Vec<String> {
        match self {
            Payload::Email(e) => e.recipients.clone(),
            Payload::Webhook(w) => vec![redacted_url(&w.url)],
            Payload::UserMessage(m) => vec![m.user.clone()],
            Payload::Label(l) => vec![l.client_id.clone()],
            Payload::Alert(_) => Vec::new(),
            Payload::Syslog(r) => vec![format!("syslog {}", r.sink)],
        }
    }

    /// An e-mail's subject, an alert's name.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Payload::Email(e) => Some(&e.subject),
            Payload::Alert(a) => Some(&a.name),
            Payload::Syslog(r) => Some(&r.summary),
            _ => None,
        }
    }
}

/// An item to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewItem {
    pub module: String,
    /// The event (or tick) that caused it.
    pub event: Option<String>,
    /// Pending, or waiting for the Velociraptor API.
    pub status: Status,
    pub payload: Payload,
    pub body: Vec<u8>,
    /// The items of the same commit (by their index, earlier ones) it
    /// waits for.
    pub follows: Vec<usize>,
    /// What silences match on (`noise::labels`).
    pub labels: Labels,
    /// What held it back, when its status says it was (`silence <id>`).
    pub held_by: Option<String>,
    /// Not before this time: the end of its module's mute (a held e-mail
    /// goes in the digest then; another notification is attempted then).
    pub release_us: Option<u64>,
    /// The id of the silence links its call made (`capabilities::links`).
    pub link_id: Option<String>,
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub created_us: u64,
    pub updated_us: u64,
    pub module: String,
    pub event: Option<String>,
    pub status: Status,
    pub attempts: u32,
    pub next_attempt_us: u64,
    pub deadline_us: u64,
    pub last_error: Option<String>,
    pub payload: Payload,
    pub body: Vec<u8>,
    /// Its labels (none for items of releases before noise control).
    pub labels: Labels,
    /// What held it back (`silence <id>`), if something did.
    pub held_by: Option<String>,
}

impl OutboxItem {
    pub fn kind(&self) -> Kind {
        self.payload.kind()
    }

    /// "e-mail 12 to a@b ("Subject")", for log lines.
    pub fn describe(&self) -> String {
        let to = self.payload.recipients().join(", ");
        match self.payload.subject() {
            Some(subject) => format!("{} {} to {to} ({subject:?})", self.kind(), self.id),
            None => format!("{} {} to {to}", self.kind(), self.id),
        }
    }
}

/// A row this release cannot read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("outbox item {id} cannot be read: {reason}")]
pub struct Unreadable {
    pub id: i64,
    pub reason: String,
}

/// A digest e-mail, to be stored in place of the held items it lists.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDigest {
    pub held: Vec<i64>,
    pub item: NewItem,
    /// Why it may not be sent: it is stored dead with the reason (the held
    /// items folded into it all the same, so nothing is left held forever).
    pub refused: Option<String>,
}

/// Which items [`Store::search`] returns; every field left None passes
/// all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxFilter {
    pub status: Option<Status>,
    pub module: Option<String>,
    pub kind: Option<Kind>,
    /// Created at or after, at or before.
    pub since_us: Option<u64>,
    pub until_us: Option<u64>,
    /// Older than this item: the next page.
    pub before_id: Option<i64>,
    /// Found, case-blind, in the subject, the recipients, the labels or
    /// the last error.
    pub text: Option<String>,
}

/// What [`Store::search`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub items: Vec<Result<OutboxItem, Unreadable>>,
    /// When a text search read [`SEARCH_SCAN`] rows: the id of the last
    /// one (a search below it goes on).
    pub scanned_to: Option<i64>,
}

/// Rows a text search reads at most.
pub const SEARCH_SCAN: usize = 10_000;

/// Whether `item` mentions `text` (lower case) where an operator looks.
fn mentions(item: &OutboxItem, text: &str) -> bool {
    let has = |field: &str| field.to_lowercase().contains(text);
    item.payload.subject().is_some_and(has)
        || item.payload.recipients().iter().any(|r| has(r))
        || item.last_error.as_deref().is_some_and(has)
        || item.labels.iter().any(|(name, value)| has(name) || has(value))
        || has(&item.module)
}

/// What the outbox holds undelivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOutbox {
    pub items: u64,
    /// Octets of their payloads and bodies.
    pub bytes: u64,
}

/// Items per status, and rows that cannot be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub by_status: BTreeMap<Status, u64>,
    /// Rows whose status this release does not know.
    pub unknown: BTreeMap<String, u64>,
}

impl std::fmt::Display for StatusCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known = self.by_status.iter().map(|(s, n)| format!("{s} {n}"));
        let unknown = self.unknown.iter().map(|(s, n)| format!("{s:?} (unknown) {n}"));
        f.write_str(&known.chain(unknown).collect::<Vec<_>>().join(", "))
    }
}

pub(super) const COLUMNS: &str = "id, created_us, updated_us, module, event, kind, status, attempts, next_attempt_us, \
                       deadline_us, last_error, payload_version, payload, body, labels, held_by";

/// The same, but for the body, left empty: what listing held e-mails needs
/// (a digest lists subjects; bodies can be megabytes each).
const COLUMNS_WITHOUT_BODY: &str = "id, created_us, updated_us, module, event, kind, status, attempts, \
                                    next_attempt_us, deadline_us, last_error, payload_version, payload, \
                                    CAST(NULL AS BYTEA) AS body, labels, held_by";

/// Reads a row: a SQL error is an error, a row this release cannot make
/// sense of is [`Unreadable`].
pub(super) fn read_item(row: &Row<'_>) -> DbResult<Result<OutboxItem, Unreadable>> {
    let id: i64 = row.get(0)?;
    let unreadable = |reason: String| Ok(Err(Unreadable { id, reason }));
    let kind: String = row.get(5)?;
    let status: String = row.get(6)?;
    let version: i64 = row.get(11)?;
    let payload: String = row.get(12)?;
    let Some(status) = Status::parse(&status) else {
        return unreadable(format!("status {status:?} is not one this release knows"));
    };
    if version != PAYLOAD_VERSION {
        return unreadable(match version {
            0 => {
                let kept: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
                let reason = kept["reason"].as_str().unwrap_or(&payload);
                format!("written by an earlier release and not converted: {reason}")
            }
            _ => format!("payload version {version} (this release reads {PAYLOAD_VERSION})"),
        });
    }
    let payload: Payload = match serde_json::from_str(&payload) {
        Ok(payload) => payload,
        Err(e) => return unreadable(format!("payload: {e}")),
    };
    if Kind::parse(&kind) != Some(payload.kind()) {
        return unreadable(format!("kind {kind:?} but a {} payload", payload.kind()));
    }
    let labels: Option<String> = row.get(14)?;
    let labels = match labels.map(|text| serde_json::from_str::<Labels>(&text)) {
        None => Labels::default(),
        Some(Ok(labels)) => labels,
        Some(Err(e)) => return unreadable(format!("labels: {e}")),
    };
    Ok(Ok(OutboxItem {
        id,
        created_us: from_db_time(row.get(1)?),
        updated_us: from_db_time(row.get(2)?),
        module: row.get(3)?,
        event: row.get(4)?,
        status,
        attempts: u32::try_from(row.get::<i64>(7)?).unwrap_or(0),
        next_attempt_us: from_db_time(row.get(8)?),
        deadline_us: from_db_time(row.get(9)?),
        last_error: row.get(10)?,
        payload,
        body: row.get::<Option<Vec<u8>>>(13)?.unwrap_or_default(),
        labels,
        held_by: row.get(15)?,
    }))
}

/// Inserts an item with `status`; returns its id.
pub(super) fn insert(tx: Db<'_>, item: &NewItem, status: Status, now_us: u64, deadline_us: u64) -> DbResult<i64> {
    let to_json = DbError::value;
    // A muted item waits for its mute's end, and has its whole retry
    // window from then.
    let release_us = item.release_us.unwrap_or(now_us).max(now_us);
    let payload = serde_json::to_string(&item.payload).map_err(to_json)?;
    let labels = match item.labels.is_empty() {
        true => None,
        false => Some(serde_json::to_string(&item.labels).map_err(to_json)?),
    };
    tx.query_one(
        "INSERT INTO outbox (created_us, updated_us, module, event, kind, status, next_attempt_us, deadline_us,
                             payload_version, payload, body, labels, held_by, link_id)
         VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?12, ?6, ?7, ?8, ?9, ?10, ?11, ?13)
         RETURNING id",
        args![
            db_time(now_us),
            item.module,
            item.event,
            item.payload.kind().as_str(),
            status.as_str(),
            db_time(deadline_us.saturating_add(release_us - now_us)),
            PAYLOAD_VERSION,
            payload,
            item.body,
            labels,
            item.held_by,
            db_time(release_us),
            item.link_id,
        ],
        |r| r.get(0),
    )
}

/// A digest stored: its id, and what followed its items and failed with
/// it (a refused digest).
pub type Folded = (i64, Vec<FailedFollower>);

/// Whether every item of `ids` is still held.
fn all_held(tx: Db<'_>, ids: &[i64]) -> DbResult<bool> {
    for id in ids {
        let held: Option<bool> = tx.query_opt("SELECT status = 'held' FROM outbox WHERE id = ?1", args![id], |r| {
            r.get(0)
        })?;
        if held != Some(true) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn query(db: Db<'_>, sql: &str, args: &[super::db::Arg<'_>]) -> DbResult<Vec<Result<OutboxItem, Unreadable>>> {
    db.query(sql, args, read_item)
}

impl Store {
    /// Pending items whose attempt is due, oldest first.
    pub fn due(&self, now_us: u64, limit: usize) -> Result<Vec<Result<OutboxItem, Unreadable>>, StoreError> {
        self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_us <= ?1 ORDER BY id LIMIT ?2"
                ),
                args![db_time(now_us), i64::try_from(limit).unwrap_or(i64::MAX)],
            )
        })
    }

    /// When the next pending item is due, if any.
    pub fn next_due_us(&self) -> Result<Option<u64>, StoreError> {
        self.read(|c| {
            c.query_one(
                "SELECT min(next_attempt_us) FROM outbox WHERE status = 'pending'",
                &[],
                |r| r.get::<Option<i64>>(0),
            )
            .map(|v| v.map(from_db_time))
        })
    }

    /// Items delivery is working through: pending, held or blocked, but
    /// for those a module's mute holds (they wait for its end, possibly
    /// days: they must not hold events back nor keep a run from ending).
    pub fn open_count(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_one(
                "SELECT count(*) FROM outbox WHERE status IN ('pending', 'held', 'blocked')
                   AND (held_by IS NULL OR held_by LIKE 'group %')",
                &[],
                |r| r.get::<i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
        })
    }

    /// Items delivery is working through ([`Status::OPEN`]), and their
    /// octets (one row read: see the schema's `outbox_open`).
    pub fn open_outbox(&self) -> Result<OpenOutbox, StoreError> {
        self.read(|c| {
            c.query_one("SELECT items, bytes FROM outbox_open", &[], |r| {
                Ok(OpenOutbox {
                    items: u64::try_from(r.get::<i64>(0)?).unwrap_or(0),
                    bytes: u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
                })
            })
        })
    }

    /// Records a delivery; what waited for it goes in line.
    pub fn mark_sent(&self, id: i64, now_us: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            let sent = tx.execute(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, last_error = NULL, updated_us = ?2,
                        claimed_by = NULL, claimed_until_us = NULL
                 WHERE id = ?1",
                args![id, db_time(now_us)],
            )?;
            if sent > 0 {
                attempts::record(tx, id, now_us, AttemptOutcome::Sent, None)?;
            }
            follows::release_followers(tx, id, now_us).map(drop)
        })
    }

    ///
    /// Only while the item is still `claimant`'s (or nobody's) and not
    /// finished: a replica taken for dead whose late attempt failed leaves
    /// alone what another replica has since claimed or settled.
    pub fn mark_retry(
        &self,
        id: i64,
        next_attempt_us: u64,
        error: &str,
        now_us: u64,
        claimant: &str,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let retried = tx.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_us = ?2, last_error = ?3, updated_us = ?4,
                        claimed_by = NULL, claimed_until_us = NULL
                 WHERE id = ?1 AND status NOT IN ('sent', 'dead', 'dropped', 'digested', 'silenced', 'inhibited')
                   AND (claimed_by IS NULL OR claimed_by = ?5)",
                args![id, db_time(next_attempt_us), error, db_time(now_us), claimant],
            )?;
            if retried > 0 {
                attempts::record(tx, id, now_us, AttemptOutcome::Retry, Some(error))?;
            }
            Ok(())
        })
    }

    /// Dead-letters an item, and what waited for it (returned); as
    /// [`Store::mark_retry`], only while it is `claimant`'s and unfinished.
    pub fn mark_dead(
        &self,
        id: i64,
        error: &str,
        now_us: u64,
        claimant: &str,
    ) -> Result<Vec<FailedFollower>, StoreError> {
        self.write(|tx| {
            let dead = tx.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?2, updated_us = ?3,
                        claimed_by = NULL, claimed_until_us = NULL
                 WHERE id = ?1 AND status NOT IN ('sent', 'dead', 'dropped', 'digested', 'silenced', 'inhibited')
                   AND (claimed_by IS NULL OR claimed_by = ?4)",
                args![id, error, db_time(now_us), claimant],
            )?;
            if dead == 0 {
                return Ok(Vec::new());
            }
            attempts::record(tx, id, now_us, AttemptOutcome::Dead, Some(error))?;
            follows::fail_followers(tx, id, Status::Dead, now_us)
        })
    }

    /// Sets an unreadable item aside until `until_us`, its reason as its
    /// last error; its status stays what it is.
    pub fn set_aside(&self, unreadable: &Unreadable, until_us: u64, now_us: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE outbox SET next_attempt_us = ?2, last_error = ?3, updated_us = ?4,
                        claimed_by = NULL, claimed_until_us = NULL WHERE id = ?1",
                args![unreadable.id, db_time(until_us), unreadable.reason, db_time(now_us)],
            )
            .map(drop)
        })
    }

    /// Held e-mails due by `now_us` (not those waiting for a mute's or a
    /// group's time), by module, in the order they were held, without
    /// their bodies (delivery looks at them every round).
    pub fn held_by_module(&self, now_us: u64) -> Result<Vec<Vec<Result<OutboxItem, Unreadable>>>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS_WITHOUT_BODY} FROM outbox WHERE status = 'held' AND next_attempt_us <= ?1 ORDER BY id"
        );
        let held = self.read(|c| query(c, &sql, args![db_time(now_us)]))?;
        let mut by_module: Vec<(String, Vec<Result<OutboxItem, Unreadable>>)> = Vec::new();
        let module_of = |row: &Result<OutboxItem, Unreadable>| match row {
            Ok(item) => item.module.clone(),
            Err(_) => String::new(),
        };
        for row in held {
            let module = module_of(&row);
            match by_module.iter_mut().find(|(m, _)| *m == module) {
                Some((_, rows)) => rows.push(row),
                None => by_module.push((module, vec![row])),
            }
        }
        Ok(by_module.into_iter().map(|(_, rows)| rows).collect())
    }

    /// When the window of `module` (and of the host) ends, if one is open.
    pub fn window_open_until(
        &self,
        module: &str,
        send_interval_s: i64,
        mail_period_s: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.read(|c| super::commit::window_open_until(c, module, send_interval_s, mail_period_s))
    }

    /// Replaces held items by digest e-mails, in one transaction; each
    /// digest sent consumes its module's window. A refused digest is stored
    /// dead with its reason, and what followed its held items fails with
    /// it (returned, as [`Store::mark_dead`] returns them). Returns each
    /// digest's id, in order; None for a digest left out because some of its
    /// items are no longer held (another process folded them).
    pub fn fold_into_digests(
        &self,
        digests: &[NewDigest],
        now_us: u64,
        deadline_us: u64,
    ) -> Result<Vec<Option<Folded>>, StoreError> {
        self.write(|tx| {
            let mut folded = Vec::with_capacity(digests.len());
            for NewDigest {
                held,
                item: digest,
                refused,
            } in digests
            {
                // Another process on the database may have folded them
                // first: a digest goes only with all its members still held.
                if !all_held(tx, held)? {
                    folded.push(None);
                    continue;
                }
                let status = match refused {
                    Some(_) => Status::Dead,
                    None => Status::Pending,
                };
                let id = insert(tx, digest, status, now_us, deadline_us)?;
                for held_id in held {
                    tx.execute(
                        "UPDATE outbox SET status = 'digested', digest_id = ?2, updated_us = ?3 WHERE id = ?1",
                        args![held_id, id, db_time(now_us)],
                    )?;
                }
                follows::follow_digest(tx, held, id)?;
                let failed = match refused {
                    Some(why) => {
                        tx.execute("UPDATE outbox SET last_error = ?2 WHERE id = ?1", args![id, why])?;
                        follows::fail_followers(tx, id, Status::Dead, now_us)?
                    }
                    // A group's post is no e-mail: it opens no SendInterval window.
                    None if matches!(digest.payload, Payload::Email(_)) => {
                        super::commit::record_send(tx, &digest.module, now_us)?;
                        Vec::new()
                    }
                    None => Vec::new(),
                };
                folded.push(Some((id, failed)));
            }
            Ok(folded)
        })
    }

    /// Items with `status` (all when None), newest first.
    pub fn list(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<Result<OutboxItem, Unreadable>>, StoreError> {
        self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {COLUMNS} FROM outbox WHERE CAST(?1 AS TEXT) IS NULL OR status = ?1 ORDER BY id DESC \
                     LIMIT ?2"
                ),
                args![status.map(Status::as_str), i64::try_from(limit).unwrap_or(i64::MAX)],
            )
        })
    }

    /// Items that pass `filter`, newest first, at most `limit`, without
    /// their bodies (an e-mail's can be megabytes). The text filter reads
    /// at most [`SEARCH_SCAN`] rows past the others: a console's search
    /// stays cheap on a large outbox. Returns the items and, when the scan
    /// stopped at that bound, the id of the last row it read: a search
    /// from below it goes on.
    pub fn search(&self, filter: &OutboxFilter, limit: usize) -> Result<SearchPage, StoreError> {
        let text = filter.text.as_deref().map(str::to_lowercase).filter(|t| !t.is_empty());
        let scan = if text.is_some() { SEARCH_SCAN } else { limit };
        let rows = self.read(|c| {
            query(
                c,
                &format!(
                    "SELECT {COLUMNS_WITHOUT_BODY} FROM outbox
                     WHERE (CAST(?1 AS TEXT) IS NULL OR status = ?1)
                       AND (CAST(?2 AS TEXT) IS NULL OR module = ?2)
                       AND (CAST(?3 AS TEXT) IS NULL OR kind = ?3)
                       AND created_us >= ?4 AND created_us <= ?5 AND id < ?6
                     ORDER BY id DESC LIMIT ?7"
                ),
                args![
                    filter.status.map(Status::as_str),
                    filter.module.as_deref(),
                    filter.kind.map(Kind::as_str),
                    db_time(filter.since_us.unwrap_or(0)),
                    db_time(filter.until_us.unwrap_or(u64::MAX)),
                    filter.before_id.unwrap_or(i64::MAX),
                    i64::try_from(scan).unwrap_or(i64::MAX)
                ],
            )
        })?;
        let scanned_to = match (&text, rows.last()) {
            (Some(_), Some(last)) if rows.len() == scan => Some(match last {
                Ok(item) => item.id,
                Err(unreadable) => unreadable.id,
            }),
            _ => None,
        };
        let items = rows
            .into_iter()
            .filter(|row| match (&text, row) {
                (None, _) => true,
                (Some(text), Ok(item)) => mentions(item, text),
                (Some(_), Err(_)) => false,
            })
            .take(limit)
            .collect();
        Ok(SearchPage { items, scanned_to })
    }

    /// Deletes the dead items among `ids` (and what followed them);
    /// returns how many. An item of another status is left: only what was
    /// given up on may be thrown away by hand.
    pub fn purge_dead(&self, ids: &[i64]) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut n = 0;
            for id in ids {
                let deleted = tx.execute("DELETE FROM outbox WHERE id = ?1 AND status = 'dead'", args![*id])?;
                if deleted > 0 {
                    attempts::forget(tx, *id)?;
                    follows::forget(tx, *id)?;
                }
                n += deleted;
            }
            Ok(n)
        })
    }

    /// One item, if there is one with that id.
    pub fn item(&self, id: i64) -> Result<Option<Result<OutboxItem, Unreadable>>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM outbox WHERE id = ?1"),
                args![id],
                read_item,
            )
        })
    }

    /// Counts per status.
    pub fn counts(&self) -> Result<StatusCounts, StoreError> {
        let rows: Vec<(String, i64)> = self.read(|c| {
            c.query("SELECT status, count(*) FROM outbox GROUP BY status", &[], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
        })?;
        let mut counts = StatusCounts::default();
        for (status, n) in rows {
            let n = u64::try_from(n).unwrap_or(0);
            match Status::parse(&status) {
                Some(status) => *counts.by_status.entry(status).or_default() += n,
                None => *counts.unknown.entry(status).or_default() += n,
            }
        }
        Ok(counts)
    }

    /// Puts dead items (those of `ids` and the dead items they follow, or
    /// all) back in line, with a new deadline; an item that follows one
    /// not sent waits for it again. Returns how many.
    pub fn retry(&self, ids: &[i64], now_us: u64, deadline_us: u64) -> Result<usize, StoreError> {
        self.write(|tx| {
            let sql = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_us = ?1, deadline_us = ?2,
                       updated_us = ?1 WHERE status = 'dead'";
            let (now, deadline) = (db_time(now_us), db_time(deadline_us));
            let n = if ids.is_empty() {
                tx.execute(sql, args![now, deadline])?
            } else {
                let mut ids = ids.to_vec();
                ids.extend(follows::dead_predecessors(tx, &ids)?);
                let mut n = 0;
                for id in ids {
                    n += tx.execute(&format!("{sql} AND id = ?3"), args![now, deadline, id])?;
                }
                n
            };
            follows::block_waiting(tx)?;
            Ok(n)
        })
    }

    /// Puts the user messages and labels kept while no Velociraptor API was
    /// configured in line for delivery; returns how many.
    pub fn release_waiting_api(&self, now_us: u64, deadline_us: u64) -> Result<usize, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE outbox SET status = 'pending',
                        next_attempt_us = CASE WHEN next_attempt_us > ?1 THEN next_attempt_us ELSE ?1 END,
                        deadline_us = CASE WHEN deadline_us > ?2 THEN deadline_us ELSE ?2 END, updated_us = ?1
                 WHERE status = 'waiting-api'",
                args![db_time(now_us), db_time(deadline_us)],
            )
            .and_then(|n| follows::block_waiting(tx).map(|_| n))
        })
    }

    /// Notifications a module's mute holds until it ends.
    pub fn muted_count(&self) -> Result<u64, StoreError> {
        self.read(|c| {
            c.query_one(
                "SELECT count(*) FROM outbox WHERE status IN ('pending', 'held')
                   AND held_by IS NOT NULL AND held_by NOT LIKE 'group %'",
                &[],
                |r| r.get::<i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
        })
    }

    /// The labels and creation times of the notifications created since
    /// `since_us` that were not held back (what inhibit rules must know
    /// after a restart), oldest first.
    pub fn notified_since(&self, since_us: u64) -> Result<Vec<(Labels, u64)>, StoreError> {
        let rows: Vec<(String, i64)> = self.read(|c| {
            c.query(
                "SELECT labels, created_us FROM outbox
                 WHERE created_us >= ?1 AND labels IS NOT NULL AND event IS NOT NULL
                   AND kind IN ('email', 'webhook', 'user-message')
                   AND status NOT IN ('silenced', 'inhibited', 'dropped')
                 ORDER BY id",
                args![db_time(since_us)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|(labels, at)| Some((serde_json::from_str(&labels).ok()?, from_db_time(at))))
            .collect())
    }

    /// The notification of the call whose silence links carry `link_id`
    /// (its first e-mail, where links go, else its first notification):
    /// what a link names.
    pub fn notification_of_link(&self, link_id: &str) -> Result<Option<Result<OutboxItem, Unreadable>>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM outbox
                     WHERE link_id = ?1 AND kind IN ('email', 'webhook', 'user-message')
                     ORDER BY kind = 'email' DESC, id LIMIT 1"
                ),
                args![link_id],
                read_item,
            )
        })
    }

    /// The labels of the newest notifications created since `since_us`,
    /// at most `limit`, whatever became of them (what a silence would
    /// have matched).
    pub fn notification_labels_since(&self, since_us: u64, limit: usize) -> Result<Vec<Labels>, StoreError> {
        let rows: Vec<String> = self.read(|c| {
            c.query(
                "SELECT labels FROM outbox
                 WHERE created_us >= ?1 AND labels IS NOT NULL AND event IS NOT NULL
                   AND kind IN ('email', 'webhook', 'user-message')
                 ORDER BY id DESC LIMIT ?2",
                args![db_time(since_us), limit as i64],
                |r| r.get(0),
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|labels| serde_json::from_str(labels).ok())
            .collect())
    }

    /// Deletes finished items of `status` (every finished status when
    /// None) last updated before `before_us`. Returns how many. Deletes a
    /// batch per transaction, so that months of items do not hold the
    /// write lock past what the pipeline's commits wait.
    pub fn purge(&self, status: Option<Status>, before_us: u64) -> Result<usize, StoreError> {
        const BATCH: usize = 1000;
        let statuses = match status {
            Some(status) => vec![status],
            None => Status::FINISHED.to_vec(),
        };
        let mut purged = 0;
        for status in statuses {
            loop {
                let n = self.write(|tx| {
                    // The same rows twice: the transaction holds the write
                    // lock, and the order is the id's.
                    let batch = "SELECT id FROM outbox WHERE status = ?1 AND updated_us < ?2 ORDER BY id LIMIT ?3";
                    let (status, before, limit) = (status.as_str(), db_time(before_us), BATCH as i64);
                    let args = args![status, before, limit];
                    tx.execute(&format!("DELETE FROM outbox_attempts WHERE item IN ({batch})"), args)?;
                    tx.execute(
                        &format!("DELETE FROM outbox_follows WHERE item IN ({batch}) OR after IN ({batch})"),
                        args,
                    )?;
                    let n = tx.execute(&format!("DELETE FROM outbox WHERE id IN ({batch})"), args)?;
                    Ok(n)
                })?;
                purged += n;
                if n < BATCH {
                    break;
                }
            }
        }
        Ok(purged)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) fn email(module: &str, to: &str, subject: &str, send_interval_s: i64) -> NewItem {
        NewItem {
            module: module.into(),
            event: Some("e:1".into()),
            status: Status::Pending,
            payload: Payload::Email(EmailPayload {
                secret: None,
                sender: Some("v@example.org".into()),
                recipients: vec![to.into()],
                subject: subject.into(),
                link: None,
                send_interval_s,
            }),
            body: b"Subject: x\r\n\r\nhello\r\n".to_vec(),
            follows: Vec::new(),
            labels: Labels::default(),
            held_by: None,
            release_us: None,
            link_id: None,
        }
    }

    fn add(store: &Store, item: &NewItem) -> i64 {
        store.write(|tx| insert(tx, item, item.status, 10, 1_000_000)).unwrap()
    }

    /// The console's outbox page: each filter narrows, text is found
    /// case-blind in the subject, recipients, labels or last error, pages
    /// go by id, and no body is read.
    #[test]
    fn search_narrows_by_each_filter_and_finds_text_anywhere_an_operator_looks() {
        let store = Store::for_tests();
        let at = |item: &NewItem, now_us: u64| {
            store
                .write(|tx| insert(tx, item, item.status, now_us, u64::MAX))
                .unwrap()
        };
        let old = at(
            &email("alerts", "soc@example.org", "Velociraptor: BEACON on WIN-1", 0),
            100,
        );
        let mut labelled = email("flow_completion", "ir@example.org", "Collection finished", 0);
        labelled.labels.set("client", "WIN-FIN-02");
        let new = at(&labelled, 200);
        let mut dead = email("alerts", "soc@example.org", "other", 0);
        dead.status = Status::Dead;
        let dead = at(&dead, 300);
        store
            .write(|tx| {
                tx.execute(
                    "UPDATE outbox SET last_error = 'SMTP 550 Mailbox Unavailable' WHERE id = ?1",
                    args![dead],
                )
            })
            .unwrap();
        let ids = |filter: OutboxFilter| -> Vec<i64> {
            let SearchPage { items, scanned_to } = store.search(&filter, 10).unwrap();
            assert_eq!(scanned_to, None);
            items
                .into_iter()
                .map(|i| i.unwrap())
                .inspect(|i| assert!(i.body.is_empty()))
                .map(|i| i.id)
                .collect()
        };
        assert_eq!(ids(OutboxFilter::default()), vec![dead, new, old]);
        assert_eq!(
            ids(OutboxFilter {
                status: Some(Status::Dead),
                ..Default::default()
            }),
            vec![dead]
        );
        assert_eq!(
            ids(OutboxFilter {
                module: Some("alerts".into()),
                ..Default::default()
            }),
            vec![dead, old]
        );
        assert_eq!(
            ids(OutboxFilter {
                kind: Some(Kind::Webhook),
                ..Default::default()
            }),
            Vec::<i64>::new()
        );
        assert_eq!(
            ids(OutboxFilter {
                since_us: Some(150),
                until_us: Some(250),
                ..Default::default()
            }),
            vec![new]
        );
        assert_eq!(
            ids(OutboxFilter {
                before_id: Some(new),
                ..Default::default()
            }),
            vec![old]
        );
        for (text, found) in [
            ("beacon", old),
            ("win-fin-02", new),
            ("ir@EXAMPLE", new),
            ("mailbox unavailable", dead),
        ] {
            assert_eq!(
                ids(OutboxFilter {
                    text: Some(text.into()),
                    ..Default::default()
                }),
                vec![found],
                "{text}"
            );
        }
    }

    /// A text search reads a bounded number of rows, and says where it
    /// stopped, so that the next page goes on from there.
    #[test]
    fn a_text_search_stops_at_its_bound_and_says_where_to_go_on() {
        let store = Store::for_tests();
        let needle = add(&store, &email("alerts", "soc@example.org", "the needle", 0));
        let hay = email("alerts", "soc@example.org", "hay", 0);
        store
            .write(|tx| {
                for _ in 0..SEARCH_SCAN {
                    insert(tx, &hay, hay.status, 10, 1_000_000)?;
                }
                Ok(())
            })
            .unwrap();
        let mut filter = OutboxFilter {
            text: Some("NEEDLE".into()),
            ..OutboxFilter::default()
        };
        let SearchPage {
            items: found,
            scanned_to,
        } = store.search(&filter, 50).unwrap();
        assert!(found.is_empty());
        assert_eq!(scanned_to, Some(needle + 1), "the oldest row read");
        filter.before_id = scanned_to;
        let SearchPage {
            items: found,
            scanned_to,
        } = store.search(&filter, 50).unwrap();
        assert_eq!(
            found.into_iter().map(|i| i.unwrap().id).collect::<Vec<_>>(),
            vec![needle]
        );
        assert_eq!(scanned_to, None);
    }

    /// Purging by hand throws away only what was given up on.
    #[test]
    fn purge_dead_deletes_dead_items_and_leaves_every_other() {
        let store = Store::for_tests();
        let pending = add(&store, &email("alerts", "soc@example.org", "a", 0));
        let mut dead = email("alerts", "soc@example.org", "b", 0);
        dead.status = Status::Dead;
        let dead = add(&store, &dead);
        assert_eq!(store.purge_dead(&[pending, dead, 999]).unwrap(), 1);
        assert!(store.item(dead).unwrap().is_none());
        assert!(store.item(pending).unwrap().is_some());
    }

    /// Two processes on one database may both see the same held items due:
    /// the second fold leaves them, so one digest goes, not two.
    #[test]
    fn items_another_process_folded_are_not_folded_again() {
        let store = Store::for_tests();
        let mut held = email("alerts", "soc@example.org", "x", 60);
        held.status = Status::Held;
        let id = add(&store, &held);
        let digest = || NewDigest {
            held: vec![id],
            item: email("alerts", "soc@example.org", "digest", -1),
            refused: None,
        };
        let first = store.fold_into_digests(&[digest()], 20, 1 << 40).unwrap();
        assert!(first[0].is_some());
        let second = store.fold_into_digests(&[digest()], 30, 1 << 40).unwrap();
        assert!(second[0].is_none());
        assert_eq!(store.list(Some(Status::Pending), 10).unwrap().len(), 1, "one digest");
    }

    #[test]
    fn an_item_reads_back_as_it_was_written() {
        let store = Store::for_tests();
        let item = email("alerts", "soc@example.org", "Hello", -1);
        let id = add(&store, &item);
        let read = store.item(id).unwrap().unwrap().unwrap();
        assert_eq!(read.payload, item.payload);
        assert_eq!(read.body, item.body);
        assert_eq!(
            (read.status, read.kind(), read.module.as_str()),
            (Status::Pending, Kind::Email, "alerts")
        );
    }

    /// A status or payload written by a later release is reported, never
    /// read as another status or kind.
    #[test]
    fn a_row_this_release_cannot_read_is_reported_by_id_and_reason() {
        let store = Store::for_tests();
        let id = add(&store, &email("alerts", "soc@example.org", "Hello", -1));
        store
            .write(|tx| tx.execute("UPDATE outbox SET status = 'quarantined' WHERE id = ?1", args![id]))
            .unwrap();
        let row = store.list(None, 10).unwrap().remove(0);
        assert_eq!(
            row,
            Err(Unreadable {
                id,
                reason: "status \"quarantined\" is not one this release knows".into()
            })
        );
        assert_eq!(store.counts().unwrap().unknown["quarantined"], 1);

        let id = add(&store, &email("alerts", "soc@example.org", "Hello", -1));
        store
            .write(|tx| tx.execute("UPDATE outbox SET payload_version = 7 WHERE id = ?1", args![id]))
            .unwrap();
        let due = store.due(u64::MAX >> 2, 10).unwrap();
        assert_eq!(
            due,
            [Err(Unreadable {
                id,
                reason: "payload version 7 (this release reads 1)".into()
            })]
        );
    }

    /// Delivery looks at held e-mails every round: their bodies (megabytes
    /// with attachments) are not read for it.
    /// The secret part of a webhook URL never reaches a log or a listing.
    #[test]
    fn webhook_urls_are_shown_without_their_secret() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T0/B0/s3cr3t",
                "https://hooks.slack.com/…",
            ),
            (
                "https://user:s3cr3t@hooks.example.org:8443/x?sig=s3cr3t",
                "https://hooks.example.org:8443/…",
            ),
            ("not a url", "(a URL that does not parse)"),
        ] {
            assert_eq!(redacted_url(url), shown);
            let payload = Payload::Webhook(WebhookPayload {
                url: url.into(),
                headers: Vec::new(),
                may_reach_private: false,
            });
            assert!(!payload.recipients().concat().contains("s3cr3t"));
        }
    }

    #[test]
    fn held_e_mails_are_listed_without_their_bodies() {
        let store = Store::for_tests();
        let mut held = email("alerts", "soc@example.org", "Held", 3600);
        held.status = Status::Held;
        held.body = vec![b'x'; 1 << 20];
        let id = add(&store, &held);
        let groups = store.held_by_module(u64::MAX >> 2).unwrap();
        let item = groups[0][0].as_ref().unwrap();
        assert_eq!((item.id, item.body.len()), (id, 0));
        assert_eq!(store.item(id).unwrap().unwrap().unwrap().body.len(), 1 << 20);
    }

    #[test]
    fn retry_puts_dead_items_back_and_purge_deletes_finished_ones() {
        let store = Store::for_tests();
        let dead = add(&store, &email("alerts", "a@example.org", "A", -1));
        let pending = add(&store, &email("alerts", "b@example.org", "B", -1));
        store.mark_dead(dead, "550 no such user", 20, "local").unwrap();
        assert_eq!(store.retry(&[], 30, 100).unwrap(), 1);
        let item = store.item(dead).unwrap().unwrap().unwrap();
        assert_eq!(
            (item.status, item.attempts, item.deadline_us),
            (Status::Pending, 0, 100)
        );
        store.mark_sent(dead, 40).unwrap();
        assert_eq!(store.purge(None, 41).unwrap(), 1);
        assert!(store.item(dead).unwrap().is_none());
        assert!(store.item(pending).unwrap().is_some());
    }

    /// What the outbox bound reads follows items in and out of the open
    /// statuses, whichever way they go.
    #[test]
    fn the_undelivered_items_and_their_bytes_are_counted_as_they_move() {
        let store = Store::for_tests();
        let counted = |store: &Store| {
            let open = Status::OPEN.map(|s| format!("'{s}'")).join(", ");
            store
                .read(|c| {
                    c.query_one(
                        &format!(
                            "SELECT count(*), CAST(coalesce(sum(length(payload) + length(body)), 0) AS BIGINT)
                               FROM outbox WHERE status IN ({open})"
                        ),
                        &[],
                        |r| Ok((r.get::<i64>(0)? as u64, r.get::<i64>(1)? as u64)),
                    )
                })
                .unwrap()
        };
        let check = |store: &Store| {
            let open = store.open_outbox().unwrap();
            assert_eq!((open.items, open.bytes), counted(store));
            open.items
        };
        let mut ids = Vec::new();
        for (status, subject) in [
            (Status::Pending, "a"),
            (Status::Held, "bb"),
            (Status::WaitingApi, "ccc"),
            (Status::Blocked, "dddd"),
            (Status::Sent, "eeeee"),
        ] {
            let mut item = email("alerts", "a@example.org", subject, -1);
            item.status = status;
            ids.push(add(&store, &item));
        }
        assert_eq!(check(&store), 3, "what waits for the API is not counted");
        assert!(store.open_outbox().unwrap().bytes > 0);
        store.mark_sent(ids[0], 20).unwrap();
        assert_eq!(check(&store), 2);
        store.mark_dead(ids[1], "550", 20, "local").unwrap();
        store.mark_retry(ids[2], 30, "busy", 20, "local").unwrap();
        assert_eq!(check(&store), 1, "held went dead; the API's item still waits");
        assert_eq!(store.retry(&[], 30, 100).unwrap(), 1);
        assert_eq!(check(&store), 2);
        store.purge(None, 1_000).unwrap();
        assert_eq!(check(&store), 2);
    }
}
