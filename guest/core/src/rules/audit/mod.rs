//! Server.Monitor.Audit: alerts on what people do on the Velociraptor
//! server, read from its audit log (`Server.Audit.Logs`): a hunt created
//! or started, a collection of an artifact that may run programs, a user
//! created or given a role, an event table or an artifact changed, a
//! client deleted (the operations, their `details` and their units are in
//! docs/velociraptor.md §2.6).
//!
//! Rows are read from a cursor kept in the host's state: the newest `_ts`
//! examined, stored with the alerts it raised in the tick's one commit, so
//! no row is examined twice or missed, across ticks and restarts. A row
//! is examined only once the server has written rows two seconds newer
//! (or it is ten seconds old on this side's clock): a row written late in
//! its second, after a read, would otherwise fall behind the cursor.

mod operations;

use serde_json::{Map, Value};

pub use self::operations::DEFAULT_OPERATIONS;
use self::operations::{AuditRow, Operations, PermissionChecks};
use super::monitor::{AlertBudget, max_alerts, max_alerts_per_tick, period, server_alert};
use super::{Rule, Setup};
use crate::action::{Action, Failure};
use crate::host::{Event, Host};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::render::Links;
use crate::velociraptor::timestamp_string;
use crate::vql::{Timestamp, VqlRegex};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Period",
        ParamKind::Int,
        "60",
        "Seconds between two readings of the audit log.",
    )
    .with_range(1, 86_400),
    ParamSpec::new(
        "Operations",
        ParamKind::Csv,
        DEFAULT_OPERATIONS,
        "Which audit rows alert: Operation and Details regexes (empty: any; Details is matched against the \
         row's details as JSON), Permission (empty: not checked; else a permission that one of the artifacts \
         the row names must require, e.g. EXECVE), Description (the alert's first words) and Severity. The \
         first matching row wins.",
    ),
    ParamSpec::new(
        "IgnorePrincipals",
        ParamKind::Regex,
        "",
        "Principals whose actions raise no alert, e.g. service accounts: ^(svc-.+|automation)$ (empty: none).",
    ),
    ParamSpec::new(
        "Dedup",
        ParamKind::Int,
        "-1",
        "Seconds during which an alert of the same name is suppressed (negative: never; every audit row is \
         read once).",
    ),
    max_alerts_per_tick("Alerts one reading raises at most; the matching rows past it are counted in one more alert."),
];

/// Where the cursor is kept.
const CURSOR_KEY: &str = "cursor/audit";

/// Rows newer than the newest row read less this are left to the next
/// tick (written later in their second, they may not all be there yet).
const SETTLE_MS: u64 = 2_000;

/// Rows older than this (on this side's clock) are examined even without
/// newer rows: a quiet log must not hold its last rows back. (The
/// server's clock may lag this one's by up to 8 seconds.)
const QUIET_AFTER_MS: u64 = 10_000;

/// Rows examined in one tick at most (the rest, the newest, wait for the
/// next one).
const MAX_ROWS_PER_TICK: usize = 10_000;

/// Rows dated further ahead of this side's clock are not examined (nor let
/// move the cursor): anyone allowed to publish to the queue can date a row
/// in the year 3000, and a cursor moved there would pass over every real
/// row after it. They wait until their time, and are reported.
const FUTURE_TOLERANCE_MS: u64 = 60_000;

/// The configured Server.Monitor.Audit module.
#[derive(Debug, Clone)]
pub struct AuditRule {
    period: u32,
    operations: Operations,
    /// None: no principal is ignored.
    ignore: Option<VqlRegex>,
    dedup: i64,
    max_alerts: usize,
}

