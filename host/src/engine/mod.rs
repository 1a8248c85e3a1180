//! The wasmtime side of the host: one engine, components compiled once
//! and cached on disk, and rule module instances that run sandboxed.

mod bindings;
mod cache;
mod module;
mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, Linker};

pub use self::bindings::{
    Action, Alert, Email, Event, Failure, LabelChange, LabelOp, LogLevel, ModuleInfo, ParamKind, Setup,
};
pub use self::module::{CallError, CallOutcome, Module, ModuleSpec, ModuleStats, StartError, TrapReason};
use self::sandbox::StoreData;
pub use self::sandbox::{MemoryLimitExceeded, SandboxLimits, SharedClock};

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The shared wasmtime engine and linker.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<StoreData>,
    cache: Option<cache::ComponentCache>,
    ticker: EpochTicker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine whose compiled components are cached in `cache_dir`
    /// (None: compile on every start).
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        // Deadlines: the ticker below advances the epoch; each call gets a
        // budget of ticks and traps when it runs out.
        config.epoch_interruption(true);
        // Deep recursion traps with a clear stack-overflow message.
        config.max_wasm_stack(1 << 20);
        let engine = wasmtime::Engine::new(&config).map_err(anyhow::Error::from)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
        bindings::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        let cache = cache_dir.map(|dir| cache::ComponentCache::new(dir, &engine));
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            engine,
            linker,
            cache,
            ticker,
        })
    }

    /// Compiles (or loads from the cache) the component at `path` and
    /// checks that it is a rule module.
    pub fn load(&self, path: &Path) -> anyhow::Result<bindings::RuleModulePre<StoreData>> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let component = match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, &bytes),
            None => Component::new(&self.engine, &bytes).map_err(anyhow::Error::from),
        }
        .with_context(|| format!("{} is not a WebAssembly component", path.display()))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} does not fit velonotify's host (its imports)", path.display()))?;
        bindings::RuleModulePre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "{} is not a velociraptor:notify rule-module (its exports)",
                    path.display()
                )
            })
    }

    pub(crate) fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`].
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: &wasmtime::Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("velonotify-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        Self { stop }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
