//! Server.Monitor.Flows.Stuck: a collection in a client's hands that has
//! not finished long after the client started it. `Thresholds` gives the
//! minutes per artifact (the first row whose regex matches one of the
//! collection's artifacts; 0 minutes: never stuck). A collection its
//! client has not started yet runs from when the monitor first saw it
//! handed over. Each stuck collection is reported once: the host's state
//! keeps one entry per collection reported or not started, forgotten 90
//! days after it was last written. The collections are read a page of
//! 1,000 a tick, oldest first, with a cursor: however many there are,
//! each is looked at within a few ticks.

use serde_json::{Map, Value};

use super::{bounded, is_velociraptor_id, micros, number_at, text_at, texts_at};
use crate::action::{Action, Failure};
use crate::host::{Event, Host, LogLevel};
use crate::params::{ParamError, ParamKind, ParamSpec, Params, Row};
use crate::render::Links;
use crate::rules::monitor::{
    AlertBudget, ENTRY_REFRESH_S, ENTRY_TTL_S, max_alerts, max_alerts_per_tick, period, server_alert,
};
use crate::rules::{Rule, Setup};
use crate::velociraptor::activity::{MAX_ACTIVE_FLOWS, create_time};
use crate::velociraptor::timestamp_string;
use crate::vql::{VqlRegex, humanize_duration_since, render_value};

/// Collections run ten minutes unless their artifact or request says
/// longer (Velociraptor's default timeout is 600 s): an hour is stuck;
/// the triage collections that copy many files get four.
pub const DEFAULT_THRESHOLDS: &str = "Artifact,Minutes\n\
     ^Windows\\.KapeFiles\\.Targets$,240\n\
     ^Generic\\.Collectors\\.File$,240\n\
     .,60\n";

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Period",
        ParamKind::Int,
        "60",
        "Seconds between two looks at the unfinished collections.",
    )
    .with_range(1, 86_400),
    ParamSpec::new(
        "Thresholds",
        ParamKind::Csv,
        DEFAULT_THRESHOLDS,
        "Artifact (regex) and Minutes: a collection of a matching artifact not finished after that many minutes is stuck; the first matching row counts, 0 minutes never, no row: not watched.",
    ),
    max_alerts_per_tick(
        "Alerts one look raises at most; the collections past it are counted and named in one more alert.",
    ),
];

/// Artifacts an alert's name lists at most (the rest are counted).
const NAMED_ARTIFACTS: usize = 3;
/// The longest artifact name an alert's name carries.
const MAX_ARTIFACT_BYTES: usize = 200;

/// The state key of the cursor over the pages of unfinished collections:
/// the `create_time` the next page starts after.
const CURSOR_KEY: &str = "cursor/stuck";

/// One row of `Thresholds`.
#[derive(Debug, Clone)]
struct Threshold {
    artifact: VqlRegex,
    /// 0: never stuck.
    minutes: u64,
}

/// The `Thresholds` table.
#[derive(Debug, Clone)]
struct Thresholds(Vec<Threshold>);

impl Thresholds {
    fn from_table(param: &str, table: &[Row]) -> Result<Self, ParamError> {
        let rows = table.iter().enumerate().map(|(index, row)| {
            let at = |column: &str| format!("row {} {column}", index + 1);
            let cell = |column: &str| match row.get(column) {
                None | Some(Value::Null) => String::new(),
                Some(v) => render_value(v),
            };
            let artifact = VqlRegex::new(&cell("Artifact"))
                .map_err(|e| ParamError::new(param, format!("{}: {e}", at("Artifact"))))?;
            let minutes = cell("Minutes");
            let minutes = minutes
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|m| *m <= 525_600)
                .ok_or_else(|| {
                    ParamError::new(
                        param,
                        format!("{}: expected minutes from 0 to 525600, got {minutes:?}", at("Minutes")),
                    )
                })?;
            Ok(Threshold { artifact, minutes })
        });
        Ok(Self(rows.collect::<Result<_, _>>()?))
    }

    /// The shortest threshold (None: no row watches anything).
    fn shortest(&self) -> Option<u64> {
        self.0.iter().map(|t| t.minutes).filter(|m| *m > 0).min()
    }

    /// The minutes after which a collection of `artifacts` is stuck: the
    /// first row matching one of them; None when no row matches or it
    /// says 0.
    fn minutes_for(&self, artifacts: &[String]) -> Option<u64> {
        let row = self
            .0
            .iter()
            .find(|t| artifacts.iter().any(|a| t.artifact.is_match(a)))?;
        (row.minutes > 0).then_some(row.minutes)
    }
}

