//! The wasmtime side of the host: one engine, components compiled once
//! and cached on disk, the WIT version check, and rule module instances
//! that run sandboxed (memory limit, call deadline, WASI granting nothing),
//! their host interfaces answered by a [`CallContext`].

mod cache;
mod language;
mod module;
mod sandbox;
mod wit_version;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::capabilities::CallContext;
use crate::contract::{RuleModule, RuleModulePre};

use self::cache::Compiled;
pub use self::cache::digest;
pub use self::language::{Language, language_of};
pub use self::module::{CallError, CallOutcome, CallUsage, Module, ModuleSpec, ModuleStats, StartError, TrapReason};
use self::sandbox::StoreData;
pub use self::sandbox::{MemoryLimitExceeded, RecyclePolicy, Recycled, SandboxLimits};
pub use self::wit_version::{HOST_VERSION as WIT_VERSION, PACKAGE as WIT_PACKAGE};

/// How often the epoch advances: the granularity of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Largest component file read (a Python module with its interpreter is
/// about 20 MB).
pub const MAX_COMPONENT_BYTES: u64 = 256 << 20;

/// How instances get their memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AllocatorChoice {
    /// The pooling allocator when the address space can be reserved,
    /// on-demand otherwise.
    #[default]
    Auto,
    Pooling,
    OnDemand,
}

/// What the engine is built with.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// Where compiled components are cached (None: compile on every start).
    pub cache_dir: Option<PathBuf>,
    pub allocator: AllocatorChoice,
    /// Component instances alive at once, at most (the pool's size).
    pub max_instances: u32,
    /// The largest memory limit of any module (the pool's slot size).
    pub max_memory_bytes: usize,
}

/// The allocator the engine ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocator {
    /// Slots for this many instances reserved up front: instantiation
    /// reuses them instead of mapping memory.
    Pooling { instances: u32 },
    /// Memory mapped per instance; `fallback` says why pooling was not used.
    OnDemand { fallback: Option<String> },
}

impl std::fmt::Display for Allocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allocator::Pooling { instances } => write!(f, "pooling ({instances} instance slots)"),
            Allocator::OnDemand { fallback: None } => write!(f, "on-demand"),
            Allocator::OnDemand { fallback: Some(why) } => write!(f, "on-demand (pooling unavailable: {why})"),
        }
    }
}

/// A compiled component that fits the host, ready to instantiate.
#[derive(Clone)]
pub struct Loaded {
    pub(crate) pre: RuleModulePre<StoreData>,
    /// The engine it was compiled for: the pool's, or the on-demand one
    /// of components that do not fit the pool.
    pub(crate) engine: wasmtime::Engine,
    /// SHA-256 of the component file, in hex: which build this is.
    pub digest: String,
    /// The language it was written in, as far as its bytes tell.
    pub language: Language,
    /// Why its instances are allocated on demand although the engine has
    /// a pool (what of the component does not fit it); None in the pool.
    pub outside_pool: Option<String>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Loaded {
    /// The first 12 hex digits of the digest, for logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12]
    }
}

/// The shared wasmtime engine and linker.
pub struct Engine {
    main: Compiler,
    /// With a pool: an on-demand engine for the components that do not
    /// fit it (a Python or JavaScript module holds more core instances,
    /// memories and tables than a Rust one), so that any valid component
    /// loads.
    overflow: Option<Compiler>,
    allocator: Allocator,
    /// Digests of the components already logged as outside the pool.
    logged_outside_pool: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cache", &self.main.cache)
            .field("allocator", &self.allocator)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine with the allocator asked for; `Auto` falls back to
    /// on-demand allocation when the pool's address space cannot be
    /// reserved (a `ulimit -v`, a 32-bit host).
    pub fn new(options: EngineOptions) -> anyhow::Result<Self> {
        let (engine, allocator) = match options.allocator {
            AllocatorChoice::OnDemand => (build(None, None)?, Allocator::OnDemand { fallback: None }),
            AllocatorChoice::Pooling => {
                let instances = pool_size(&options);
                let engine =
                    build(Some(&options), None).context("the pooling allocator (host.allocator = \"pooling\")")?;
                (engine, Allocator::Pooling { instances })
            }
            AllocatorChoice::Auto => match build(Some(&options), None) {
                Ok(engine) => (
                    engine,
                    Allocator::Pooling {
                        instances: pool_size(&options),
                    },
                ),
                Err(e) => {
                    let fallback = format!("{e:#}");
                    tracing::warn!(reason = %fallback, "pooling allocator unavailable; instances are allocated on demand");
                    // The address space is scarce: reserve for each memory
                    // only what its limit allows (bounds are then checked
                    // in code, a little slower, instead of by guard pages).
                    let scarce = build(None, Some(options.max_memory_bytes))?;
                    (
                        scarce,
                        Allocator::OnDemand {
                            fallback: Some(fallback),
                        },
                    )
                }
            },
        };
        let cache_dir = options.cache_dir.as_deref();
        let overflow = match allocator {
            Allocator::Pooling { .. } => Some(Compiler::new(build(None, None)?, cache_dir)?),
            Allocator::OnDemand { .. } => None,
        };
        Ok(Self {
            main: Compiler::new(engine, cache_dir)?,
            overflow,
            allocator,
            logged_outside_pool: Mutex::new(HashSet::new()),
        })
    }

