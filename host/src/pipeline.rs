//! Events in, actions out: routes each event to the modules subscribed to
//! its queue, gives periodic modules their ticks, checks every action, and
//! hands actions and reports to the outbox.
//!
//! One module's failure or trap fails that event for that module only:
//! it is reported and counted, and the other modules go on. Alerts that
//! modules raise go through the host's alert queue and come back as
//! `Server.Internal.Alerts` rows, after the event that raised them.
//!
//! New versions of modules come in between two events ([`Pipeline::swap`])
//! and stay on probation for their first events (see [`crate::reload`]).

use std::collections::VecDeque;
use std::sync::Arc;

use velonotify_core::recipients::is_address;

use crate::alerts::{AlertQueue, Raised};
use crate::engine::{Action, CallError, CallOutcome, LabelOp, LogLevel, Module, SharedClock};
use crate::lookups::Lookups;
use crate::metrics::Metrics;
use crate::outbox::{Delivery, Level, Outbox, Report};
use crate::reload::{Candidate, Probation, ProbationVerdict, ReloadSettings};
use crate::source::IncomingEvent;

/// Largest webhook body and message a module may produce (the largest
/// e-mail is configured: `host.max_email_mib`).
pub const MAX_WEBHOOK_BYTES: usize = 1 << 20;
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;

/// Above this many due ticks, a module gets only the latest one.
pub const MAX_CATCH_UP_TICKS: u64 = 1000;

/// Alerts raised while handling alerts raised while handling ... stop here:
/// a loop between modules must not spin forever.
pub const MAX_ALERT_DEPTH: u32 = 4;

/// Whose clock the modules see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// Replay: "now" is the current row's `_ts`.
    Virtual,
    /// Service: the system clock.
    System,
}

/// What the pipeline needs besides its modules.
#[derive(Clone)]
pub struct Services {
    pub clock: SharedClock,
    pub mode: ClockMode,
    pub max_email_bytes: u64,
    pub alerts: AlertQueue,
    /// In a replay, the world the lookups answer from: label changes are
    /// applied to it, as the server would apply them.
    pub world: Option<Arc<dyn Lookups>>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// The running modules and the clock.
#[derive(Debug)]
pub struct Pipeline {
    modules: Vec<Module>,
    /// When each module's next tick is due (µs), for periodic modules.
    next_tick: Vec<Option<u64>>,
    services: Services,
    now_us: u64,
    /// Alert rows raised and not yet handled, with their depth.
    pending: VecDeque<(IncomingEvent, u32)>,
    alerts_raised: u64,
    alerts_suppressed: u64,
    /// Per module: the version it replaced, while the new one is on trial.
    probations: Vec<Option<Probation>>,
    reload: ReloadSettings,
}

impl Pipeline {
    pub fn new(modules: Vec<Module>, services: Services) -> Self {
        let next_tick = vec![None; modules.len()];
        let probations = modules.iter().map(|_| None).collect();
        Self {
            modules,
            next_tick,
            services,
            now_us: 0,
            pending: VecDeque::new(),
            alerts_raised: 0,
            alerts_suppressed: 0,
            probations,
            reload: ReloadSettings::default(),
        }
    }

    /// How long new versions stay on probation.
    pub fn with_reload(mut self, reload: ReloadSettings) -> Self {
        self.reload = reload;
        self
    }

    /// Puts a new version of a running module in place. Called between two
    /// events: the event before was handled by the old version, the next
    /// one goes to the new. The old version is kept until the new one has
    /// passed its probation.
    pub fn swap(&mut self, candidate: Candidate, out: &mut dyn Outbox) {
        let name = candidate.module.name().to_string();
        let Some(index) = self.modules.iter().position(|m| m.name() == name) else {
            out.report(Report::new(
                Level::Error,
                &name,
                None,
                "a new version of a module that is not running: ignored",
            ));
            return;
        };
        let replaced = std::mem::replace(&mut self.modules[index], candidate.module);
        // A version still on trial is replaced outright: the version that
        // last passed (or the first one) stays the one to fall back on.
        let fallback = match self.probations[index].take() {
            Some(probation) => probation.into_rollback().0,
            None => replaced,
        };
        let new = &self.modules[index];
        if new.setup().queues != fallback.setup().queues {
            out.report(Report::new(
                Level::Warn,
                &name,
                None,
                format!(
                    "the new version watches {:?} (was {:?}); a Velociraptor event stream opened at start-up \
                     follows the change at the next restart",
                    new.setup().queues,
                    fallback.setup().queues
                ),
            ));
        }
        out.report(Report::new(
            Level::Info,
            &name,
            None,
            format!(
                "swapped in version {} (was {}) {:.2} ms after the file changed; on probation for {} events",
                new.short_digest(),
                fallback.short_digest(),
                candidate.noticed.elapsed().as_secs_f64() * 1000.0,
                self.reload.probation_events
            ),
        ));
        self.services.metrics.swap(&name, "swapped");
        self.restart_ticks(index, &fallback);
        self.probations[index] = Some(Probation::new(fallback));
    }

