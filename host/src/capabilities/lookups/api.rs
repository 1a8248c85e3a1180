//! The modules' lookups answered by a Velociraptor server, through the same
//! VQL the artifacts use (`vql.rs`), with a timeout and a short cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use velonotify_core::host::{FileBytes, LookupError, ResultPage};

use super::{LookupAnswer, LookupSource, OrgInfo, result_page};
use crate::velociraptor::client::{ApiClient, ApiError, QueryOutput};
use crate::velociraptor::vql;

/// Seconds a lookup may take, unless `[velociraptor] lookup_timeout_s` says.
pub const DEFAULT_LOOKUP_TIMEOUT_S: u64 = 10;
/// Seconds an answer is reused, unless `[velociraptor] cache_ttl_s` says.
pub const DEFAULT_CACHE_TTL_S: u64 = 30;

/// Lookups through the API.
#[derive(Debug)]
pub struct ApiLookups {
    client: ApiClient,
    timeout: Duration,
    ttl: Duration,
    public_url: Option<String>,
    cache: Mutex<HashMap<String, (Instant, QueryOutput)>>,
}

/// Entries kept at most; the cache is emptied when it is full.
const CACHE_ENTRIES: usize = 10_000;

impl ApiLookups {
    pub fn new(client: ApiClient, timeout: Duration, ttl: Duration, public_url: Option<String>) -> Self {
        Self {
            client,
            timeout,
            ttl,
            public_url,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `vql` with `env` in `org`, or reuses a recent answer.
    fn ask(&self, org: &str, vql: &str, env: &[(&str, String)], cache: bool) -> LookupAnswer<QueryOutput> {
        let key = serde_json::to_string(&(org, vql, env)).unwrap_or_default();
        if cache
            && let Some((at, output)) = self.cache.lock().expect("cache lock").get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(output.clone());
        }
        let output = self
            .client
            .query_blocking(vql, env, org, self.timeout)
            .map_err(lookup_error)?;
        // The server reports a refused or failed plugin in its log, with
        // no rows: not the same as "not found".
        let problems = output.problems();
        if output.statements.iter().all(Vec::is_empty) && !problems.is_empty() {
            let text = problems.join("; ");
            return Err(if output.denied() {
                LookupError::Denied(format!(
                    "the server refused the API user: {text} (see README, \"Against a real Velociraptor server\", for the roles)"
                ))
            } else {
                LookupError::Unavailable(text)
            });
        }
        if cache && !self.ttl.is_zero() {
            let mut entries = self.cache.lock().expect("cache lock");
            if entries.len() >= CACHE_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (Instant::now(), output.clone()));
        }
        Ok(output)
    }

    fn first_row(&self, org: &str, vql: &str, env: &[(&str, String)]) -> LookupAnswer<Option<Value>> {
        Ok(self.ask(org, vql, env, true)?.rows().first().cloned())
    }

    fn rows(&self, org: &str, vql: &str, env: &[(&str, String)]) -> LookupAnswer<Vec<Value>> {
        Ok(self.ask(org, vql, env, true)?.rows().to_vec())
    }
}

/// Whether `client` carries `label` (labels match ignoring case, as the
/// server compares them).
fn carries_label(client: &Value, label: &str) -> bool {
    client["labels"].as_array().is_some_and(|labels| {
        labels
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.eq_ignore_ascii_case(label)))
    })
}

fn var(key: &'static str, value: &str) -> (&'static str, String) {
    (key, value.to_string())
}

/// Seconds, rounded down, from milliseconds.
fn seconds(ms: u64) -> String {
    (ms / 1000).to_string()
}

impl LookupSource for ApiLookups {
    fn org_info(&self, org_id: &str) -> OrgInfo {
        OrgInfo {
            org_id: org_id.to_string(),
            org_name: org_id.to_string(),
            public_url: self.public_url.clone(),
        }
    }

    fn client_info(&self, org: &str, client_id: &str) -> LookupAnswer<Option<Value>> {
        self.first_row(org, vql::CLIENT_INFO, &[var("ClientId", client_id)])
    }

    fn client_metadata(&self, org: &str, client_id: &str) -> LookupAnswer<Option<Value>> {
        let row = self.first_row(org, vql::CLIENT_METADATA, &[var("ClientId", client_id)])?;
        Ok(row.and_then(|r| r.get("Metadata").cloned()).filter(|m| !m.is_null()))
    }

    fn clients(&self, org: &str, label: Option<&str>) -> LookupAnswer<Vec<Value>> {
        let Some(label) = label else {
            return self.rows(org, vql::CLIENTS_ALL, &[]);
        };
        // The server's `label:` search is a prefix match that ignores case
        // (`Slack` also finds `SlackOld`): keep the clients that carry the
        // label itself.
        let found = self.rows(org, vql::CLIENTS_SEARCH, &[("Search", format!("label:{label}"))])?;
        Ok(found
            .into_iter()
            .filter(|client| carries_label(client, label))
            .collect())
    }

