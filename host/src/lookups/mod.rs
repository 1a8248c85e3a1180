//! Answers to the Velociraptor lookups rule modules make: from the offline
//! world file now, from the Velociraptor API later. Answers are JSON with
//! Velociraptor's field names and units.

mod native;
mod world;

use serde_json::Value;
pub use velonotify_core::host::{LookupError, ServerInfo};

pub use self::native::NativeHost;
pub use self::world::{World, WorldError};

/// A lookup's answer.
pub type LookupAnswer<T> = Result<T, LookupError>;

/// The lookups of `wit/host.wit`, per org.
pub trait Lookups: Send + Sync {
    fn server_info(&self, org_id: &str) -> ServerInfo;
    fn client_info(&self, org_id: &str, client_id: &str) -> LookupAnswer<Option<Value>>;
    fn client_metadata(&self, org_id: &str, client_id: &str) -> LookupAnswer<Option<Value>>;
    fn clients(&self, org_id: &str, label: Option<&str>) -> LookupAnswer<Vec<Value>>;
    fn flow(&self, org_id: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Option<Value>>;
    fn flow_results(
        &self,
        org_id: &str,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
    ) -> LookupAnswer<Vec<Value>>;
    fn flow_uploads(&self, org_id: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Vec<Value>>;
    fn hunt(&self, org_id: &str, hunt_id: &str) -> LookupAnswer<Option<Value>>;
    fn artifact(&self, org_id: &str, name: &str) -> LookupAnswer<Option<Value>>;
    fn event_tables(&self, org_id: &str) -> LookupAnswer<Value>;
    fn users(&self, org_id: &str) -> LookupAnswer<Vec<Value>>;
    fn monitoring_logs(&self, org_id: &str, client_id: &str, artifact: &str, since_ms: u64)
    -> LookupAnswer<Vec<Value>>;
    fn audit_log(&self, org_id: &str, since_us: u64) -> LookupAnswer<Vec<Value>>;
}
