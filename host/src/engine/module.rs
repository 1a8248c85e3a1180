//! A running rule module: its instance, its calls, and what happens when a
//! call traps.

use std::time::{Duration, Instant};

use velonotify_core::rules::interest::{self, ColumnTest, Interest, RowFilter, ValueTest};
use wasmtime::{Store, UpdateDeadline};

use super::sandbox::{CallBudget, MemoryLimitExceeded, RecyclePolicy, Recycled, SandboxLimits, StoreData};
use super::{EPOCH_TICK, Engine, Loaded};
use crate::capabilities::{CallContext, Grants};
use crate::clock::CallTime;
use crate::contract::{Action, Event, Failure, LogLevel, ModuleInfo, RuleModule, RuleModulePre, Setup};

/// Everything needed to start a module.
#[derive(Debug, Clone)]
pub struct ModuleSpec {
    /// The instance's name (unique in a configuration).
    pub name: String,
    pub params: Vec<(String, String)>,
    pub limits: SandboxLimits,
    /// What the module may use of the host (its org is its lookups' org).
    pub grants: Grants,
    /// The time its calls see, set by whoever calls it.
    pub time: CallTime,
    /// Members of the rows it handles that become labels of its
    /// notifications (`noise::labels`), beside the built-in ones.
    pub labels_from: Vec<String>,
}

impl ModuleSpec {
    /// The org whose events and lookups the module gets.
    pub fn org_id(&self) -> &str {
        &self.grants.lookups.org_id
    }
}

/// Counters of one module since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModuleStats {
    /// Calls that returned actions (possibly none).
    pub handled: u64,
    /// Calls the module failed (bad event, lookup, internal).
    pub failed: u64,
    /// Calls that trapped (deadline, memory, panic, ...).
    pub trapped: u64,
    pub actions: u64,
    /// Rows of its queues it was not called for: its interest refused them.
    pub spared: u64,
}

/// Why a call trapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapReason {
    /// The call ran longer than the module's deadline.
    Deadline(Duration),
    /// The module grew its memory beyond the limit.
    Memory {
        limit: usize,
    },
    StackOverflow,
    /// The module panicked (the message is what it wrote to stderr).
    Panic(String),
    Other(String),
}

impl std::fmt::Display for TrapReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrapReason::Deadline(d) => write!(f, "stopped at its deadline of {} ms", d.as_millis()),
            TrapReason::Memory { limit } => write!(f, "stopped at its memory limit of {} MiB", limit >> 20),
            TrapReason::StackOverflow => write!(f, "stopped by a stack overflow"),
            TrapReason::Panic(message) => write!(f, "panicked: {message}"),
            TrapReason::Other(message) => write!(f, "trapped: {message}"),
        }
    }
}

/// Why a call produced no actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The module answered with a failure.
    Failed(Failure),
    /// The module trapped and was restarted; `elapsed` is how long the
    /// call ran.
    Trapped { reason: TrapReason, elapsed: Duration },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Failed(Failure::BadConfig(e)) => write!(f, "parameter {}: {}", e.param, e.message),
            CallError::Failed(Failure::BadEvent(m)) => write!(f, "bad event: {m}"),
            CallError::Failed(Failure::Lookup(m)) => write!(f, "lookup failed: {m}"),
            CallError::Failed(Failure::Internal(m)) => write!(f, "internal error: {m}"),
            CallError::Trapped { reason, elapsed } => {
                write!(f, "{reason} (after {} ms)", elapsed.as_millis())
            }
        }
    }
}

/// The result of one call and what the module logged during it.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<Vec<Action>, CallError>,
    pub logs: Vec<(LogLevel, String)>,
    pub usage: CallUsage,
    /// The id the call's silence links carry, if it made any: its
    /// notifications are stored with it (`capabilities::links`).
    pub link_id: Option<String>,
}

/// What a call cost, for the module's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallUsage {
    pub elapsed: Duration,
    /// The instance's linear memory after the call (before a recycle).
    pub memory_bytes: usize,
    /// The most any instance of this module has held.
    pub memory_high_water: usize,
    /// A fresh instance replaced the one that answered, and why.
    pub recycled: Option<Recycled>,
}

impl CallOutcome {
    pub fn trapped(&self) -> bool {
        matches!(self.result, Err(CallError::Trapped { .. }))
    }
}

/// A configured, running rule module.
pub struct Module {
    spec: ModuleSpec,
    info: ModuleInfo,
    setup: Setup,
    /// The rows it declared it may act on, ready to test.
    interests: Vec<RowFilter>,
    loaded: Loaded,
    engine: wasmtime::Engine,
    live: Option<Live>,
    stats: ModuleStats,
    memory_high_water: usize,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.spec.name)
            .field("digest", &self.loaded.short_digest())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