    /// A swap may change a module's tick period: its next tick follows the
    /// new period from now.
    fn restart_ticks(&mut self, index: usize, before: &Module) {
        if self.modules[index].setup().tick_seconds == before.setup().tick_seconds || self.now_us == 0 {
            return;
        }
        let ticks = self.modules[index].setup().tick_seconds.is_some();
        self.next_tick[index] = ticks.then(|| self.now_us + self.period_us(index));
    }

    /// Counts a call of a module on probation, and rolls it back when it
    /// trapped too often: the previous version returns and handles again
    /// the events the new one trapped on.
    fn on_trial(
        &mut self,
        index: usize,
        trapped: bool,
        event: Option<(&IncomingEvent, u32)>,
        out: &mut dyn Outbox,
    ) -> anyhow::Result<()> {
        let Some(probation) = self.probations[index].as_mut() else {
            return Ok(());
        };
        match probation.record(trapped, event, &self.reload) {
            ProbationVerdict::Continue => return Ok(()),
            ProbationVerdict::Passed => {
                self.probations[index] = None;
                return Ok(());
            }
            ProbationVerdict::RollBack => {}
        }
        let probation = self.probations[index].take().expect("on probation");
        let (traps, calls) = probation.counts();
        let (previous, trapped_events) = probation.into_rollback();
        let failed = std::mem::replace(&mut self.modules[index], previous);
        let name = failed.name().to_string();
        out.report(Report::new(
            Level::Error,
            &name,
            None,
            format!(
                "version {} trapped on {traps} of its first {calls} calls (more than max_probation_traps {}): \
                 rolled back to version {}, which handles the {} trapped event(s) again",
                failed.short_digest(),
                self.reload.max_probation_traps,
                self.modules[index].short_digest(),
                trapped_events.len()
            ),
        ));
        self.services.metrics.swap(&name, "rolled-back");
        self.restart_ticks(index, &failed);
        for (event, depth) in trapped_events {
            let outcome = self.modules[index].handle(&event.to_wit(), self.now_us);
            self.settle(index, Some(&event), &event.id, depth, outcome, out)?;
        }
        Ok(())
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    /// The current time of the pipeline's clock (µs).
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Alerts raised on the host's queue, and alerts suppressed by dedup.
    pub fn alert_counts(&self) -> (u64, u64) {
        (self.alerts_raised, self.alerts_suppressed)
    }

    /// Moves the clock to `now_us` (never backwards), running every tick
    /// that falls due on the way, in time order.
    ///
    /// After a long gap (a replay spanning years, a suspended host) a
    /// module gets one tick at the latest due time instead of thousands of
    /// catch-up ticks, and the skip is reported: modules keep cursors in
    /// the host's state, so one tick reads everything since the last one.
    pub fn advance_to(&mut self, now_us: u64, out: &mut dyn Outbox) -> anyhow::Result<()> {
        if now_us < self.now_us {
            return Ok(());
        }
        if self.now_us == 0 {
            self.start_ticks(now_us);
        }
        self.skip_long_gaps(now_us, out);
        loop {
            let due = self
                .next_tick
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.filter(|t| *t <= now_us).map(|t| (t, i)))
                .min();
            let Some((at, index)) = due else { break };
            self.set_now(at);
            self.next_tick[index] = Some(at + self.period_us(index));
            let outcome = self.modules[index].tick(at);
            let origin = format!("tick:{}@{}", self.modules[index].name(), at / 1_000_000);
            let trapped = outcome.trapped();
            self.settle(index, None, &origin, 0, outcome, out)?;
            self.on_trial(index, trapped, None, out)?;
            self.drain_alerts(out)?;
        }
        self.set_now(now_us);
        Ok(())
    }

