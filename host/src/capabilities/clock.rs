//! The `clock` interface: the time of the input in hand, the same for the
//! whole call (the host's clock in `velonotify run`, the row's `_ts` in a
//! replay). No configuration, nothing to allow.

use super::CallContext;

impl velonotify_core::host::Clock for CallContext {
    fn now_us(&self) -> u64 {
        self.time.now_us()
    }
}

impl crate::contract::clock::Host for CallContext {
    fn now_us(&mut self) -> u64 {
        self.time.now_us()
    }
}
