//! Server.Monitor.Alerts as a rule module component. The behaviour lives
//! in `velonotify_core::rules::alerts`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::alerts::AlertsRule);