    fn period_us(&self, index: usize) -> u64 {
        u64::from(self.modules[index].setup().tick_seconds.unwrap_or(1).max(1)) * 1_000_000
    }

    fn skip_long_gaps(&mut self, now_us: u64, out: &mut dyn Outbox) {
        for index in 0..self.modules.len() {
            let Some(next) = self.next_tick[index] else { continue };
            let period = self.period_us(index);
            let due = if next <= now_us {
                (now_us - next) / period + 1
            } else {
                0
            };
            if due > MAX_CATCH_UP_TICKS {
                let last = next + (due - 1) * period;
                self.next_tick[index] = Some(last);
                out.report(Report::new(
                    Level::Info,
                    self.modules[index].name(),
                    None,
                    format!(
                        "the clock jumped {} s: {} ticks skipped, one tick at the latest due time",
                        (now_us - next) / 1_000_000,
                        due - 1
                    ),
                ));
            }
        }
    }

    fn start_ticks(&mut self, start_us: u64) {
        for index in 0..self.modules.len() {
            let ticks = self.modules[index].setup().tick_seconds.is_some();
            self.next_tick[index] = ticks.then(|| start_us + self.period_us(index));
        }
    }

    fn set_now(&mut self, now_us: u64) {
        self.now_us = now_us;
        self.services.clock.set_us(now_us);
    }

    /// Passes one event to every module subscribed to its queue, then the
    /// alerts they raised to the modules that watch alerts.
    pub fn dispatch(&mut self, event: &IncomingEvent, out: &mut dyn Outbox) -> anyhow::Result<()> {
        let now = match self.services.mode {
            ClockMode::Virtual => event.ts_us.unwrap_or(self.now_us),
            ClockMode::System => system_now_us(),
        };
        self.services.metrics.event_in();
        self.advance_to(now, out)?;
        self.dispatch_at_depth(event, 0, out)?;
        self.drain_alerts(out)
    }

    fn dispatch_at_depth(&mut self, event: &IncomingEvent, depth: u32, out: &mut dyn Outbox) -> anyhow::Result<()> {
        let wit_event = event.to_wit();
        for index in 0..self.modules.len() {
            if !self.modules[index].subscribes_to(&event.queue, &event.org_id) {
                continue;
            }
            let outcome = self.modules[index].handle(&wit_event, self.now_us);
            let trapped = outcome.trapped();
            self.settle(index, Some(event), &event.id, depth, outcome, out)?;
            self.on_trial(index, trapped, Some((event, depth)), out)?;
        }
        Ok(())
    }

    fn drain_alerts(&mut self, out: &mut dyn Outbox) -> anyhow::Result<()> {
        while let Some((alert, depth)) = self.pending.pop_front() {
            self.dispatch_at_depth(&alert, depth, out)?;
        }
        Ok(())
    }

