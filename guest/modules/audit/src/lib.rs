//! Server.Monitor.Audit as a rule module component. The behaviour lives in
//! `velonotify_core::rules::audit`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::audit::AuditRule);
