//! Server.Monitor.Hunts as a rule module component. The behaviour lives in
//! `velonotify_core::rules::collections::hunts`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::collections::hunts::HuntsRule);
