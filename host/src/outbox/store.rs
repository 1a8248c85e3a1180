//! The durable outbox (SQLite, WAL): every action waiting to be delivered,
//! and what became of it. An event counts as processed once its actions
//! are committed here; delivery works from this table, so a restart
//! resumes where the last run stopped.
//!
//! E-mails are throttled when they are committed (spec Part A #11): within
//! a module's `SendInterval` (or the host's mail period) an e-mail is held
//! for the digest sent when the window ends, or, with `throttle_mode =
//! "drop"`, dropped with a log line, as Velociraptor does.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{Delivery, Level, Outbox, Report, action_json, summarize};
use crate::engine::Action;
use crate::metrics::Metrics;

/// What became of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Held => "held",
            Status::Digested => "digested",
            Status::Sent => "sent",
            Status::Dead => "dead",
            Status::Dropped => "dropped",
            Status::WaitingApi => "waiting-api",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Status::Pending,
            Status::Held,
            Status::Digested,
            Status::Sent,
            Status::Dead,
            Status::Dropped,
            Status::WaitingApi,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub created_us: u64,
    pub module: String,
    /// `email`, `webhook`, `user-message` or `label`.
    pub kind: String,
    pub event: Option<String>,
    pub secret: Option<String>,
    pub sender: Option<String>,
    /// E-mail recipients; the URL of a webhook; the user; the client.
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub link: Option<String>,
    /// The message of an e-mail; the action as JSON otherwise.
    pub payload: Vec<u8>,
    pub send_interval: i64,
    pub status: Status,
    pub attempts: u32,
    pub next_attempt_us: u64,
    pub deadline_us: u64,
    pub last_error: Option<String>,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        created_us      INTEGER NOT NULL,
        module          TEXT NOT NULL,
        kind            TEXT NOT NULL,
        event           TEXT,
        secret          TEXT,
        sender          TEXT,
        recipients      TEXT NOT NULL,
        subject         TEXT,
        link            TEXT,
        payload         BLOB NOT NULL,
        send_interval   INTEGER NOT NULL DEFAULT -1,
        status          TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_us INTEGER NOT NULL,
        deadline_us     INTEGER NOT NULL,
        last_error      TEXT,
        digest_id       INTEGER,
        updated_us      INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_us);
    CREATE TABLE IF NOT EXISTS throttle (
        key          TEXT PRIMARY KEY,
        last_sent_us INTEGER NOT NULL
    );
";

const COLUMNS: &str = "id, created_us, module, kind, event, secret, sender, recipients, subject, link, payload, \
                       send_interval, status, attempts, next_attempt_us, deadline_us, last_error";

/// The global mail period's key in the throttle table.
const GLOBAL: &str = "*";

/// Access to the outbox table, shared by the pipeline (which commits) and
/// delivery (which sends).
#[derive(Debug)]
pub struct OutboxStore {
    conn: Mutex<Connection>,
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    let recipients: String = row.get(7)?;
    let status: String = row.get(12)?;
    Ok(OutboxItem {
        id: row.get(0)?,
        created_us: row.get::<_, i64>(1)? as u64,
        module: row.get(2)?,
        kind: row.get(3)?,
        event: row.get(4)?,
        secret: row.get(5)?,
        sender: row.get(6)?,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        subject: row.get(8)?,
        link: row.get(9)?,
        payload: row.get(10)?,
        send_interval: row.get(11)?,
        status: Status::parse(&status).unwrap_or(Status::Dead),
        attempts: row.get::<_, i64>(13)? as u32,
        next_attempt_us: row.get::<_, i64>(14)? as u64,
        deadline_us: row.get::<_, i64>(15)? as u64,
        last_error: row.get(16)?,
    })
}

/// An item to insert.
#[derive(Debug, Clone)]
pub(crate) struct NewItem {
    pub module: String,
    pub kind: &'static str,
    pub event: Option<String>,
    pub secret: Option<String>,
    pub sender: Option<String>,
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub link: Option<String>,
    pub payload: Vec<u8>,
    pub send_interval: i64,
    pub status: Status,
}

impl OutboxStore {
    /// Opens (creating if needed) the outbox in the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// Leaves WAL checkpoints to a [`crate::checkpoint::Checkpointer`],
    /// so that no commit of this connection waits for one.
    pub fn leave_checkpoints_to_checkpointer(&self) -> anyhow::Result<()> {
        let conn = self.conn.lock().expect("store lock");
        Ok(crate::checkpoint::leave_checkpoints_to_checkpointer(&conn)?)
    }