    /// The allocator in use.
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }

    /// Compiles (or loads from the cache) the component at `path` (a
    /// regular file of at most [`MAX_COMPONENT_BYTES`]) and checks that it
    /// is a rule module.
    pub fn load(&self, path: &Path) -> anyhow::Result<Loaded> {
        let bytes = crate::files::read_regular(path, MAX_COMPONENT_BYTES)?;
        self.load_bytes(&bytes, path)
    }

    /// As [`Engine::load`], for the file's bytes already read.
    pub fn load_bytes(&self, bytes: &[u8], path: &Path) -> anyhow::Result<Loaded> {
        check_is_component(bytes).map_err(|what| anyhow::anyhow!("{} {what}", path.display()))?;
        let digest = digest(bytes);
        let (compiler, component, outside_pool) = self.compile(bytes, &digest, path)?;
        if let Some(why) = &outside_pool
            && self
                .logged_outside_pool
                .lock()
                .expect("not poisoned")
                .insert(digest.clone())
        {
            tracing::warn!(
                component = %path.display(),
                reason = %why,
                "the component does not fit the instance pool; its instances are allocated on demand"
            );
        }
        let ty = component.component_type();
        let names = ty
            .imports(&compiler.engine)
            .map(|(name, _)| name)
            .chain(ty.exports(&compiler.engine).map(|(name, _)| name));
        wit_version::check(names).map_err(|e| anyhow::anyhow!("{} does not fit this host: {e}", path.display()))?;
        let pre = compiler
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("{} does not fit velonotify's host (its imports)", path.display()))?;
        let pre = RuleModulePre::new(pre).map_err(anyhow::Error::from).with_context(|| {
            format!(
                "{} is not a velociraptor:notify rule-module (its exports)",
                path.display()
            )
        })?;
        Ok(Loaded {
            pre,
            engine: compiler.engine.clone(),
            digest,
            language: language_of(bytes),
            outside_pool,
        })
    }
}

impl Engine {
    /// The component loaded into the engine that can hold it: the pool's,
    /// else the on-demand one, with the reason the pool refused it. It is
    /// compiled once: both engines load the same code.
    fn compile(
        &self,
        bytes: &[u8],
        digest: &str,
        path: &Path,
    ) -> anyhow::Result<(&Compiler, Component, Option<String>)> {
        let could_not = || format!("{} could not be compiled", path.display());
        let compiled = self.main.compiled(bytes, digest).with_context(could_not)?;
        match self.fit(&compiled, bytes, digest) {
            Ok(found) => Ok(found),
            // No engine loads what the cache holds (a file damaged on
            // disk): compile it again, once.
            Err(e) if compiled.is_cached() => {
                tracing::warn!(component = %path.display(), error = %format!("{e:#}"), "ignoring unusable cached component");
                let compiled = self.main.recompiled(bytes, digest).with_context(could_not)?;
                self.fit(&compiled, bytes, digest).with_context(could_not)
            }
            Err(e) => Err(e.context(could_not())),
        }
    }

    /// Loads compiled code into the pool's engine, or into the on-demand
    /// one when the pool cannot hold the component.
    fn fit(
        &self,
        compiled: &Compiled,
        bytes: &[u8],
        digest: &str,
    ) -> anyhow::Result<(&Compiler, Component, Option<String>)> {
        let pool_error = match compiled.load(&self.main.engine) {
            Ok(component) => return Ok((&self.main, component, None)),
            Err(e) => e,
        };
        let Some(overflow) = &self.overflow else {
            return Err(pool_error);
        };
        let component = if overflow.key == self.main.key {
            compiled.load(&overflow.engine)?
        } else {
            overflow.compiled(bytes, digest)?.load(&overflow.engine)?
        };
        Ok((overflow, component, Some(format!("{pool_error:#}"))))
    }
}

