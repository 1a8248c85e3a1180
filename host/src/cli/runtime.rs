//! Builds a running host from a configuration: the engine, the lookups,
//! and every configured module, started and checked.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use super::config::{Config, ModuleSection};
use crate::capabilities::Grants;
use crate::capabilities::lookups::{LookupPolicy, LookupSource, ModuleLookups, World};
use crate::capabilities::outbound::OutboundPolicy;
use crate::capabilities::state::StateCapability;
use crate::clock::{CallTime, Clock};
use crate::engine::{Engine, Loaded, Module, ModuleSpec};
use crate::metrics::Metrics;
use crate::noise::silence_link::SilenceLinks;
use crate::pipeline::alerts::AlertQueue;
use crate::pipeline::reload::{ModuleFile, ReloadSettings};
use crate::pipeline::{Pipeline, Services};
use crate::store::Store;

/// Command-line choices that override the configuration file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub modules_dir: Option<PathBuf>,
    pub world: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// The state database; None: the configuration's for `run`, memory for
    /// a replay.
    pub state: Option<PathBuf>,
    /// Whether declared interests spare modules calls (over `[host] interests`).
    pub interests: Option<bool>,
    /// A replay that explains every decision: modules' debug lines are
    /// kept, and every module sees every row of its queues (no interests).
    pub explain: bool,
}

/// A started host. The engine must live as long as the pipeline: it runs
/// the clock that enforces call deadlines.
#[derive(Debug)]
pub struct Runtime {
    pub pipeline: Pipeline,
    engine: Arc<Engine>,
    /// The component file of each module, in the pipeline's order.
    paths: Vec<PathBuf>,
    metrics: Arc<Metrics>,
    store: Arc<Store>,
    silence_links: Option<Arc<SilenceLinks>>,
}

impl Runtime {
    /// Loads the lookups of the world file and starts every module of
    /// `config` on `clock` (the system's for `run`, a virtual one for a
    /// replay).
    pub fn start(config: &Config, overrides: &Overrides, clock: Clock) -> anyhow::Result<Self> {
        Self::start_with(config, overrides, clock, None)
    }

    /// Starts every module of `config` with `lookups` (a Velociraptor
    /// server), else the world file's.
    pub fn start_with(
        config: &Config,
        overrides: &Overrides,
        clock: Clock,
        lookups: Option<Arc<dyn LookupSource>>,
    ) -> anyhow::Result<Self> {
        let lookups: Arc<dyn LookupSource> = match lookups {
            Some(lookups) => lookups,
            None => Arc::new(load_world(config, overrides)?),
        };
        let store = Arc::new(match (&overrides.state, clock.is_virtual()) {
            // `--state` names a SQLite file, or a PostgreSQL store by its URL.
            (Some(state), _) => match state.to_str().and_then(crate::store::PostgresUrl::parse) {
                Some(url) => Store::connect(&url)?,
                None => Store::open(state)?,
            },
            (None, false) => Store::open_at(&config.store_location()?)?,
            (None, true) => Store::in_memory(),
        });
        let state = Arc::new(StateCapability::new(store.clone()));
        // A replay serves no page: its e-mails carry no silence link.
        let links = match clock.is_virtual() {
            true => None,
            false => config.silence_links(&store, clock.now_us())?,
        };
        let cache_dir = overrides
            .cache_dir
            .clone()
            .or_else(|| config.host.cache_dir.as_ref().map(|d| config.resolve(d)));
        let engine = Arc::new(Engine::new(config.engine_options(cache_dir))?);
        let modules_dir = overrides.modules_dir.clone().unwrap_or_else(|| config.modules_dir());
        let time = CallTime::default();
        // Modules explain the rows they drop only where that is read.
        // (Modules' lines are written by the outbox, under its target.)
        let keeps_debug =
            overrides.explain || tracing::enabled!(target: "velonotify::pipeline::outbox", tracing::Level::DEBUG);
        let interests = !overrides.explain && overrides.interests.or(config.host.interests).unwrap_or(true);
        let mut modules = Vec::with_capacity(config.modules.len());
        let mut paths = Vec::with_capacity(config.modules.len());
        let mut names = HashSet::new();
        // Many modules may run one component (fifty detections): it is
        // read, checked and loaded once.
        let mut components: HashMap<PathBuf, Loaded> = HashMap::new();
        for section in &config.modules {
            let path = modules_dir.join(&section.path);
            let label = |name: &str| format!("module {name} ({})", path.display());
            let shown = section
                .name
                .clone()
                .unwrap_or_else(|| section.path.display().to_string());
            let spec = module_spec(config, section, &lookups, &state, &time, keeps_debug, links.as_ref())
                .with_context(|| label(&shown))?;
            let loaded = match components.get(&path) {
                Some(loaded) => loaded.clone(),
                None => {
                    let loaded = engine
                        .load(&path)
                        .map_err(|e| anyhow::anyhow!("{e:#}"))
                        .with_context(|| label(&shown))?;
                    components.insert(path.clone(), loaded.clone());
                    loaded
                }
            };
            let module = Module::start_loaded(&loaded, spec).with_context(|| label(&shown))?;
            config.check_secrets_named(section).with_context(|| label(&shown))?;
            super::config::check_module_name(module.name())
                .with_context(|| format!("{}: the name it gives itself (set `name`)", label(&shown)))?;
            if !names.insert(module.name().to_string()) {
                bail!(
                    "{}: another module has the same name; give one a different `name`",
                    label(module.name())
                );
            }
            modules.push(module);
            paths.push(path);
        }
        let metrics = Arc::new(Metrics::new());
        let services = Services {
            // A replay's world stands in for the server.
            world: clock.is_virtual().then_some(lookups),
            clock,
            alerts: AlertQueue::new(state.clone()),
            state,
            metrics: metrics.clone(),
        };
        Ok(Self {
            silence_links: links,
            pipeline: Pipeline::new(modules, services)
                .with_reload(ReloadSettings::from_config(&config.reload))
                .with_interests(interests),
            engine,
            paths,
            metrics,
            store,
        })
    }

