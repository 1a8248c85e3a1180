//! Server.Monitor.Errors.Alert (docs/velociraptor.md §8).

use super::filter::LogFilters;
use super::{CursorRead, LogLine, alert_context, announce, spec_artifacts};
use crate::action::{Action, Failure};
use crate::host::{Event, Host};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::rules::monitor::{period, server_alert};
use crate::rules::{Rule, Setup};
use crate::vql::{Timestamp, get_path};

pub(crate) const DEFAULT_INCLUDE: &str = "Artifact,Level,Message,Severity\n.+,ERROR,.+,medium\n";

pub(crate) const PERIOD_DOC: &str = "Seconds between two inspections of the monitoring logs.";
pub(crate) const DEDUP_DOC: &str = "Seconds during which another alert for the same artifact is suppressed.";
pub(crate) const INCLUDE_DOC: &str = "Artifact, Level and Message regexes (empty: any), Severity and extra context \
     columns; the first matching row wins. The KB's VQL error catalogue works here unchanged.";
pub(crate) const EXCLUDE_DOC: &str =
    "Artifact, Level and Message regexes: a log line matching any row raises no alert.";
pub(crate) const SEVERITY_DOC: &str = "The context key that receives the matching row's Severity (empty: none).";

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("Period", ParamKind::Int, "60", PERIOD_DOC),
    ParamSpec::new("DedupInterval", ParamKind::Int, "3600", DEDUP_DOC),
    ParamSpec::new("IncludeFilter", ParamKind::Csv, DEFAULT_INCLUDE, INCLUDE_DOC),
    ParamSpec::new(
        "ExcludeFilter",
        ParamKind::Csv,
        "Artifact,Level,Message\n\
         Server\\.Monitor\\.Alerts$,.+,.+\n\
         Server\\.Monitor\\.Alerts\\.UserMessage$,.+,.+\n\
         Server\\.Monitor\\.Errors\\.Alert$,.+,.+\n",
        EXCLUDE_DOC,
    ),
    ParamSpec::new("SeverityField", ParamKind::String, "Severity", SEVERITY_DOC),
];

/// The configured Server.Monitor.Errors.Alert module.
#[derive(Debug, Clone)]
pub struct ServerErrorsRule {
    period: u32,
    dedup: i64,
    filters: LogFilters,
    severity_field: String,
    announced: Vec<String>,
}

impl Rule for ServerErrorsRule {
    const NAME: &'static str = "Server.Monitor.Errors.Alert";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Raises an alert when the monitoring log of a server event artifact shows an \
         error, reading each log from a cursor kept across ticks and restarts.";
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
        let mut artifacts = spec_artifacts(get_path(&tables, "server.specs"));
        artifacts.retain(|a| self.filters.monitors(a));
        artifacts.dedup();
        let mut actions = Vec::new();
        for artifact in artifacts {
            announce(host, &mut self.announced, &artifact, None);
            let cursor = CursorRead {
                host,
                key: format!("cursor/server/{artifact}"),
                start_ms: (now_us / 1000).saturating_sub(u64::from(self.period) * 1000),
            };
            let since = cursor.since();
            let lines: Vec<LogLine> = host
                .monitoring_logs("server", &artifact, since)?
                .iter()
                .map(LogLine::read)
                .collect::<Result<_, _>>()?;
            let kept = lines.iter().find_map(|line| {
                self.filters
                    .keep(&artifact, &line.level, &line.message)
                    .map(|row| (line, row))
            });
            if let Some((line, row)) = kept {
                let context = alert_context(row, &self.severity_field, &artifact, line, now);
                let name = format!("Server event query error in {artifact}");
                actions.push(server_alert(name, self.dedup, Self::NAME, context));
            }
            cursor.advance(since, &lines);
        }
        Ok(actions)
    }
}