/// Says what a file is when it is not a component (the compiler's own
/// message for these is about sections and versions).
fn check_is_component(bytes: &[u8]) -> Result<(), &'static str> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(())
    } else if wasmparser::Parser::is_core_wasm(bytes) {
        Err(
            "is not a WebAssembly component: it is a core module (build it for wasm32-wasip2, \
             or wrap it with `wasm-tools component new`)",
        )
    } else if bytes.starts_with(b"\0asm") {
        Err("is not a WebAssembly component: its header names a version or layer this host does not know")
    } else {
        Err("is not a WebAssembly component: it does not start with the \\0asm header")
    }
}

/// One wasmtime engine with what belongs to it: the linker answering the
/// world's imports, the cache of its compiled components, and the thread
/// advancing its epoch (each engine has its own).
struct Compiler {
    engine: wasmtime::Engine,
    /// Engines of the same key load the same compiled code.
    key: u64,
    linker: Linker<StoreData>,
    cache: Option<cache::ComponentCache>,
    ticker: EpochTicker,
}

impl Compiler {
    fn new(engine: wasmtime::Engine, cache_dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from)?;
        // Every interface of the world, answered by the module's call context.
        RuleModule::add_to_linker::<StoreData, HasSelf<CallContext>>(&mut linker, |data| &mut data.call)
            .map_err(anyhow::Error::from)?;
        let cache = cache_dir.map(|dir| cache::ComponentCache::new(dir.to_path_buf(), &engine));
        let ticker = EpochTicker::start(&engine);
        Ok(Self {
            key: cache::compatibility_key(&engine),
            engine,
            linker,
            cache,
            ticker,
        })
    }

    /// The component compiled for this engine, from the cache when there.
    fn compiled(&self, bytes: &[u8], digest: &str) -> anyhow::Result<Compiled> {
        match &self.cache {
            Some(cache) => cache.compiled(&self.engine, bytes, digest),
            None => cache::compile(&self.engine, bytes),
        }
    }

    /// As [`compiled`](Self::compiled), replacing the cached code.
    fn recompiled(&self, bytes: &[u8], digest: &str) -> anyhow::Result<Compiled> {
        match &self.cache {
            Some(cache) => cache.recompiled(&self.engine, bytes, digest),
            None => cache::compile(&self.engine, bytes),
        }
    }
}

impl Drop for Compiler {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

/// Instance slots in the pool.
fn pool_size(options: &EngineOptions) -> u32 {
    options.max_instances.max(MIN_POOL_INSTANCES)
}

/// A pool never smaller than this: restarts after traps and hot swaps
/// (candidate, self-test and the previous version on probation) need
/// room beside the live instances.
const MIN_POOL_INSTANCES: u32 = 16;

/// Core instances and memories one rule module component may hold (the
/// module, the WASI adapter and wit-component's shims).
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const MEMORIES_PER_COMPONENT: u32 = 2;

/// A wasmtime engine; `pooling` sizes the pool, `reserve` (without a pool)
/// caps the address space reserved per linear memory.
fn build(pooling: Option<&EngineOptions>, reserve: Option<usize>) -> anyhow::Result<wasmtime::Engine> {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    // Deadlines: the ticker below advances the epoch; each call gets a
    // budget of ticks and traps when it runs out.
    config.epoch_interruption(true);
    // Deep recursion traps with a clear stack-overflow message.
    config.max_wasm_stack(1 << 20);
    // For profiling modules with `perf`: names compiled functions in
    // /tmp/perf-<pid>.map (a developer's switch, documented in the bench).
    if std::env::var_os("VELONOTIFY_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Some(options) = pooling {
        let instances = pool_size(options);
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT)
            .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
            .total_memories(instances * MEMORIES_PER_COMPONENT)
            .max_memories_per_component(MEMORIES_PER_COMPONENT)
            .total_tables(instances * CORE_INSTANCES_PER_COMPONENT)
            .max_memory_size(options.max_memory_bytes.max(1 << 20));
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    if let Some(bytes) = reserve {
        config.memory_reservation(bytes as u64);
        config.memory_guard_size(1 << 16);
        config.memory_reservation_for_growth(0);
    }
    wasmtime::Engine::new(&config).map_err(anyhow::Error::from)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_component_is_named_for_what_it_is() {
        let core = check_is_component(b"\0asm\x01\0\0\0(rest)").unwrap_err();
        assert!(
            core.contains("is not a WebAssembly component: it is a core module"),
            "{core}"
        );
        let other = check_is_component(b"\0asm\x0e\0\x01\0").unwrap_err();
        assert!(other.contains("version or layer"), "{other}");
        let text = check_is_component(b"#!/bin/sh\n").unwrap_err();
        assert!(text.contains("does not start with the \\0asm header"), "{text}");
        assert!(check_is_component(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
