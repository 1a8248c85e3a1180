//! Small per-module key/value state (throttle windows, cursors), kept in
//! memory. Bounded: a module cannot grow it without limit.

use std::collections::HashMap;
use std::sync::Mutex;

/// Bounds of one module's state.
pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_ENTRIES_PER_MODULE: usize = 10_000;

#[derive(Debug, Default)]
pub struct StateStore {
    entries: Mutex<HashMap<String, HashMap<String, Entry>>>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Vec<u8>,
    /// Microseconds since the epoch; None: kept until overwritten.
    expires_us: Option<u64>,
}

impl StateStore {
    pub fn get(&self, module: &str, key: &str, now_us: u64) -> Option<Vec<u8>> {
        let entries = self.entries.lock().expect("state lock");
        let entry = entries.get(module)?.get(key)?;
        match entry.expires_us {
            Some(expires) if expires <= now_us => None,
            _ => Some(entry.value.clone()),
        }
    }

    /// Stores `value`; refuses (with a log line) what exceeds the bounds.
    pub fn put(&self, module: &str, key: &str, value: Vec<u8>, ttl_seconds: u32, now_us: u64) {
        if key.len() > MAX_KEY_BYTES || value.len() > MAX_VALUE_BYTES {
            tracing::warn!(
                module,
                key_bytes = key.len(),
                value_bytes = value.len(),
                "state entry refused: too large"
            );
            return;
        }
        let mut entries = self.entries.lock().expect("state lock");
        let module_entries = entries.entry(module.to_string()).or_default();
        if module_entries.len() >= MAX_ENTRIES_PER_MODULE && !module_entries.contains_key(key) {
            module_entries.retain(|_, e| e.expires_us.is_none_or(|x| x > now_us));
            if module_entries.len() >= MAX_ENTRIES_PER_MODULE {
                tracing::warn!(
                    module,
                    "state entry refused: the module has {MAX_ENTRIES_PER_MODULE} entries"
                );
                return;
            }
        }
        let expires_us = (ttl_seconds > 0).then(|| now_us + u64::from(ttl_seconds) * 1_000_000);
        module_entries.insert(key.to_string(), Entry { value, expires_us });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_after_their_ttl() {
        let s = StateStore::default();
        s.put("m", "k", b"v".to_vec(), 10, 0);
        assert_eq!(s.get("m", "k", 9_999_999).as_deref(), Some(&b"v"[..]));
        assert_eq!(s.get("m", "k", 10_000_000), None);
    }

    #[test]
    fn modules_do_not_see_each_others_state() {
        let s = StateStore::default();
        s.put("a", "k", b"1".to_vec(), 0, 0);
        assert_eq!(s.get("b", "k", 0), None);
    }

    #[test]
    fn oversized_entries_are_refused() {
        let s = StateStore::default();
        s.put("m", "k", vec![0; MAX_VALUE_BYTES + 1], 0, 0);
        assert_eq!(s.get("m", "k", 0), None);
    }
}