    /// Reports what a call logged and how it ended, and passes its valid
    /// actions on. `origin` names the event (or tick) for the ids of the
    /// alerts it raises.
    fn settle(
        &mut self,
        index: usize,
        event: Option<&IncomingEvent>,
        origin: &str,
        depth: u32,
        outcome: CallOutcome,
        out: &mut dyn Outbox,
    ) -> anyhow::Result<()> {
        let module = self.modules[index].name().to_string();
        let org_id = self.modules[index].spec().org_id.clone();
        let allowed_hosts = self.modules[index].spec().allowed_hosts.clone();
        match &outcome.result {
            Ok(_) => self.services.metrics.handled(&module),
            Err(CallError::Trapped { .. }) => self.services.metrics.trapped(&module),
            Err(CallError::Failed(_)) => self.services.metrics.failed(&module),
        }
        // A tick's actions and reports are named after the tick.
        let event_id = Some(origin);
        for (level, message) in outcome.logs {
            out.report(Report::new(level.into(), &module, event_id, message));
        }
        let actions = match outcome.result {
            Ok(actions) => actions,
            Err(error) => {
                let level = match &error {
                    CallError::Failed(crate::engine::Failure::BadEvent(_)) => Level::Warn,
                    _ => Level::Error,
                };
                out.report(Report::new(level, &module, event_id, error.to_string()));
                return Ok(());
            }
        };
        let limits = self.modules[index].spec().limits;
        if actions.len() > limits.max_actions {
            out.report(Report::new(
                Level::Error,
                &module,
                event_id,
                format!(
                    "{} actions from one call, more than its max_actions ({}): none kept",
                    actions.len(),
                    limits.max_actions
                ),
            ));
            return Ok(());
        }
        let mut raised = 0;
        for action in &actions {
            let checked = validate(action, self.services.max_email_bytes, &allowed_hosts).and_then(|()| {
                match limits.max_action_bytes {
                    Some(cap) if action_bytes(action) > cap => Err(format!(
                        "an action of {} bytes (max_action_bytes {cap})",
                        action_bytes(action)
                    )),
                    _ => Ok(()),
                }
            });
            if let Err(problem) = checked {
                out.report(Report::new(
                    Level::Error,
                    &module,
                    event_id,
                    format!("dropped an invalid action from the module: {problem}"),
                ));
                continue;
            }
            if let Action::Alert(alert) = action {
                raised += 1;
                let id = format!("{origin}#alert{raised}");
                match self.services.alerts.raise(alert, &org_id, self.now_us, id) {
                    Raised::Queued(row) if depth >= MAX_ALERT_DEPTH => {
                        out.report(Report::new(
                            Level::Error,
                            &module,
                            event_id,
                            format!("alert {:?} dropped: alerts raised by alerts {MAX_ALERT_DEPTH} deep (a loop between modules?)", alert.name),
                        ));
                        drop(row);
                        continue;
                    }
                    Raised::Queued(row) => {
                        self.alerts_raised += 1;
                        self.pending.push_back((row, depth + 1));
                    }
                    Raised::Suppressed { until, dedup_seconds } => {
                        self.alerts_suppressed += 1;
                        out.report(Report::new(
                            Level::Info,
                            &module,
                            event_id,
                            format!(
                                "Alert {} (Sup): suppressed until {until} (dedup {dedup_seconds} s): {}",
                                alert.name, alert.event_data
                            ),
                        ));
                        continue;
                    }
                }
            }
            if let (Action::Label(change), Some(world)) = (action, &self.services.world) {
                world.apply_label_change(&org_id, &change.client_id, change.op == LabelOp::Set, &change.labels);
            }
            out.accept(Delivery {
                module: &module,
                org_id: &org_id,
                queue: event.map(|e| e.queue.as_str()),
                event: event_id,
                action,
            })?;
        }
        Ok(())
    }
}

impl From<LogLevel> for Level {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        }
    }
}

pub(crate) fn system_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Checks an action before it may leave: a module is not trusted to
/// produce well-formed addresses, URLs or bounded sizes.
/// The size of what an action carries, for `max_action_bytes`.
fn action_bytes(action: &Action) -> u64 {
    let bytes = match action {
        Action::Email(email) => email.message.len(),
        Action::Webhook(hook) => hook.body.len() + hook.url.len(),
        Action::UserMessage(message) => message.message.len(),
        Action::Label(change) => change.labels.iter().map(String::len).sum(),
        Action::Alert(alert) => alert.event_data.len() + alert.name.len(),
    };
    bytes as u64
}

