//! Server.Monitor.Hunts: a running hunt in trouble. Two troubles:
//! - **failing**: the clients whose collection failed reach `FailedCount`,
//!   or `FailedPercent` of those scheduled (once `MinScheduled` are);
//! - **stalled**: `StallMinutes` after the hunt started (or came back from
//!   a pause) it has scheduled no client, or none of the clients it
//!   scheduled has finished while no new one was scheduled: the hunt
//!   matches no client, or its collection hangs everywhere. (A collection
//!   hung on a few clients is Server.Monitor.Flows.Stuck's to report; a
//!   client that went offline mid-collection is not the hunt's trouble.)
//!
//! Each is reported once per hunt (a stall again after the hunt moved on).
//! What the monitor last saw of a hunt is kept in the host's state, one
//! entry per running hunt, forgotten 90 days after it was last written.
//! Expired hunts (the server stops them) are not looked at.

use serde_json::{Map, Value, json};

use super::{bounded, is_velociraptor_id, micros, number_at, text_at, texts_at};
use crate::action::{Action, Failure};
use crate::host::{Event, Host, LogLevel};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::render::Links;
use crate::rules::monitor::{
    AlertBudget, ENTRY_REFRESH_S, ENTRY_TTL_S, max_alerts, max_alerts_per_tick, period, server_alert,
};
use crate::rules::{Rule, Setup};
use crate::velociraptor::timestamp_string;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Period",
        ParamKind::Int,
        "60",
        "Seconds between two looks at the running hunts.",
    )
    .with_range(1, 86_400),
    ParamSpec::new(
        "FailedCount",
        ParamKind::Int,
        "20",
        "A hunt whose failed collections reach this many is failing (0: not checked).",
    )
    .with_range(0, 10_000_000),
    ParamSpec::new(
        "FailedPercent",
        ParamKind::Int,
        "10",
        "A hunt whose failed collections reach this share of the scheduled clients is failing (0: not checked).",
    )
    .with_range(0, 100),
    ParamSpec::new(
        "MinScheduled",
        ParamKind::Int,
        "10",
        "The share is judged once at least this many clients are scheduled.",
    )
    .with_range(1, 10_000_000),
    ParamSpec::new(
        "StallMinutes",
        ParamKind::Int,
        "60",
        "Minutes after which a hunt that scheduled no client, or none of whose scheduled clients finished, has stalled (0: not checked).",
    )
    .with_range(0, 525_600),
    max_alerts_per_tick("Alerts one look raises at most; the hunts past it are counted and named in one more alert."),
];

/// The longest hunt description an alert names, and the longest creator
/// taken.
const MAX_DESCRIPTION_BYTES: usize = 200;
const MAX_CREATOR_BYTES: usize = 200;

/// What a monitor reads of a hunt (`hunts()` rows; docs/velociraptor.md
/// §2.7). Missing counts read as zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct HuntRow {
    pub hunt_id: String,
    pub description: String,
    pub creator: String,
    pub artifacts: Vec<String>,
    /// Epoch microseconds; 0 for a hunt never started.
    pub start_time_us: u64,
    /// Epoch microseconds; 0 for none.
    pub expires_us: u64,
    pub scheduled: u64,
    pub failed: u64,
    /// Clients whose collection ended, with or without results or in error.
    pub finished: u64,
}

impl HuntRow {
    pub fn read(row: &Value) -> Self {
        let stat = |name: &str| number_at(row, &format!("stats.{name}"));
        // Newer servers count the finished clients; older ones only by
        // outcome. A count too high only makes fewer hunts look stalled.
        let finished = match row.get("stats").and_then(|s| s.get("total_finished_clients")) {
            Some(_) => stat("total_finished_clients"),
            None => stat("total_clients_with_results")
                .saturating_add(stat("total_clients_without_results"))
                .saturating_add(stat("total_clients_with_errors")),
        };
        let scheduled = stat("total_clients_scheduled");
        Self {
            hunt_id: text_at(row, "hunt_id"),
            description: text_at(row, "hunt_description"),
            creator: bounded(&text_at(row, "creator"), MAX_CREATOR_BYTES),
            artifacts: texts_at(row, "artifacts"),
            start_time_us: number_at(row, "start_time"),
            expires_us: number_at(row, "expires"),
            scheduled,
            failed: stat("total_clients_with_errors"),
            finished: finished.min(scheduled),
        }
    }

    /// `<description> (<hunt id>)`, or the id alone.
    fn shown(&self) -> String {
        match self.description.trim() {
            "" => self.hunt_id.clone(),
            d => format!("{} ({})", bounded(d, MAX_DESCRIPTION_BYTES), self.hunt_id),
        }
    }
}

