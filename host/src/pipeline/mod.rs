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
//! and stay on probation for their first events (see [`reload`]).
//!
//! Nothing is stored while an input is handled: module state writes and
//! dedup windows are staged in the state capability, actions in the
//! [`Outbox`]; the service commits them together once the input is done
//! ([`Pipeline::take_staged_state`], [`Outbox::commit`]).

pub mod alerts;
pub mod files;
pub mod noise_control;
pub mod outbox;
pub mod reload;
pub mod retries;
pub mod row_outcome;

use std::collections::VecDeque;
use std::sync::Arc;

use velonotify_core::rules::interest::{RowFilter, SharedIndex};
use velonotify_core::vql::RawRow;

use self::alerts::{AlertQueue, Raised};
use self::outbox::{Delivery, Level, Outbox, Report};
use self::reload::{Candidate, Probation, ProbationVerdict, ReloadSettings, TrialCall};
use self::retries::LookupRetry;
use crate::capabilities::lookups::LookupSource;
use crate::capabilities::state::StateCapability;
use crate::clock::Clock;
use crate::contract::{Action, LabelOp};
use crate::engine::{CallError, CallOutcome, Module};
use crate::metrics::{Counter, Metrics};
use crate::sources::IncomingEvent;
use crate::store::{EventRetry, StateWrite};

/// Above this many due ticks, a module gets only the latest one.
pub const MAX_CATCH_UP_TICKS: u64 = 1000;

/// Alerts raised while handling alerts raised while handling ... stop here:
/// a loop between modules must not spin forever.
pub const MAX_ALERT_DEPTH: u32 = 4;

/// What the pipeline needs besides its modules.
#[derive(Clone)]
pub struct Services {
    /// The system clock for `run`; a virtual clock for a replay, moved to
    /// each row's `_ts`.
    pub clock: Clock,
    /// The state the modules and the alert queue stage their writes in.
    pub state: Arc<StateCapability>,
    pub alerts: AlertQueue,
    /// In a replay, the world the lookups answer from: label changes are
    /// applied to it, as the server would apply them.
    pub world: Option<Arc<dyn LookupSource>>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("clock", &self.clock)
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
    lookup_retry: LookupRetry,
    /// The stored event being handed again, while it is.
    retrying: Option<EventRetry>,
    /// Whether modules' declared interests spare them calls (on unless
    /// `[host] interests = false`).
    use_interests: bool,
    /// Per module (same index, kept across swaps: a new version has the
    /// same name), the rows its interest spared it.
    spared: Vec<Counter>,
    /// Every module's interests, their regexes searched together. Shared,
    /// because a row keeps the index it began with: a rollback during the
    /// row replaces it, for the rows after.
    interests: Arc<SharedIndex>,
}

/// The modules' interests, indexed together (again after each swap).
fn index_interests(modules: &[Module]) -> Arc<SharedIndex> {
    let filters: Vec<&[RowFilter]> = modules.iter().map(Module::row_filters).collect();
    Arc::new(SharedIndex::new(&filters))
}

/// Tells the metrics (and through them the console) which version of
/// `module` runs from now on.
fn announce(services: &Services, module: &Module) {
    services.metrics.set_module(
        module.name(),
        crate::metrics::ModuleVersion {
            version: module.info().version.clone(),
            digest: module.digest().to_string(),
            language: module.language().to_string(),
            since_us: services.clock.now_us(),
        },
    );
}

