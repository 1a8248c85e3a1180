//! Builds a running host from a configuration: the engine, the lookups,
//! and every configured module, started and checked.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::alerts::AlertQueue;
use crate::config::Config;
use crate::engine::{Engine, Module, ModuleSpec, SharedClock};
use crate::lookups::{Lookups, World};
use crate::metrics::Metrics;
use crate::pipeline::{ClockMode, Pipeline, Services, hosts_named_in};
use crate::reload::{ModuleFile, ReloadSettings};
use crate::state::StateStore;

/// Command-line choices that override the configuration file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub modules_dir: Option<PathBuf>,
    pub world: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    /// The state database; None: the configuration's for `run`, memory for
    /// a replay.
    pub state: Option<PathBuf>,
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
    state: Arc<StateStore>,
}

impl Runtime {
    /// Loads the lookups and starts every module of `config`.
    pub fn start(config: &Config, overrides: &Overrides, mode: ClockMode) -> anyhow::Result<Self> {
        Self::start_with(config, overrides, mode, None)
    }

    /// Starts every module of `config` with `lookups` (a Velociraptor
    /// server), else the world file's.
    pub fn start_with(
        config: &Config,
        overrides: &Overrides,
        mode: ClockMode,
        lookups: Option<Arc<dyn Lookups>>,
    ) -> anyhow::Result<Self> {
        let lookups: Arc<dyn Lookups> = match lookups {
            Some(lookups) => lookups,
            None => Arc::new(load_world(config, overrides)?),
        };
        let state = Arc::new(match (&overrides.state, mode) {
            (Some(path), _) => StateStore::open(path)?,
            (None, ClockMode::System) => StateStore::open(&config.state_path())?,
            (None, ClockMode::Virtual) => StateStore::in_memory(),
        });
        let cache_dir = overrides
            .cache_dir
            .clone()
            .or_else(|| config.host.cache_dir.as_ref().map(|d| config.resolve(d)));
        let engine = Arc::new(Engine::new(config.engine_options(cache_dir))?);
        let modules_dir = overrides.modules_dir.clone().unwrap_or_else(|| config.modules_dir());
        let clock = SharedClock::default();
        let metrics = Arc::new(Metrics::new());
        let mut modules = Vec::with_capacity(config.modules.len());
        let mut paths = Vec::with_capacity(config.modules.len());
        let mut names = HashSet::new();
        for section in &config.modules {
            let path = modules_dir.join(&section.path);
            let label = |name: &str| format!("module {name} ({})", path.display());
            let shown = section
                .name
                .clone()
                .unwrap_or_else(|| section.path.display().to_string());
            let params = section.param_texts(&config.base_dir).with_context(|| label(&shown))?;
            let allowed_hosts = section
                .allowed_hosts
                .clone()
                .unwrap_or_else(|| hosts_named_in(params.iter().map(|(_, v)| v.as_str())));
            let lookups: Arc<dyn Lookups> = match &section.lookups {
                Some(allowed) => Arc::new(
                    crate::lookups::RestrictedLookups::new(lookups.clone(), allowed)
                        .map_err(|e| anyhow::anyhow!("lookups: {e}"))
                        .with_context(|| label(&shown))?,
                ),
                None => lookups.clone(),
            };
            let spec = ModuleSpec {
                name: section.name.clone().unwrap_or_default(),
                params,
                limits: config.limits(section),
                org_id: section.org.clone().unwrap_or_else(|| config.default_org().to_string()),
                lookups,
                facts: config.host_facts(),
                state: state.clone(),
                clock: clock.clone(),
                allowed_hosts,
            };
            let module = Module::start(&engine, &path, spec).with_context(|| label(&shown))?;
            if !names.insert(module.name().to_string()) {
                bail!(
                    "{}: another module has the same name; give one a different `name`",
                    label(module.name())
                );
            }
            modules.push(module);
            paths.push(path);
        }
        Ok(Self {
            pipeline: Pipeline::new(
                modules,
                Services {
                    clock,
                    mode,
                    max_email_bytes: config.host_facts().max_email_bytes,
                    alerts: AlertQueue::new(state.clone()),
                    // A replay's world stands in for the server.
                    world: (mode == ClockMode::Virtual).then_some(lookups),
                    metrics: metrics.clone(),
                },
            )
            .with_reload(ReloadSettings::from_config(&config.reload)),
            engine,
            paths,
            metrics,
            state,
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

    /// The state store: module state, alert dedup, cursors.
    pub fn state(&self) -> Arc<StateStore> {
        self.state.clone()
    }

    /// The host's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }
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