/// What the monitor last saw of a hunt (its state entry). Each field is
/// read on its own: an entry missing one (written by another version)
/// keeps the others, its reports above all.
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    /// The highest counts seen (a count that goes back is not progress).
    scheduled: u64,
    finished: u64,
    /// When the current spell without progress began (epoch seconds).
    since_s: u64,
    /// The last tick the hunt was seen running (refreshed now and then).
    seen_s: u64,
    /// When the entry was written (epoch seconds).
    written_s: u64,
    failing_reported: bool,
    stall_reported: bool,
}

impl Seen {
    fn read(bytes: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let number = |key: &str| v[key].as_u64().unwrap_or(0);
        let flag = |key: &str| v[key].as_bool().unwrap_or(false);
        Some(Self {
            scheduled: number("scheduled"),
            finished: number("finished"),
            since_s: number("since"),
            seen_s: number("seen"),
            written_s: number("written"),
            failing_reported: flag("failing"),
            stall_reported: flag("stalled"),
        })
    }

    fn bytes(&self) -> Vec<u8> {
        json!({
            "scheduled": self.scheduled,
            "finished": self.finished,
            "since": self.since_s,
            "seen": self.seen_s,
            "written": self.written_s,
            "failing": self.failing_reported,
            "stalled": self.stall_reported,
        })
        .to_string()
        .into_bytes()
    }
}

/// The configured Server.Monitor.Hunts module.
#[derive(Debug, Clone)]
pub struct HuntsRule {
    failed_count: u64,
    failed_percent: u64,
    min_scheduled: u64,
    stall_s: u64,
    max_alerts: usize,
}

/// The state key of the time of the last tick (epoch seconds): a hunt not
/// seen on it, and not for a while before, was away (paused).
const LAST_TICK_KEY: &str = "tick/hunts";

impl Rule for HuntsRule {
    const NAME: &'static str = "Server.Monitor.Hunts";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Raises an alert when a running hunt fails on many clients, or schedules \
         no client or finishes none.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let period = period(p)?;
        let rule = Self {
            failed_count: p.int("FailedCount").unsigned_abs(),
            failed_percent: p.int("FailedPercent").unsigned_abs(),
            min_scheduled: p.int("MinScheduled").unsigned_abs(),
            stall_s: p.int("StallMinutes").unsigned_abs() * 60,
            max_alerts: max_alerts(p),
        };
        Ok((rule, Setup::periodic(period)))
    }

    fn handle(&mut self, _event: &Event, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let now_us = host.now_us();
        let now_s = now_us / 1_000_000;
        let info = host.server_info();
        let links = Links::new(info.public_url.as_deref(), &info.org_id);
        let mut budget = AlertBudget::new(self.max_alerts);
        let mut unnamed = 0;
        let last_tick = host
            .state_get(LAST_TICK_KEY)
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok());
        let last_tick_s = last_tick.unwrap_or(0);
        host.state_put(LAST_TICK_KEY, now_s.to_string().as_bytes(), ENTRY_TTL_S);
        for hunt in host.running_hunts()?.iter().map(HuntRow::read) {
            if !is_velociraptor_id(&hunt.hunt_id) {
                unnamed += 1;
                continue;
            }
            if hunt.expires_us > 0 && hunt.expires_us <= now_us {
                continue;
            }
            let key = format!("hunt/{}", hunt.hunt_id);
            let before = host.state_get(&key).and_then(|b| Seen::read(&b));
            let mut seen = self.look(&hunt, before.as_ref(), now_s, last_tick_s);
            if self.is_failing(&hunt) && !seen.failing_reported {
                seen.failing_reported = true;
                let name = format!("Hunt {} is failing", hunt.shown());
                budget.raise("failing", name, |name| {
                    let context = self.context(&hunt, &links, now_us, failing_note(&hunt));
                    server_alert(name, -1, Self::NAME, context)
                });
            }
            if let Some(why) = self.stall(&hunt, &seen, now_s)
                && !seen.stall_reported
            {
                seen.stall_reported = true;
                let name = format!("Hunt {} has stalled", hunt.shown());
                budget.raise("stalled", name, |name| {
                    server_alert(name, -1, Self::NAME, self.context(&hunt, &links, now_us, why))
                });
            }
            self.keep(host, &key, before.as_ref(), seen, now_s);
        }
        if unnamed > 0 {
            host.log(
                LogLevel::Warn,
                &format!("{unnamed} hunts without a usable hunt id were skipped"),
            );
        }
        Ok(budget.finish(Self::NAME, "hunts in trouble", links.hunt_list()))
    }
}