    /// Each running module with the file it came from, for the reloader.
    pub fn module_files(&self) -> Vec<ModuleFile> {
        self.pipeline
            .modules()
            .iter()
            .zip(&self.paths)
            .map(|(module, path)| ModuleFile {
                path: path.clone(),
                spec: module.spec().clone(),
                digest: module.digest().to_string(),
            })
            .collect()
    }

    /// The store the pipeline's inputs are committed to.
    pub fn store(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// What signs the e-mails' silence links, when `run` serves the page.
    pub fn silence_links(&self) -> Option<Arc<SilenceLinks>> {
        self.silence_links.clone()
    }

    /// The host's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }
}

/// What module `section` is started with: its parameters, limits and
/// grants, each capability checking its part of the section.
pub(super) fn module_spec(
    config: &Config,
    section: &ModuleSection,
    lookups: &Arc<dyn LookupSource>,
    state: &Arc<StateCapability>,
    time: &CallTime,
    keeps_debug: bool,
    links: Option<&Arc<SilenceLinks>>,
) -> anyhow::Result<ModuleSpec> {
    let params = section.param_texts(&config.base_dir)?;
    let policy = LookupPolicy::from_config(section.lookups.as_deref()).map_err(|e| anyhow::anyhow!("lookups: {e}"))?;
    let outbound = OutboundPolicy::from_config(
        section.allowed_hosts.as_deref(),
        &params,
        section.max_actions,
        section.max_action_bytes,
        config.max_email_bytes(),
    );
    let grants = Grants {
        lookups: ModuleLookups {
            org_id: section.org.clone().unwrap_or_else(|| config.default_org().to_string()),
            source: lookups.clone(),
            policy,
            facts: config.host_facts(),
        },
        state: state.clone(),
        state_quota_bytes: config.state_quota_bytes(section),
        outbound,
        keeps_debug,
        links: links.cloned(),
    };
    Ok(ModuleSpec {
        name: section.name.clone().unwrap_or_default(),
        params,
        limits: config.limits(section),
        grants,
        time: time.clone(),
        labels_from: section.labels_from.clone().unwrap_or_default(),
    })
}

/// Each running module's mute and active times, by its name.
pub fn module_mutes(config: &Config, runtime: &Runtime) -> HashMap<String, crate::pipeline::noise_control::ModuleMute> {
    runtime
        .pipeline
        .modules()
        .iter()
        .zip(&config.modules)
        .map(|(module, section)| {
            let mute = crate::pipeline::noise_control::ModuleMute {
                timing: crate::noise::time_intervals::MuteTiming {
                    mute: section.mute_time_intervals.clone().unwrap_or_default(),
                    active: section.active_time_intervals.clone().unwrap_or_default(),
                },
                mode: section.mute_mode.unwrap_or_default(),
                // Checked when the configuration was read.
                grouping: section.grouping().ok().flatten(),
            };
            (module.name().to_string(), mute)
        })
        .collect()
}

/// The world file of the command line, else of the configuration, else an
/// empty world; with the configuration's public URL and sender.
pub fn load_world(config: &Config, overrides: &Overrides) -> anyhow::Result<World> {
    let path = overrides
        .world
        .clone()
        .or_else(|| config.lookups.world.as_ref().map(|w| config.resolve(w)));
    let mut world = match path {
        Some(path) => World::load(&path)?,
        None => World::empty(),
    };
    world.set_public_url(config.server.public_url.clone());
    Ok(world)
}
