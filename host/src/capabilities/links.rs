//! The `links` interface: the "Silence similar" address of the notification
//! a call produces. The host signs it (`noise::silence_link`); the module
//! only places it. Configured by `[server] velonotify_url` with `[api]`;
//! nothing to allow per module, since a link carries nothing of the module's
//! out and reaches only velonotify's own page.
//!
//! Event ids repeat (each ingest post numbers its rows from 1; a stdin
//! run restarts at line 1), so a link cannot name its notification by the
//! event. The first link a call makes mints a random id for the call; the
//! outbox keeps it with each notification of that call, and the page finds
//! the notification by it.

use super::CallContext;
use crate::noise::silence_link::{Link, Linked, fresh_link_id};

impl CallContext {
    /// A new call begins: it has made no link yet.
    pub fn start_links(&mut self) {
        self.link_id = None;
    }

    /// The id the call's links carry, if it made any: its notifications are
    /// stored with it.
    pub fn take_link_id(&mut self) -> Option<String> {
        self.link_id.take()
    }

    fn silence_link(&mut self) -> Option<String> {
        let links = self.links.clone()?;
        let id = self.link_id.get_or_insert_with(fresh_link_id).clone();
        let link = Link {
            id,
            linked: Linked::Notification,
        };
        links.link(link, self.time.now_us())
    }
}

/// A rule called natively (tests, benchmarks) runs outside the pipeline's
/// calls, whose notifications keep the link's id: it gets no link.
impl velonotify_core::host::Links for CallContext {
    fn silence_similar(&self) -> Option<String> {
        None
    }
}

impl crate::contract::links::Host for CallContext {
    fn silence_similar(&mut self) -> Option<String> {
        self.silence_link()
    }
}
