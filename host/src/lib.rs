//! velonotify: runs sandboxed rule modules (WebAssembly components of the
//! `velociraptor:notify` world) on Velociraptor events, and delivers what
//! they produce.
//!
//! The rooms follow an input's path, source -> pipeline -> store/outbox ->
//! delivery; each imports only rooms listed above it here (a test pins it):
//!
//! - [`clock`], [`failpoints`], [`metrics`], [`http`]: what every room uses.
//! - [`store`]: the typed store (SQLite): schema and migrations, one
//!   transaction per input, the outbox.
//! - [`contract`]: the WIT world as Rust types and host traits.
//! - [`velociraptor`]: Velociraptor's gRPC API: client, VQL.
//! - [`capabilities`]: what a module may use of the host (clock, log,
//!   lookups, state, outbound actions), each with its interface,
//!   configuration and per-module policy.
//! - [`engine`]: wasmtime, the component cache, module sandboxes and calls.
//! - [`sources`]: where inputs come from (JSON lines, HTTP ingest, the
//!   Velociraptor event stream).
//! - [`pipeline`]: routing inputs to modules, the alert queue, hot swap,
//!   and the outbox the pipeline ends in.
//! - [`delivery`]: SMTP, webhooks and Velociraptor actions from the outbox,
//!   with retries and digests.
//! - [`cli`]: the configuration, the wiring of a running host and the
//!   `velonotify` command.

pub mod clock;
pub mod failpoints;
pub mod http;
pub mod metrics;

pub mod store;

pub mod contract;

pub mod velociraptor;

pub mod capabilities;

pub mod engine;

pub mod sources;

pub mod pipeline;

pub mod delivery;

pub mod cli;
