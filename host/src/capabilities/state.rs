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
//! entries per module) and its quota of octets (`state_mib`, default
//! [`DEFAULT_STATE_QUOTA_BYTES`]), and stages at most [`MAX_STAGED_KEYS`]
//! keys and [`MAX_STAGED_BYTES`] bytes per input: a write past them is
//! refused with a log line, as a write past the store's bounds is.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::CallContext;
use crate::store::{Owner, StateWrite, Store, StoreError};

/// What one module may write for one input, at most (the memory a hostile
/// module can make the host hold until the commit).
pub const MAX_STAGED_KEYS: usize = 10_000;
pub const MAX_STAGED_BYTES: usize = 16 << 20;

/// Octets of keys and values one module keeps, unless `state_mib` says.
pub const DEFAULT_STATE_QUOTA_BYTES: u64 = 16 << 20;

/// One input's state writes, and the store they go to.
#[derive(Debug)]
pub struct StateCapability {
    store: Arc<Store>,
    staged: Mutex<Staged>,
}

/// The writes of the input in hand, and their size per owner.
#[derive(Debug, Default)]
struct Staged {
    writes: BTreeMap<(Owner, String), StateWrite>,
    usage: HashMap<Owner, Usage>,
    /// What each write adds to its owner's stored octets (its key and
    /// value, less the entry it replaces), and their sum per owner: the
    /// quota's view of the input in hand.
    growth: BTreeMap<(Owner, String), i64>,
    net_growth: HashMap<Owner, i64>,
}

