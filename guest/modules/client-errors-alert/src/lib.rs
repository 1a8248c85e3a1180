//! Server.Monitor.Client.Errors.Alert as a rule module component. The behaviour lives in
//! `velonotify_core::rules::errors_alert`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::errors_alert::ClientErrorsRule);