struct Live {
    store: Store<StoreData>,
    bindings: RuleModule,
    /// Calls answered since it was instantiated.
    calls: u64,
}

/// Why a module could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("parameter {param}: {message}")]
    Param { param: String, message: String },
    #[error("{0}")]
    Other(String),
}

impl Module {
    /// Loads the component at `path`, instantiates it, asks who it is and
    /// configures it with the spec's parameters.
    /// An empty `spec.name` takes the module's own name.
    pub fn start(engine: &Engine, path: &std::path::Path, spec: ModuleSpec) -> Result<Self, StartError> {
        let loaded = engine.load(path).map_err(|e| StartError::Other(format!("{e:#}")))?;
        Self::start_loaded(&loaded, spec)
    }

    /// As [`Module::start`], for a component already loaded: a hot swap
    /// starts a candidate (and its self-test instance) this way.
    pub fn start_loaded(loaded: &Loaded, spec: ModuleSpec) -> Result<Self, StartError> {
        let engine = loaded.engine.clone();
        let mut live = instantiate(&engine, &loaded.pre, &spec).map_err(|e| StartError::Other(e.to_string()))?;
        let info =
            guarded(&mut live, spec.limits, |b, s| b.call_describe(s)).map_err(|e| StartError::Other(e.to_string()))?;
        let mut spec = spec;
        if spec.name.is_empty() {
            spec.name = info.name.clone();
            live.store.data_mut().call.rename(&spec.name);
        }
        let setup = configure(&mut live, &spec)?;
        let interests = row_filters(&spec.name, &setup);
        Ok(Self {
            spec,
            info,
            setup,
            interests,
            loaded: loaded.clone(),
            engine,
            live: Some(live),
            stats: ModuleStats::default(),
            memory_high_water: 0,
        })
    }

    /// Creates an instance of `loaded` and drops it, without `describe` or
    /// `configure`: the cost of instantiation alone (benchmarks).
    pub fn instantiate_only(loaded: &Loaded, spec: &ModuleSpec) -> anyhow::Result<()> {
        instantiate(&loaded.engine, &loaded.pre, spec)
            .map(drop)
            .map_err(anyhow::Error::from)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }

    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    pub fn spec(&self) -> &ModuleSpec {
        &self.spec
    }

    /// The SHA-256 of the component file this instance runs.
    pub fn digest(&self) -> &str {
        &self.loaded.digest
    }

    /// The language its component was written in.
    pub fn language(&self) -> super::Language {
        self.loaded.language
    }

    /// The first 12 hex digits of [`Module::digest`].
    pub fn short_digest(&self) -> &str {
        self.loaded.short_digest()
    }

    pub fn stats(&self) -> ModuleStats {
        self.stats
    }

    /// The linear memory its live instance holds.
    pub fn memory_bytes(&self) -> usize {
        self.live.as_ref().map_or(0, |live| live.store.data().limiter.in_use())
    }

    /// Whether the module wants rows of `queue` from `org_id`.
    pub fn subscribes_to(&self, queue: &str, org_id: &str) -> bool {
        org_id == self.spec.org_id() && self.setup.queues.iter().any(|q| q == queue)
    }

    /// Whether the module declared which rows of `queue` it wants.
    pub fn has_interest_in(&self, queue: &str) -> bool {
        self.interests.iter().any(|i| i.queue() == queue)
    }

    /// The rows it declared it may act on, ready to test.
    pub fn row_filters(&self) -> &[RowFilter] {
        &self.interests
    }

    /// Counts a row its interest spared it.
    pub fn count_spared(&mut self) {
        self.stats.spared += 1;
    }

    /// Passes one event to the module.
    pub fn handle(&mut self, event: &Event, now_us: u64) -> CallOutcome {
        self.call(now_us, |bindings, store| bindings.call_handle(store, event))
    }

    /// Gives the module its periodic tick.
    pub fn tick(&mut self, now_us: u64) -> CallOutcome {
        self.call(now_us, |bindings, store| bindings.call_tick(store))
    }

    /// What the outbox records as the cause of a tick's actions (an
    /// event's are recorded under the event's id).
    pub fn tick_origin(&self, at_us: u64) -> String {
        format!("tick:{}@{}", self.name(), at_us / 1_000_000)
    }

