//! Answers to the Velociraptor lookups rule modules make: from the offline
//! world file now, from the Velociraptor API later. Answers are JSON with
//! Velociraptor's field names and units.

mod native;
mod restricted;
mod world;

use serde_json::Value;
pub use velonotify_core::host::{LookupError, ResultPage, ServerInfo};

pub use self::native::NativeHost;
pub use self::restricted::{LOOKUP_NAMES, RestrictedLookups};
pub use self::world::{World, WorldError};

/// A lookup's answer.
pub type LookupAnswer<T> = Result<T, LookupError>;

/// The first rows of a result set, at most `max_rows` of them and at most
/// `max_bytes` of JSON, with the set's size.
pub fn result_page(rows: &[Value], max_rows: Option<u32>, max_bytes: Option<u64>, total_rows: u64) -> ResultPage {
    let max_rows = max_rows.map_or(usize::MAX, |m| m as usize);
    let mut budget = max_bytes.unwrap_or(u64::MAX);
    let mut page = Vec::new();
    for row in rows.iter().take(max_rows) {
        let size = row.to_string().len() as u64;
        if size > budget {
            break;
        }
        budget -= size;
        page.push(row.clone());
    }
    ResultPage { rows: page, total_rows }
}

/// Facts about a Velociraptor org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgInfo {
    pub org_id: String,
    pub org_name: String,
    /// The GUI's public URL, for links.
    pub public_url: Option<String>,
}

/// Facts about this host that modules are told (from the configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The From address of modules that set none.
    pub default_sender: String,
    /// The largest e-mail the host accepts.
    pub max_email_bytes: u64,
}

impl HostFacts {
    /// What a module's `server()` call answers for `org`.
    pub fn server_info(&self, org: OrgInfo) -> ServerInfo {
        ServerInfo {
            org_id: org.org_id,
            org_name: org.org_name,
            public_url: org.public_url,
            default_sender: self.default_sender.clone(),
            max_email_bytes: self.max_email_bytes,
        }
    }
}

/// The lookups of `wit/host.wit`, per org.
pub trait Lookups: Send + Sync {
    fn org_info(&self, org_id: &str) -> OrgInfo;
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
        max_bytes: Option<u64>,
    ) -> LookupAnswer<ResultPage>;
    fn flow_uploads(&self, org_id: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Vec<Value>>;
    fn hunt(&self, org_id: &str, hunt_id: &str) -> LookupAnswer<Option<Value>>;
    fn artifact(&self, org_id: &str, name: &str) -> LookupAnswer<Option<Value>>;
    fn event_tables(&self, org_id: &str) -> LookupAnswer<Value>;
    fn users(&self, org_id: &str) -> LookupAnswer<Vec<Value>>;
    /// Rows written after `since_ms` and up to `until_ms` (the host's
    /// clock: a replay must not see log lines written after its "now").
    fn monitoring_logs(
        &self,
        org_id: &str,
        client_id: &str,
        artifact: &str,
        since_ms: u64,
        until_ms: u64,
    ) -> LookupAnswer<Vec<Value>>;
    fn audit_log(&self, org_id: &str, since_us: u64) -> LookupAnswer<Vec<Value>>;

    /// Applies a label change the way the server would, for lookups that
    /// stand in for a server (a replay's world). Lookups answered by a real
    /// server see the change when the action is delivered.
    fn apply_label_change(&self, _org_id: &str, _client_id: &str, _add: bool, _labels: &[String]) {}
}
