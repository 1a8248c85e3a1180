//! The one clock: where every part of the host reads the time.
//!
//! `velonotify run` reads the system clock; a replay runs on a virtual
//! clock that the pipeline moves to each row's `_ts`, so the same inputs
//! always give the same outputs. What a module sees as "now" during a call
//! is [`CallTime`]: the pipeline's reading for the input in hand, frozen
//! for the call, and read by the module's WASI clocks too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The last second velonotify takes as a time (9999-12-31T23:59:59Z): a
/// `_ts` or a `--end` past it is refused, so no time from input can
/// overflow the microsecond arithmetic.
pub const LATEST_S: u64 = 253_402_300_799;

/// Where the time comes from.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system's wall clock (`velonotify run`).
    System,
    /// A clock that only moves when told to (replays, tests).
    Virtual(Arc<AtomicU64>),
}

impl Clock {
    /// A virtual clock showing `now_us`.
    pub fn virtual_at(now_us: u64) -> Self {
        Clock::Virtual(Arc::new(AtomicU64::new(now_us)))
    }

    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }

    /// Microseconds since the Unix epoch.
    pub fn now_us(&self) -> u64 {
        match self {
            Clock::System => system_now_us(),
            Clock::Virtual(now) => now.load(Ordering::Relaxed),
        }
    }

    /// Moves a virtual clock to `now_us`, never backwards; the system
    /// clock is not ours to move.
    pub fn advance_to(&self, now_us: u64) {
        if let Clock::Virtual(now) = self {
            now.fetch_max(now_us, Ordering::Relaxed);
        }
    }

    /// `now` plus `duration`, in microseconds, saturating.
    pub fn after(&self, duration: Duration) -> u64 {
        self.now_us().saturating_add(micros(duration))
    }
}

/// A time in microseconds as RFC 3339 (`2026-11-30T21:00:00Z`; fractions
/// of a second when it has them): how times are shown to operators.
pub fn rfc3339(us: u64) -> String {
    i64::try_from(us)
        .ok()
        .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A time an operator gives, in RFC 3339 (`2026-11-30T21:00:00Z`), in
/// microseconds.
pub fn parse_rfc3339(text: &str) -> Result<u64, String> {
    let at: jiff::Timestamp = text
        .parse()
        .map_err(|_| format!("{text:?} is not a time such as 2026-11-30T21:00:00Z"))?;
    u64::try_from(at.as_microsecond()).map_err(|_| format!("{text:?} is before 1970"))
}

/// A duration in whole microseconds, saturating.
pub fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn system_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, micros)
}

/// The time a module's call sees: set by the pipeline before each call
/// (the input's time), read by `clock.now-us` and by the module's WASI
/// clocks.
#[derive(Debug, Clone, Default)]
pub struct CallTime(Arc<AtomicU64>);

impl CallTime {
    pub fn set_us(&self, now_us: u64) {
        self.0.store(now_us, Ordering::Relaxed);
    }

    pub fn now_us(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl wasmtime_wasi::HostWallClock for CallTime {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        Duration::from_micros(self.now_us())
    }
}

impl wasmtime_wasi::HostMonotonicClock for CallTime {
    fn resolution(&self) -> u64 {
        1000
    }

    fn now(&self) -> u64 {
        self.now_us().saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_never_goes_backwards() {
        let clock = Clock::virtual_at(100);
        clock.advance_to(50);
        assert_eq!(clock.now_us(), 100);
        clock.advance_to(200);
        assert_eq!(clock.now_us(), 200);
    }
}
