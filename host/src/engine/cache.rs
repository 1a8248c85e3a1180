//! Compiled components on disk, keyed by the component's content and the
//! engine's compatibility hash: compiling takes a second, loading a
//! precompiled component a few milliseconds.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// SHA-256 of a component file, in hex.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug)]
pub(super) struct ComponentCache {
    dir: PathBuf,
    engine_key: u64,
}

impl ComponentCache {
    pub(super) fn new(dir: PathBuf, engine: &wasmtime::Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_key: hasher.finish(),
        }
    }

    /// The component of `bytes`, whose [`digest`] is `key`.
    pub(super) fn load_or_compile(
        &self,
        engine: &wasmtime::Engine,
        bytes: &[u8],
        key: &str,
    ) -> anyhow::Result<Component> {
        let path = self.dir.join(format!("{key}-{:016x}.cwasm", self.engine_key));
        if path.exists() {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash (it is in the name),
            // into the cache directory the operator gave velonotify. Like
            // the velonotify binary itself, that directory must only be
            // writable by the service's user. A file that does not match
            // makes `deserialize_file` fail, and we compile afresh.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(engine, &path) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unusable cached component"),
            }
        }
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not cache the compiled component");
        }
        Ok(component)
    }

    fn store(&self, path: &std::path::Path, component: &Component) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let serialized = component.serialize().map_err(anyhow::Error::from)?;
        // Write then rename, so a concurrent reader never sees half a file.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serialized)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}