/// What the monitor reads of an unfinished collection (the `active-flows`
/// rows; docs/velociraptor.md §2.7).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FlowRow {
    pub client_id: String,
    pub flow_id: String,
    pub state: String,
    pub creator: String,
    pub artifacts: Vec<String>,
    /// Epoch microseconds.
    pub create_time_us: u64,
    /// When the client started it (epoch microseconds), 0 until then.
    pub start_time_us: u64,
}

impl FlowRow {
    pub fn read(row: &Value) -> Self {
        Self {
            client_id: text_at(row, "client_id"),
            flow_id: text_at(row, "session_id"),
            state: bounded(&text_at(row, "state"), 40),
            creator: bounded(&text_at(row, "creator"), MAX_ARTIFACT_BYTES),
            artifacts: texts_at(row, "artifacts"),
            create_time_us: number_at(row, "create_time"),
            start_time_us: number_at(row, "start_time"),
        }
    }

    /// The first artifacts, each bounded, and how many more.
    fn artifacts_shown(&self) -> String {
        let mut shown: Vec<String> = self
            .artifacts
            .iter()
            .take(NAMED_ARTIFACTS)
            .map(|a| bounded(a, MAX_ARTIFACT_BYTES))
            .collect();
        if self.artifacts.len() > NAMED_ARTIFACTS {
            shown.push(format!("{} more", self.artifacts.len() - NAMED_ARTIFACTS));
        }
        shown.join(", ")
    }
}

/// The configured Server.Monitor.Flows.Stuck module.
#[derive(Debug, Clone)]
pub struct StuckFlowsRule {
    thresholds: Thresholds,
    max_alerts: usize,
}

impl Rule for StuckFlowsRule {
    const NAME: &'static str = "Server.Monitor.Flows.Stuck";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Raises one alert per collection not finished long after it was scheduled, with thresholds per artifact.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let period = period(p)?;
        let rule = Self {
            thresholds: Thresholds::from_table("Thresholds", p.table("Thresholds"))?,
            max_alerts: max_alerts(p),
        };
        Ok((rule, Setup::periodic(period)))
    }

    fn handle(&mut self, _event: &Event, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let Some(shortest) = self.thresholds.shortest() else {
            return Ok(Vec::new());
        };
        let now_us = host.now_us();
        let info = host.server_info();
        let links = Links::new(info.public_url.as_deref(), &info.org_id);
        // Collections created within the shortest threshold cannot be
        // stuck yet; the rest are read a page a tick.
        let cursor = host
            .state_get(CURSOR_KEY)
            .and_then(|v| String::from_utf8_lossy(&v).parse().ok());
        let cursor = cursor.unwrap_or(0);
        let page = host.active_flows(cursor, now_us.saturating_sub(shortest * 60_000_000))?;
        let next = next_cursor(&page);
        if next != cursor {
            host.state_put(CURSOR_KEY, next.to_string().as_bytes(), ENTRY_TTL_S);
        }
        let mut budget = AlertBudget::new(self.max_alerts);
        let mut unnamed = 0;
        for flow in page.iter().map(FlowRow::read) {
            if !is_velociraptor_id(&flow.client_id) || !is_velociraptor_id(&flow.flow_id) {
                unnamed += 1;
                continue;
            }
            if let Some(minutes) = self.thresholds.minutes_for(&flow.artifacts) {
                self.look(&flow, minutes, host, now_us, &mut |name, minutes| {
                    budget.raise("stuck", name, |name| {
                        server_alert(name, -1, Self::NAME, context(&flow, minutes, &links, now_us))
                    });
                });
            }
        }
        if unnamed > 0 {
            host.log(
                LogLevel::Warn,
                &format!("{unnamed} collections without a usable client or flow id were skipped"),
            );
        }
        Ok(budget.finish(Self::NAME, "stuck collections", None))
    }
}

