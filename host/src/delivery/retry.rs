//! When to try again: capped exponential backoff with jitter, until a
//! deadline.

use std::time::Duration;

/// The retry policy of transient delivery failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first wait.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// How long after an item was queued it is given up on.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            deadline: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (the first retry has
    /// `attempt` 1): `base * 2^(attempt - 1)`, capped, of which the second
    /// half is random ("equal jitter"), so that failed items do not all
    /// come back at once yet never retry at once.
    pub fn wait(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_exponentially_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
            deadline: Duration::from_secs(3600),
        };
        for (attempt, full) in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (40, 60.0)] {
            for _ in 0..100 {
                let wait = policy.wait(attempt).as_secs_f64();
                assert!(wait >= full / 2.0 && wait <= full, "attempt {attempt}: {wait}");
            }
        }
    }
}
