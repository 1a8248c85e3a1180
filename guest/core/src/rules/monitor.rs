//! What the server monitors (the error monitors, the audit and fleet
//! monitors) share: the alerts they raise are the server's own.

use serde_json::{Map, Value};

use crate::action::{Action, Alert};
use crate::params::{ParamError, ParamKind, ParamSpec, Params};

/// `MaxAlertsPerTick`: the alerts one tick raises at most (the rest are
/// counted in one more, see [`AlertBudget`]); `description` says what is
/// counted.
pub(crate) const fn max_alerts_per_tick(description: &'static str) -> ParamSpec {
    ParamSpec::new("MaxAlertsPerTick", ParamKind::Int, "20", description).with_range(1, 1000)
}

/// `MaxAlertsPerTick` as a count.
pub(crate) fn max_alerts(p: &Params) -> usize {
    usize::try_from(p.int("MaxAlertsPerTick")).unwrap_or(1)
}

/// How long a monitor keeps an entry of what it has reported (a quiet
/// client, a hunt, a stuck collection) after writing it: one forgotten
/// (deleted, unlabelled, finished) goes then. An entry still in use is
/// written again once it is [`ENTRY_REFRESH_S`] old, so it never expires
/// while its trouble lasts.
pub(crate) const ENTRY_TTL_S: u32 = 90 * 24 * 3600;
pub(crate) const ENTRY_REFRESH_S: u64 = 30 * 24 * 3600;

/// A monitor's `Period` as a tick interval: at least one second.
pub(crate) fn period(p: &Params) -> Result<u32, ParamError> {
    u32::try_from(p.int("Period"))
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| ParamError::new("Period", format!("must be at least 1 second, got {}", p.int("Period"))))
}

/// An alert raised by a server monitoring artifact (the monitor itself),
/// about the server: `context` is its event data.
pub(crate) fn server_alert(name: String, dedup: i64, monitor: &str, context: Map<String, Value>) -> Action {
    Action::Alert(Alert {
        name,
        dedup_seconds: Some(dedup),
        event_data: Value::Object(context).to_string(),
        client_id: Some("server".into()),
        artifact: Some(monitor.into()),
        artifact_type: Some("SERVER_MONITORING".into()),
        flow_id: None,
    })
}

/// The alerts one tick of a monitor raises: at most `MaxAlertsPerTick`;
/// what matches past it is counted in one more alert (by kind, with the
/// first names), never dropped silently.
#[derive(Debug)]
pub(crate) struct AlertBudget {
    max: usize,
    raised: Vec<Action>,
    /// Past the bound: each one's kind and name.
    past: Vec<(String, String)>,
}

/// Names an alert past the bound lists at most.
const PAST_NAMES_LISTED: usize = 20;

impl AlertBudget {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            raised: Vec::new(),
            past: Vec::new(),
        }
    }

    /// Raises the alert `make` builds if the bound allows, else counts it
    /// under `kind`.
    pub fn raise(&mut self, kind: &str, name: String, make: impl FnOnce(String) -> Action) {
        if self.raised.len() < self.max {
            self.raised.push(make(name));
        } else {
            self.past.push((kind.to_string(), name));
        }
    }

    /// The alerts, and one more for those past the bound: `<n> more <what>`
    /// with their kinds counted and their first names.
    pub fn finish(mut self, monitor: &str, what: &str, link: Option<String>) -> Vec<Action> {
        if self.past.is_empty() {
            return self.raised;
        }
        let mut kinds: Vec<(&str, usize)> = Vec::new();
        for (kind, _) in &self.past {
            match kinds.iter_mut().find(|(k, _)| k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((kind, 1)),
            }
        }
        let listed: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        let names: Vec<&str> = self
            .past
            .iter()
            .take(PAST_NAMES_LISTED)
            .map(|(_, n)| n.as_str())
            .collect();
        let mut context = Map::new();
        context.insert("Kinds".into(), Value::String(listed.join(", ")));
        context.insert("First".into(), Value::String(names.join("\n")));
        context.insert(
            "Note".into(),
            Value::String(format!(
                "{} more matched in one reading, past MaxAlertsPerTick {}",
                self.past.len(),
                self.max
            )),
        );
        if let Some(link) = link {
            context.insert("Link".into(), Value::String(link));
        }
        let name = format!("{} more {what}", self.past.len());
        // Never folded away by dedup: each burst is news.
        self.raised.push(server_alert(name, -1, monitor, context));
        self.raised
    }
}
