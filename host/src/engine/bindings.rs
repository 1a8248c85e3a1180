//! Host bindings of the `rule-module` world, and the host interface that
//! rule modules import, implemented over [`CallContext`].

use wasmtime::component::HasSelf;

use super::sandbox::StoreData;
use crate::lookups::LookupAnswer;

wasmtime::component::bindgen!({
    world: "rule-module",
    path: "../wit",
    additional_derives: [PartialEq, Eq],
});

// The world's own types (Action, Event, Failure, ModuleInfo, Setup) are
// already at this module's root.
pub use self::velociraptor::notify::types::{Alert, Email, LabelChange, LabelOp, LogLevel, ParamKind};
use self::velociraptor::notify::types::{LookupError, ResultPage, ServerInfo};

/// Adds the host interface to `linker`.
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<StoreData>) -> wasmtime::Result<()> {
    RuleModule::add_to_linker::<StoreData, HasSelf<StoreData>>(linker, |data| data)
}

fn lookup_error(e: velonotify_core::host::LookupError) -> LookupError {
    match e {
        velonotify_core::host::LookupError::Unavailable(m) => LookupError::Unavailable(m),
        velonotify_core::host::LookupError::Denied(m) => LookupError::Denied(m),
    }
}

fn one(answer: LookupAnswer<Option<serde_json::Value>>) -> Result<Option<String>, LookupError> {
    answer.map(|v| v.map(|v| v.to_string())).map_err(lookup_error)
}

fn many(answer: LookupAnswer<Vec<serde_json::Value>>) -> Result<Vec<String>, LookupError> {
    answer
        .map(|rows| rows.iter().map(|r| r.to_string()).collect())
        .map_err(lookup_error)
}

impl velociraptor::notify::types::Host for StoreData {}

impl velociraptor::notify::host::Host for StoreData {
    fn now_us(&mut self) -> u64 {
        self.call.now_us
    }

    fn log(&mut self, level: LogLevel, message: String) {
        self.call.log(level, message);
    }

    fn server(&mut self) -> ServerInfo {
        let info = self
            .call
            .facts
            .server_info(self.call.lookups.org_info(&self.call.org_id));
        ServerInfo {
            org_id: info.org_id,
            org_name: info.org_name,
            public_url: info.public_url,
            default_sender: info.default_sender,
            max_email_bytes: info.max_email_bytes,
        }
    }

    fn client_info(&mut self, client_id: String) -> Result<Option<String>, LookupError> {
        one(self.call.lookups.client_info(&self.call.org_id, &client_id))
    }

    fn client_metadata(&mut self, client_id: String) -> Result<Option<String>, LookupError> {
        one(self.call.lookups.client_metadata(&self.call.org_id, &client_id))
    }

    fn clients(&mut self, label: Option<String>) -> Result<Vec<String>, LookupError> {
        many(self.call.lookups.clients(&self.call.org_id, label.as_deref()))
    }

    fn flow(&mut self, client_id: String, flow_id: String) -> Result<Option<String>, LookupError> {
        one(self.call.lookups.flow(&self.call.org_id, &client_id, &flow_id))
    }

    fn flow_results(
        &mut self,
        client_id: String,
        flow_id: String,
        source: String,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> Result<ResultPage, LookupError> {
        let page = self
            .call
            .lookups
            .flow_results(&self.call.org_id, &client_id, &flow_id, &source, max_rows, max_bytes)
            .map_err(lookup_error)?;
        Ok(ResultPage {
            rows: page.rows.iter().map(|r| r.to_string()).collect(),
            total_rows: page.total_rows,
        })
    }

    fn flow_uploads(&mut self, client_id: String, flow_id: String) -> Result<Vec<String>, LookupError> {
        many(self.call.lookups.flow_uploads(&self.call.org_id, &client_id, &flow_id))
    }

    fn hunt(&mut self, hunt_id: String) -> Result<Option<String>, LookupError> {
        one(self.call.lookups.hunt(&self.call.org_id, &hunt_id))
    }

    fn artifact(&mut self, name: String) -> Result<Option<String>, LookupError> {
        one(self.call.lookups.artifact(&self.call.org_id, &name))
    }

    fn event_tables(&mut self) -> Result<String, LookupError> {
        self.call
            .lookups
            .event_tables(&self.call.org_id)
            .map(|v| v.to_string())
            .map_err(lookup_error)
    }

    fn users(&mut self) -> Result<Vec<String>, LookupError> {
        many(self.call.lookups.users(&self.call.org_id))
    }

    fn monitoring_logs(
        &mut self,
        client_id: String,
        artifact: String,
        since_ms: u64,
    ) -> Result<Vec<String>, LookupError> {
        many(self.call.lookups.monitoring_logs(
            &self.call.org_id,
            &client_id,
            &artifact,
            since_ms,
            self.call.now_us / 1000,
        ))
    }

    fn audit_log(&mut self, since_us: u64) -> Result<Vec<String>, LookupError> {
        many(self.call.lookups.audit_log(&self.call.org_id, since_us))
    }

    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.call.state.get(&self.call.module, &key, self.call.now_us)
    }

    fn state_put(&mut self, key: String, value: Vec<u8>, ttl_seconds: u32) {
        let now = self.call.now_us;
        self.call.state.put(&self.call.module, &key, value, ttl_seconds, now);
    }
}