impl Pipeline {
    pub fn new(modules: Vec<Module>, services: Services) -> Self {
        let next_tick = vec![None; modules.len()];
        let probations = modules.iter().map(|_| None).collect();
        let spared = modules
            .iter()
            .map(|m| services.metrics.spared_counter(m.name()))
            .collect();
        let interests = index_interests(&modules);
        for module in &modules {
            announce(&services, module);
        }
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
            lookup_retry: LookupRetry::default(),
            retrying: None,
            use_interests: true,
            spared,
            interests,
        }
    }

    /// Whether declared interests spare modules calls: off, every module
    /// is called for every row of its queues (to compare, and to measure
    /// what interests save).
    pub fn with_interests(mut self, on: bool) -> Self {
        self.use_interests = on;
        self
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
        self.interests = index_interests(&self.modules);
        // A version still on trial is replaced outright: the version that
        // last passed (or the first one) stays the one to fall back on.
        let fallback = match self.probations[index].take() {
            Some(probation) => probation.into_previous(),
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
        announce(&self.services, &self.modules[index]);
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

    /// Counts a call of a module on probation. When the new version
    /// trapped, the previous one handles the same event (or tick) at once,
    /// in the same input, so a bad build loses nothing even if the process
    /// stops before a rollback; past `max_probation_traps` traps the
    /// previous version comes back for good.
    fn on_trial(&mut self, index: usize, call: TrialCall, event: Option<(&IncomingEvent, u32)>, out: &mut dyn Outbox) {
        let now = self.now_us;
        let Some(probation) = self.probations[index].as_mut() else {
            return;
        };
        let mut fault = false;
        if call != TrialCall::Answered {
            let previous = probation.previous_mut();
            let outcome = match event {
                Some((event, _)) => previous.handle(&event.to_wit(), now),
                None => previous.tick(now),
            };
            let origin = match event {
                Some((event, _)) => event.id.clone(),
                None => previous.tick_origin(now),
            };
            // A failure the previous version shares is the event's doing.
            // What the previous version did is settled unless it failed
            // too (a lookup failure included: the event is then retried).
            let previous_call = TrialCall::of(&outcome);
            fault = call == TrialCall::Trapped || previous_call == TrialCall::Answered;
            if call == TrialCall::Trapped || previous_call != TrialCall::Failed {
                let depth = event.map_or(0, |(_, depth)| depth);
                // The alerts it raises wait in the queue like any others.
                self.settle(index, event.map(|(event, _)| event), &origin, depth, outcome, out);
            }
        }
        let Some(probation) = self.probations[index].as_mut() else {
            return;
        };
        let verdict = probation.record(fault, &self.reload);
        match verdict {
            ProbationVerdict::Continue => {}
            ProbationVerdict::Passed => self.probations[index] = None,
            ProbationVerdict::RollBack => self.roll_back(index, out),
        }
    }

    /// Brings back the version a module on probation replaced.
    fn roll_back(&mut self, index: usize, out: &mut dyn Outbox) {
        let probation = self.probations[index].take().expect("on probation");
        let (faults, calls) = probation.counts();
        let failed = std::mem::replace(&mut self.modules[index], probation.into_previous());
        self.interests = index_interests(&self.modules);
        let name = failed.name().to_string();
        out.report(Report::new(
            Level::Error,
            &name,
            None,
            format!(
                "version {} trapped, or failed where the previous version did not, on {faults} of its first \
                 {calls} calls (more than max_probation_traps {}): rolled back to version {}, which handled \
                 each of those events",
                failed.short_digest(),
                self.reload.max_probation_traps,
                self.modules[index].short_digest(),
            ),
        ));
        self.services.metrics.swap(&name, "rolled-back");
        announce(&self.services, &self.modules[index]);
        self.restart_ticks(index, &failed);
    }

    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    /// The current time of the pipeline's clock (µs).
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// The clock the pipeline moves (a replay's) or reads (`run`'s).
    pub fn clock(&self) -> &Clock {
        &self.services.clock
    }

    /// Alerts raised on the host's queue, and alerts suppressed by dedup.
    pub fn alert_counts(&self) -> (u64, u64) {
        (self.alerts_raised, self.alerts_suppressed)
    }

    /// The state writes of the input handled since the last call: module
    /// state and dedup windows, for the input's commit.
    pub fn take_staged_state(&self) -> Vec<StateWrite> {
        self.services.state.take_staged()
    }

    /// Moves the clock to the clock's time (`run`, while inputs are quiet),
    /// running the ticks that fall due.
    pub fn tick_to_now(&mut self, out: &mut dyn Outbox) {
        let now = self.services.clock.now_us();
        self.advance_to(now, out);
    }

    /// Whether a module's tick falls due by `now_us`.
    pub fn tick_due_by(&self, now_us: u64) -> bool {
        self.next_tick.iter().flatten().any(|due| *due <= now_us)
    }

    /// Moves the clock to `now_us` (never backwards), running every tick
    /// that falls due on the way, in time order.
    ///
    /// After a long gap (a replay spanning years, a suspended host) a
    /// module gets one tick at the latest due time instead of thousands of
    /// catch-up ticks, and the skip is reported: modules keep cursors in
    /// the host's state, so one tick reads everything since the last one.
    pub fn advance_to(&mut self, now_us: u64, out: &mut dyn Outbox) {
        // Times past the year 9999 are refused at the sources; this keeps
        // the tick arithmetic clear of overflow whatever comes.
        let now_us = now_us.min(crate::clock::LATEST_S * 1_000_000);
        if now_us < self.now_us {
            return;
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
            self.next_tick[index] = Some(at.saturating_add(self.period_us(index)));
            let outcome = self.modules[index].tick(at);
            let origin = self.modules[index].tick_origin(at);
            let call = TrialCall::of(&outcome);
            self.settle(index, None, &origin, 0, outcome, out);
            self.on_trial(index, call, None, out);
            self.drain_alerts(out);
        }
        self.set_now(now_us);
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
            self.next_tick[index] = ticks.then(|| start_us.saturating_add(self.period_us(index)));
        }
    }

    fn set_now(&mut self, now_us: u64) {
        self.now_us = now_us;
        self.services.clock.advance_to(now_us);
    }

    /// Passes one event to every module subscribed to its org and queue,
    /// then the alerts they raised to the modules that watch alerts. False
    /// when no module watches it (counted: the event is handled by nobody).
    pub fn dispatch(&mut self, event: &IncomingEvent, out: &mut dyn Outbox) -> bool {
        let now = match &self.services.clock {
            // A replay's time is its rows'.
            Clock::Virtual(_) => event.ts_us.unwrap_or(self.now_us),
            Clock::System => self.services.clock.now_us(),
        };
        self.services.metrics.event_in();
        self.advance_to(now, out);
        let watched = self
            .modules
            .iter()
            .any(|m| m.subscribes_to(&event.queue, &event.org_id));
        if !watched {
            self.services.metrics.event_unwatched();
        }
        self.dispatch_at_depth(event, 0, out);
        self.drain_alerts(out);
        watched
    }

    fn dispatch_at_depth(&mut self, event: &IncomingEvent, depth: u32, out: &mut dyn Outbox) {
        let wit_event = event.to_wit();
        let tested = |m: &Module| m.subscribes_to(&event.queue, &event.org_id) && m.has_interest_in(&event.queue);
        // Read once for every module with an interest in the queue; a row
        // that cannot be read goes to the modules, which say why.
        let row = (self.use_interests && self.modules.iter().any(tested))
            .then(|| RawRow::parse(&wit_event.row))
            .flatten();
        // This row's index: a version rolled back during the row (its own
        // call is over) changes the index for the next rows only.
        let interests = self.interests.clone();
        let shared = row.as_ref().map(|row| interests.read(row));
        for index in 0..self.modules.len() {
            let module = &self.modules[index];
            if !module.subscribes_to(&event.queue, &event.org_id) {
                continue;
            }
            if let Some(shared) = &shared
                && module.has_interest_in(&event.queue)
                && !interests.admits(index, &event.queue, shared)
            {
                self.spared[index].inc();
                self.modules[index].count_spared();
                continue;
            }
            let outcome = self.modules[index].handle(&wit_event, self.now_us);
            let call = TrialCall::of(&outcome);
            self.settle(index, Some(event), &event.id, depth, outcome, out);
            self.on_trial(index, call, Some((event, depth)), out);
        }
    }

    fn drain_alerts(&mut self, out: &mut dyn Outbox) {
        while let Some((alert, depth)) = self.pending.pop_front() {
            self.dispatch_at_depth(&alert, depth, out);
        }
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
    ) {
        let module = self.modules[index].name().to_string();
        let org_id = self.modules[index].spec().org_id().to_string();
        match &outcome.result {
            Ok(_) => self.services.metrics.handled(&module),
            Err(CallError::Trapped { .. }) => self.services.metrics.trapped(&module),
            Err(CallError::Failed(_)) => self.services.metrics.failed(&module),
        }
        let usage = outcome.usage;
        let metrics = &self.services.metrics;
        metrics.call_cost(
            &module,
            usage.elapsed,
            usage.memory_bytes as u64,
            usage.memory_high_water as u64,
        );
        if let Some(why) = usage.recycled {
            let fresh = self.modules[index].memory_bytes() as u64;
            metrics.recycled(&module, why.as_str(), fresh);
            tracing::debug!(
                module,
                reason = why.as_str(),
                "a fresh instance replaced the module's live one"
            );
        }
        // A tick's actions and reports are named after the tick.
        let event_id = Some(origin);
        let link_id = outcome.link_id;
        for (level, message) in outcome.logs {
            out.report(Report::new(level.into(), &module, event_id, message));
        }
        let actions = match (outcome.result, event) {
            (Ok(actions), _) => actions,
            // Not lost: the event comes back to this module.
            (Err(CallError::Failed(crate::contract::Failure::Lookup(why))), Some(event)) => {
                out.refused(&module, &format!("lookup failed: {why}"), true);
                self.retry_later(index, event, format!("lookup failed: {why}"), out);
                return;
            }
            (Err(error), _) => {
                let level = match &error {
                    CallError::Failed(crate::contract::Failure::BadEvent(_)) => Level::Warn,
                    _ => Level::Error,
                };
                out.refused(&module, &error.to_string(), false);
                out.report(Report::new(level, &module, event_id, error.to_string()));
                return;
            }
        };
        let policy = &self.modules[index].spec().grants.outbound;
        if let Err(problem) = policy.check_count(actions.len()) {
            out.refused(&module, &problem, false);
            out.report(Report::new(Level::Error, &module, event_id, problem));
            return;
        }
        let checked: Vec<Result<(), String>> = actions.iter().map(|action| policy.check(action)).collect();
        let mut raised = 0;
        for (action, checked) in actions.iter().zip(checked) {
            if let Err(problem) = checked {
                out.refused(&module, &format!("an invalid action: {problem}"), false);
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
                    Raised::Queued(_) if depth >= MAX_ALERT_DEPTH => {
                        out.report(Report::new(
                            Level::Error,
                            &module,
                            event_id,
                            format!(
                                "alert {:?} dropped: alerts raised by alerts {MAX_ALERT_DEPTH} deep (a loop between \
                                 modules?)",
                                alert.name
                            ),
                        ));
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
                now_us: self.now_us,
                may_reach_private: matches!(action, Action::Webhook(hook) if policy.names_host_of(&hook.url)),
                row: event.map(|e| e.row.as_str()),
                labels_from: &self.modules[index].spec().labels_from,
                link_id: link_id.as_deref(),
            });
        }
    }
}
