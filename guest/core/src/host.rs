//! What a rule sees of the host: the event, the clock, the log, the
//! Velociraptor lookups, its state and the links it may put in e-mails
//! (the guest-side view of `wit/`).
//!
//! Inside a component these calls cross the WIT boundary; natively (tests,
//! benchmarks) they are plain method calls on the same data.

use serde_json::{Map, Value};

use crate::vql::read_members;

/// One row from an event queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique and replay-stable (see `wit/types.wit`).
    pub id: String,
    pub queue: String,
    pub row: Map<String, Value>,
    pub org_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The server and org a call runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    pub org_id: String,
    pub org_name: String,
    pub public_url: Option<String>,
    pub default_sender: String,
    /// The largest e-mail the host accepts, in bytes.
    pub max_email_bytes: u64,
}

/// Some result rows of a flow source and the source's row count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultPage {
    pub rows: Vec<Value>,
    pub total_rows: u64,
}

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("lookup unavailable: {0}")]
    Unavailable(String),
    #[error("lookup denied: {0}")]
    Denied(String),
}

/// A lookup's answer.
pub type Lookup<T> = Result<T, LookupError>;

/// A lookup answer as the JSON text it crosses the component boundary in.
/// A rule reads the members a decision uses ([`members`](Self::members))
/// and builds the whole value ([`value`](Self::value)) only when it acts:
/// a collection record is a few kilobytes, a decision reads a few members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer(String);

impl Answer {
    pub fn from_text(text: String) -> Self {
        Self(text)
    }

    /// The answer of a host that holds values (tests, the native benches).
    pub fn from_value(value: &Value) -> Self {
        Self(value.to_string())
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    pub fn into_text(self) -> String {
        self.0
    }

    /// The whole answer.
    pub fn value(&self) -> Lookup<Value> {
        serde_json::from_str(&self.0).map_err(invalid_answer)
    }

    /// Only the members `paths` name (see [`read_members`]).
    pub fn members(&self, paths: &[&str]) -> Lookup<Value> {
        read_members(&self.0, paths).map_err(invalid_answer)
    }
}

fn invalid_answer(error: serde_json::Error) -> LookupError {
    LookupError::Unavailable(format!("host returned invalid JSON: {error}"))
}

/// The host's clock (`wit/clock.wit`).
pub trait Clock {
    fn now_us(&self) -> u64;
}

/// The host's log (`wit/log.wit`).
pub trait Log {
    fn log(&self, level: LogLevel, message: &str);

    /// Whether lines of `level` are kept (`enabled` in `wit/log.wit`): a
    /// rule may skip work done only to explain itself when they are not.
    fn enabled(&self, _level: LogLevel) -> bool {
        true
    }
}

/// What a rule may read of Velociraptor (`wit/lookups.wit`, where each
/// one's meaning is).
pub trait Lookups {
    fn server_info(&self) -> ServerInfo;
    fn client_info(&self, client_id: &str) -> Lookup<Option<Value>>;
    fn client_metadata(&self, client_id: &str) -> Lookup<Option<Value>>;
    fn clients(&self, label: Option<&str>) -> Lookup<Vec<Value>>;
    fn flow(&self, client_id: &str, flow_id: &str) -> Lookup<Option<Answer>>;
    fn flow_results(
        &self,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> Lookup<ResultPage>;
    fn flow_uploads(&self, client_id: &str, flow_id: &str) -> Lookup<Vec<Value>>;
    fn hunt(&self, hunt_id: &str) -> Lookup<Option<Value>>;
    fn artifact(&self, name: &str) -> Lookup<Option<Value>>;
    fn event_tables(&self) -> Lookup<Value>;
    fn users(&self) -> Lookup<Vec<Value>>;
    fn monitoring_logs(&self, client_id: &str, artifact: &str, since_ms: u64) -> Lookup<Vec<Answer>>;
    fn audit_log(&self, since_us: u64) -> Lookup<Vec<Value>>;
    /// A file of the server's file store by its path, read up to
    /// `max_bytes`: None when there is no such file.
    fn server_file(&self, path: &str, max_bytes: u64) -> Lookup<Option<FileBytes>>;
    /// The org's running hunts, newest first, at most 1,000
    /// (`velociraptor::activity`).
    fn running_hunts(&self) -> Lookup<Vec<Value>>;
    /// The collections in the clients' hands and unfinished, created after
    /// `created_after_us` and up to `created_before_us`, oldest first, at
    /// most 1,000 (a page: the next starts after the last `create_time`).
    fn active_flows(&self, created_after_us: u64, created_before_us: u64) -> Lookup<Vec<Value>>;
}

/// A file's bytes, read up to a bound (`lookups.file-bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBytes {
    /// The file, or its first bytes up to the bound when `truncated`.
    pub data: Vec<u8>,
    /// The file is larger than the bound.
    pub truncated: bool,
}

impl FileBytes {
    /// `data` read up to `max_bytes`.
    pub fn bounded(mut data: Vec<u8>, max_bytes: u64) -> Self {
        let truncated = data.len() as u64 > max_bytes;
        data.truncate(usize::try_from(max_bytes).unwrap_or(usize::MAX));
        Self { data, truncated }
    }
}

/// The rule's durable state (`wit/state.wit`).
pub trait State {
    fn state_get(&self, key: &str) -> Option<Vec<u8>>;
    fn state_put(&self, key: &str, value: &[u8], ttl_seconds: u32);
}

/// Links the host makes for the notification being rendered
/// (`wit/links.wit`).
pub trait Links {
    /// The signed "Silence similar for 2 h" address for this call's
    /// notification, when the host serves that page.
    fn silence_similar(&self) -> Option<String>;
}

/// Everything the host offers a rule: one trait per host capability, as in
/// `wit/`. Inside a component they are the imported interfaces; natively
/// (tests, benchmarks) the host's own call context implements them.
pub trait Host: Clock + Links + Log + Lookups + State {}

impl<T: Clock + Links + Log + Lookups + State + ?Sized> Host for T {}