impl Rule for AuditRule {
    const NAME: &'static str = "Server.Monitor.Audit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Raises an alert for the audited actions on the Velociraptor server that \
         matter (hunts, collections that run programs, users and roles, event tables, artifacts, deleted \
         clients), reading the audit log from a cursor kept across ticks and restarts.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let period = period(p)?;
        let ignore = p.regex("IgnorePrincipals");
        let rule = Self {
            period,
            operations: Operations::from_table("Operations", p.table("Operations"))?,
            ignore: (!ignore.is_empty()).then(|| ignore.clone()),
            dedup: p.int("Dedup"),
            max_alerts: max_alerts(p),
        };
        Ok((rule, Setup::periodic(period)))
    }

    fn handle(&mut self, _event: &Event, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let now_ms = host.now_us() / 1000;
        let cursor = Cursor::read(host, now_ms.saturating_sub(u64::from(self.period) * 1000));
        let mut rows: Vec<AuditRow> = host
            .audit_log(cursor.after_ms.saturating_mul(1000))?
            .iter()
            .map(AuditRow::read)
            .filter(|row| row.written_ms > cursor.after_ms)
            .collect();
        let ahead = now_ms.saturating_add(FUTURE_TOLERANCE_MS);
        let from_the_future = rows.iter().filter(|row| row.written_ms > ahead).count();
        rows.retain(|row| row.written_ms <= ahead);
        rows.sort_by_key(|row| row.written_ms);
        let examined = settled(&rows, now_ms);
        let links = Links::new(host.server_info().public_url.as_deref(), &host.server_info().org_id);
        let now = Timestamp::from_unix_micros(i64::try_from(host.now_us()).unwrap_or(i64::MAX));
        let mut budget = AlertBudget::new(self.max_alerts);
        let mut permissions = PermissionChecks::default();
        for row in examined {
            if self.ignore.as_ref().is_some_and(|r| r.is_match(&row.principal)) {
                continue;
            }
            let Some((matched, check)) = self.operations.first_match(row, host, &mut permissions) else {
                continue;
            };
            let context = || row.context(matched, check.as_ref(), &links, now);
            budget.raise(&row.operation, row.alert_name(matched), |name| {
                server_alert(name, self.dedup, Self::NAME, context())
            });
        }
        if let Some(last) = examined.last() {
            cursor.advance_to(last.written_ms);
        } else {
            cursor.keep();
        }
        let audit_log = links.server_events("Server.Audit.Logs");
        let mut alerts = budget.finish(Self::NAME, "audited actions", audit_log.clone());
        if from_the_future > 0 {
            alerts.push(future_rows_alert(from_the_future, audit_log));
        }
        Ok(alerts)
    }
}

/// Rows of the audit log dated ahead of this side's clock: one alert (an
/// hour's dedup, while they stay ahead).
fn future_rows_alert(count: usize, audit_log: Option<String>) -> Action {
    let mut context = Map::new();
    context.insert("Count".into(), Value::from(count));
    context.insert(
        "Note".into(),
        Value::String(
            "audit rows dated more than a minute ahead of velonotify's clock: a server clock running fast, or \
             rows written to Server.Audit.Logs by someone allowed to publish to it; they are examined when \
             their time comes"
                .into(),
        ),
    );
    if let Some(link) = audit_log {
        context.insert("Link".into(), Value::String(link));
    }
    server_alert("Audit rows dated in the future".into(), 3600, AuditRule::NAME, context)
}

/// The rows a tick examines: those the server has surely finished writing
/// (see [`SETTLE_MS`]), oldest first, at most [`MAX_ROWS_PER_TICK`] and
/// never splitting the rows of one `_ts`.
fn settled(rows: &[AuditRow], now_ms: u64) -> &[AuditRow] {
    let newest = rows.last().map_or(0, |row| row.written_ms);
    let cutoff = newest
        .saturating_sub(SETTLE_MS)
        .max(now_ms.saturating_sub(QUIET_AFTER_MS));
    let mut end = rows.partition_point(|row| row.written_ms <= cutoff);
    if end > MAX_ROWS_PER_TICK {
        let last = rows[MAX_ROWS_PER_TICK - 1].written_ms;
        end = rows.partition_point(|row| row.written_ms <= last);
    }
    &rows[..end]
}

/// The newest `_ts` (ms) examined, in the host's state.
struct Cursor<'h> {
    host: &'h dyn Host,
    after_ms: u64,
    stored: bool,
}

impl<'h> Cursor<'h> {
    /// The stored cursor, else `start_ms` (one period back: the first
    /// tick reads what the period before it wrote).
    fn read(host: &'h dyn Host, start_ms: u64) -> Self {
        let stored = host
            .state_get(CURSOR_KEY)
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok());
        Self {
            host,
            after_ms: stored.unwrap_or(start_ms),
            stored: stored.is_some(),
        }
    }

    fn advance_to(&self, written_ms: u64) {
        self.host.state_put(CURSOR_KEY, written_ms.to_string().as_bytes(), 0);
    }

    /// Stores the start of a cursor that had none, so that the next tick
    /// reads on from it rather than from one period before itself.
    fn keep(&self) {
        if !self.stored {
            self.advance_to(self.after_ms);
        }
    }
}

/// When a row was written, for the alert.
fn written_at(row: &AuditRow, now: Timestamp) -> String {
    let micros = i64::try_from(row.written_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
    timestamp_string(Timestamp::from_unix_micros(micros), now)
}

#[cfg(test)]
mod tests;
