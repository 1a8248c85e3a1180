//! Server.Monitor.Clients.Enrolment: more than `Threshold` clients
//! enrolled (first seen) within `WindowMinutes` raise an alert: a mass
//! deployment nobody announced, or someone enrolling fake clients.
//! `Dedup` keeps one spike from alerting on every tick.

use serde_json::{Map, Value};

use super::ClientRow;
use crate::action::{Action, Failure};
use crate::host::{Event, Host};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::rules::monitor::{period, server_alert};
use crate::rules::{Rule, Setup};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Period",
        ParamKind::Int,
        "60",
        "Seconds between two counts of the new clients.",
    )
    .with_range(1, 86_400),
    ParamSpec::new(
        "WindowMinutes",
        ParamKind::Int,
        "10",
        "The window the new clients are counted in, in minutes.",
    )
    .with_range(1, 10_080),
    ParamSpec::new(
        "Threshold",
        ParamKind::Int,
        "20",
        "More new clients than this within the window raise an alert.",
    )
    .with_range(0, 1_000_000),
    ParamSpec::new(
        "Dedup",
        ParamKind::Int,
        "3600",
        "Seconds during which another spike alert is suppressed (negative: never).",
    ),
];

/// Clients a spike alert names at most.
const LISTED: usize = 20;

/// The configured Server.Monitor.Clients.Enrolment module.
#[derive(Debug, Clone)]
pub struct EnrolmentSpikeRule {
    window_s: u64,
    threshold: usize,
    dedup: i64,
}

impl Rule for EnrolmentSpikeRule {
    const NAME: &'static str = "Server.Monitor.Clients.Enrolment";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Raises an alert when more clients than a threshold enrol within a window of minutes.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let period = period(p)?;
        let rule = Self {
            window_s: p.int("WindowMinutes").unsigned_abs() * 60,
            threshold: usize::try_from(p.int("Threshold")).unwrap_or(0),
            dedup: p.int("Dedup"),
        };
        Ok((rule, Setup::periodic(period)))
    }

    fn handle(&mut self, _event: &Event, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let now_s = host.now_us() / 1_000_000;
        let since_s = now_s.saturating_sub(self.window_s);
        let mut new: Vec<ClientRow> = host
            .clients(None)?
            .iter()
            .map(ClientRow::read)
            .filter(|c| c.first_seen_s > since_s && c.first_seen_s <= now_s)
            .collect();
        if new.len() <= self.threshold {
            return Ok(Vec::new());
        }
        new.sort_by_key(|c| std::cmp::Reverse(c.first_seen_s));
        let listed: Vec<String> = new.iter().take(LISTED).map(ClientRow::shown).collect();
        let mut context = Map::new();
        context.insert("Count".into(), Value::from(new.len()));
        context.insert("WindowMinutes".into(), Value::from(self.window_s / 60));
        context.insert("Threshold".into(), Value::from(self.threshold));
        context.insert("Newest".into(), Value::String(listed.join("\n")));
        // One name for every spike: Dedup keeps one spike to one alert.
        let name = "Enrolment spike".to_string();
        Ok(vec![server_alert(name, self.dedup, Self::NAME, context)])
    }
}
