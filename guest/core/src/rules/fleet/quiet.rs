//! Server.Monitor.Clients.Quiet: the opposite of Clients.Online. A client
//! carrying `Label` (e.g. `critical`) not seen for more than
//! `QuietMinutes` raises one alert; when it is seen again, one "back
//! online" notice. Whether a client is known quiet is kept in the host's
//! state (one entry per quiet client, forgotten after 90 days), stored
//! with the alerts in the tick's commit: one alert per quiet spell,
//! across ticks and restarts.

use serde_json::{Map, Value};

use super::ClientRow;
use crate::action::{Action, Failure};
use crate::host::{Event, Host};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::render::Links;
use crate::rules::monitor::{
    AlertBudget, ENTRY_REFRESH_S, ENTRY_TTL_S, max_alerts, max_alerts_per_tick, period, server_alert,
};
use crate::rules::{Rule, Setup};
use crate::velociraptor::timestamp_string;
use crate::vql::{Timestamp, humanize_duration_since};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Period",
        ParamKind::Int,
        "60",
        "Seconds between two looks at the clients.",
    )
    .with_range(1, 86_400),
    ParamSpec::new(
        "Label",
        ParamKind::String,
        "critical",
        "Clients carrying this label are watched (case-insensitive; empty: every client).",
    ),
    ParamSpec::new(
        "QuietMinutes",
        ParamKind::Int,
        "60",
        "Minutes without contact after which a watched client is quiet.",
    )
    .with_range(1, 525_600),
    ParamSpec::new(
        "BackOnline",
        ParamKind::Bool,
        "Y",
        "Also raise a notice when a quiet client is seen again.",
    ),
    max_alerts_per_tick("Alerts one look raises at most; the clients past it are counted and named in one more alert."),
];

/// Clients found quiet or back in one tick at most: the others are found
/// on the next ticks (the state one input may write is bounded).
const MAX_CHANGES_PER_TICK: usize = 1_000;

/// The configured Server.Monitor.Clients.Quiet module.
#[derive(Debug, Clone)]
pub struct QuietClientsRule {
    label: Option<String>,
    quiet_us: u64,
    back_online: bool,
    max_alerts: usize,
}

impl Rule for QuietClientsRule {
    const NAME: &'static str = "Server.Monitor.Clients.Quiet";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Raises one alert when a client carrying a label has not been seen for a \
         while, and one notice when it is back online.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let period = period(p)?;
        let label = p.text("Label").trim();
        let rule = Self {
            label: (!label.is_empty()).then(|| label.to_string()),
            quiet_us: p.int("QuietMinutes").unsigned_abs() * 60 * 1_000_000,
            back_online: p.bool("BackOnline"),
            max_alerts: max_alerts(p),
        };
        Ok((rule, Setup::periodic(period)))
    }

    fn handle(&mut self, _event: &Event, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let now_us = host.now_us();
        let now = Timestamp::from_unix_micros(i64::try_from(now_us).unwrap_or(i64::MAX));
        let info = host.server_info();
        let links = Links::new(info.public_url.as_deref(), &info.org_id);
        let now_s = now_us / 1_000_000;
        let mut budget = AlertBudget::new(self.max_alerts);
        let mut changes = 0;
        for client in host.clients(self.label.as_deref())?.iter().map(ClientRow::read) {
            if client.client_id.is_empty() || changes >= MAX_CHANGES_PER_TICK {
                continue;
            }
            let key = format!("quiet/{}", client.client_id);
            // The entry holds when the client was found quiet (seconds).
            let marked_s = host
                .state_get(&key)
                .filter(|v| !v.is_empty())
                .map(|v| String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0));
            let quiet = now_us.saturating_sub(client.last_seen_us) > self.quiet_us;
            let mark = || host.state_put(&key, now_s.to_string().as_bytes(), ENTRY_TTL_S);
            match (quiet, marked_s) {
                (true, None) => {
                    changes += 1;
                    mark();
                    let name = format!("Client {} is quiet", client.shown());
                    budget.raise("quiet", name, |name| {
                        server_alert(name, -1, Self::NAME, self.context(&client, &links, now))
                    });
                }
                // Still quiet: kept past the entry's expiry.
                (true, Some(marked_s)) if now_s.saturating_sub(marked_s) >= ENTRY_REFRESH_S => mark(),
                (false, Some(_)) => {
                    changes += 1;
                    // Forgotten at once: an empty value that expires.
                    host.state_put(&key, b"", 1);
                    if self.back_online {
                        let name = format!("Client {} is back online", client.shown());
                        budget.raise("back online", name, |name| {
                            server_alert(name, -1, Self::NAME, self.context(&client, &links, now))
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(budget.finish(Self::NAME, "clients quiet or back online", None))
    }
}

impl QuietClientsRule {
    fn context(&self, client: &ClientRow, links: &Links, now: Timestamp) -> Map<String, Value> {
        let last_seen = Timestamp::from_unix_micros(i64::try_from(client.last_seen_us).unwrap_or(i64::MAX));
        let mut context = Map::new();
        let mut put = |key: &str, value: String| {
            context.insert(key.into(), Value::String(value));
        };
        put("ClientId", client.client_id.clone());
        put("Hostname", client.hostname.clone());
        put("Labels", client.labels.join(", "));
        put("LastSeen", timestamp_string(last_seen, now));
        if client.last_seen_us > 0 {
            put("QuietFor", humanize_duration_since(last_seen, now).replace(" ago", ""));
        }
        put("QuietAfter", format!("{} minutes", self.quiet_us / 60_000_000));
        if let Some(link) = links.client(&client.client_id) {
            put("Link", link);
        }
        context
    }
}
