//! The core `Host` over host-side lookups, without WebAssembly: the same
//! rule logic, called natively (tests compare its output with the
//! component's; benchmarks measure the difference).

use std::cell::RefCell;
use std::sync::Arc;

use serde_json::Value;
use velonotify_core::host::{Host, LogLevel, Lookup, ResultPage, ServerInfo};

use super::{HostFacts, Lookups};
use crate::state::StateStore;

/// A native host for one module and org.
pub struct NativeHost {
    pub module: String,
    pub org_id: String,
    pub now_us: u64,
    pub lookups: Arc<dyn Lookups>,
    pub facts: HostFacts,
    pub state: Arc<StateStore>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
}

impl std::fmt::Debug for NativeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeHost")
            .field("module", &self.module)
            .finish_non_exhaustive()
    }
}

impl NativeHost {
    pub fn new(module: &str, org_id: &str, lookups: Arc<dyn Lookups>, facts: HostFacts) -> Self {
        Self {
            module: module.to_string(),
            org_id: org_id.to_string(),
            now_us: 0,
            lookups,
            facts,
            state: Arc::new(StateStore::default()),
            logs: RefCell::default(),
        }
    }
}

impl Host for NativeHost {
    fn now_us(&self) -> u64 {
        self.now_us
    }
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
    fn server_info(&self) -> ServerInfo {
        self.facts.server_info(self.lookups.org_info(&self.org_id))
    }
    fn client_info(&self, client_id: &str) -> Lookup<Option<Value>> {
        self.lookups.client_info(&self.org_id, client_id)
    }
    fn client_metadata(&self, client_id: &str) -> Lookup<Option<Value>> {
        self.lookups.client_metadata(&self.org_id, client_id)
    }
    fn clients(&self, label: Option<&str>) -> Lookup<Vec<Value>> {
        self.lookups.clients(&self.org_id, label)
    }
    fn flow(&self, client_id: &str, flow_id: &str) -> Lookup<Option<Value>> {
        self.lookups.flow(&self.org_id, client_id, flow_id)
    }
    fn flow_results(
        &self,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> Lookup<ResultPage> {
        self.lookups
            .flow_results(&self.org_id, client_id, flow_id, source, max_rows, max_bytes)
    }
    fn flow_uploads(&self, client_id: &str, flow_id: &str) -> Lookup<Vec<Value>> {
        self.lookups.flow_uploads(&self.org_id, client_id, flow_id)
    }
    fn hunt(&self, hunt_id: &str) -> Lookup<Option<Value>> {
        self.lookups.hunt(&self.org_id, hunt_id)
    }
    fn artifact(&self, name: &str) -> Lookup<Option<Value>> {
        self.lookups.artifact(&self.org_id, name)
    }
    fn event_tables(&self) -> Lookup<Value> {
        self.lookups.event_tables(&self.org_id)
    }
    fn users(&self) -> Lookup<Vec<Value>> {
        self.lookups.users(&self.org_id)
    }
    fn monitoring_logs(&self, client_id: &str, artifact: &str, since_ms: u64) -> Lookup<Vec<Value>> {
        self.lookups
            .monitoring_logs(&self.org_id, client_id, artifact, since_ms, self.now_us / 1000)
    }
    fn audit_log(&self, since_us: u64) -> Lookup<Vec<Value>> {
        self.lookups.audit_log(&self.org_id, since_us)
    }
    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.get(&self.module, key, self.now_us)
    }
    fn state_put(&self, key: &str, value: &[u8], ttl_seconds: u32) {
        self.state
            .put(&self.module, key, value.to_vec(), ttl_seconds, self.now_us);
    }
}