    pub fn in_memory() -> Self {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        conn.execute_batch(SCHEMA).expect("creating the outbox schema");
        Self { conn: Mutex::new(conn) }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> anyhow::Result<T> {
        let mut conn = self.conn.lock().expect("outbox lock");
        Ok(f(&mut conn)?)
    }

    pub(crate) fn insert(tx: &Transaction<'_>, item: &NewItem, now_us: u64, deadline_us: u64) -> rusqlite::Result<i64> {
        tx.execute(
            "INSERT INTO outbox (created_us, module, kind, event, secret, sender, recipients, subject, link, payload,
                                 send_interval, status, next_attempt_us, deadline_us, updated_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?1, ?13, ?1)",
            params![
                now_us as i64,
                item.module,
                item.kind,
                item.event,
                item.secret,
                item.sender,
                serde_json::to_string(&item.recipients).unwrap_or_default(),
                item.subject,
                item.link,
                item.payload,
                item.send_interval,
                item.status.as_str(),
                deadline_us as i64,
            ],
        )?;
        Ok(tx.last_insert_rowid())
    }

    /// Pending items whose attempt is due, oldest first.
    pub fn due(&self, now_us: u64, limit: usize) -> anyhow::Result<Vec<OutboxItem>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_us <= ?1 ORDER BY id LIMIT ?2"
            ))?;
            stmt.query_map(params![now_us as i64, limit as i64], row_to_item)?
                .collect()
        })
    }

    /// When the next pending item is due, if any.
    pub fn next_due_us(&self) -> anyhow::Result<Option<u64>> {
        self.with(|c| {
            c.query_row(
                "SELECT min(next_attempt_us) FROM outbox WHERE status = 'pending'",
                [],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|v| v.map(|v| v as u64))
        })
    }

    /// Items still to be delivered: pending or held.
    pub fn open_count(&self) -> anyhow::Result<u64> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM outbox WHERE status IN ('pending', 'held')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    pub fn mark_sent(&self, id: i64, now_us: u64) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET status = 'sent', attempts = attempts + 1, last_error = NULL, updated_us = ?2 WHERE id = ?1",
                params![id, now_us as i64],
            )
            .map(drop)
        })
    }

    pub fn mark_retry(&self, id: i64, next_attempt_us: u64, error: &str, now_us: u64) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_us = ?2, last_error = ?3, updated_us = ?4 WHERE id = ?1",
                params![id, next_attempt_us as i64, error, now_us as i64],
            )
            .map(drop)
        })
    }

    pub fn mark_dead(&self, id: i64, error: &str, now_us: u64) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET status = 'dead', attempts = attempts + 1, last_error = ?2, updated_us = ?3 WHERE id = ?1",
                params![id, error, now_us as i64],
            )
            .map(drop)
        })
    }

    /// Modules with held e-mails whose window has ended by `now_us`, with
    /// their held items. The throttle's clock is the same as at commit.
    pub fn released(&self, now_us: u64, mail_period_s: i64) -> anyhow::Result<Vec<Vec<OutboxItem>>> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE status = 'held' ORDER BY id"
            ))?;
            let held: Vec<OutboxItem> = stmt.query_map([], row_to_item)?.collect::<rusqlite::Result<_>>()?;
            let mut by_module: Vec<Vec<OutboxItem>> = Vec::new();
            for item in held {
                match by_module.iter_mut().find(|g| g[0].module == item.module) {
                    Some(group) => group.push(item),
                    None => by_module.push(vec![item]),
                }
            }
            let mut out = Vec::new();
            for group in by_module {
                let interval = effective_interval(group.last().expect("non-empty").send_interval);
                if window_open_until(c, &group[0].module, interval, mail_period_s)?.is_none_or(|end| end <= now_us) {
                    out.push(group);
                }
            }
            Ok(out)
        })
    }

    /// Replaces held items by one digest e-mail per recipient list, in one
    /// transaction; the digests consume the module's window.
    pub(crate) fn fold_into_digests(
        &self,
        digests: &[(Vec<i64>, NewItem)],
        now_us: u64,
        deadline_us: u64,
    ) -> anyhow::Result<Vec<i64>> {
        self.with(|c| {
            let tx = c.transaction()?;
            let mut ids = Vec::new();
            for (held, digest) in digests {
                let id = Self::insert(&tx, digest, now_us, deadline_us)?;
                for held_id in held {
                    tx.execute(
                        "UPDATE outbox SET status = 'digested', digest_id = ?2, updated_us = ?3 WHERE id = ?1",
                        params![held_id, id, now_us as i64],
                    )?;
                }
                record_send(&tx, &digest.module, now_us)?;
                ids.push(id);
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    /// Items with `status` (all when None), newest first.
    pub fn list(&self, status: Option<Status>, limit: usize) -> anyhow::Result<Vec<OutboxItem>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM outbox WHERE ?1 IS NULL OR status = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            stmt.query_map(params![status.map(Status::as_str), limit as i64], row_to_item)?
                .collect()
        })
    }

    /// Counts per status.
    pub fn counts(&self) -> anyhow::Result<HashMap<String, u64>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT status, count(*) FROM outbox GROUP BY status")?;
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect()
        })
    }

    /// Puts dead items (those of `ids`, or all) back in line, with a new
    /// deadline. Returns how many.
    pub fn retry(&self, ids: &[i64], now_us: u64, deadline_us: u64) -> anyhow::Result<usize> {
        self.with(|c| {
            let tx = c.transaction()?;
            let sql = "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_us = ?1, deadline_us = ?2,
                       updated_us = ?1 WHERE status = 'dead'";
            let n = if ids.is_empty() {
                tx.execute(sql, params![now_us as i64, deadline_us as i64])?
            } else {
                let mut n = 0;
                for id in ids {
                    n += tx.execute(
                        &format!("{sql} AND id = ?3"),
                        params![now_us as i64, deadline_us as i64, id],
                    )?;
                }
                n
            };
            tx.commit()?;
            Ok(n)
        })
    }

    /// Puts the user messages and labels kept while no Velociraptor API was
    /// configured in line for delivery; returns how many.
    pub fn release_waiting_api(&self, now_us: u64, deadline_us: u64) -> anyhow::Result<usize> {
        self.with(|c| {
            c.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_us = ?1, deadline_us = ?2, updated_us = ?1
                 WHERE status = 'waiting-api'",
                params![now_us as i64, deadline_us as i64],
            )
        })
    }

    /// Deletes finished items (`sent`, `dead`, `dropped`, `digested`) of
    /// `status` (all finished when None) last updated before `before_us`.
    pub fn purge(&self, status: Option<Status>, before_us: u64) -> anyhow::Result<usize> {
        let statuses: Vec<&str> = match status {
            Some(s) => vec![s.as_str()],
            None => vec!["sent", "dead", "dropped", "digested"],
        };
        self.with(|c| {
            let mut n = 0;
            for s in statuses {
                n += c.execute(
                    "DELETE FROM outbox WHERE status = ?1 AND updated_us < ?2",
                    params![s, before_us as i64],
                )?;
            }
            Ok(n)
        })
    }
}