impl HuntsRule {
    /// The entry after this look. Progress (a count higher than any seen)
    /// starts a new spell; so does a hunt seen again after a while away
    /// (paused, then resumed): one seen on every tick has its entry's
    /// `seen` no older than [`Self::refresh_s`] before the last tick. A
    /// hunt seen for the first time that has scheduled no client has been
    /// idle since it started.
    fn look(&self, hunt: &HuntRow, before: Option<&Seen>, now_s: u64, last_tick_s: u64) -> Seen {
        let counts = Seen {
            scheduled: hunt.scheduled,
            finished: hunt.finished,
            since_s: now_s,
            seen_s: now_s,
            ..Seen::default()
        };
        match before {
            None if hunt.scheduled == 0 && hunt.start_time_us > 0 => Seen {
                since_s: (hunt.start_time_us / 1_000_000).min(now_s),
                ..counts
            },
            None => counts,
            Some(b) if b.seen_s.saturating_add(self.refresh_s()) < last_tick_s => Seen {
                scheduled: b.scheduled.max(hunt.scheduled),
                finished: b.finished.max(hunt.finished),
                failing_reported: b.failing_reported,
                ..counts
            },
            Some(b) if hunt.scheduled > b.scheduled || hunt.finished > b.finished => Seen {
                scheduled: b.scheduled.max(hunt.scheduled),
                finished: b.finished.max(hunt.finished),
                failing_reported: b.failing_reported,
                ..counts
            },
            Some(b) => b.clone(),
        }
    }

    /// Writes the entry when it changed, and now and then while the hunt
    /// runs: the time it was last seen, so that a hunt back from a pause
    /// is told from one seen on every tick.
    fn keep(&self, host: &dyn Host, key: &str, before: Option<&Seen>, mut seen: Seen, now_s: u64) {
        let stale = before.is_some_and(|b| now_s.saturating_sub(b.seen_s.max(b.written_s)) >= self.refresh_s());
        if before == Some(&seen) && !stale {
            return;
        }
        seen.seen_s = now_s;
        seen.written_s = now_s;
        host.state_put(key, &seen.bytes(), ENTRY_TTL_S);
    }

    /// How old a running hunt's entry gets before it is written again.
    fn refresh_s(&self) -> u64 {
        match self.stall_s {
            0 => ENTRY_REFRESH_S,
            stall_s => (stall_s / 4).clamp(1, ENTRY_REFRESH_S),
        }
    }

    fn is_failing(&self, hunt: &HuntRow) -> bool {
        let by_count = self.failed_count > 0 && hunt.failed >= self.failed_count;
        let by_share = self.failed_percent > 0
            && hunt.scheduled >= self.min_scheduled
            && u128::from(hunt.failed) * 100 >= u128::from(self.failed_percent) * u128::from(hunt.scheduled);
        by_count || by_share
    }

    /// Why the hunt has stalled, if it has.
    fn stall(&self, hunt: &HuntRow, seen: &Seen, now_s: u64) -> Option<String> {
        if self.stall_s == 0 || now_s.saturating_sub(seen.since_s) < self.stall_s {
            return None;
        }
        let minutes = self.stall_s / 60;
        match (hunt.scheduled, hunt.finished) {
            (0, _) => Some(format!("no client scheduled in {minutes} minutes")),
            (scheduled, 0) => Some(format!(
                "none of the {scheduled} scheduled clients finished, and no client scheduled, in {minutes} minutes"
            )),
            _ => None,
        }
    }

    fn context(&self, hunt: &HuntRow, links: &Links, now_us: u64, note: String) -> Map<String, Value> {
        let now = micros(now_us);
        let mut context = Map::new();
        let mut put = |key: &str, value: String| {
            context.insert(key.into(), Value::String(value));
        };
        put("HuntId", hunt.hunt_id.clone());
        put("Description", bounded(&hunt.description, 2_000));
        put("Creator", hunt.creator.clone());
        put("Artifacts", bounded(&hunt.artifacts.join(", "), 2_000));
        put("Started", timestamp_string(micros(hunt.start_time_us), now));
        put("Scheduled", hunt.scheduled.to_string());
        put("Finished", hunt.finished.to_string());
        put("Failed", hunt.failed.to_string());
        put("Note", note);
        if let Some(link) = links.hunt(&hunt.hunt_id) {
            put("Link", link);
        }
        context
    }
}

/// `<failed> of <scheduled> clients failed (<share>%)`.
fn failing_note(hunt: &HuntRow) -> String {
    let share = (u128::from(hunt.failed) * 100)
        .checked_div(u128::from(hunt.scheduled))
        .unwrap_or(0);
    format!(
        "{} of {} scheduled clients failed ({share}%)",
        hunt.failed, hunt.scheduled
    )
}