pub fn validate(action: &Action, max_email_bytes: u64, allowed_hosts: &[String]) -> Result<(), String> {
    match action {
        Action::Email(email) => {
            if email.recipients.is_empty() {
                return Err("an e-mail without recipients".into());
            }
            if let Some(bad) = email.recipients.iter().find(|r| !is_address(r)) {
                return Err(format!("recipient {bad:?} is not an e-mail address"));
            }
            if !is_address(&email.sender) {
                return Err(format!("sender {:?} is not an e-mail address", email.sender));
            }
            if email.subject.chars().any(char::is_control) {
                return Err("the subject contains control characters".into());
            }
            if email.message.len() as u64 > max_email_bytes {
                return Err(format!(
                    "an e-mail of {} bytes (limit {max_email_bytes})",
                    email.message.len()
                ));
            }
        }
        Action::Webhook(hook) => {
            let lower = hook.url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                return Err(format!("webhook URL {:?} is not http(s)", hook.url));
            }
            if hook.url.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err("the webhook URL contains spaces or control characters".into());
            }
            let host = url_host(&hook.url);
            if !host_allowed(&host, allowed_hosts) {
                return Err(format!(
                    "webhook to {host} refused: not in the module's allowed_hosts ({})",
                    if allowed_hosts.is_empty() {
                        "none".to_string()
                    } else {
                        allowed_hosts.join(", ")
                    }
                ));
            }
            if hook.body.len() > MAX_WEBHOOK_BYTES {
                return Err(format!(
                    "a webhook body of {} bytes (limit {MAX_WEBHOOK_BYTES})",
                    hook.body.len()
                ));
            }
            for (name, value) in &hook.headers {
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token || value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                    return Err(format!("webhook header {name:?} is not a valid header"));
                }
            }
        }
        Action::UserMessage(message) => {
            if message.user.is_empty() {
                return Err("a user message without a user".into());
            }
            if message.message.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "a user message of {} bytes (limit {MAX_MESSAGE_BYTES})",
                    message.message.len()
                ));
            }
            if !matches!(
                serde_json::from_str::<serde_json::Value>(&message.message),
                Ok(serde_json::Value::Object(_))
            ) {
                return Err("a user message that is not a JSON object".into());
            }
        }
        Action::Label(change) => {
            if change.client_id.is_empty() || change.labels.is_empty() || change.labels.iter().any(String::is_empty) {
                return Err("a label change without a client or labels".into());
            }
        }
        Action::Alert(alert) => {
            if alert.name.is_empty() {
                return Err("an alert without a name".into());
            }
            if alert.event_data.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "alert context of {} bytes (limit {MAX_MESSAGE_BYTES})",
                    alert.event_data.len()
                ));
            }
            if !matches!(
                serde_json::from_str::<serde_json::Value>(&alert.event_data),
                Ok(serde_json::Value::Object(_))
            ) {
                return Err("alert context that is not a JSON object".into());
            }
        }
    }
    Ok(())
}

/// The host of a URL, lower-case, without user info or port.
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port
            .split_once(']')
            .map_or(host_port, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.to_ascii_lowercase()
}

/// The hosts of the http(s) URLs found in `texts` (a module's parameter
/// values): where a module may post when its `allowed_hosts` is unset.
pub fn hosts_named_in<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut hosts = Vec::new();
    for text in texts {
        let lower = text.to_ascii_lowercase();
        for (start, _) in lower.match_indices("http") {
            let rest = &lower[start..];
            if !(rest.starts_with("https://") || rest.starts_with("http://")) {
                continue;
            }
            let url = rest
                .split(|c: char| c.is_whitespace() || "\"',<>".contains(c))
                .next()
                .unwrap_or("");
            let host = url_host(url);
            if !host.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    hosts
}

/// `allowed` entries are host names, or `*.domain` for any host under it.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    !host.is_empty()
        && allowed.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            match a.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == a,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_hosts_are_checked_against_the_allowed_list() {
        let allowed = vec!["hooks.slack.com".to_string(), "*.webhook.office.com".to_string()];
        assert!(host_allowed(
            &url_host("https://hooks.slack.com/services/T/B/X"),
            &allowed
        ));
        assert!(host_allowed(
            &url_host("https://corp.webhook.office.com:443/x"),
            &allowed
        ));
        assert!(!host_allowed(&url_host("https://webhook.office.com/x"), &allowed));
        assert!(
            !host_allowed(&url_host("https://hooks.slack.com@evil.example/x"), &allowed),
            "user info is not the host"
        );
        assert!(!host_allowed(
            &url_host("https://hooks.slack.com.evil.example/"),
            &allowed
        ));
        assert!(
            !host_allowed(&url_host("https://hooks.slack.com/"), &[]),
            "nothing is allowed by default"
        );
        assert_eq!(url_host("http://[::1]:8080/x"), "::1");
    }

    #[test]
    fn without_allowed_hosts_a_module_may_post_to_the_hosts_of_its_own_parameters() {
        let params = [
            "https://hooks.slack.com/services/T0/B0/X",
            "Y",
            "see HTTPS://Corp.Webhook.Office.com:443/webhookb2/x and http://10.0.0.5/hook",
            "[\"https://hooks.slack.com/other\"]",
        ];
        assert_eq!(
            hosts_named_in(params),
            ["hooks.slack.com", "corp.webhook.office.com", "10.0.0.5"]
        );
        assert!(hosts_named_in(["no url here", "httpx://a.b"]).is_empty());
    }
}