/// `SendInterval` as the throttle reads it: 0 means 60, negative means none.
fn effective_interval(send_interval: i64) -> Option<u64> {
    match send_interval {
        0 => Some(60),
        s if s > 0 => Some(s as u64),
        _ => None,
    }
}

/// When the module's (and the host's) window ends, if one is open.
fn window_open_until(
    c: &Connection,
    module: &str,
    interval_s: Option<u64>,
    mail_period_s: i64,
) -> rusqlite::Result<Option<u64>> {
    let last = |key: &str| -> rusqlite::Result<Option<u64>> {
        c.query_row("SELECT last_sent_us FROM throttle WHERE key = ?1", params![key], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .map(|v| v.map(|v| v as u64))
    };
    let mut end = None;
    if let (Some(interval), Some(last)) = (interval_s, last(module)?) {
        end = Some(last + interval * 1_000_000);
    }
    if mail_period_s > 0
        && let Some(last) = last(GLOBAL)?
    {
        let global_end = last + mail_period_s as u64 * 1_000_000;
        end = Some(end.map_or(global_end, |e: u64| e.max(global_end)));
    }
    Ok(end)
}

/// Every e-mail sent moves its module's and the host's last send (as
/// Velociraptor's `last_mail`, even for modules that are not throttled).
fn record_send(tx: &Transaction<'_>, module: &str, now_us: u64) -> rusqlite::Result<()> {
    for key in [module, GLOBAL] {
        tx.execute(
            "INSERT INTO throttle (key, last_sent_us) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET last_sent_us = excluded.last_sent_us",
            params![key, now_us as i64],
        )?;
    }
    Ok(())
}

/// How a module's throttled e-mails are handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleMode {
    /// Held and sent as one digest when the window ends.
    #[default]
    Digest,
    /// Dropped with a log line and a counter (Velociraptor's behaviour).
    Drop,
}

