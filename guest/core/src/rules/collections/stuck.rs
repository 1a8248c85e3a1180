//! Server.Monitor.Flows.Stuck: a collection that has not finished long
//! after it was scheduled. `Thresholds` gives the minutes per artifact
//! (the first row whose regex matches one of the collection's artifacts;
//! 0 minutes: never stuck). Each stuck collection is reported once: the
//! host's state keeps one entry per collection reported, forgotten 90 days
//! after it was last written.

use serde_json::{Map, Value};

use super::{bounded, micros, number_at, text_at, texts_at};
use crate::action::{Action, Failure};
use crate::host::{Event, Host};
use crate::params::{ParamError, ParamKind, ParamSpec, Params, Row};
use crate::render::Links;
use crate::rules::monitor::{
    AlertBudget, ENTRY_REFRESH_S, ENTRY_TTL_S, max_alerts, max_alerts_per_tick, period, server_alert,
};
use crate::rules::{Rule, Setup};
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
}

impl FlowRow {
    pub fn read(row: &Value) -> Self {
        Self {
            client_id: text_at(row, "client_id"),
            flow_id: text_at(row, "session_id"),
            state: text_at(row, "state"),
            creator: text_at(row, "creator"),
            artifacts: texts_at(row, "artifacts"),
            create_time_us: number_at(row, "create_time"),
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
        let now_us = host.now_us();
        let now_s = now_us / 1_000_000;
        let info = host.server_info();
        let links = Links::new(info.public_url.as_deref(), &info.org_id);
        let mut budget = AlertBudget::new(self.max_alerts);
        for flow in host.active_flows()?.iter().map(FlowRow::read) {
            if flow.client_id.is_empty() || flow.flow_id.is_empty() || flow.create_time_us == 0 {
                continue;
            }
            let Some(minutes) = self.thresholds.minutes_for(&flow.artifacts) else {
                continue;
            };
            if now_us.saturating_sub(flow.create_time_us) <= minutes * 60_000_000 {
                continue;
            }
            let key = format!("stuck/{}/{}", flow.client_id, flow.flow_id);
            let reported_s = host
                .state_get(&key)
                .and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok());
            let mark = || host.state_put(&key, now_s.to_string().as_bytes(), ENTRY_TTL_S);
            match reported_s {
                None => {
                    mark();
                    let name = format!(
                        "Collection {} ({}) on {} has run for more than {minutes} minutes",
                        flow.flow_id,
                        flow.artifacts_shown(),
                        flow.client_id
                    );
                    budget.raise("stuck", name, |name| {
                        server_alert(name, -1, Self::NAME, context(&flow, minutes, &links, now_us))
                    });
                }
                // Still running: kept past the entry's expiry.
                Some(at) if now_s.saturating_sub(at) >= ENTRY_REFRESH_S => mark(),
                Some(_) => {}
            }
        }
        Ok(budget.finish(Self::NAME, "stuck collections", None))
    }
}

fn context(flow: &FlowRow, minutes: u64, links: &Links, now_us: u64) -> Map<String, Value> {
    let now = micros(now_us);
    let created = micros(flow.create_time_us);
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
    put("RunningFor", humanize_duration_since(created, now).replace(" ago", ""));
    put("StuckAfter", format!("{minutes} minutes"));
    if let Some(link) = links.collection(&flow.client_id, &flow.flow_id, "overview") {
        put("Link", link);
    }
    context
}
