//! Server.Monitor.Hunts: a running hunt in trouble. Two troubles:
//! - **failing**: the clients whose collection failed reach `FailedCount`,
//!   or `FailedPercent` of those scheduled (once `MinScheduled` are);
//! - **stalled**: no client scheduled `StallMinutes` after the hunt
//!   started, or no client scheduled or finished for `StallMinutes` while
//!   some scheduled ones have not finished.
//!
//! Each is reported once per hunt (a stall again after the hunt moved on).
//! What the monitor last saw of a hunt is kept in the host's state, one
//! entry per running hunt, forgotten 90 days after it was last written.

use serde_json::{Map, Value, json};

use super::{bounded, micros, number_at, text_at, texts_at};
use crate::action::{Action, Failure};
use crate::host::{Event, Host};
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
        "Minutes without a client scheduled or finished after which a hunt with clients outstanding, or one that scheduled none, has stalled (0: not checked).",
    )
    .with_range(0, 525_600),
    max_alerts_per_tick("Alerts one look raises at most; the hunts past it are counted and named in one more alert."),
];

/// The longest hunt description an alert names.
const MAX_DESCRIPTION_BYTES: usize = 200;

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
            None => {
                stat("total_clients_with_results")
                    + stat("total_clients_without_results")
                    + stat("total_clients_with_errors")
            }
        };
        let scheduled = stat("total_clients_scheduled");
        Self {
            hunt_id: text_at(row, "hunt_id"),
            description: text_at(row, "hunt_description"),
            creator: text_at(row, "creator"),
            artifacts: texts_at(row, "artifacts"),
            start_time_us: number_at(row, "start_time"),
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

/// What the monitor last saw of a hunt (its state entry).
#[derive(Debug, Clone, Default, PartialEq)]
struct Seen {
    scheduled: u64,
    finished: u64,
    /// When the counts were first seen as they are (epoch seconds).
    since_s: u64,
    /// When the entry was written (epoch seconds).
    written_s: u64,
    failing_reported: bool,
    stall_reported: bool,
}

impl Seen {
    fn read(bytes: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        Some(Self {
            scheduled: v["scheduled"].as_u64()?,
            finished: v["finished"].as_u64()?,
            since_s: v["since"].as_u64()?,
            written_s: v["written"].as_u64().unwrap_or(0),
            failing_reported: v["failing"].as_bool().unwrap_or(false),
            stall_reported: v["stalled"].as_bool().unwrap_or(false),
        })
    }

    fn bytes(&self) -> Vec<u8> {
        json!({
            "scheduled": self.scheduled,
            "finished": self.finished,
            "since": self.since_s,
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

impl Rule for HuntsRule {
    const NAME: &'static str = "Server.Monitor.Hunts";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Raises an alert when a running hunt fails on many clients, or stops \
         scheduling and finishing clients.";
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
        for hunt in host.running_hunts()?.iter().map(HuntRow::read) {
            if hunt.hunt_id.is_empty() {
                continue;
            }
            let key = format!("hunt/{}", hunt.hunt_id);
            let before = host.state_get(&key).and_then(|b| Seen::read(&b));
            let mut seen = self.look(&hunt, before.clone(), now_s);
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
            let stale = before
                .as_ref()
                .is_some_and(|b| now_s.saturating_sub(b.written_s) >= ENTRY_REFRESH_S);
            if before.as_ref() != Some(&seen) || stale {
                seen.written_s = now_s;
                host.state_put(&key, &seen.bytes(), ENTRY_TTL_S);
            }
        }
        let link = links.hunt_list();
        Ok(budget.finish(Self::NAME, "hunts in trouble", link))
    }
}

impl HuntsRule {
    /// The entry after this look: the counts, and since when they are
    /// what they are (a move starts a new stall spell).
    fn look(&self, hunt: &HuntRow, before: Option<Seen>, now_s: u64) -> Seen {
        match before {
            Some(b) if (b.scheduled, b.finished) == (hunt.scheduled, hunt.finished) => b,
            Some(b) => Seen {
                scheduled: hunt.scheduled,
                finished: hunt.finished,
                since_s: now_s,
                stall_reported: false,
                ..b
            },
            None => Seen {
                scheduled: hunt.scheduled,
                finished: hunt.finished,
                since_s: now_s,
                ..Seen::default()
            },
        }
    }

    fn is_failing(&self, hunt: &HuntRow) -> bool {
        let by_count = self.failed_count > 0 && hunt.failed >= self.failed_count;
        let by_share = self.failed_percent > 0
            && hunt.scheduled >= self.min_scheduled
            && hunt.failed * 100 >= self.failed_percent * hunt.scheduled;
        by_count || by_share
    }

    /// Why the hunt has stalled, if it has.
    fn stall(&self, hunt: &HuntRow, seen: &Seen, now_s: u64) -> Option<String> {
        if self.stall_s == 0 {
            return None;
        }
        let minutes = self.stall_s / 60;
        let started_s = hunt.start_time_us / 1_000_000;
        if hunt.scheduled == 0 {
            // A hunt started long ago and seen for the first time has
            // stalled since it started, not since it was first seen.
            let idle_since = if started_s > 0 { started_s } else { seen.since_s };
            return (now_s.saturating_sub(idle_since) >= self.stall_s)
                .then(|| format!("no client scheduled in the {minutes} minutes since it started"));
        }
        let outstanding = hunt.scheduled - hunt.finished;
        (outstanding > 0 && now_s.saturating_sub(seen.since_s) >= self.stall_s).then(|| {
            format!("no client scheduled or finished for {minutes} minutes, {outstanding} scheduled not finished")
        })
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
    let share = (hunt.failed * 100).checked_div(hunt.scheduled).unwrap_or(0);
    format!(
        "{} of {} scheduled clients failed ({share}%)",
        hunt.failed, hunt.scheduled
    )
}
