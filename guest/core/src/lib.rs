//! velonotify-core: the notification logic of velonotify's rule modules.
//!
//! Everything here is plain Rust with no WebAssembly dependency: the same
//! code runs inside the rule components (through `guest/sdk`) and natively
//! in tests and benchmarks.
//!
//! - [`vql`]: VQL's matching, truthiness, value printing and time rules.
//! - [`params`]: artifact parameters with Velociraptor's names and types.
//! - [`context`]: alert context flattening, filtering and severity.
//! - [`render`]: HTML (escaped by construction) and plain-text layouts.
//! - [`mime`]: the RFC 5322 message; [`digest`]: held e-mails in one.
//! - [`recipients`]: who gets an e-mail.
//! - [`velociraptor`]: the client and flow dictionaries of the e-mails.
//! - [`rules`]: the rule modules themselves.

pub mod action;
pub mod context;
pub mod digest;
pub mod host;
pub mod mime;
pub mod params;
pub mod recipients;
pub mod render;
pub mod rules;
pub mod velociraptor;
pub mod vql;

#[cfg(test)]
mod testing;