impl StuckFlowsRule {
    /// Whether `flow` is stuck and not reported yet (then `report` gets
    /// the alert's name), keeping its entry: when the monitor first saw
    /// it handed over (for one its client has not started), and whether
    /// it was reported.
    fn look(&self, flow: &FlowRow, minutes: u64, host: &dyn Host, now_us: u64, report: &mut dyn FnMut(String, u64)) {
        let now_s = now_us / 1_000_000;
        let key = format!("stuck/{}/{}", flow.client_id, flow.flow_id);
        let entry = host.state_get(&key).and_then(|v| Entry::read(&v));
        // A collection queued for an offline client runs from when the
        // client starts it, or at the latest from when it was first seen
        // in the client's hands; not from when it was scheduled.
        let running_since_us = match (flow.start_time_us, &entry) {
            (started, _) if started > 0 => started,
            (_, Some(entry)) => entry.seen_s.saturating_mul(1_000_000),
            (_, None) => now_us,
        };
        let stuck = now_us.saturating_sub(running_since_us) > minutes * 60_000_000;
        let write = |seen_s: u64, reported: bool| {
            let entry = Entry {
                seen_s,
                reported,
                written_s: now_s,
            };
            host.state_put(&key, &entry.bytes(), ENTRY_TTL_S);
        };
        if let Some(e) = entry.filter(|e| e.reported || !stuck) {
            // Kept while the collection runs.
            if now_s.saturating_sub(e.written_s) >= ENTRY_REFRESH_S {
                write(e.seen_s, e.reported);
            }
        } else if stuck {
            write(entry.map_or(now_s, |e| e.seen_s), true);
            let name = format!(
                "Collection {} ({}) on {} has run for more than {minutes} minutes",
                flow.flow_id,
                flow.artifacts_shown(),
                flow.client_id
            );
            report(name, minutes);
        } else if entry.is_none() && flow.start_time_us == 0 {
            write(now_s, false);
        }
    }
}

/// Where the next tick's page starts: after a full page, at its last
/// `create_time` (the rows of that time are read again, as the page may
/// have cut them); after the last page, from the start.
fn next_cursor(page: &[Value]) -> u64 {
    if page.len() < MAX_ACTIVE_FLOWS {
        return 0;
    }
    let first = page.first().map_or(0, create_time);
    let last = page.last().map_or(0, create_time);
    if last > first { last - 1 } else { last }
}

/// What the monitor keeps of a collection it has seen stuck or not
/// started: when it first saw it, whether it was reported, when the entry
/// was written (all epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry {
    seen_s: u64,
    reported: bool,
    written_s: u64,
}

impl Entry {
    fn read(bytes: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        Some(Self {
            seen_s: v["seen"].as_u64().unwrap_or(0),
            reported: v["reported"].as_bool().unwrap_or(false),
            written_s: v["written"].as_u64().unwrap_or(0),
        })
    }

    fn bytes(&self) -> Vec<u8> {
        serde_json::json!({"seen": self.seen_s, "reported": self.reported, "written": self.written_s})
            .to_string()
            .into_bytes()
    }
}

fn context(flow: &FlowRow, minutes: u64, links: &Links, now_us: u64) -> Map<String, Value> {
    let now = micros(now_us);
    let created = micros(flow.create_time_us);
    let started = micros(flow.start_time_us);
    let mut context = Map::new();
    let mut put = |key: &str, value: String| {
        context.insert(key.into(), Value::String(value));
    };
    put("ClientId", flow.client_id.clone());
    put("FlowId", flow.flow_id.clone());
    put("Artifacts", bounded(&flow.artifacts.join(", "), 2_000));
    put("State", flow.state.clone());
    put("Creator", flow.creator.clone());
    put("Created", timestamp_string(created, now));
    put("Started", timestamp_string(started, now));
    if flow.start_time_us > 0 {
        put("RunningFor", humanize_duration_since(started, now).replace(" ago", ""));
    }
    put("StuckAfter", format!("{minutes} minutes"));
    if let Some(link) = links.collection(&flow.client_id, &flow.flow_id, "overview") {
        put("Link", link);
    }
    context
}
