//! Velociraptor's gRPC API: the api_client configuration, a client with
//! mutual TLS, the VQL velonotify sends, the event streams of `run`, the
//! lookups answered by the server, and (in `delivery`) the actions it
//! executes there. Field facts: the project's spec/velociraptor-api.md.

pub mod api_config;
pub mod client;
pub mod events;
pub mod lookups;
pub mod vql;

/// The messages and service of `host/proto/velociraptor_api.proto`, client
/// and server (the server side serves the tests' stand-in for Velociraptor).
#[allow(missing_debug_implementations, unused_qualifications, clippy::all)]
pub mod proto {
    tonic::include_proto!("proto");
}

pub use self::api_config::ApiClientConfig;
pub use self::client::{ApiClient, ApiError};
pub use self::lookups::ApiLookups;
