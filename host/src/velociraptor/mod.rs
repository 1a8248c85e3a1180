//! Velociraptor's gRPC API: the api_client configuration, a client with
//! mutual TLS, and the VQL velonotify sends. Its users: the event stream
//! (`sources::velociraptor`), the lookups answered by the server
//! (`capabilities::lookups`) and the actions executed there
//! (`delivery::velociraptor`).

pub mod api_config;
pub mod client;
pub mod vql;

/// The messages and client of `host/proto/velociraptor_api.proto`.
#[allow(missing_debug_implementations, unused_qualifications, clippy::all)]
pub mod proto {
    tonic::include_proto!("proto");
}

/// The queue `alert()` writes to: stored on the server, read back after a
/// disconnect, and the queue of the host's own alerts.
pub const ALERTS_QUEUE: &str = "Server.Internal.Alerts";

/// The key velonotify adds to the alert rows it writes into the server's
/// `Server.Internal.Alerts` queue (and `Server.Velonotify.Forward` keeps),
/// so that it does not handle them a second time when they come back.
pub const PUSHED_MARK: &str = "velonotify_module";

/// `[velociraptor]`: the Velociraptor API, for events, lookups and actions.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelociraptorSection {
    /// The `api_client` YAML made by `velociraptor config api_client`.
    pub api_config: std::path::PathBuf,
    /// The name the server's certificate is checked against (default: the
    /// file's `pinned_server_name`, else `VelociraptorServer`).
    pub server_name: Option<String>,
    /// Seconds between heartbeat rows on the event stream (default 30);
    /// three missed heartbeats mean the stream is dead.
    pub heartbeat_s: Option<u64>,
    /// Seconds a lookup may take (default 10).
    pub lookup_timeout_s: Option<u64>,
    /// Seconds a lookup's answer is reused (default 30; 0: never).
    pub cache_ttl_s: Option<u64>,
    /// After a disconnect or a restart, server event queues are read back
    /// from the last row seen, at most this many seconds (default 86400).
    pub backfill_max_s: Option<u64>,
    /// Also write the alerts modules raise into the server's
    /// `Server.Internal.Alerts` queue (default false).
    #[serde(default)]
    pub push_alerts: bool,
}

/// Defaults of `[velociraptor]`.
pub const DEFAULT_HEARTBEAT_S: u64 = 30;
pub const DEFAULT_BACKFILL_MAX_S: u64 = 86_400;

pub use self::api_config::ApiClientConfig;
pub use self::client::{ApiClient, ApiError};
