//! Server.Monitor.Client.Errors.Alert (docs/velociraptor.md §9).

use serde_json::Value;

use super::filter::LogFilters;
use super::server::{DEDUP_DOC, DEFAULT_INCLUDE, EXCLUDE_DOC, INCLUDE_DOC, PERIOD_DOC, SEVERITY_DOC};
use super::{CursorRead, LogLine, alert_context, announce, spec_artifacts};
use crate::action::{Action, Failure};
use crate::host::{Event, Host};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::rules::monitor::{period, server_alert};
use crate::rules::{Rule, Setup};
use crate::velociraptor::{str_at, strings_at};
use crate::vql::{Timestamp, get_path};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("Period", ParamKind::Int, "60", PERIOD_DOC),
    ParamSpec::new("DedupInterval", ParamKind::Int, "3600", DEDUP_DOC),
    ParamSpec::new("IncludeFilter", ParamKind::Csv, DEFAULT_INCLUDE, INCLUDE_DOC),
    ParamSpec::new(
        "ExcludeFilter",
        ParamKind::Csv,
        "Artifact,Level,Message\nGeneric\\.Client\\.Stats$,.+,.+\n",
        EXCLUDE_DOC,
    ),
    ParamSpec::new("SeverityField", ParamKind::String, "Severity", SEVERITY_DOC),
];

/// The configured Server.Monitor.Client.Errors.Alert module.
#[derive(Debug, Clone)]
pub struct ClientErrorsRule {
    period: u32,
    dedup: i64,
    filters: LogFilters,
    severity_field: String,
    announced: Vec<String>,
}

/// A monitored client event artifact, and the label whose clients run it
/// (None: every client).
struct Monitored {
    artifact: String,
    label: Option<String>,
}

impl ClientErrorsRule {
    /// The client event table's artifacts that IncludeFilter monitors:
    /// the global ones and those of every label group.
    fn monitored(&mut self, host: &dyn Host, tables: &Value) -> Vec<Monitored> {
        let mut out: Vec<Monitored> = spec_artifacts(get_path(tables, "client.artifacts.specs"))
            .into_iter()
            .map(|artifact| Monitored { artifact, label: None })
            .collect();
        let groups = get_path(tables, "client.label_events").and_then(Value::as_array);
        for group in groups.into_iter().flatten() {
            let label = str_at(group, "label").to_string();
            for artifact in spec_artifacts(get_path(group, "artifacts.specs")) {
                out.push(Monitored {
                    artifact,
                    label: Some(label.clone()),
                });
            }
        }
        out.retain(|m| self.filters.monitors(&m.artifact));
        for m in &out {
            announce(host, &mut self.announced, &m.artifact, m.label.as_deref());
        }
        out
    }
}

impl Rule for ClientErrorsRule {
    const NAME: &'static str = "Server.Monitor.Client.Errors.Alert";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Raises an alert when the monitoring log of a client event artifact shows an \
         error on any client, reading each client's log from a cursor kept across ticks and restarts.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let period = period(p)?;
        let rule = Self {
            period,
            dedup: p.int("DedupInterval"),
            filters: LogFilters::from_params(p.table("IncludeFilter"), p.table("ExcludeFilter"))?,
            severity_field: p.text("SeverityField").to_string(),
            announced: Vec::new(),
        };
        Ok((rule, Setup::periodic(period)))
    }

    fn handle(&mut self, _event: &Event, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let now_us = host.now_us();
        let now = Timestamp::from_unix_micros(now_us as i64);
        let tables = host.event_tables()?;
        let monitored = self.monitored(host, &tables);
        if monitored.is_empty() {
            return Ok(Vec::new());
        }
        let mut clients = host.clients(None)?;
        clients.sort_by(|a, b| str_at(a, "client_id").cmp(str_at(b, "client_id")));
        let mut actions = Vec::new();
        // The name is per artifact, so the first alert of a tick is all
        // the dedup would let through.
        let mut alerted: Vec<String> = Vec::new();
        for client in &clients {
            let client_id = str_at(client, "client_id");
            if client_id.is_empty() {
                continue;
            }
            let labels = strings_at(client, "labels");
            let mut artifacts: Vec<&str> = Vec::new();
            for m in &monitored {
                // A label group's artifacts run on clients carrying exactly that label.
                let runs_here = m.label.as_ref().is_none_or(|l| labels.contains(l));
                if runs_here && !artifacts.contains(&m.artifact.as_str()) {
                    artifacts.push(&m.artifact);
                }
            }
            for artifact in artifacts {
                let cursor = CursorRead {
                    host,
                    key: format!("cursor/{client_id}/{artifact}"),
                    start_ms: (now_us / 1000).saturating_sub(u64::from(self.period) * 1000),
                };
                let since = cursor.since();
                let lines: Vec<LogLine> = host
                    .monitoring_logs(client_id, artifact, since)?
                    .iter()
                    .map(LogLine::read)
                    .collect::<Result<_, _>>()?;
                if !alerted.iter().any(|a| a == artifact) {
                    let kept = lines.iter().find_map(|line| {
                        self.filters
                            .keep(artifact, &line.level, &line.message)
                            .map(|row| (line, row))
                    });
                    if let Some((line, row)) = kept {
                        let mut context = alert_context(row, &self.severity_field, artifact, line, now);
                        context.insert("ClientId".into(), Value::String(client_id.to_string()));
                        let name = format!("Client event query error in {artifact}");
                        actions.push(server_alert(name, self.dedup, Self::NAME, context));
                        alerted.push(artifact.to_string());
                    }
                }
                cursor.advance(since, &lines);
            }
        }
        Ok(actions)
    }
}