    fn call(
        &mut self,
        now_us: u64,
        f: impl FnOnce(&RuleModule, &mut Store<StoreData>) -> wasmtime::Result<Result<Vec<Action>, Failure>>,
    ) -> CallOutcome {
        let Some(live) = self.live.as_mut() else {
            // The module could not be restarted after a trap: every call
            // fails, loudly, until it is fixed and reloaded.
            self.stats.failed += 1;
            return CallOutcome {
                result: Err(CallError::Failed(Failure::Internal(
                    "the module could not be restarted after a trap".into(),
                ))),
                logs: Vec::new(),
                usage: CallUsage::default(),
                link_id: None,
            };
        };
        self.spec.time.set_us(now_us);
        live.store.data_mut().call.start_links();
        let started = Instant::now();
        let outcome = guarded(live, self.spec.limits, f);
        crate::crash_point!("engine::after-call");
        live.calls += 1;
        let memory_bytes = live.store.data().limiter.in_use();
        self.memory_high_water = self.memory_high_water.max(memory_bytes);
        // Only a call that answered keeps its state writes: one that
        // trapped or failed changes nothing (a failed event is handed again,
        // or to the previous version on probation, from the same state).
        let logs = live.store.data_mut().call.end_call(matches!(outcome, Ok(Ok(_))));
        let link_id = live.store.data_mut().call.take_link_id();
        let result = match outcome {
            Ok(Ok(actions)) => {
                self.stats.handled += 1;
                self.stats.actions += actions.len() as u64;
                Ok(actions)
            }
            Ok(Err(failure)) => {
                self.stats.failed += 1;
                Err(CallError::Failed(failure))
            }
            Err(trap) => {
                self.stats.trapped += 1;
                let stderr = live.store.data().stderr.take();
                let reason = classify(&trap, &stderr, self.spec.limits);
                self.restart();
                Err(CallError::Trapped {
                    reason,
                    elapsed: started.elapsed(),
                })
            }
        };
        // (A trapped instance was replaced already.)
        let recycled = match &result {
            Err(CallError::Trapped { .. }) => None,
            _ => self.recycle_if_due(),
        };
        let usage = CallUsage {
            elapsed: started.elapsed(),
            memory_bytes,
            memory_high_water: self.memory_high_water,
            recycled,
        };
        CallOutcome {
            result,
            logs,
            usage,
            link_id,
        }
    }

    /// Replaces the live instance by a fresh one when the policy says;
    /// one that fails to start leaves the old one serving (logged).
    fn recycle_if_due(&mut self) -> Option<Recycled> {
        let live = self.live.as_ref()?;
        let policy = self.spec.limits.recycle;
        let why = if live.store.data().limiter.in_use() >= policy.above_bytes {
            Recycled::Memory
        } else if policy.after_calls > 0 && live.calls >= policy.after_calls {
            Recycled::Calls
        } else {
            return None;
        };
        // Recycling that cannot help is stopped, once and loudly, rather
        // than paid for on every call.
        let stop = |module: &mut Self, why: String| {
            module.spec.limits.recycle = RecyclePolicy::NEVER;
            tracing::warn!(module = %module.spec.name, "{why}; this version is no longer recycled");
        };
        match self.fresh_instance() {
            Ok(fresh) => {
                let fresh_bytes = fresh.store.data().limiter.in_use();
                self.live = Some(fresh);
                if fresh_bytes >= policy.above_bytes {
                    let why = format!(
                        "a fresh instance already holds {} MiB, at recycle_above_mib ({} MiB)",
                        fresh_bytes >> 20,
                        policy.above_bytes >> 20
                    );
                    stop(self, why);
                }
                Some(why)
            }
            Err(error) => {
                stop(
                    self,
                    format!("could not recycle the instance ({error}); the old one goes on"),
                );
                None
            }
        }
    }

    /// A trapped instance cannot be entered again: start a fresh one with
    /// the same parameters.
    fn restart(&mut self) {
        self.live = None;
        match self.fresh_instance() {
            Ok(live) => self.live = Some(live),
            Err(error) => tracing::error!(module = %self.spec.name, %error, "module could not be restarted"),
        }
    }

    /// A new instance, configured with the module's parameters.
    fn fresh_instance(&self) -> Result<Live, String> {
        let mut live = instantiate(&self.engine, &self.loaded.pre, &self.spec).map_err(|e| e.to_string())?;
        configure(&mut live, &self.spec).map_err(|e| e.to_string())?;
        Ok(live)
    }
}

fn instantiate(engine: &wasmtime::Engine, pre: &RuleModulePre<StoreData>, spec: &ModuleSpec) -> wasmtime::Result<Live> {
    let call = CallContext::new(&spec.name, &spec.grants, spec.time.clone());
    let data = StoreData::new(call, spec.time.clone(), spec.limits);
    let mut store = Store::new(engine, data);
    store.limiter(|data| &mut data.limiter);
    store.set_epoch_deadline(deadline_ticks(spec.limits.deadline));
    // At the deadline: go on if the call waited on the host meanwhile, for
    // what is left of its own time.
    store.epoch_deadline_callback(|store| {
        let data = store.data();
        Ok(match data.budget.left(data.call.time_waiting_on_host()) {
            Some(left) => UpdateDeadline::Continue(deadline_ticks(left)),
            None => UpdateDeadline::Interrupt,
        })
    });
    let bindings = pre.instantiate(&mut store)?;
    Ok(Live {
        store,
        bindings,
        calls: 0,
    })
}

