//! What a module may use of the host, one capability per folder or file,
//! as Spin's "factors" are made: each owns its interface of `wit/`, its
//! configuration (with the defaults in code) and its per-module policy,
//! checked when a module loads.
//!
//! | capability  | WIT interface | configuration                             | per-module policy |
//! |-------------|---------------|-------------------------------------------|-------------------|
//! | [`clock`]   | `clock`       | none (the host's clock, or a replay's)    | none              |
//! | [`links`]   | `links`       | `[server] velonotify_url`, `[api]`        | none              |
//! | [`log`]     | `log`         | none                                      | lines per call    |
//! | [`lookups`] | `lookups`     | `[lookups]`, `[velociraptor]`, `[server]` | `lookups = [...]` |
//! | [`state`]   | `state`       | `[host] state`                            | its own keys only, bounded |
//! | [`outbound`]| `actions`     | `[host] max_email_mib`                    | `allowed_hosts`, `max_actions`, `max_action_bytes` |
//!
//! One [`CallContext`] per module instance implements every interface: the
//! WIT host traits for a component, and the core `Host` traits of
//! `velonotify_core` for the same rule called natively (tests, benchmarks),
//! so both paths run the same host code.

pub mod clock;
pub mod links;
pub mod log;
pub mod lookups;
pub mod outbound;
pub mod state;

use std::sync::Arc;

use crate::clock::CallTime;
use crate::noise::silence_link::SilenceLinks;

/// What one module instance is granted: built once per module from the
/// configuration.
#[derive(Clone)]
pub struct Grants {
    pub lookups: lookups::ModuleLookups,
    pub state: Arc<state::StateCapability>,
    /// Octets of keys and values the module may keep in its state.
    pub state_quota_bytes: u64,
    pub outbound: outbound::OutboundPolicy,
    /// Whether its debug lines are kept (a replay that explains): the
    /// module may skip explaining itself when they are not.
    pub keeps_debug: bool,
    /// Signs the e-mails' silence links, when velonotify serves the page.
    pub links: Option<Arc<SilenceLinks>>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("lookups", &self.lookups)
            .field("outbound", &self.outbound)
            .finish_non_exhaustive()
    }
}

impl Grants {
    /// Every lookup of `org` from `source`, state in memory, the default
    /// outbound policy: for a rule called natively (tests, benchmarks).
    pub fn native(source: Arc<dyn lookups::LookupSource>, org_id: &str, facts: lookups::HostFacts) -> Self {
        Self {
            lookups: lookups::ModuleLookups {
                org_id: org_id.to_string(),
                source,
                policy: lookups::LookupPolicy::default(),
                facts,
            },
            state: Arc::new(state::StateCapability::in_memory()),
            state_quota_bytes: state::DEFAULT_STATE_QUOTA_BYTES,
            outbound: outbound::OutboundPolicy::default(),
            keeps_debug: true,
            links: None,
        }
    }
}

/// What the host's interfaces answer a module from, during its calls.
pub struct CallContext {
    /// The module instance's name (from the configuration).
    module: String,
    time: CallTime,
    log: log::CallLog,
    keeps_debug: bool,
    lookups: lookups::ModuleLookups,
    state: state::ModuleState,
    links: Option<Arc<SilenceLinks>>,
    /// The id of the call's links, once it made one (`links`).
    link_id: Option<String>,
    /// Time the call in progress spent waiting on host lookups.
    waiting: std::cell::Cell<std::time::Duration>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("module", &self.module)
            .field("now_us", &self.time.now_us())
            .finish_non_exhaustive()
    }
}

impl CallContext {
    /// The context of module `name`, whose calls see the time `time`.
    pub fn new(name: &str, grants: &Grants, time: CallTime) -> Self {
        Self {
            module: name.to_string(),
            time,
            log: log::CallLog::default(),
            keeps_debug: grants.keeps_debug,
            lookups: grants.lookups.clone(),
            state: state::ModuleState::new(grants.state.clone(), name, grants.state_quota_bytes),
            links: grants.links.clone(),
            link_id: None,
            waiting: std::cell::Cell::default(),
        }
    }

    /// A new call begins: nothing waited on yet.
    pub fn start_waiting_clock(&self) {
        self.waiting.set(std::time::Duration::ZERO);
    }

    /// How long the call in progress has waited on host lookups (not
    /// counted against its deadline).
    pub fn time_waiting_on_host(&self) -> std::time::Duration {
        self.waiting.get()
    }

    pub fn module(&self) -> &str {
        &self.module
    }

    /// A module configured without a name takes the one it gives itself.
    pub fn rename(&mut self, name: &str) {
        self.module = name.to_string();
        self.state.rename(name);
    }

    /// Ends a call: what it wrote to its state is handed to the input's
    /// commit when `keep_state` (a call that returned), dropped otherwise (a
    /// trap, or `configure`, which belongs to no input). Returns what the
    /// call logged.
    pub fn end_call(&mut self, keep_state: bool) -> Vec<(crate::contract::LogLevel, String)> {
        self.state.end_call(keep_state);
        self.log.take()
    }
}

/// The interfaces that only hold types: nothing to implement.
impl crate::contract::velociraptor::notify::types::Host for CallContext {}
impl crate::contract::velociraptor::notify::actions::Host for CallContext {}
