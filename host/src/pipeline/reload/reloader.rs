//! The reloader thread: notices changed component files, builds and
//! validates each new version away from the pipeline, and hands the
//! pipeline only versions that are ready to run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::{Candidate, ReloadSettings};
use crate::capabilities::Grants;
use crate::capabilities::state::StateCapability;
use crate::clock::{CallTime, Clock};
use crate::contract::Failure;
use crate::engine::{CallError, Engine, Loaded, MAX_COMPONENT_BYTES, Module, ModuleSpec};
use crate::metrics::Metrics;
use crate::sources::JsonlSource;

/// A running module and the component file it was started from.
#[derive(Debug, Clone)]
pub struct ModuleFile {
    pub path: PathBuf,
    /// The running module's spec: a new version starts with the same
    /// name, parameters, limits, org and lookups.
    pub spec: ModuleSpec,
    /// The digest of the running version.
    pub digest: String,
}

/// The self-test events shipped beside a component: `alerts.wasm` ->
/// `alerts.selftest.jsonl` (rows as `velonotify replay` reads them).
pub fn selftest_path(component: &Path) -> PathBuf {
    let stem = component.file_stem().unwrap_or_default().to_string_lossy();
    component.with_file_name(format!("{stem}.selftest.jsonl"))
}

/// The longest self-test line read.
const MAX_SELFTEST_LINE: usize = 4 << 20;
const MAX_SELFTEST_BYTES: u64 = 16 << 20;

/// How often the reload request flag (SIGHUP) is looked at.
const REQUEST_CHECK: Duration = Duration::from_millis(50);

