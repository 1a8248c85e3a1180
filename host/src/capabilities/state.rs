//! The `state` interface: a module's small durable values, and the host's
//! own (alert dedup windows, stream positions) beside them.
//!
//! Nothing is written to the store while an input is handled. A call's
//! writes are kept for the call ([`ModuleState`]: a later `get` of the same
//! call reads them back) and dropped if the call traps; a call that returns
//! hands them to the input ([`StateCapability`]), whose writes the service
//! stores with everything else the input caused, in one transaction. Reads
//! look at the call's writes, then the input's, then the store.
//!
//! Policy: a module reads and writes its own keys only (its owner is its
//! configured name), within the bounds of the store (key and value sizes,
//! entries per module).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::CallContext;
use crate::store::{Owner, StateWrite, Store, StoreError};

/// One input's state writes, and the store they go to.
#[derive(Debug)]
pub struct StateCapability {
    store: Arc<Store>,
    staged: Mutex<BTreeMap<(Owner, String), StateWrite>>,
}

impl StateCapability {
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            store,
            staged: Mutex::default(),
        }
    }

    /// State in memory only (self-tests of new module versions, tests).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(Store::in_memory()))
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// `owner`'s value of `key` as the input in hand sees it: its own
    /// writes first, then the store.
    pub fn get(&self, owner: &Owner, key: &str, now_us: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let staged = self.lock().get(&(owner.clone(), key.to_string())).cloned();
        match staged {
            Some(write) => Ok(live(write, now_us)),
            None => self.store.state_get(owner, key, now_us),
        }
    }

    /// Adds a write to the input in hand.
    pub fn stage(&self, write: StateWrite) {
        self.lock().insert((write.owner.clone(), write.key.clone()), write);
    }

    /// The input's writes, for its commit; none are left staged.
    pub fn take_staged(&self) -> Vec<StateWrite> {
        std::mem::take(&mut *self.lock()).into_values().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Owner, String), StateWrite>> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A value unless it has expired by `now_us`.
fn live(write: StateWrite, now_us: u64) -> Option<Vec<u8>> {
    match write.expires_us {
        Some(expires) if expires <= now_us => None,
        _ => Some(write.value),
    }
}

/// One module's state during its calls.
#[derive(Debug)]
pub(super) struct ModuleState {
    shared: Arc<StateCapability>,
    owner: Owner,
    /// The writes of the call in progress.
    call: RefCell<BTreeMap<String, StateWrite>>,
}

impl ModuleState {
    pub(super) fn new(shared: Arc<StateCapability>, module: &str) -> Self {
        Self {
            shared,
            owner: Owner::Module(module.to_string()),
            call: RefCell::default(),
        }
    }

    pub(super) fn rename(&mut self, module: &str) {
        self.owner = Owner::Module(module.to_string());
    }

    fn get(&self, key: &str, now_us: u64) -> Option<Vec<u8>> {
        if let Some(write) = self.call.borrow().get(key) {
            return live(write.clone(), now_us);
        }
        match self.shared.get(&self.owner, key, now_us) {
            Ok(value) => value,
            Err(error) => {
                tracing::error!(owner = self.owner.as_db(), key, %error, "reading state failed");
                None
            }
        }
    }

    fn put(&self, key: &str, value: &[u8], ttl_seconds: u32, now_us: u64) {
        let write = StateWrite {
            owner: self.owner.clone(),
            key: key.to_string(),
            value: value.to_vec(),
            expires_us: (ttl_seconds > 0).then(|| now_us.saturating_add(u64::from(ttl_seconds) * 1_000_000)),
        };
        if let Some(problem) = write.oversized() {
            tracing::warn!(owner = self.owner.as_db(), "{problem}");
            return;
        }
        self.call.borrow_mut().insert(write.key.clone(), write);
    }

    /// Hands the call's writes to the input (`kept`), or drops them.
    pub(super) fn end_call(&self, kept: bool) {
        let writes = std::mem::take(&mut *self.call.borrow_mut());
        if kept {
            for write in writes.into_values() {
                self.shared.stage(write);
            }
        }
    }
}

impl velonotify_core::host::State for CallContext {
    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key, self.time.now_us())
    }

    fn state_put(&self, key: &str, value: &[u8], ttl_seconds: u32) {
        self.state.put(key, value, ttl_seconds, self.time.now_us());
    }
}

impl crate::contract::state::Host for CallContext {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.state.get(&key, self.time.now_us())
    }

    fn put(&mut self, key: String, value: Vec<u8>, ttl_seconds: u32) {
        self.state.put(&key, &value, ttl_seconds, self.time.now_us());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(shared: &Arc<StateCapability>) -> ModuleState {
        ModuleState::new(shared.clone(), "m")
    }

    #[test]
    fn a_call_reads_back_what_it_wrote_and_a_trap_drops_it() {
        let shared = Arc::new(StateCapability::in_memory());
        let state = module(&shared);
        state.put("cursor", b"1", 0, 0);
        assert_eq!(state.get("cursor", 0).as_deref(), Some(&b"1"[..]));
        state.end_call(false);
        assert_eq!(state.get("cursor", 0), None, "the trapped call's write is gone");
        assert!(shared.take_staged().is_empty());

        state.put("cursor", b"2", 0, 0);
        state.end_call(true);
        assert_eq!(
            state.get("cursor", 0).as_deref(),
            Some(&b"2"[..]),
            "staged for the input"
        );
        let staged = shared.take_staged();
        assert_eq!(staged.len(), 1);
        assert_eq!(
            shared
                .store()
                .state_get(&Owner::Module("m".into()), "cursor", 0)
                .unwrap(),
            None
        );
    }

    #[test]
    fn staged_values_expire_like_stored_ones() {
        let shared = Arc::new(StateCapability::in_memory());
        let state = module(&shared);
        state.put("window", b"x", 10, 0);
        state.end_call(true);
        assert!(state.get("window", 9_999_999).is_some());
        assert_eq!(state.get("window", 10_000_000), None);
    }
}