    fn flow(&self, org: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Option<Value>> {
        self.first_row(org, vql::FLOW, &[var("ClientId", client_id), var("FlowId", flow_id)])
    }

    fn flow_results(
        &self,
        org: &str,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> LookupAnswer<ResultPage> {
        let max_rows = max_rows.unwrap_or(u32::MAX);
        let output = self.ask(
            org,
            vql::FLOW_RESULTS,
            &[
                var("ClientId", client_id),
                var("FlowId", flow_id),
                var("Source", source),
                ("MaxRows", max_rows.to_string()),
            ],
            true,
        )?;
        let all = output.rows();
        let total_rows = output
            .statements
            .get(1)
            .and_then(|rows| rows.first())
            .and_then(|r| r["Total"].as_u64())
            .unwrap_or(all.len() as u64);
        Ok(result_page(all, Some(max_rows), max_bytes, total_rows))
    }

    fn flow_uploads(&self, org: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Vec<Value>> {
        self.rows(
            org,
            vql::FLOW_UPLOADS,
            &[var("ClientId", client_id), var("FlowId", flow_id)],
        )
    }

    fn hunt(&self, org: &str, hunt_id: &str) -> LookupAnswer<Option<Value>> {
        self.first_row(org, vql::HUNT, &[var("HuntId", hunt_id)])
    }

    fn artifact(&self, org: &str, name: &str) -> LookupAnswer<Option<Value>> {
        self.first_row(org, vql::ARTIFACT, &[var("Name", name)])
    }

    fn event_tables(&self, org: &str) -> LookupAnswer<Value> {
        let row = self.first_row(org, vql::EVENT_TABLES, &[])?.unwrap_or_default();
        Ok(json!({"server": row["Server"], "client": row["Client"]}))
    }

    fn users(&self, org: &str) -> LookupAnswer<Vec<Value>> {
        self.rows(org, vql::USERS, &[])
    }

    fn monitoring_logs(
        &self,
        org: &str,
        client_id: &str,
        artifact: &str,
        since_ms: u64,
        until_ms: u64,
    ) -> LookupAnswer<Vec<Value>> {
        // Whole seconds around the window, then exactly the window by `_ts`.
        let output = self.ask(
            org,
            vql::MONITORING_LOGS,
            &[
                var("ClientId", client_id),
                var("Artifact", artifact),
                ("Since", seconds(since_ms)),
                ("Until", seconds(until_ms + 999)),
            ],
            false,
        )?;
        let written = since_ms.saturating_add(1)..=until_ms;
        Ok(output
            .rows()
            .iter()
            .filter(|r| r["_ts"].as_u64().is_some_and(|ts| written.contains(&ts)))
            .cloned()
            .collect())
    }

    fn server_file(&self, org: &str, components: &[String], max_bytes: u64) -> LookupAnswer<Option<FileBytes>> {
        let (data, truncated) = self
            .client
            .read_file_blocking(org, components, max_bytes, self.timeout)
            .map_err(lookup_error)?;
        // A path the store lacks reads as no bytes (the client takes the
        // server's NotFound so); an empty file says nothing either.
        Ok((!data.is_empty()).then_some(FileBytes { data, truncated }))
    }

    /// Every row the server has after `since_us` (its rows are written by
    /// now, whatever the clocks say).
    fn audit_log(&self, org: &str, since_us: u64, _until_us: u64) -> LookupAnswer<Vec<Value>> {
        // Whole seconds around the start, then exactly after it: rows read
        // back carry `_ts` in milliseconds, live ones in seconds.
        let since_ms = since_us / 1000;
        let output = self.ask(org, vql::AUDIT_LOG, &[("Since", (since_ms / 1000).to_string())], false)?;
        Ok(super::audit_page(output.rows(), since_ms, None))
    }

    /// Asked afresh each time: a monitor compares one tick's counts with
    /// the last's.
    fn running_hunts(&self, org: &str, _until_us: u64) -> LookupAnswer<Vec<Value>> {
        Ok(self.ask(org, vql::RUNNING_HUNTS, &[], false)?.rows().to_vec())
    }

    fn active_flows(&self, org: &str, after_us: u64, before_us: u64) -> LookupAnswer<Vec<Value>> {
        let window = [("After", after_us.to_string()), ("Before", before_us.to_string())];
        Ok(self.ask(org, vql::ACTIVE_FLOWS, &window, false)?.rows().to_vec())
    }
}

/// A refusal by the server is `denied`; anything else may pass.
fn lookup_error(e: ApiError) -> LookupError {
    match e {
        ApiError::Denied { .. } => LookupError::Denied(e.to_string()),
        _ => LookupError::Unavailable(e.to_string()),
    }
}
