//! the Detect module as a rule module component. The behaviour lives in
//! `velonotify_core::rules::detect`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::detect::DetectRule);
