//! Server.Monitor.Flows.Stuck as a rule module component. The behaviour lives in
//! `velonotify_core::rules::collections::stuck`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::collections::stuck::StuckFlowsRule);
