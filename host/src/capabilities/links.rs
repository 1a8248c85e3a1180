//! The `links` interface: the "Silence similar" address of the notification
//! a call produces. The host signs it (`noise::silence_link`); the module
//! only places it. Configured by `[server] velonotify_url` with `[api]`;
//! nothing to allow per module, since a link carries nothing of the module's
//! out and reaches only velonotify's own page.

use super::CallContext;
use crate::noise::silence_link::Linked;

impl CallContext {
    /// The input the next call is for: an event id, or a tick's origin. A
    /// link made during the call names it with the module, as the outbox
    /// records the call's notifications.
    pub fn set_origin(&mut self, origin: &str) {
        // Kept in one buffer: no allocation per call once it is long enough.
        self.origin.clear();
        self.origin.push_str(origin);
    }

    fn silence_link(&self) -> Option<String> {
        let links = self.links.as_ref()?;
        if self.origin.is_empty() {
            return None;
        }
        let linked = Linked::Notification {
            event: self.origin.clone(),
            module: self.module().to_string(),
        };
        links.link(linked, self.time.now_us())
    }
}

impl velonotify_core::host::Links for CallContext {
    fn silence_similar(&self) -> Option<String> {
        self.silence_link()
    }
}

impl crate::contract::links::Host for CallContext {
    fn silence_similar(&mut self) -> Option<String> {
        self.silence_link()
    }
}
