//! Server.Monitor.FlowCompletion as a rule module component. The behaviour
//! lives in `velonotify_core::rules::flow_completion`; this crate only
//! exports it.

velonotify_guest::rule_module!(velonotify_core::rules::flow_completion::FlowCompletionRule);
