//! Identifiers receivers deduplicate on, made from what an alert is, so
//! the same alert posted again (a retry after a crash, a replay) is
//! recognised by the receiver instead of opening a second incident.

use sha2::{Digest as _, Sha256};

/// `prefix` and the first `bytes` bytes, in hex, of a SHA-256 over
/// `parts`, each ended by a unit separator so that parts cannot run
/// into each other ("ab" + "c" is not "a" + "bc").
pub fn stable_id(prefix: &str, parts: &[&str], bytes: usize) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0x1f]);
    }
    let hex: String = hash.finalize().iter().take(bytes).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_parts_give_the_same_id_and_parts_are_kept_apart() {
        assert_eq!(stable_id("x-", &["a", "b"], 8), stable_id("x-", &["a", "b"], 8));
        assert_eq!(stable_id("x-", &["a"], 8).len(), 2 + 16);
        assert_ne!(stable_id("", &["ab", "c"], 8), stable_id("", &["a", "bc"], 8));
    }
}
