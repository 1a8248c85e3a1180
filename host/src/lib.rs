//! velonotify: runs sandboxed rule modules (WebAssembly components of the
//! `velociraptor:notify` world) on Velociraptor events, and delivers what
//! they produce.
//!
//! - [`engine`]: wasmtime, the component cache, module sandboxes and calls.
//! - [`lookups`]: answers to the modules' Velociraptor lookups.
//! - [`source`]: where events come from.
//! - [`pipeline`]: routing events to modules and checking their actions.
//! - [`outbox`]: where actions go.
//! - [`config`], [`runtime`]: assembling a host from a configuration file.
//! - [`cli`]: the `velonotify` command.

pub mod alerts;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod http;
pub mod ingest;
pub mod lookups;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod reload;
pub mod runtime;
pub mod service;
pub mod source;
pub mod state;
pub mod velociraptor;
