//! The `lookups` interface: what a module may read of Velociraptor.
//!
//! Answers come from a [`LookupSource`]: the offline world file
//! ([`World`], `[lookups] world`, and replays) or the Velociraptor API
//! ([`ApiLookups`], `[velociraptor]`). Answers are JSON with Velociraptor's
//! field names and units.
//!
//! Policy: a module's `lookups = [...]` names the lookups it may make
//! ([`LookupPolicy`], checked when the module loads); the others answer
//! `denied`. Without it, every lookup is allowed.
//!
//! Adding a lookup: its function in `wit/lookups.wit`, a [`LookupName`],
//! a method of [`LookupSource`] answered by [`World`] and [`ApiLookups`], the
//! two interface impls at the end of this file, and in the guest SDK
//! (`velonotify_core::host::Lookups` and the SDK's `WitHost`).

mod api;
mod world;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;
use velonotify_core::host::{Answer, FileBytes, Lookup, LookupError, ResultPage, ServerInfo};
use velonotify_core::velociraptor::activity;

pub use self::api::{ApiLookups, DEFAULT_CACHE_TTL_S, DEFAULT_LOOKUP_TIMEOUT_S};
pub use self::world::{World, WorldError};
use super::CallContext;
use crate::contract;

/// A lookup's answer.
pub type LookupAnswer<T> = Result<T, LookupError>;

/// The lookups, by the names a module's configuration uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LookupName {
    ClientInfo,
    ClientMetadata,
    Clients,
    Flow,
    FlowResults,
    FlowUploads,
    Hunt,
    Artifact,
    EventTables,
    Users,
    MonitoringLogs,
    AuditLog,
    ServerFile,
    RunningHunts,
    ActiveFlows,
}

impl LookupName {
    pub const ALL: [LookupName; 15] = [
        LookupName::ClientInfo,
        LookupName::ClientMetadata,
        LookupName::Clients,
        LookupName::Flow,
        LookupName::FlowResults,
        LookupName::FlowUploads,
        LookupName::Hunt,
        LookupName::Artifact,
        LookupName::EventTables,
        LookupName::Users,
        LookupName::MonitoringLogs,
        LookupName::AuditLog,
        LookupName::ServerFile,
        LookupName::RunningHunts,
        LookupName::ActiveFlows,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LookupName::ClientInfo => "client_info",
            LookupName::ClientMetadata => "client_metadata",
            LookupName::Clients => "clients",
            LookupName::Flow => "flow",
            LookupName::FlowResults => "flow_results",
            LookupName::FlowUploads => "flow_uploads",
            LookupName::Hunt => "hunt",
            LookupName::Artifact => "artifact",
            LookupName::EventTables => "event_tables",
            LookupName::Users => "users",
            LookupName::MonitoringLogs => "monitoring_logs",
            LookupName::AuditLog => "audit_log",
            LookupName::ServerFile => "server_file",
            LookupName::RunningHunts => "running_hunts",
            LookupName::ActiveFlows => "active_flows",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == name)
    }
}

/// Which lookups a module may make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LookupPolicy {
    /// None: every lookup.
    allowed: Option<BTreeSet<LookupName>>,
}