/// `configure` runs once per start and may compile many regexes (a whole
/// error catalogue): it gets this many times the per-call deadline, at
/// least [`MIN_CONFIGURE_DEADLINE`], so a busy machine does not fail a
/// start-up that an idle one passes.
const CONFIGURE_DEADLINE_FACTOR: u32 = 10;
const MIN_CONFIGURE_DEADLINE: Duration = Duration::from_secs(5);

fn configure(live: &mut Live, spec: &ModuleSpec) -> Result<Setup, StartError> {
    let params = spec.params.clone();
    let limits = SandboxLimits {
        deadline: (spec.limits.deadline * CONFIGURE_DEADLINE_FACTOR).max(MIN_CONFIGURE_DEADLINE),
        ..spec.limits
    };
    let outcome = guarded(live, limits, |b, s| b.call_configure(s, &params));
    // Configuring belongs to no input: whatever it wrote or logged goes.
    live.store.data_mut().call.end_call(false);
    match outcome {
        Ok(Ok(setup)) => Ok(setup),
        Ok(Err(Failure::BadConfig(e))) => Err(StartError::Param {
            param: e.param,
            message: e.message,
        }),
        Ok(Err(other)) => Err(StartError::Other(CallError::Failed(other).to_string())),
        Err(trap) => {
            let stderr = live.store.data().stderr.take();
            Err(StartError::Other(classify(&trap, &stderr, limits).to_string()))
        }
    }
}

/// Runs `f` with a fresh deadline.
fn guarded<T>(
    live: &mut Live,
    limits: SandboxLimits,
    f: impl FnOnce(&RuleModule, &mut Store<StoreData>) -> wasmtime::Result<T>,
) -> wasmtime::Result<T> {
    let data = live.store.data_mut();
    data.budget = CallBudget::start(limits.deadline);
    data.call.start_waiting_clock();
    live.store.set_epoch_deadline(deadline_ticks(limits.deadline));
    f(&live.bindings, &mut live.store)
}

fn deadline_ticks(deadline: Duration) -> u64 {
    deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()).max(1) as u64
}

fn classify(error: &wasmtime::Error, stderr: &str, limits: SandboxLimits) -> TrapReason {
    if let Some(e) = error.downcast_ref::<MemoryLimitExceeded>() {
        return TrapReason::Memory { limit: e.limit };
    }
    let trap = error.downcast_ref::<wasmtime::Trap>();
    match trap {
        Some(wasmtime::Trap::Interrupt) => return TrapReason::Deadline(limits.deadline),
        Some(wasmtime::Trap::StackOverflow) => return TrapReason::StackOverflow,
        _ => {}
    }
    // A Rust guest reports a panic on stderr, then aborts.
    if let Some(at) = stderr.find("panicked at") {
        let detail: Vec<&str> = stderr[at..]
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("note:"))
            .filter(|l| !l.trim().is_empty())
            .collect();
        let message = if detail.is_empty() {
            stderr[at..].lines().next().unwrap_or("")
        } else {
            &detail.join(" ")
        };
        return TrapReason::Panic(message.to_string());
    }
    match trap {
        // Rust keeps its own stack in linear memory: overflowing it shows
        // up as an access below address zero.
        Some(wasmtime::Trap::MemoryOutOfBounds) => {
            TrapReason::Other("out-of-bounds memory access (a stack overflow or a bug in the module)".into())
        }
        Some(trap) => TrapReason::Other(trap.to_string()),
        None => TrapReason::Other(format!("{error:#}").lines().next().unwrap_or("").to_string()),
    }
}

/// The module's declared interests, compiled. Interests it cannot have
/// (out of bounds, a regex that does not compile) are set aside, said once:
/// the module is then called for every row, which loses nothing.
fn row_filters(module: &str, setup: &Setup) -> Vec<RowFilter> {
    use crate::contract::ValueTest as Wit;
    let declared: Vec<Interest> = setup
        .interests
        .iter()
        .map(|i| Interest {
            queue: i.queue.clone(),
            columns: i
                .columns
                .iter()
                .map(|c| ColumnTest {
                    column: c.column.clone(),
                    test: match &c.test {
                        Wit::Matches(p) => ValueTest::Matches(p.clone()),
                        Wit::NotMatches(p) => ValueTest::NotMatches(p.clone()),
                        Wit::OneOf(values) => ValueTest::OneOf(values.clone()),
                    },
                })
                .collect(),
        })
        .collect();
    interest::compile(&declared).unwrap_or_else(|error| {
        tracing::warn!(
            module,
            "the module's interests are set aside, it gets every row of its queues: {error}"
        );
        Vec::new()
    })
}
