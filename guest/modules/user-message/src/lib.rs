//! Server.Monitor.Alerts.UserMessage as a rule module component. The behaviour lives in
//! `velonotify_core::rules::user_message`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::user_message::UserMessageRule);
