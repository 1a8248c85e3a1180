//! What `velonotify run` counts, in the Prometheus text format: events in,
//! each module's calls, actions, and what delivery did with them.

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `[metrics]`: Prometheus metrics of `run`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Address to serve `/metrics` on, e.g. `127.0.0.1:9464`.
    pub listen: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLabel {
    module: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    module: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HeldBackLabels {
    module: String,
    kind: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SwapLabels {
    module: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RecycleLabels {
    module: String,
    reason: String,
}

/// Call latency buckets: 50 µs doubling to about 1.6 s (deadlines are
/// 500 ms by default).
fn call_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    module: String,
    version: String,
    digest: String,
    language: String,
}

/// What runs under a module's name now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleVersion {
    /// The version the module reports (`module-info`).
    pub version: String,
    /// SHA-256 of its component, in hex.
    pub digest: String,
    /// Rust, Python, JavaScript or unknown.
    pub language: String,
    /// When this version took over (µs).
    pub since_us: u64,
}

/// A module's figures since the process started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModuleFigures {
    pub handled: u64,
    pub failed: u64,
    pub trapped: u64,
    /// Rows its declared interest refused.
    pub spared: u64,
    /// Calls timed, and their mean time in seconds.
    pub calls: u64,
    pub mean_call_s: f64,
    pub memory_bytes: u64,
    pub memory_high_water_bytes: u64,
    pub swapped: u64,
    pub rolled_back: u64,
    /// New versions the reloader refused.
    pub refused: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

/// The host's counters. Cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events: Counter,
    unwatched: Counter,
    handled: Family<ModuleLabel, Counter>,
    failed: Family<ModuleLabel, Counter>,
    trapped: Family<ModuleLabel, Counter>,
    spared: Family<ModuleLabel, Counter>,
    call_seconds: Family<ModuleLabel, Histogram, fn() -> Histogram>,
    memory: Family<ModuleLabel, Gauge>,
    memory_high_water: Family<ModuleLabel, Gauge>,
    recycles: Family<RecycleLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    sent: Family<KindLabel, Counter>,
    retried: Family<KindLabel, Counter>,
    dead_lettered: Family<KindLabel, Counter>,
    held: Family<ModuleLabel, Counter>,
    swaps: Family<SwapLabels, Counter>,
    dropped: Family<ModuleLabel, Counter>,
    held_back: Family<HeldBackLabels, Counter>,
    digests: Counter,
    queue_depth: Gauge,
    module_info: Family<InfoLabels, Gauge>,
    /// Calls and their total time, for the console's mean (the histogram
    /// does not tell its sum outside tests); not exported.
    call_count: Family<ModuleLabel, Counter>,
    call_micros: Family<ModuleLabel, Counter>,
    /// The roster: each module's version now, for the console (threads
    /// other than the pipeline's do not hold the modules).
    roster: std::sync::Mutex<std::collections::BTreeMap<String, ModuleVersion>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("velonotify");
        let events = Counter::default();
        registry.register("events", "Events read from every source", events.clone());
        let unwatched = Counter::default();
        registry.register(
            "events_unwatched",
            "Events for an org and queue no module watches: handled by nobody",
            unwatched.clone(),
        );
        let handled = Family::<ModuleLabel, Counter>::default();
        registry.register("module_handled", "Calls a module answered", handled.clone());
        let spared = Family::<ModuleLabel, Counter>::default();
        registry.register(
            "module_rows_spared",
            "Rows of a module's queues the host did not pass it: its declared interest refused them",
            spared.clone(),
        );
        let failed = Family::<ModuleLabel, Counter>::default();
        registry.register(
            "module_failed",
            "Calls a module failed (bad event, lookup, internal)",
            failed.clone(),
        );
        let trapped = Family::<ModuleLabel, Counter>::default();
        registry.register(
            "module_trapped",
            "Calls that trapped (deadline, memory, panic)",
            trapped.clone(),
        );
        let call_seconds = Family::<ModuleLabel, Histogram, fn() -> Histogram>::new_with_constructor(call_seconds);
        registry.register(
            "module_call_seconds",
            "Time of a module's calls (handle, tick), waits on lookups included",
            call_seconds.clone(),
        );
        let memory = Family::<ModuleLabel, Gauge>::default();
        registry.register(
            "module_memory_bytes",
            "Linear memory of a module's live instance",
            memory.clone(),
        );
        let memory_high_water = Family::<ModuleLabel, Gauge>::default();
        registry.register(
            "module_memory_high_water_bytes",
            "The most linear memory any instance of a module has held",
            memory_high_water.clone(),
        );
        let recycles = Family::<RecycleLabels, Counter>::default();
        registry.register(
            "module_recycles",
            "Instances replaced by a fresh one, by reason (memory, calls)",
            recycles.clone(),
        );
        let actions = Family::<ActionLabels, Counter>::default();
        registry.register("actions", "Actions put in the outbox", actions.clone());
        let sent = Family::<KindLabel, Counter>::default();
        registry.register("sent", "Actions delivered", sent.clone());
        let retried = Family::<KindLabel, Counter>::default();
        registry.register(
            "retried",
            "Delivery attempts that failed transiently and will be retried",
            retried.clone(),
        );
        let dead_lettered = Family::<KindLabel, Counter>::default();
        registry.register("dead_lettered", "Actions given up on", dead_lettered.clone());
        let held = Family::<ModuleLabel, Counter>::default();
        registry.register("held", "E-mails held for a digest by SendInterval", held.clone());
        let dropped = Family::<ModuleLabel, Counter>::default();
        registry.register(
            "dropped",
            "E-mails dropped by SendInterval (throttle_mode drop)",
            dropped.clone(),
        );
        let held_back = Family::<HeldBackLabels, Counter>::default();
        registry.register(
            "held_back",
            "Notifications held back by noise control, by reason (silenced, inhibited); kept in the outbox",
            held_back.clone(),
        );
        let swaps = Family::<SwapLabels, Counter>::default();
        registry.register(
            "module_swaps",
            "Hot swaps of a module's component, by result (swapped, refused, rolled-back)",
            swaps.clone(),
        );
        let digests = Counter::default();
        registry.register("digests", "Digest e-mails made of held e-mails", digests.clone());
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Outbox items still to deliver (pending or held)",
            queue_depth.clone(),
        );
        let module_info = Family::<InfoLabels, Gauge>::default();
        registry.register(
            "module_info",
            "The version each module runs now: 1 for its version, digest and language",
            module_info.clone(),
        );
        Self {
            registry,
            events,
            unwatched,
            handled,
            failed,
            trapped,
            spared,
            call_seconds,
            memory,
            memory_high_water,
            recycles,
            actions,
            sent,
            retried,
            dead_lettered,
            held,
            swaps,
            dropped,
            held_back,
            digests,
            queue_depth,
            module_info,
            call_count: Family::default(),
            call_micros: Family::default(),
            roster: std::sync::Mutex::default(),
        }
    }

    /// `module` runs `version` from now on (at start, after a swap or a
    /// rollback).
    pub fn set_module(&self, module: &str, version: ModuleVersion) {
        let mut roster = self.roster.lock().expect("roster lock");
        if let Some(old) = roster.get(module) {
            self.module_info.remove(&Self::info(module, old));
        }
        self.module_info.get_or_create(&Self::info(module, &version)).set(1);
        roster.insert(module.to_string(), version);
    }

    fn info(module: &str, version: &ModuleVersion) -> InfoLabels {
        InfoLabels {
            module: module.to_string(),
            version: version.version.clone(),
            digest: version.digest.clone(),
            language: version.language.clone(),
        }
    }

    /// The modules and the version each runs now, by name.
    pub fn roster(&self) -> Vec<(String, ModuleVersion)> {
        let roster = self.roster.lock().expect("roster lock");
        roster.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// What `module` did since the process started.
    pub fn module_figures(&self, module: &str) -> ModuleFigures {
        let label = Self::module(module);
        let count = |family: &Family<ModuleLabel, Counter>| family.get(&label).map_or(0, |c| c.get());
        let gauge = |family: &Family<ModuleLabel, Gauge>| family.get(&label).map_or(0, |g| g.get().max(0) as u64);
        let swaps = |result: &str| {
            self.swaps
                .get(&SwapLabels {
                    module: module.to_string(),
                    result: result.to_string(),
                })
                .map_or(0, |c| c.get())
        };
        let calls = count(&self.call_count);
        let seconds = count(&self.call_micros) as f64 / 1e6;
        ModuleFigures {
            handled: count(&self.handled),
            failed: count(&self.failed),
            trapped: count(&self.trapped),
            spared: count(&self.spared),
            calls,
            mean_call_s: if calls == 0 { 0.0 } else { seconds / calls as f64 },
            memory_bytes: gauge(&self.memory),
            memory_high_water_bytes: gauge(&self.memory_high_water),
            swapped: swaps("swapped"),
            rolled_back: swaps("rolled-back"),
            refused: swaps("refused"),
        }
    }

    /// Events read from every source since the process started.
    pub fn events_in(&self) -> u64 {
        self.events.get()
    }

    fn module(module: &str) -> ModuleLabel {
        ModuleLabel {
            module: module.to_string(),
        }
    }

    fn kind(kind: &str) -> KindLabel {
        KindLabel { kind: kind.to_string() }
    }

    pub fn event_in(&self) {
        self.events.inc();
    }

    pub fn event_unwatched(&self) {
        self.unwatched.inc();
    }

    /// The counter of rows `module`'s interest spared it, to keep: it
    /// moves once per row and module, too often for a lookup by name.
    pub fn spared_counter(&self, module: &str) -> Counter {
        self.spared.get_or_create(&Self::module(module)).clone()
    }

    pub fn handled(&self, module: &str) {
        self.handled.get_or_create(&Self::module(module)).inc();
    }

    pub fn failed(&self, module: &str) {
        self.failed.get_or_create(&Self::module(module)).inc();
    }

    pub fn trapped(&self, module: &str) {
        self.trapped.get_or_create(&Self::module(module)).inc();
    }

    /// What one call of `module` cost: its time, and the memory its
    /// instance holds after it and at most.
    pub fn call_cost(&self, module: &str, elapsed: std::time::Duration, memory_bytes: u64, high_water: u64) {
        let label = Self::module(module);
        self.call_seconds.get_or_create(&label).observe(elapsed.as_secs_f64());
        self.call_count.get_or_create(&label).inc();
        self.call_micros
            .get_or_create(&label)
            .inc_by(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        self.memory
            .get_or_create(&label)
            .set(i64::try_from(memory_bytes).unwrap_or(i64::MAX));
        self.memory_high_water
            .get_or_create(&label)
            .set(i64::try_from(high_water).unwrap_or(i64::MAX));
    }

    /// A fresh instance replaced `module`'s live one; `memory_bytes` is
    /// what the fresh one holds.
    pub fn recycled(&self, module: &str, reason: &str, memory_bytes: u64) {
        self.recycles
            .get_or_create(&RecycleLabels {
                module: module.to_string(),
                reason: reason.to_string(),
            })
            .inc();
        self.memory
            .get_or_create(&Self::module(module))
            .set(i64::try_from(memory_bytes).unwrap_or(i64::MAX));
    }

    pub fn queued(&self, module: &str, kind: &str) {
        let labels = ActionLabels {
            module: module.to_string(),
            kind: kind.to_string(),
        };
        self.actions.get_or_create(&labels).inc();
    }

    /// A hot swap of `module` ended with `result`: swapped, refused or
    /// rolled-back.
    pub fn swap(&self, module: &str, result: &str) {
        let labels = SwapLabels {
            module: module.to_string(),
            result: result.to_string(),
        };
        self.swaps.get_or_create(&labels).inc();
    }

    pub fn held(&self, module: &str) {
        self.held.get_or_create(&Self::module(module)).inc();
    }

    pub fn dropped(&self, module: &str) {
        self.dropped.get_or_create(&Self::module(module)).inc();
    }

    /// A notification held back: `reason` is its status (`silenced`,
    /// `inhibited`).
    pub fn held_back(&self, module: &str, kind: &str, reason: &str) {
        let labels = HeldBackLabels {
            module: module.to_string(),
            kind: kind.to_string(),
            reason: reason.to_string(),
        };
        self.held_back.get_or_create(&labels).inc();
    }

    pub fn sent(&self, kind: &str) {
        self.sent.get_or_create(&Self::kind(kind)).inc();
    }

    pub fn retried(&self, kind: &str) {
        self.retried.get_or_create(&Self::kind(kind)).inc();
    }

    pub fn dead_lettered(&self, kind: &str) {
        self.dead_lettered.get_or_create(&Self::kind(kind)).inc();
    }

    pub fn digest(&self) {
        self.digests.inc();
    }

    pub fn set_queue_depth(&self, depth: u64) {
        self.queue_depth.set(depth as i64);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_their_labels() {
        let m = Metrics::new();
        m.event_in();
        m.handled("Server.Monitor.Alerts");
        m.queued("Server.Monitor.Alerts", "email");
        m.sent("email");
        m.set_queue_depth(3);
        let text = m.render();
        assert!(text.contains("velonotify_events_total 1"), "{text}");
        assert!(
            text.contains("velonotify_module_handled_total{module=\"Server.Monitor.Alerts\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("velonotify_actions_total{module=\"Server.Monitor.Alerts\",kind=\"email\"} 1"),
            "{text}"
        );
        assert!(text.contains("velonotify_queue_depth 3"), "{text}");
    }

    /// The console reads what Prometheus does; a swap replaces the
    /// module's info series rather than adding one.
    #[test]
    fn the_roster_and_figures_follow_a_module_through_a_swap() {
        let m = Metrics::new();
        let version = |digest: &str| ModuleVersion {
            version: "1.0.0".into(),
            digest: digest.into(),
            language: "Rust".into(),
            since_us: 1,
        };
        m.set_module("alerts", version("aaa"));
        m.handled("alerts");
        m.handled("alerts");
        m.trapped("alerts");
        m.call_cost("alerts", std::time::Duration::from_millis(2), 100, 200);
        m.call_cost("alerts", std::time::Duration::from_millis(4), 300, 400);
        m.swap("alerts", "swapped");
        m.set_module("alerts", version("bbb"));
        let text = m.render();
        assert!(text.contains("digest=\"bbb\",language=\"Rust\"} 1"), "{text}");
        assert!(!text.contains("digest=\"aaa\""), "{text}");
        assert_eq!(m.roster(), vec![("alerts".to_string(), version("bbb"))]);
        let figures = m.module_figures("alerts");
        assert_eq!(
            (figures.handled, figures.trapped, figures.swapped, figures.calls),
            (2, 1, 1, 2)
        );
        assert!((figures.mean_call_s - 0.003).abs() < 1e-9, "{figures:?}");
        assert_eq!((figures.memory_bytes, figures.memory_high_water_bytes), (300, 400));
        assert_eq!(m.module_figures("other"), ModuleFigures::default());
    }
}