impl LookupPolicy {
    /// The policy of a module's `lookups = [...]` (None: every lookup).
    /// Fails naming the first entry that is not a lookup.
    pub fn from_config(names: Option<&[String]>) -> Result<Self, String> {
        let Some(names) = names else {
            return Ok(Self::default());
        };
        let allowed = names
            .iter()
            .map(|name| {
                LookupName::parse(name).ok_or_else(|| {
                    let known: Vec<&str> = LookupName::ALL.iter().map(|n| n.as_str()).collect();
                    format!("unknown lookup {name:?} (known: {})", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed: Some(allowed) })
    }

    /// Without `lookups`, every lookup but `server_file`: reading the
    /// server's file store (any client's uploads) is granted by name only.
    fn check(&self, name: LookupName) -> Result<(), LookupError> {
        let allowed = match &self.allowed {
            Some(allowed) => allowed.contains(&name),
            None => name != LookupName::ServerFile,
        };
        match allowed {
            true => Ok(()),
            false => Err(LookupError::Denied(format!(
                "lookup {} is not in the module's `lookups`",
                name.as_str()
            ))),
        }
    }
}

/// The org of events that name none, unless `[server] org_id` says.
pub const DEFAULT_ORG: &str = "root";

/// `[server]`: facts about the Velociraptor server.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `GUI.public_url`, for links in e-mails.
    pub public_url: Option<String>,
    /// The org of events that do not name one.
    pub org_id: Option<String>,
    /// velonotify's own address as e-mail readers reach it (the `[api]`
    /// listener, or a proxy in front of it): set, each e-mail ends with a
    /// "Silence similar for 2 h" link to its page there.
    pub velonotify_url: Option<String>,
}

impl ServerSection {
    /// The org of events that do not name one.
    pub fn org(&self) -> &str {
        self.org_id.as_deref().unwrap_or(DEFAULT_ORG)
    }
}

/// `[lookups]`: where answers come from when no Velociraptor server does.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupsSection {
    /// An offline world file.
    pub world: Option<std::path::PathBuf>,
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

/// Where answers come from: a Velociraptor server or the world file. Each
/// lookup is asked for one org (`wit/lookups.wit` says what each answers).
pub trait LookupSource: Send + Sync {
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
    /// Audit rows written after `since_us` and up to `until_us` (the
    /// host's time: a replay's world holds rows of its future), newest
    /// first.
    fn audit_log(&self, org_id: &str, since_us: u64, until_us: u64) -> LookupAnswer<Vec<Value>>;
    /// The file of the file store at `components` (made by
    /// [`file_store_path`]), read up to `max_bytes`.
    fn server_file(&self, org_id: &str, components: &[String], max_bytes: u64) -> LookupAnswer<Option<FileBytes>>;
    /// The org's running hunts created up to `until_us` (the host's time,
    /// as for the audit log), in any order ([`activity::newest_hunts`]
    /// bounds them).
    fn running_hunts(&self, org_id: &str, until_us: u64) -> LookupAnswer<Vec<Value>>;
    /// The collections in hand and unfinished, created after `after_us`
    /// and up to `before_us`, in any order ([`activity::oldest_flows`]
    /// bounds them).
    fn active_flows(&self, org_id: &str, after_us: u64, before_us: u64) -> LookupAnswer<Vec<Value>>;

    /// Applies a label change the way the server would, for sources that
    /// stand in for a server (a replay's world). A real server sees the
    /// change when the action is delivered.
    fn apply_label_change(&self, _org_id: &str, _client_id: &str, _add: bool, _labels: &[String]) {}
}

/// A file store path as the API takes it: its components, without empty
/// ones and `.` (so `/downloads//x` and `downloads/x` name one file).
/// `..` is kept: the server refuses it, and velonotify does not guess what
/// it would mean.
pub fn file_store_path(path: &str) -> Vec<String> {
    path.split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// The first rows of a result set, at most `max_rows` of them and at most
/// `max_bytes` of JSON, with the set's size.
/// Audit rows one `audit_log` answer holds at most, and their JSON bytes.
pub const MAX_AUDIT_ROWS: usize = 5_000;
pub const MAX_AUDIT_BYTES: usize = 16 << 20;

/// The audit rows written after `since_ms` and up to `until_ms` (None: no
/// bound), as `audit_log` answers: the oldest [`MAX_AUDIT_ROWS`] (and
/// [`MAX_AUDIT_BYTES`]) at most, cut only between two `_ts` (the first
/// `_ts`'s rows whole, however many), newest first.
pub fn audit_page(rows: &[Value], since_ms: u64, until_ms: Option<u64>) -> Vec<Value> {
    use velonotify_core::velociraptor::audit_written_ms as written_ms;
    let mut page: Vec<(u64, &Value)> = rows
        .iter()
        .map(|row| (written_ms(row), row))
        .filter(|(ms, _)| *ms > since_ms && until_ms.is_none_or(|until| *ms <= until))
        .collect();
    page.sort_by_key(|(ms, _)| *ms);
    let mut bytes = 0;
    let mut end = page.len();
    for (i, (_, row)) in page.iter().enumerate() {
        bytes += row.to_string().len();
        if i >= MAX_AUDIT_ROWS || bytes > MAX_AUDIT_BYTES {
            end = i;
            break;
        }
    }
    if end < page.len() {
        // The rows of the `_ts` the bound falls in may not all be here
        // (a server's LIMIT cuts anywhere): they come whole next time.
        let cut_at = page[end].0;
        let whole = page.partition_point(|(ms, _)| *ms < cut_at);
        end = if whole > 0 {
            whole
        } else {
            page.partition_point(|(ms, _)| *ms <= cut_at)
        };
    }
    page.truncate(end);
    page.into_iter().rev().map(|(_, row)| row.clone()).collect()
}

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

/// One module's lookups: its org, its source and its policy.
#[derive(Clone)]
pub struct ModuleLookups {
    pub org_id: String,
    pub source: Arc<dyn LookupSource>,
    pub policy: LookupPolicy,
    pub facts: HostFacts,
}

impl std::fmt::Debug for ModuleLookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleLookups")
            .field("org_id", &self.org_id)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl CallContext {
    /// The source's answer for this module's org, if the policy allows; the
    /// time it takes is the host's, not the call's (see `CallBudget`).
    fn ask<T>(&self, name: LookupName, answer: impl FnOnce(&dyn LookupSource, &str) -> Lookup<T>) -> Lookup<T> {
        self.lookups.policy.check(name)?;
        let started = std::time::Instant::now();
        let answered = answer(self.lookups.source.as_ref(), &self.lookups.org_id);
        self.waiting.set(self.waiting.get() + started.elapsed());
        answered
    }
}

/// An empty id asks for nothing: the server would read `clients(client_id='')`
/// as every client, so such lookups answer "none" without asking.
impl velonotify_core::host::Lookups for CallContext {
    fn server_info(&self) -> ServerInfo {
        let org = self.lookups.source.org_info(&self.lookups.org_id);
        self.lookups.facts.server_info(org)
    }
    fn client_info(&self, client_id: &str) -> Lookup<Option<Value>> {
        if client_id.is_empty() {
            return Ok(None);
        }
        self.ask(LookupName::ClientInfo, |s, org| s.client_info(org, client_id))
    }
    fn client_metadata(&self, client_id: &str) -> Lookup<Option<Value>> {
        if client_id.is_empty() {
            return Ok(None);
        }
        self.ask(LookupName::ClientMetadata, |s, org| s.client_metadata(org, client_id))
    }
    fn clients(&self, label: Option<&str>) -> Lookup<Vec<Value>> {
        self.ask(LookupName::Clients, |s, org| s.clients(org, label))
    }
    fn flow(&self, client_id: &str, flow_id: &str) -> Lookup<Option<Answer>> {
        if client_id.is_empty() || flow_id.is_empty() {
            return Ok(None);
        }
        let flow = self.ask(LookupName::Flow, |s, org| s.flow(org, client_id, flow_id))?;
        Ok(flow.as_ref().map(Answer::from_value))
    }
    fn flow_results(
        &self,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> Lookup<ResultPage> {
        if client_id.is_empty() || flow_id.is_empty() {
            return Ok(ResultPage::default());
        }
        self.ask(LookupName::FlowResults, |s, org| {
            s.flow_results(org, client_id, flow_id, source, max_rows, max_bytes)
        })
    }
    fn flow_uploads(&self, client_id: &str, flow_id: &str) -> Lookup<Vec<Value>> {
        if client_id.is_empty() || flow_id.is_empty() {
            return Ok(Vec::new());
        }
        self.ask(LookupName::FlowUploads, |s, org| {
            s.flow_uploads(org, client_id, flow_id)
        })
    }
    fn hunt(&self, hunt_id: &str) -> Lookup<Option<Value>> {
        if hunt_id.is_empty() {
            return Ok(None);
        }
        self.ask(LookupName::Hunt, |s, org| s.hunt(org, hunt_id))
    }
    fn artifact(&self, name: &str) -> Lookup<Option<Value>> {
        if name.is_empty() {
            return Ok(None);
        }
        self.ask(LookupName::Artifact, |s, org| s.artifact(org, name))
    }
    fn event_tables(&self) -> Lookup<Value> {
        self.ask(LookupName::EventTables, |s, org| s.event_tables(org))
    }
    fn users(&self) -> Lookup<Vec<Value>> {
        self.ask(LookupName::Users, |s, org| s.users(org))
    }
    fn monitoring_logs(&self, client_id: &str, artifact: &str, since_ms: u64) -> Lookup<Vec<Answer>> {
        if client_id.is_empty() || artifact.is_empty() {
            return Ok(Vec::new());
        }
        let until_ms = self.time.now_us() / 1000;
        let rows = self.ask(LookupName::MonitoringLogs, |s, org| {
            s.monitoring_logs(org, client_id, artifact, since_ms, until_ms)
        })?;
        Ok(rows.iter().map(Answer::from_value).collect())
    }
    fn audit_log(&self, since_us: u64) -> Lookup<Vec<Value>> {
        let until_us = self.time.now_us();
        self.ask(LookupName::AuditLog, |s, org| s.audit_log(org, since_us, until_us))
    }
    fn server_file(&self, path: &str, max_bytes: u64) -> Lookup<Option<FileBytes>> {
        let components = file_store_path(path);
        if components.is_empty() {
            return Ok(None);
        }
        // No file larger than an e-mail may be is read, whatever the module asks.
        let max_bytes = max_bytes.min(self.lookups.facts.max_email_bytes);
        self.ask(LookupName::ServerFile, |s, org| {
            s.server_file(org, &components, max_bytes)
        })
    }
    fn running_hunts(&self) -> Lookup<Vec<Value>> {
        let until_us = self.time.now_us();
        self.ask(LookupName::RunningHunts, |s, org| {
            s.running_hunts(org, until_us).map(activity::newest_hunts)
        })
    }
    /// Nothing created after the host's time (a replay's world holds
    /// collections of its future).
    fn active_flows(&self, created_after_us: u64, created_before_us: u64) -> Lookup<Vec<Value>> {
        let before_us = created_before_us.min(self.time.now_us());
        if before_us <= created_after_us {
            return Ok(Vec::new());
        }
        self.ask(LookupName::ActiveFlows, |s, org| {
            let flows = s.active_flows(org, created_after_us, before_us)?;
            Ok(activity::oldest_flows(flows, created_after_us, before_us))
        })
    }
}

/// Lookup errors and answers as the interface passes them: JSON text.
fn wit_error(e: LookupError) -> contract::LookupError {
    match e {
        LookupError::Unavailable(m) => contract::LookupError::Unavailable(m),
        LookupError::Denied(m) => contract::LookupError::Denied(m),
    }
}

fn one(answer: Lookup<Option<Value>>) -> Result<Option<String>, contract::LookupError> {
    answer.map(|v| v.map(|v| v.to_string())).map_err(wit_error)
}

fn many(answer: Lookup<Vec<Value>>) -> Result<Vec<String>, contract::LookupError> {
    answer
        .map(|rows| rows.iter().map(Value::to_string).collect())
        .map_err(wit_error)
}

impl contract::lookups::Host for CallContext {
    fn server(&mut self) -> contract::ServerInfo {
        let info = velonotify_core::host::Lookups::server_info(self);
        contract::ServerInfo {
            org_id: info.org_id,
            org_name: info.org_name,
            public_url: info.public_url,
            default_sender: info.default_sender,
            max_email_bytes: info.max_email_bytes,
        }
    }
    fn client_info(&mut self, client_id: String) -> Result<Option<String>, contract::LookupError> {
        one(velonotify_core::host::Lookups::client_info(self, &client_id))
    }
    fn client_metadata(&mut self, client_id: String) -> Result<Option<String>, contract::LookupError> {
        one(velonotify_core::host::Lookups::client_metadata(self, &client_id))
    }
    fn clients(&mut self, label: Option<String>) -> Result<Vec<String>, contract::LookupError> {
        many(velonotify_core::host::Lookups::clients(self, label.as_deref()))
    }
    fn flow(&mut self, client_id: String, flow_id: String) -> Result<Option<String>, contract::LookupError> {
        let flow = velonotify_core::host::Lookups::flow(self, &client_id, &flow_id).map_err(wit_error)?;
        Ok(flow.map(Answer::into_text))
    }
    fn flow_results(
        &mut self,
        client_id: String,
        flow_id: String,
        source: String,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> Result<contract::ResultPage, contract::LookupError> {
        let page =
            velonotify_core::host::Lookups::flow_results(self, &client_id, &flow_id, &source, max_rows, max_bytes)
                .map_err(wit_error)?;
        Ok(contract::ResultPage {
            rows: page.rows.iter().map(Value::to_string).collect(),
            total_rows: page.total_rows,
        })
    }
    fn flow_uploads(&mut self, client_id: String, flow_id: String) -> Result<Vec<String>, contract::LookupError> {
        many(velonotify_core::host::Lookups::flow_uploads(self, &client_id, &flow_id))
    }
    fn hunt(&mut self, hunt_id: String) -> Result<Option<String>, contract::LookupError> {
        one(velonotify_core::host::Lookups::hunt(self, &hunt_id))
    }
    fn artifact(&mut self, name: String) -> Result<Option<String>, contract::LookupError> {
        one(velonotify_core::host::Lookups::artifact(self, &name))
    }
    fn event_tables(&mut self) -> Result<String, contract::LookupError> {
        velonotify_core::host::Lookups::event_tables(self)
            .map(|v| v.to_string())
            .map_err(wit_error)
    }
    fn users(&mut self) -> Result<Vec<String>, contract::LookupError> {
        many(velonotify_core::host::Lookups::users(self))
    }
    fn monitoring_logs(
        &mut self,
        client_id: String,
        artifact: String,
        since_ms: u64,
    ) -> Result<Vec<String>, contract::LookupError> {
        let rows = velonotify_core::host::Lookups::monitoring_logs(self, &client_id, &artifact, since_ms)
            .map_err(wit_error)?;
        Ok(rows.into_iter().map(Answer::into_text).collect())
    }
    fn audit_log(&mut self, since_us: u64) -> Result<Vec<String>, contract::LookupError> {
        many(velonotify_core::host::Lookups::audit_log(self, since_us))
    }
    fn server_file(
        &mut self,
        path: String,
        max_bytes: u64,
    ) -> Result<Option<contract::FileBytes>, contract::LookupError> {
        let file = velonotify_core::host::Lookups::server_file(self, &path, max_bytes).map_err(wit_error)?;
        Ok(file.map(|f| contract::FileBytes {
            data: f.data,
            truncated: f.truncated,
        }))
    }
    fn running_hunts(&mut self) -> Result<Vec<String>, contract::LookupError> {
        many(velonotify_core::host::Lookups::running_hunts(self))
    }
    fn active_flows(
        &mut self,
        created_after_us: u64,
        created_before_us: u64,
    ) -> Result<Vec<String>, contract::LookupError> {
        many(velonotify_core::host::Lookups::active_flows(
            self,
            created_after_us,
            created_before_us,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::{Grants, outbound::OutboundPolicy, state::StateCapability};
    use crate::clock::CallTime;
    use velonotify_core::host::Lookups as _;

    fn audit_rows(count: u64, per_ms: u64, details_bytes: usize) -> Vec<Value> {
        let details = "x".repeat(details_bytes);
        (0..count)
            .map(|i| serde_json::json!({"operation": "Login", "details": details, "_ts": 1_778_400_000_000 + i / per_ms}))
            .collect()
    }

    fn ts(row: &Value) -> u64 {
        velonotify_core::velociraptor::audit_written_ms(row)
    }

    /// A backlog after a long stop comes a page at a time, the oldest
    /// first, cut only between two `_ts`: a reader that moves its cursor to
    /// the newest row it was given misses none.
    #[test]
    fn an_audit_answer_is_bounded_and_never_parts_the_rows_of_one_ts() {
        let rows = audit_rows(12_000, 3, 10);
        let page = audit_page(&rows, 0, None);
        assert!(
            page.len() <= MAX_AUDIT_ROWS && page.len() > MAX_AUDIT_ROWS - 3,
            "{}",
            page.len()
        );
        assert!(page.windows(2).all(|w| ts(&w[0]) >= ts(&w[1])), "newest first");
        let newest = ts(&page[0]);
        let given = page.iter().filter(|r| ts(r) == newest).count();
        let written = rows.iter().filter(|r| ts(r) == newest).count();
        assert_eq!(given, written, "the newest _ts's rows whole");
        let next = audit_page(&rows, newest, None);
        assert_eq!(ts(next.last().unwrap()), newest + 1, "the next page starts right after");

        let one_ts = audit_rows(6_000, 6_000, 10);
        assert_eq!(audit_page(&one_ts, 0, None).len(), 6_000, "one _ts's rows come whole");

        let big = audit_rows(3_000, 1, 10_000);
        let page = audit_page(&big, 0, None);
        let bytes: usize = page.iter().map(|r| r.to_string().len()).sum();
        assert!(
            bytes <= MAX_AUDIT_BYTES && page.len() > 1_000,
            "{} rows, {bytes} bytes",
            page.len()
        );
        assert_eq!(
            audit_page(&big, 0, Some(1_778_400_000_009)).len(),
            10,
            "up to the host's time"
        );
    }

    #[test]
    fn the_audit_query_asks_one_row_more_than_an_answer_holds() {
        let limit = format!("LIMIT {}", MAX_AUDIT_ROWS + 1);
        assert!(crate::velociraptor::vql::AUDIT_LOG.ends_with(&limit));
    }

    fn context(policy: LookupPolicy) -> CallContext {
        let world: Arc<dyn LookupSource> = Arc::new(World::parse(r#"{"users": [{"name": "ann"}]}"#).unwrap());
        let grants = Grants {
            lookups: ModuleLookups {
                org_id: "root".into(),
                source: world,
                policy,
                facts: HostFacts {
                    default_sender: "v@example.org".into(),
                    max_email_bytes: 1 << 20,
                },
            },
            state: Arc::new(StateCapability::in_memory()),
            state_quota_bytes: 1 << 20,
            outbound: OutboundPolicy::default(),
            keeps_debug: true,
            links: None,
        };
        CallContext::new("m", &grants, CallTime::default())
    }

    #[test]
    fn only_the_allowed_lookups_are_answered() {
        let policy = LookupPolicy::from_config(Some(&["users".to_string()])).unwrap();
        let ctx = context(policy);
        assert_eq!(ctx.users().unwrap().len(), 1);
        assert_eq!(
            ctx.client_info("C.1"),
            Err(LookupError::Denied(
                "lookup client_info is not in the module's `lookups`".into()
            ))
        );
        assert_eq!(context(LookupPolicy::default()).client_info("C.1"), Ok(None));
        assert!(
            matches!(
                context(LookupPolicy::default()).server_file("/downloads/x", 10),
                Err(LookupError::Denied(_))
            ),
            "the file store only by name"
        );
    }

    /// A source that fails the test if it is asked with an empty id.
    struct NoEmptyIds;

    impl LookupSource for NoEmptyIds {
        fn org_info(&self, org_id: &str) -> OrgInfo {
            OrgInfo {
                org_id: org_id.into(),
                org_name: org_id.into(),
                public_url: None,
            }
        }
        fn client_info(&self, _: &str, id: &str) -> LookupAnswer<Option<Value>> {
            assert!(!id.is_empty(), "asked for client ''");
            Ok(None)
        }
        fn client_metadata(&self, _: &str, id: &str) -> LookupAnswer<Option<Value>> {
            assert!(!id.is_empty(), "asked for client ''");
            Ok(None)
        }
        fn clients(&self, _: &str, _: Option<&str>) -> LookupAnswer<Vec<Value>> {
            Ok(Vec::new())
        }
        fn flow(&self, _: &str, c: &str, f: &str) -> LookupAnswer<Option<Value>> {
            assert!(!c.is_empty() && !f.is_empty());
            Ok(None)
        }
        fn flow_results(
            &self,
            _: &str,
            c: &str,
            f: &str,
            _: &str,
            _: Option<u32>,
            _: Option<u64>,
        ) -> LookupAnswer<ResultPage> {
            assert!(!c.is_empty() && !f.is_empty());
            Ok(ResultPage::default())
        }
        fn flow_uploads(&self, _: &str, c: &str, f: &str) -> LookupAnswer<Vec<Value>> {
            assert!(!c.is_empty() && !f.is_empty());
            Ok(Vec::new())
        }
        fn hunt(&self, _: &str, h: &str) -> LookupAnswer<Option<Value>> {
            assert!(!h.is_empty());
            Ok(None)
        }
        fn artifact(&self, _: &str, a: &str) -> LookupAnswer<Option<Value>> {
            assert!(!a.is_empty());
            Ok(None)
        }
        fn event_tables(&self, _: &str) -> LookupAnswer<Value> {
            Ok(Value::Null)
        }
        fn users(&self, _: &str) -> LookupAnswer<Vec<Value>> {
            Ok(Vec::new())
        }
        fn monitoring_logs(&self, _: &str, c: &str, a: &str, _: u64, _: u64) -> LookupAnswer<Vec<Value>> {
            assert!(!c.is_empty() && !a.is_empty());
            Ok(Vec::new())
        }
        fn audit_log(&self, _: &str, _: u64, _: u64) -> LookupAnswer<Vec<Value>> {
            Ok(Vec::new())
        }
        fn server_file(&self, _: &str, path: &[String], _: u64) -> LookupAnswer<Option<FileBytes>> {
            panic!("asked for file {path:?}")
        }
        fn running_hunts(&self, _: &str, _: u64) -> LookupAnswer<Vec<Value>> {
            Ok(Vec::new())
        }
        fn active_flows(&self, _: &str, _: u64, _: u64) -> LookupAnswer<Vec<Value>> {
            Ok(Vec::new())
        }
    }

    /// `clients(client_id='')` lists every client on a real server: a
    /// module asking about an empty id gets "none" without the question
    /// reaching the source.
    #[test]
    fn empty_ids_are_never_asked() {
        let grants = Grants::native(
            Arc::new(NoEmptyIds),
            "root",
            HostFacts {
                default_sender: "v@example.org".into(),
                max_email_bytes: 1,
            },
        );
        let ctx = CallContext::new("m", &grants, CallTime::default());
        assert_eq!(ctx.client_info(""), Ok(None));
        assert_eq!(ctx.client_metadata(""), Ok(None));
        assert_eq!(ctx.flow("", "F.1"), Ok(None));
        assert_eq!(ctx.flow("C.1", ""), Ok(None));
        assert_eq!(
            ctx.flow_results("", "F.1", "X", None, None).map(|p| p.rows.len()),
            Ok(0)
        );
        assert_eq!(ctx.flow_uploads("C.1", ""), Ok(vec![]));
        assert_eq!(ctx.hunt(""), Ok(None));
        assert_eq!(ctx.artifact(""), Ok(None));
        assert_eq!(ctx.monitoring_logs("", "A", 0), Ok(vec![]));
        assert_eq!(ctx.client_info("C.1"), Ok(None), "a real id is asked");
    }

    #[test]
    fn an_unknown_lookup_name_is_refused() {
        let err = LookupPolicy::from_config(Some(&["clients_info".to_string()])).unwrap_err();
        assert!(err.starts_with("unknown lookup \"clients_info\""), "{err}");
    }
}
