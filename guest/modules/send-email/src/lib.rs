//! Generic.Utils.SendEmail as a rule module component. The behaviour lives
//! in `velonotify_core::rules::send_email`; this crate only exports it.

velonotify_guest::rule_module!(velonotify_core::rules::send_email::SendEmailRule);
