//! Server.Monitor.Clients.Quiet as a rule module component. The behaviour lives in
//! `velonotify_core::rules::fleet::quiet`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::fleet::quiet::QuietClientsRule);