/// Watches the module files and prepares new versions.
pub struct Reloader {
    engine: Arc<Engine>,
    files: Vec<ModuleFile>,
    settings: ReloadSettings,
    requested: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    seen: HashMap<PathBuf, FileState>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("files", &self.files.len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What was last seen of one component file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileState {
    stamp: Option<Stamp>,
    /// The digest last built (swapped in or refused): the same bytes are
    /// not built again until they change.
    considered: String,
    /// The passing error the file was last read with, told once.
    unreadable: Option<String>,
}

impl Reloader {
    /// `requested` is set by SIGHUP (or a test) to look at every file now.
    pub fn new(
        engine: Arc<Engine>,
        files: Vec<ModuleFile>,
        settings: ReloadSettings,
        requested: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let seen = files
            .iter()
            .map(|f| {
                let state = FileState {
                    stamp: stamp(&f.path),
                    considered: f.digest.clone(),
                    unreadable: None,
                };
                (f.path.clone(), state)
            })
            .collect();
        Self {
            engine,
            files,
            settings,
            requested,
            stop: Arc::new(AtomicBool::new(false)),
            metrics,
            seen,
        }
    }

    /// Runs on its own thread, handing each ready version to `deliver`
    /// (which answers false once the pipeline has stopped). Dropping the
    /// returned guard stops the thread.
    pub fn spawn(mut self, mut deliver: impl FnMut(Candidate) -> bool + Send + 'static) -> std::io::Result<StopOnDrop> {
        let stop = self.stop.clone();
        std::thread::Builder::new()
            .name("velonotify-reload".into())
            .spawn(move || {
                let mut last_poll = Instant::now();
                while !self.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(REQUEST_CHECK.min(self.settings.poll.unwrap_or(REQUEST_CHECK)));
                    let forced = self.requested.swap(false, Ordering::Relaxed);
                    let due = self.settings.poll.is_some_and(|p| last_poll.elapsed() >= p);
                    if !(forced || due) {
                        continue;
                    }
                    last_poll = Instant::now();
                    if forced {
                        tracing::info!("reload requested: looking at every module file");
                    }
                    for candidate in self.look(forced) {
                        if !deliver(candidate) {
                            return;
                        }
                    }
                }
            })?;
        Ok(StopOnDrop(stop))
    }

    /// Builds a candidate for every module whose file changed.
    fn look(&mut self, forced: bool) -> Vec<Candidate> {
        let mut paths: Vec<PathBuf> = self.files.iter().map(|f| f.path.clone()).collect();
        paths.sort();
        paths.dedup();
        let mut ready = Vec::new();
        for path in paths {
            let Some(bytes) = self.changed(&path, forced) else {
                continue;
            };
            let noticed = Instant::now();
            for index in 0..self.files.len() {
                if self.files[index].path != path {
                    continue;
                }
                let file = &self.files[index];
                let name = file.spec.name.clone();
                let running = file.digest[..12].to_string();
                let prepared = bytes
                    .as_ref()
                    .map_err(String::clone)
                    .and_then(|b| self.prepare(file, b));
                match prepared {
                    Ok(module) => {
                        tracing::info!(
                            module = %name,
                            file = %path.display(),
                            from = %running,
                            to = %module.short_digest(),
                            built_ms = %format!("{:.2}", noticed.elapsed().as_secs_f64() * 1e3),
                            "new version validated; swapping it in"
                        );
                        self.files[index].digest = module.digest().to_string();
                        ready.push(Candidate { module, noticed });
                    }
                    Err(reason) => {
                        // Logged before counted: whoever sees the count
                        // (a test, a dashboard's drill-down) finds the reason.
                        tracing::error!(
                            module = %name,
                            file = %path.display(),
                            "hot swap refused, version {running} keeps running: {reason}"
                        );
                        self.metrics.swap(&name, "refused");
                    }
                }
            }
        }
        ready
    }

    /// The file's bytes when they differ from what was last considered.
    /// A file still being written (its size or time moves while it is
    /// read) waits for the next look. A path that is not a regular file
    /// within the bound (a FIFO, a directory, a link to a device) is an
    /// error, once per change, found without blocking or reading on.
    fn changed(&mut self, path: &Path, forced: bool) -> Option<Result<Vec<u8>, String>> {
        let before = stamp(path);
        let state = self.seen.get_mut(path)?;
        if before.is_none() || (!forced && before == state.stamp) {
            return None;
        }
        let bytes = match crate::files::read_regular(path, MAX_COMPONENT_BYTES) {
            Ok(bytes) => bytes,
            Err(error) => {
                // Looked at again only once the path changes; a passing
                // error (a permission being fixed) at every look, told once.
                let message = error.to_string();
                if error.is_settled() {
                    state.stamp = before;
                } else if state.unreadable.replace(message.clone()).as_ref() == Some(&message) {
                    return None;
                }
                return Some(Err(message));
            }
        };
        state.unreadable = None;
        if stamp(path) != before {
            return None;
        }
        state.stamp = before;
        let digest = crate::engine::digest(&bytes);
        if digest == state.considered {
            return None;
        }
        state.considered = digest;
        Some(Ok(bytes))
    }

    /// Compiles, checks and configures a new version of `file`'s module.
    fn prepare(&self, file: &ModuleFile, bytes: &[u8]) -> Result<Module, String> {
        let loaded = self
            .engine
            .load_bytes(bytes, &file.path)
            .map_err(|e| format!("{e:#}"))?;
        self.self_test(file, &loaded)?;
        Module::start_loaded(&loaded, file.spec.clone())
            .map_err(|e| format!("configure with the running parameters failed: {e}"))
    }

    /// Runs the self-test events shipped beside the component, if any, on
    /// an instance of its own (its state in memory, its own clock): a trap
    /// or an internal failure refuses the version.
    fn self_test(&self, file: &ModuleFile, loaded: &Loaded) -> Result<(), String> {
        let path = selftest_path(&file.path);
        if !path.exists() {
            return Ok(());
        }
        let events = crate::files::read_regular(&path, MAX_SELFTEST_BYTES).map_err(|e| format!("self-test: {e}"))?;
        let spec = ModuleSpec {
            grants: Grants {
                state: Arc::new(StateCapability::in_memory()),
                ..file.spec.grants.clone()
            },
            time: CallTime::default(),
            ..file.spec.clone()
        };
        let mut module = Module::start_loaded(loaded, spec)
            .map_err(|e| format!("configure with the running parameters failed: {e}"))?;
        let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let source = JsonlSource::new(events.as_slice(), &name, file.spec.org_id(), MAX_SELFTEST_LINE);
        for item in source {
            let event = item.map_err(|e| format!("{}:{}: {}", e.source_name, e.line, e.message))?;
            let now_us = event.ts_us.unwrap_or_else(|| Clock::System.now_us());
            match module.handle(&event.to_wit(), now_us).result {
                Ok(_) | Err(CallError::Failed(Failure::BadEvent(_) | Failure::Lookup(_))) => {}
                Err(error) => return Err(format!("self-test event {} failed: {error}", event.id)),
            }
        }
        Ok(())
    }
}

/// Stops the reloader thread when dropped.
#[derive(Debug)]
pub struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What tells one version of a file from the next without reading it: its
/// time and size, and its inode, since a deployment that writes a new file
/// and renames it over the old one within the same clock tick, at the same
/// size, changes nothing else that `stat` shows.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new build renamed over the old one at the same size, with the same
    /// time (within one tick of the file system's clock), is still a change.
    #[test]
    fn a_file_renamed_over_at_the_same_size_and_time_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("module.wasm");
        std::fs::write(&path, b"build-a").unwrap();
        let first = stamp(&path).unwrap();
        let next = dir.path().join("module.wasm.new");
        std::fs::write(&next, b"build-b").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&next)
            .unwrap()
            .set_modified(first.0)
            .unwrap();
        std::fs::rename(&next, &path).unwrap();
        let second = stamp(&path).unwrap();
        assert_eq!((second.0, second.1), (first.0, first.1), "same time and size");
        assert_ne!(second, first);
    }
}
