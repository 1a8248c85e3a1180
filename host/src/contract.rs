//! The `rule-module` world of `wit/` as Rust types and host traits: what
//! every other room of the host speaks when it talks about a module.
//!
//! Each imported interface belongs to one capability (`clock`, `links`,
//! `log`, `lookups`, `state`: see [`crate::capabilities`]), which implements its
//! host trait; `actions` and `types` hold the records that cross the
//! boundary.

wasmtime::component::bindgen!({
    world: "rule-module",
    path: "../wit",
    additional_derives: [PartialEq, Eq],
});

// The world's own types (`Action`, `Event`, `Failure`, `ModuleInfo`,
// `Setup`) are already at this module's root.
pub use self::velociraptor::notify::actions::{Alert, Email, LabelChange, LabelOp, UserMessage, Webhook};
pub use self::velociraptor::notify::log::LogLevel;
pub use self::velociraptor::notify::lookups::{FileBytes, LookupError, ResultPage, ServerInfo};
pub use self::velociraptor::notify::types::{ColumnTest, Interest, Param, ParamError, ParamKind, ValueTest};
pub use self::velociraptor::notify::{clock, links, log, lookups, state};