/// The pipeline's outbox for `run`: actions of an event are committed in
/// one transaction.
pub struct StoreOutbox {
    store: std::sync::Arc<OutboxStore>,
    pending: Vec<NewItem>,
    modes: HashMap<String, ThrottleMode>,
    mail_period_s: i64,
    retry_deadline_us: u64,
    metrics: std::sync::Arc<Metrics>,
    clock: Box<dyn Fn() -> u64 + Send>,
    /// The Velociraptor API is configured: user messages and labels are
    /// delivered through it instead of waiting.
    api: bool,
    /// Alerts raised by modules are also written to the server's queue.
    push_alerts: bool,
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
        store: std::sync::Arc<OutboxStore>,
        modes: HashMap<String, ThrottleMode>,
        mail_period_s: i64,
        retry_deadline_us: u64,
        metrics: std::sync::Arc<Metrics>,
        clock: Box<dyn Fn() -> u64 + Send>,
    ) -> Self {
        Self {
            store,
            pending: Vec::new(),
            modes,
            mail_period_s,
            retry_deadline_us,
            metrics,
            clock,
            api: false,
            push_alerts: false,
        }
    }

    /// Delivers user messages and labels through the Velociraptor API, and
    /// with `push_alerts` writes raised alerts into the server's queue.
    pub fn with_api(mut self, push_alerts: bool) -> Self {
        self.api = true;
        self.push_alerts = push_alerts;
        self
    }

    /// Decides, in the commit's transaction, whether an e-mail goes now,
    /// is held or is dropped.
    fn throttle(&self, tx: &Transaction<'_>, item: &NewItem, now_us: u64) -> rusqlite::Result<Status> {
        if item.kind != "email" {
            return Ok(item.status);
        }
        let interval = effective_interval(item.send_interval);
        let open_until = window_open_until(tx, &item.module, interval, self.mail_period_s)?;
        if open_until.is_none_or(|end| end <= now_us) {
            record_send(tx, &item.module, now_us)?;
            return Ok(Status::Pending);
        }
        Ok(match self.modes.get(&item.module).copied().unwrap_or_default() {
            ThrottleMode::Digest => Status::Held,
            ThrottleMode::Drop => Status::Dropped,
        })
    }
}

impl StoreOutbox {
    /// An action as JSON, with what executing it through the API needs:
    /// its org, and an alert's creation time.
    fn api_payload(&self, action: &Action, org_id: &str) -> Vec<u8> {
        let mut value = action_json(action);
        value["org_id"] = Value::String(org_id.to_string());
        if let Action::Alert(_) = action {
            let now = jiff::Timestamp::from_microsecond((self.clock)() as i64).unwrap_or_default();
            value["timestamp"] = Value::String(now.to_string());
        }
        value.to_string().into_bytes()
    }
}

impl Outbox for StoreOutbox {
    fn accept(&mut self, delivery: Delivery<'_>) -> anyhow::Result<()> {
        let (kind, recipients, subject) = summarize(delivery.action);
        let item = match delivery.action {
            Action::Email(e) => NewItem {
                module: delivery.module.to_string(),
                kind,
                event: delivery.event.map(str::to_string),
                secret: e.secret.clone(),
                sender: Some(e.sender.clone()),
                recipients,
                subject,
                link: e.link.clone(),
                payload: e.message.clone(),
                send_interval: e.send_interval_seconds,
                status: Status::Pending,
            },
            // Alerts go to the host's own queue, and to the server's
            // when asked.
            Action::Alert(_) if !self.push_alerts => return Ok(()),
            other => NewItem {
                module: delivery.module.to_string(),
                kind,
                event: delivery.event.map(str::to_string),
                secret: None,
                sender: None,
                recipients,
                subject,
                link: None,
                payload: self.api_payload(other, delivery.org_id),
                send_interval: -1,
                status: match other {
                    Action::Webhook(_) => Status::Pending,
                    _ if self.api => Status::Pending,
                    _ => Status::WaitingApi,
                },
            },
        };
        self.pending.push(item);
        Ok(())
    }

    fn report(&mut self, report: Report) {
        report.trace();
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let now_us = (self.clock)();
        let items = std::mem::take(&mut self.pending);
        let decisions = self.store.with(|c| {
            let tx = c.transaction()?;
            let mut decisions = Vec::with_capacity(items.len());
            for mut item in items {
                item.status = self.throttle(&tx, &item, now_us)?;
                let id = OutboxStore::insert(&tx, &item, now_us, now_us + self.retry_deadline_us)?;
                decisions.push((id, item));
            }
            tx.commit()?;
            Ok(decisions)
        })?;
        for (id, item) in decisions {
            self.metrics.queued(&item.module, item.kind);
            let message = match item.status {
                Status::Held => Some((Level::Info, "held for the digest at the end of its SendInterval window")),
                Status::Dropped => Some((
                    Level::Warn,
                    "dropped: inside its SendInterval window (throttle_mode = \"drop\")",
                )),
                Status::WaitingApi => Some((Level::Debug, "kept: user messages and labels need the Velociraptor API")),
                _ => None,
            };
            match item.status {
                Status::Held => self.metrics.held(&item.module),
                Status::Dropped => self.metrics.dropped(&item.module),
                _ => {}
            }
            if let Some((level, what)) = message {
                let subject = item.subject.as_deref().unwrap_or("");
                Report::new(
                    level,
                    &item.module,
                    item.event.as_deref(),
                    format!("outbox item {id} ({subject:?}) {what}"),
                )
                .trace();
            }
        }
        Ok(())
    }
}