/// Keys and bytes staged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    keys: usize,
    bytes: usize,
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
        let staged = self.lock().writes.get(&(owner.clone(), key.to_string())).cloned();
        match staged {
            Some(write) => Ok(live(write, now_us)),
            None => self.store.state_get(owner, key, now_us),
        }
    }

    /// Adds a write to the input in hand.
    pub fn stage(&self, write: StateWrite) {
        self.stage_growing(write, 0);
    }

    /// Adds a write that grows its owner's stored octets by `growth`.
    fn stage_growing(&self, write: StateWrite, growth: i64) {
        let mut staged = self.lock();
        let key = (write.owner.clone(), write.key.clone());
        let before = staged.growth.insert(key, growth).unwrap_or(0);
        *staged.net_growth.entry(write.owner.clone()).or_default() += growth - before;
        let usage = staged.usage.entry(write.owner.clone()).or_default();
        usage.keys += 1;
        usage.bytes += write.value.len();
        let key = (write.owner.clone(), write.key.clone());
        if let Some(replaced) = staged.writes.insert(key, write) {
            let usage = staged.usage.entry(replaced.owner).or_default();
            usage.keys -= 1;
            usage.bytes -= replaced.value.len();
        }
    }

    /// How much the input in hand grows `owner`'s stored octets, and how
    /// much of it is `key`'s.
    fn growth(&self, owner: &Owner, key: &str) -> (i64, i64) {
        let staged = self.lock();
        let net = staged.net_growth.get(owner).copied().unwrap_or(0);
        let own = staged
            .growth
            .get(&(owner.clone(), key.to_string()))
            .copied()
            .unwrap_or(0);
        (net, own)
    }

    /// What `owner` has staged for the input in hand, and whether `key` is
    /// among it.
    fn usage(&self, owner: &Owner, key: &str) -> (Usage, bool) {
        let staged = self.lock();
        let usage = staged.usage.get(owner).copied().unwrap_or_default();
        (usage, staged.writes.contains_key(&(owner.clone(), key.to_string())))
    }

    /// The input's writes, for its commit; none are left staged.
    pub fn take_staged(&self) -> Vec<StateWrite> {
        std::mem::take(&mut *self.lock()).writes.into_values().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Staged> {
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
    quota_bytes: u64,
    /// The writes of the call in progress, and their bytes.
    call: RefCell<BTreeMap<String, StateWrite>>,
    call_bytes: Cell<usize>,
    /// What each of the call's writes grows the stored octets by, and
    /// their sum.
    call_growth: RefCell<BTreeMap<String, i64>>,
    call_net_growth: Cell<i64>,
}

impl ModuleState {
    pub(super) fn new(shared: Arc<StateCapability>, module: &str, quota_bytes: u64) -> Self {
        Self {
            shared,
            owner: Owner::Module(module.to_string()),
            quota_bytes,
            call: RefCell::default(),
            call_bytes: Cell::new(0),
            call_growth: RefCell::default(),
            call_net_growth: Cell::new(0),
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
        let checked = match write.oversized().or_else(|| self.over_bounds(&write)) {
            Some(problem) => Err(problem),
            None => self.over_quota(&write, now_us),
        };
        let growth = match checked {
            Ok(growth) => growth,
            Err(problem) => {
                tracing::warn!(owner = self.owner.as_db(), "{problem}");
                return;
            }
        };
        let before = self
            .call_growth
            .borrow_mut()
            .insert(write.key.clone(), growth)
            .unwrap_or(0);
        self.call_net_growth.set(self.call_net_growth.get() + growth - before);
        let added = write.value.len();
        let replaced = self.call.borrow_mut().insert(write.key.clone(), write);
        let removed = replaced.map_or(0, |r| r.value.len());
        self.call_bytes.set(self.call_bytes.get() + added - removed);
    }

    /// Why `write` would take the module past what it may stage for one
    /// input, if it would. (A key written in this call and in an earlier
    /// call of the input counts twice: the bound errs on the safe side.)
    fn over_bounds(&self, write: &StateWrite) -> Option<String> {
        let (input, staged) = self.shared.usage(&self.owner, &write.key);
        let call = self.call.borrow();
        let replaced = call.get(&write.key).map(|w| w.value.len());
        let new_key = replaced.is_none() && !staged;
        let keys = input.keys + call.len() + usize::from(new_key);
        let bytes = input.bytes + self.call_bytes.get() + write.value.len() - replaced.unwrap_or(0);
        (keys > MAX_STAGED_KEYS || bytes > MAX_STAGED_BYTES).then(|| {
            format!(
                "state entry refused: one input may stage at most {MAX_STAGED_KEYS} keys and {MAX_STAGED_BYTES} \
                 bytes per module"
            )
        })
    }

    /// Why `write` would take the module's state past its quota, if it
    /// would: what is stored, grown by what the input and the call have
    /// staged (each write counted as its key and value less the entry it
    /// replaces, a key written again counted once) and by the write.
    /// Entries expired but not yet forgotten are counted out only when near
    /// the quota (a read of every entry). Unreadable usage lets the write
    /// through: the store's own bounds still hold. Returns the write's
    /// growth when it fits.
    fn over_quota(&self, write: &StateWrite, now_us: u64) -> Result<i64, String> {
        let store = self.shared.store();
        let replacing = store.entry_bytes(&self.owner, &write.key).unwrap_or(0);
        let growth = (write.key.len() + write.value.len()) as i64 - replacing as i64;
        let (input_net, input_own) = self.shared.growth(&self.owner, &write.key);
        // The key's earlier growth in this input (in an earlier call, in
        // this one, or both) is replaced by this write's.
        let call_own = self.call_growth.borrow().get(&write.key).copied().unwrap_or(0);
        let staged = input_net - input_own + self.call_net_growth.get() - call_own;
        let projected = |stored: u64| (stored as i64).saturating_add(staged).saturating_add(growth);
        let quota = i64::try_from(self.quota_bytes).unwrap_or(i64::MAX);
        if projected(store.state_bytes(&self.owner).unwrap_or(0)) <= quota {
            return Ok(growth);
        }
        let live = projected(store.live_state_bytes(&self.owner, now_us).unwrap_or(0));
        if live <= quota {
            return Ok(growth);
        }
        Err(format!(
            "state entry refused: the module's state would take {live} bytes, over its quota of {} (state_mib)",
            self.quota_bytes
        ))
    }

    /// Hands the call's writes to the input (`kept`), or drops them.
    pub(super) fn end_call(&self, kept: bool) {
        let writes = std::mem::take(&mut *self.call.borrow_mut());
        let mut growth = std::mem::take(&mut *self.call_growth.borrow_mut());
        self.call_net_growth.set(0);
        self.call_bytes.set(0);
        if kept {
            for write in writes.into_values() {
                let grows = growth.remove(&write.key).unwrap_or(0);
                self.shared.stage_growing(write, grows);
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
        ModuleState::new(shared.clone(), "m", DEFAULT_STATE_QUOTA_BYTES)
    }

    /// A module keeps at most its quota of keys and values: a new key past
    /// it is refused, an overwrite that does not grow is taken, and entries
    /// that have expired make room.
    #[test]
    fn a_modules_state_stays_within_its_quota() {
        let shared = Arc::new(StateCapability::in_memory());
        let owner = Owner::Module("m".into());
        let store = shared.store().clone();
        let put = |key: &str, size: usize, expires_us: Option<u64>| {
            let write = StateWrite {
                owner: owner.clone(),
                key: key.into(),
                value: vec![0; size],
                expires_us,
            };
            store.state_put(&write, 0).unwrap();
        };
        put("a", 600, None);
        put("b", 300, Some(50));
        let state = ModuleState::new(shared.clone(), "m", 1_000);
        // 601 + 301 stored: 98 left.
        state.put("c", &[0; 90], 0, 10);
        state.put("d", &[0; 90], 0, 10);
        state.end_call(true);
        let kept: Vec<String> = shared.take_staged().into_iter().map(|w| w.key).collect();
        assert_eq!(kept, ["c"], "the second new key is over the quota");
        state.put("a", &[0; 600], 0, 10);
        state.end_call(true);
        assert_eq!(shared.take_staged().len(), 1, "an overwrite of the same size fits");
        state.put("d", &[0; 200], 0, 60);
        state.end_call(true);
        assert_eq!(shared.take_staged().len(), 1, "the expired entry no longer counts");
    }

    /// Rewriting stored entries at their size does not grow the state, in
    /// however many calls of one input: a module at its quota can update
    /// what it keeps.
    #[test]
    fn rewrites_at_the_quota_are_taken() {
        let shared = Arc::new(StateCapability::in_memory());
        let store = shared.store().clone();
        for (key, size) in [("a", 600), ("b", 390)] {
            let write = StateWrite {
                owner: Owner::Module("m".into()),
                key: key.into(),
                value: vec![0; size],
                expires_us: None,
            };
            store.state_put(&write, 0).unwrap();
        }
        let state = ModuleState::new(shared.clone(), "m", 1_000);
        for _ in 0..3 {
            state.put("a", &[1; 600], 0, 10);
            state.end_call(true);
            state.put("b", &[1; 390], 0, 10);
            state.put("b", &[2; 390], 0, 10);
            state.end_call(true);
        }
        assert_eq!(shared.take_staged().len(), 2, "every rewrite was taken");
        state.put("c", &[0; 8], 0, 10);
        state.end_call(true);
        assert!(shared.take_staged().is_empty(), "a new key past the quota is not");
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

    /// A module looping over `put` within its deadline cannot make the
    /// host hold its writes without bound until the commit.
    #[test]
    fn what_one_input_may_stage_is_bounded() {
        let shared = Arc::new(StateCapability::in_memory());
        let state = module(&shared);
        for i in 0..MAX_STAGED_KEYS + 10 {
            state.put(&format!("k{i}"), b"x", 0, 0);
        }
        assert_eq!(state.call.borrow().len(), MAX_STAGED_KEYS);
        state.end_call(true);
        state.put("one-more", b"x", 0, 0);
        assert_eq!(state.get("one-more", 0), None, "the input's staged keys count too");
        state.put("k1", b"rewritten", 0, 0);
        assert_eq!(
            state.get("k1", 0).as_deref(),
            Some(&b"rewritten"[..]),
            "a staged key may be written again"
        );

        let other = ModuleState::new(shared.clone(), "n", DEFAULT_STATE_QUOTA_BYTES);
        let big = vec![0u8; 60 << 10];
        for i in 0..(MAX_STAGED_BYTES / big.len()) + 5 {
            other.put(&format!("big{i}"), &big, 0, 0);
        }
        assert!(other.call_bytes.get() <= MAX_STAGED_BYTES);
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
