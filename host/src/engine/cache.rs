//! Compiled components on disk, keyed by the component's content and the
//! engine's compatibility hash: compiling takes a second (a Python module
//! with its interpreter, far longer), loading a precompiled component a few
//! milliseconds.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// SHA-256 of a component file, in hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What code compiled by `engine` can be loaded into: engines with the
/// same key share compiled code (the pool's engine and the on-demand one
/// differ only in how instances get memory).
pub(super) fn compatibility_key(engine: &wasmtime::Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

/// A component compiled for an engine, not yet loaded into one.
#[derive(Debug)]
pub(super) enum Compiled {
    /// In the cache.
    File(PathBuf),
    /// Just compiled, without a cache.
    Bytes(Vec<u8>),
}

impl Compiled {
    /// Loads the code into `engine`, which checks that it can hold the
    /// component (the pool's limits).
    pub(super) fn load(&self, engine: &wasmtime::Engine) -> anyhow::Result<Component> {
        // Safety: the code was compiled by this host, for an engine of the
        // same compatibility key, and written whole before it was renamed
        // into the cache.
        #[allow(unsafe_code)]
        let component = unsafe {
            match self {
                Compiled::File(path) => Component::deserialize_file(engine, path),
                Compiled::Bytes(bytes) => Component::deserialize(engine, bytes),
            }
        };
        component.map_err(anyhow::Error::from)
    }

    pub(super) fn is_cached(&self) -> bool {
        matches!(self, Compiled::File(_))
    }
}

/// Compiles `bytes` for `engine`, without a cache.
pub(super) fn compile(engine: &wasmtime::Engine, bytes: &[u8]) -> anyhow::Result<Compiled> {
    Ok(Compiled::Bytes(
        engine.precompile_component(bytes).map_err(anyhow::Error::from)?,
    ))
}

#[derive(Debug)]
pub(super) struct ComponentCache {
    dir: PathBuf,
    engine_key: u64,
}

impl ComponentCache {
    pub(super) fn new(dir: PathBuf, engine: &wasmtime::Engine) -> Self {
        Self {
            dir,
            engine_key: compatibility_key(engine),
        }
    }

    /// The component `key` compiled for `engine`: from the cache, else
    /// compiled now and stored (a failure to store is logged: the code is
    /// used anyway).
    pub(super) fn compiled(&self, engine: &wasmtime::Engine, bytes: &[u8], key: &str) -> anyhow::Result<Compiled> {
        let path = self.path(key);
        if path.exists() {
            return Ok(Compiled::File(path));
        }
        self.compile_and_store(engine, bytes, &path)
    }

    /// As [`compiled`](Self::compiled), replacing a cached file that no
    /// engine could load.
    pub(super) fn recompiled(&self, engine: &wasmtime::Engine, bytes: &[u8], key: &str) -> anyhow::Result<Compiled> {
        let path = self.path(key);
        // Gone already or not: it is written again below.
        let _ = std::fs::remove_file(&path);
        self.compile_and_store(engine, bytes, &path)
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}-{:016x}.cwasm", self.engine_key))
    }

    fn compile_and_store(&self, engine: &wasmtime::Engine, bytes: &[u8], path: &Path) -> anyhow::Result<Compiled> {
        let Compiled::Bytes(code) = compile(engine, bytes)? else {
            unreachable!("compile returns bytes")
        };
        match self.store(path, &code) {
            Ok(()) => Ok(Compiled::File(path.to_path_buf())),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled component");
                Ok(Compiled::Bytes(code))
            }
        }
    }

    fn store(&self, path: &Path, code: &[u8]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, code)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
