//! The core `Host` over the imported interfaces (`clock`, `links`, `log`,
//! `lookups`, `state`): every lookup answer arrives as JSON text and is parsed here.

use serde_json::Value;
use velonotify_core::host::{
    Answer, Clock, FileBytes, Links, Log, LogLevel, Lookup, LookupError, Lookups, ResultPage, ServerInfo, State,
};

use crate::bindings::velociraptor::notify::lookups as imports;
use crate::bindings::velociraptor::notify::{clock, links, log, lookups as wit, state};

/// The host this component runs in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WitHost;

fn lookup_error(e: wit::LookupError) -> LookupError {
    match e {
        wit::LookupError::Unavailable(m) => LookupError::Unavailable(m),
        wit::LookupError::Denied(m) => LookupError::Denied(m),
    }
}

/// A malformed answer is the host's fault, reported like an outage.
fn parse(json: &str) -> Lookup<Value> {
    serde_json::from_str(json).map_err(|e| LookupError::Unavailable(format!("host returned invalid JSON: {e}")))
}

fn one(answer: Result<Option<String>, wit::LookupError>) -> Lookup<Option<Value>> {
    answer.map_err(lookup_error)?.as_deref().map(parse).transpose()
}

fn many(answer: Result<Vec<String>, wit::LookupError>) -> Lookup<Vec<Value>> {
    answer.map_err(lookup_error)?.iter().map(|s| parse(s)).collect()
}

impl Clock for WitHost {
    fn now_us(&self) -> u64 {
        clock::now_us()
    }
}

impl Links for WitHost {
    fn silence_similar(&self) -> Option<String> {
        links::silence_similar()
    }
}

impl Log for WitHost {
    fn log(&self, level: LogLevel, message: &str) {
        log::log(wit_level(level), message);
    }

    fn enabled(&self, level: LogLevel) -> bool {
        log::enabled(wit_level(level))
    }
}

impl Lookups for WitHost {
    fn server_info(&self) -> ServerInfo {
        let info = imports::server();
        ServerInfo {
            org_id: info.org_id,
            org_name: info.org_name,
            public_url: info.public_url,
            default_sender: info.default_sender,
            max_email_bytes: info.max_email_bytes,
        }
    }

    fn client_info(&self, client_id: &str) -> Lookup<Option<Value>> {
        one(imports::client_info(client_id))
    }

    fn client_metadata(&self, client_id: &str) -> Lookup<Option<Value>> {
        one(imports::client_metadata(client_id))
    }

    fn clients(&self, label: Option<&str>) -> Lookup<Vec<Value>> {
        many(imports::clients(label))
    }

    fn flow(&self, client_id: &str, flow_id: &str) -> Lookup<Option<Answer>> {
        // Read by the rule for what it uses, not parsed here.
        Ok(imports::flow(client_id, flow_id)
            .map_err(lookup_error)?
            .map(Answer::from_text))
    }

    fn flow_results(
        &self,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> Lookup<ResultPage> {
        let page = imports::flow_results(client_id, flow_id, source, max_rows, max_bytes).map_err(lookup_error)?;
        Ok(ResultPage {
            rows: page.rows.iter().map(|r| parse(r)).collect::<Lookup<_>>()?,
            total_rows: page.total_rows,
        })
    }

    fn flow_uploads(&self, client_id: &str, flow_id: &str) -> Lookup<Vec<Value>> {
        many(imports::flow_uploads(client_id, flow_id))
    }

    fn hunt(&self, hunt_id: &str) -> Lookup<Option<Value>> {
        one(imports::hunt(hunt_id))
    }

    fn artifact(&self, name: &str) -> Lookup<Option<Value>> {
        one(imports::artifact(name))
    }

    fn event_tables(&self) -> Lookup<Value> {
        parse(&imports::event_tables().map_err(lookup_error)?)
    }

    fn users(&self) -> Lookup<Vec<Value>> {
        many(imports::users())
    }

    fn monitoring_logs(&self, client_id: &str, artifact: &str, since_ms: u64) -> Lookup<Vec<Answer>> {
        let rows = imports::monitoring_logs(client_id, artifact, since_ms).map_err(lookup_error)?;
        Ok(rows.into_iter().map(Answer::from_text).collect())
    }

    fn audit_log(&self, since_us: u64) -> Lookup<Vec<Value>> {
        many(imports::audit_log(since_us))
    }

    fn server_file(&self, path: &str, max_bytes: u64) -> Lookup<Option<FileBytes>> {
        let file = imports::server_file(path, max_bytes).map_err(lookup_error)?;
        Ok(file.map(|f| FileBytes {
            data: f.data,
            truncated: f.truncated,
        }))
    }
    fn running_hunts(&self) -> Lookup<Vec<Value>> {
        many(imports::running_hunts())
    }

    fn active_flows(&self, created_after_us: u64, created_before_us: u64) -> Lookup<Vec<Value>> {
        many(imports::active_flows(created_after_us, created_before_us))
    }
}

impl State for WitHost {
    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        state::get(key)
    }

    fn state_put(&self, key: &str, value: &[u8], ttl_seconds: u32) {
        state::put(key, value, ttl_seconds)
    }
}

fn wit_level(level: LogLevel) -> log::LogLevel {
    match level {
        LogLevel::Debug => log::LogLevel::Debug,
        LogLevel::Info => log::LogLevel::Info,
        LogLevel::Warn => log::LogLevel::Warn,
        LogLevel::Error => log::LogLevel::Error,
    }
}
