//! The offline "world" file: what a Velociraptor server would answer to the
//! lookups, as one JSON object (format in README.md and design.md).

use std::path::Path;
use std::sync::RwLock;

use serde_json::{Map, Value, json};

use velonotify_core::host::{FileBytes, ResultPage};
use velonotify_core::velociraptor::activity;

use super::{LookupAnswer, LookupSource, OrgInfo};

/// A world file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("reading world file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("world file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// Lookups answered from a world file.
#[derive(Debug, Default)]
pub struct World {
    org_id: String,
    org_name: String,
    public_url: Option<String>,
    /// Label changes made during a replay apply here.
    clients: RwLock<Map<String, Value>>,
    /// client id → flow id → flow object (with `results` and `uploads`).
    flows: Map<String, Value>,
    hunts: Map<String, Value>,
    artifacts: Map<String, Value>,
    users: Vec<Value>,
    event_tables: Value,
    /// client id (or `server`) → artifact → rows.
    monitoring_logs: Map<String, Value>,
    audit: Vec<Value>,
    /// File store path → the file's bytes (base64 in the file).
    files: std::collections::HashMap<String, Vec<u8>>,
}

const KNOWN_KEYS: [&str; 13] = [
    "org",
    "server",
    "clients",
    "flows",
    "hunts",
    "artifacts",
    "users",
    "server_monitoring",
    "client_monitoring",
    "monitoring_logs",
    "audit",
    "files",
    "_comment",
];

impl World {
    /// An empty world: every lookup answers "unknown".
    pub fn empty() -> Self {
        Self {
            org_id: "root".into(),
            org_name: "root".into(),
            event_tables: json!({}),
            ..Self::default()
        }
    }

    /// Reads and checks a world file.
    pub fn load(path: &Path) -> Result<Self, WorldError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| WorldError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| WorldError::Invalid { path: shown, message })
    }

    /// Parses the JSON text of a world file; errors name the offending key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let Value::Object(top) = value else {
            return Err("expected a JSON object at the top level".into());
        };
        if let Some(unknown) = top.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(format!("unknown key {unknown:?} (known: {})", KNOWN_KEYS.join(", ")));
        }
        let object = |key: &str| -> Result<Map<String, Value>, String> {
            match top.get(key) {
                None => Ok(Map::new()),
                Some(Value::Object(m)) => Ok(m.clone()),
                Some(other) => Err(format!("{key}: expected an object, got {}", kind(other))),
            }
        };
        let list = |key: &str| -> Result<Vec<Value>, String> {
            match top.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(a)) => Ok(a.clone()),
                Some(other) => Err(format!("{key}: expected a list, got {}", kind(other))),
            }
        };
        let org = object("org")?;
        let server = object("server")?;
        let clients = object("clients")?;
        objects_of_objects("clients", &clients, 1)?;
        let flows = object("flows")?;
        objects_of_objects("flows", &flows, 2)?;
        let hunts = object("hunts")?;
        objects_of_objects("hunts", &hunts, 1)?;
        let artifacts = object("artifacts")?;
        objects_of_objects("artifacts", &artifacts, 1)?;
        let monitoring_logs = object("monitoring_logs")?;
        for (client, per_artifact) in &monitoring_logs {
            let Value::Object(per_artifact) = per_artifact else {
                return Err(format!(
                    "monitoring_logs.{client}: expected an object of artifact → rows"
                ));
            };
            for (artifact, rows) in per_artifact {
                if !rows.is_array() {
                    return Err(format!("monitoring_logs.{client}.{artifact}: expected a list of rows"));
                }
            }
        }
        let text_at = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Self {
            org_id: text_at(&org, "id").unwrap_or_else(|| "root".into()),
            org_name: text_at(&org, "name").unwrap_or_else(|| "root".into()),
            public_url: text_at(&server, "public_url"),
            clients: RwLock::new(clients),
            flows,
            hunts,
            artifacts,
            users: list("users")?,
            event_tables: event_tables(top.get("server_monitoring"), top.get("client_monitoring"))?,
            monitoring_logs,
            audit: list("audit")?,
            files: files(&object("files")?)?,
        })
    }

    /// The GUI's public URL, from the configuration when it sets one.
    pub fn set_public_url(&mut self, url: Option<String>) {
        if url.is_some() {
            self.public_url = url;
        }
    }

    pub fn org_id(&self) -> &str {
        &self.org_id
    }

    fn flow_object(&self, client_id: &str, flow_id: &str) -> Option<&Value> {
        self.flows.get(client_id)?.get(flow_id)
    }
}

/// `files`: file store paths to their bytes in base64.
fn files(files: &Map<String, Value>) -> Result<std::collections::HashMap<String, Vec<u8>>, String> {
    use base64::Engine as _;
    files
        .iter()
        .map(|(path, value)| {
            let text = value
                .as_str()
                .ok_or_else(|| format!("files.{path}: expected the file's bytes in base64, got {}", kind(value)))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("files.{path}: not base64: {e}"))?;
            Ok((super::file_store_path(path).join("/"), bytes))
        })
        .collect()
}

/// A copy of `value` without the named members: a flow's results can be
/// megabytes, so they are left behind rather than copied and dropped.
fn without_members(value: &Value, left_out: &[&str]) -> Value {
    match value {
        Value::Object(members) => Value::Object(
            members
                .iter()
                .filter(|(key, _)| !left_out.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Checks that `map` holds objects `depth` levels down.
fn objects_of_objects(path: &str, map: &Map<String, Value>, depth: usize) -> Result<(), String> {
    for (key, value) in map {
        let here = format!("{path}.{key}");
        match value {
            Value::Object(inner) if depth > 1 => objects_of_objects(&here, inner, depth - 1)?,
            Value::Object(_) => {}
            other => return Err(format!("{here}: expected an object, got {}", kind(other))),
        }
    }
    Ok(())
}

/// The event tables in the shapes of `get_server_monitoring()` and
/// `get_client_monitoring()`, from the world's lists. An entry is an
/// artifact name, or `{"artifact": name, "parameters": {"env": [...]}}`, or
/// `{"artifact": name, "params": {key: value}}`.
fn event_tables(server: Option<&Value>, client: Option<&Value>) -> Result<Value, String> {
    let specs = |path: &str, entries: &Value| -> Result<Vec<Value>, String> {
        let Value::Array(entries) = entries else {
            return Err(format!("{path}: expected a list of artifacts"));
        };
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                spec(entry).ok_or_else(|| format!("{path}[{i}]: expected an artifact name or {{\"artifact\": ...}}"))
            })
            .collect()
    };
    let server_specs = match server {
        None => Vec::new(),
        Some(v) => specs("server_monitoring", v)?,
    };
    let names: Vec<Value> = server_specs.iter().filter_map(|s| s.get("artifact").cloned()).collect();
    let mut client_all = Vec::new();
    let mut label_events = Vec::new();
    if let Some(client) = client {
        let Value::Object(client) = client else {
            return Err("client_monitoring: expected {\"all\": [...], \"labels\": {...}}".into());
        };
        if let Some(all) = client.get("all") {
            client_all = specs("client_monitoring.all", all)?;
        }
        if let Some(labels) = client.get("labels") {
            let Value::Object(labels) = labels else {
                return Err("client_monitoring.labels: expected an object of label → artifacts".into());
            };
            for (label, entries) in labels {
                let specs = specs(&format!("client_monitoring.labels.{label}"), entries)?;
                label_events.push(json!({"label": label, "artifacts": {"specs": specs}}));
            }
        }
    }
    Ok(json!({
        "server": {"artifacts": names, "specs": server_specs},
        "client": {"artifacts": {"specs": client_all}, "label_events": label_events},
    }))
}

fn spec(entry: &Value) -> Option<Value> {
    match entry {
        Value::String(name) => Some(json!({"artifact": name, "parameters": {"env": []}})),
        Value::Object(obj) => {
            let name = obj.get("artifact")?.as_str()?;
            if let Some(parameters) = obj.get("parameters") {
                return Some(json!({"artifact": name, "parameters": parameters}));
            }
            let env: Vec<Value> = obj
                .get("params")
                .and_then(Value::as_object)
                .map(|p| p.iter().map(|(k, v)| json!({"key": k, "value": v})).collect())
                .unwrap_or_default();
            Some(json!({"artifact": name, "parameters": {"env": env}}))
        }
        _ => None,
    }
}

/// Whether a hunt was created by `until_us` (one without a `create_time`
/// always was).
fn created_by(object: &Value, until_us: u64) -> bool {
    activity::create_time(object) <= until_us
}

/// `_ts` of a row as a number (rows may carry it as text).
fn row_ts(row: &Value) -> u64 {
    match row.get("_ts") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

impl LookupSource for World {
    fn org_info(&self, org_id: &str) -> OrgInfo {
        OrgInfo {
            org_id: org_id.to_string(),
            org_name: if org_id == self.org_id {
                self.org_name.clone()
            } else {
                org_id.to_string()
            },
            public_url: self.public_url.clone(),
        }
    }

    fn client_info(&self, _org: &str, client_id: &str) -> LookupAnswer<Option<Value>> {
        Ok(self
            .clients
            .read()
            .expect("world lock")
            .get(client_id)
            .map(|c| without_members(c, &["metadata"])))
    }

    fn client_metadata(&self, _org: &str, client_id: &str) -> LookupAnswer<Option<Value>> {
        Ok(self
            .clients
            .read()
            .expect("world lock")
            .get(client_id)
            .and_then(|c| c.get("metadata").cloned()))
    }

    fn clients(&self, org: &str, label: Option<&str>) -> LookupAnswer<Vec<Value>> {
        let ids: Vec<String> = self.clients.read().expect("world lock").keys().cloned().collect();
        let mut out = Vec::new();
        for id in &ids {
            let client = self.client_info(org, id)?.unwrap_or_default();
            let labelled = label.is_none_or(|wanted| {
                client.get("labels").and_then(Value::as_array).is_some_and(|ls| {
                    ls.iter()
                        .any(|l| l.as_str().is_some_and(|l| l.eq_ignore_ascii_case(wanted)))
                })
            });
            if labelled {
                out.push(client);
            }
        }
        Ok(out)
    }

    fn flow(&self, _org: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Option<Value>> {
        Ok(self
            .flow_object(client_id, flow_id)
            .map(|f| without_members(f, &["results", "uploads"])))
    }

    fn flow_results(
        &self,
        _org: &str,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> LookupAnswer<ResultPage> {
        let rows = self
            .flow_object(client_id, flow_id)
            .and_then(|f| f.get("results"))
            .and_then(|r| r.get(source))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(super::result_page(rows, max_rows, max_bytes, rows.len() as u64))
    }

    fn flow_uploads(&self, _org: &str, client_id: &str, flow_id: &str) -> LookupAnswer<Vec<Value>> {
        Ok(self
            .flow_object(client_id, flow_id)
            .and_then(|f| f.get("uploads"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    fn hunt(&self, _org: &str, hunt_id: &str) -> LookupAnswer<Option<Value>> {
        Ok(self.hunts.get(hunt_id).cloned())
    }

    fn artifact(&self, _org: &str, name: &str) -> LookupAnswer<Option<Value>> {
        Ok(self.artifacts.get(name).cloned())
    }

    fn event_tables(&self, _org: &str) -> LookupAnswer<Value> {
        Ok(self.event_tables.clone())
    }

    fn users(&self, _org: &str) -> LookupAnswer<Vec<Value>> {
        Ok(self.users.clone())
    }

    fn monitoring_logs(
        &self,
        _org: &str,
        client_id: &str,
        artifact: &str,
        since_ms: u64,
        until_ms: u64,
    ) -> LookupAnswer<Vec<Value>> {
        let written = since_ms.saturating_add(1)..=until_ms;
        let mut rows: Vec<Value> = self
            .monitoring_logs
            .get(client_id)
            .and_then(|per| per.get(artifact))
            .and_then(Value::as_array)
            .map(|rows| rows.iter().filter(|r| written.contains(&row_ts(r))).cloned().collect())
            .unwrap_or_default();
        rows.sort_by_key(row_ts);
        Ok(rows)
    }

    fn apply_label_change(&self, _org: &str, client_id: &str, add: bool, labels: &[String]) {
        let mut clients = self.clients.write().expect("world lock");
        let Some(Value::Object(client)) = clients.get_mut(client_id) else {
            return;
        };
        let current = client.entry("labels").or_insert_with(|| Value::Array(Vec::new()));
        let Value::Array(current) = current else { return };
        for label in labels {
            let present = current
                .iter()
                .position(|l| l.as_str().is_some_and(|l| l.eq_ignore_ascii_case(label)));
            match (add, present) {
                (true, None) => current.push(Value::String(label.clone())),
                (false, Some(at)) => {
                    current.remove(at);
                }
                _ => {}
            }
        }
    }

    fn audit_log(&self, _org: &str, since_us: u64, until_us: u64) -> LookupAnswer<Vec<Value>> {
        Ok(super::audit_page(&self.audit, since_us / 1000, Some(until_us / 1000)))
    }

    fn server_file(&self, _org: &str, components: &[String], max_bytes: u64) -> LookupAnswer<Option<FileBytes>> {
        let file = self.files.get(&components.join("/"));
        Ok(file.map(|bytes| FileBytes::bounded(bytes.clone(), max_bytes)))
    }

    /// The world's hunts that run, as the server's `hunts()` gives them
    /// (without `start_request`, as the API lookup asks); a hunt a replay
    /// has not reached yet is not there.
    fn running_hunts(&self, _org: &str, until_us: u64) -> LookupAnswer<Vec<Value>> {
        Ok(self
            .hunts
            .values()
            .filter(|h| activity::hunt_is_running(h) && created_by(h, until_us))
            .map(|h| without_members(h, &["start_request"]))
            .collect())
    }

    /// The world's unfinished flows in the window, in the columns the API
    /// lookup selects. A client whose row has `in_flight_flows` has been
    /// handed those only (the rest wait for it); one without, every
    /// unfinished flow of its own.
    fn active_flows(&self, _org: &str, after_us: u64, before_us: u64) -> LookupAnswer<Vec<Value>> {
        let clients = self.clients.read().expect("world lock");
        let mut rows = Vec::new();
        for (client_id, flows) in &self.flows {
            let in_flight = clients.get(client_id).and_then(|c| c.get("in_flight_flows"));
            for (flow_id, flow) in flows.as_object().into_iter().flatten() {
                let handed = in_flight.is_none_or(|map| map.get(flow_id).is_some());
                if handed && activity::flow_is_active(flow) {
                    rows.push(activity::active_flow_row(client_id, flow_id, flow));
                }
            }
        }
        Ok(activity::oldest_flows(rows, after_us, before_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_hunts_and_unfinished_flows_are_listed_as_the_server_selects_them() {
        let w = World::parse(
            r#"{"hunts": {
                  "H.1": {"hunt_id": "H.1", "state": "RUNNING", "stats": {}, "start_request": {"big": 1}},
                  "H.2": {"hunt_id": "H.2", "state": "RUNNING", "stats": {"stopped": true}},
                  "H.3": {"hunt_id": "H.3", "state": "PAUSED"}},
                "clients": {"C.2": {"client_id": "C.2", "in_flight_flows": {"F.3": 1778400000}}},
                "flows": {"C.1": {
                  "F.1": {"state": "IN_PROGRESS", "create_time": 5, "request": {"artifacts": ["A"], "creator": "bob"}},
                  "F.2": {"state": "FINISHED", "create_time": 6}},
                          "C.2": {
                  "F.3": {"state": "RUNNING", "create_time": 100},
                  "F.4": {"state": "RUNNING", "create_time": 101}}}}"#,
        )
        .unwrap();
        let hunts = w.running_hunts("root", u64::MAX).unwrap();
        assert_eq!(hunts, vec![json!({"hunt_id": "H.1", "state": "RUNNING", "stats": {}})]);
        let handed = w.active_flows("root", 99, u64::MAX).unwrap();
        let handed: Vec<&Value> = handed.iter().map(|f| &f["session_id"]).collect();
        assert_eq!(handed, [&json!("F.3")], "F.4 waits for its client");
        let flows = w.active_flows("root", 0, 99).unwrap();
        assert_eq!(
            flows,
            vec![json!({"client_id": "C.1", "session_id": "F.1", "state": "IN_PROGRESS",
                        "create_time": 5, "artifacts": ["A"], "creator": "bob"})]
        );
        assert_eq!(
            w.active_flows("root", 0, 4).unwrap(),
            Vec::<Value>::new(),
            "created later"
        );
        assert_eq!(
            w.active_flows("root", 5, 9).unwrap(),
            Vec::<Value>::new(),
            "before the cursor"
        );
    }

    #[test]
    fn errors_name_the_offending_key() {
        let err = World::parse(r#"{"clients": {"C.1": "ws1"}}"#).unwrap_err();
        assert_eq!(err, "clients.C.1: expected an object, got a string");
        let err = World::parse(r#"{"flows": {"C.1": {"F.1": []}}}"#).unwrap_err();
        assert_eq!(err, "flows.C.1.F.1: expected an object, got a list");
        let err = World::parse(r#"{"client": {}}"#).unwrap_err();
        assert!(err.starts_with("unknown key \"client\""), "{err}");
    }

    #[test]
    fn flows_are_returned_without_their_results_and_uploads() {
        let w = World::parse(r#"{"flows": {"C.1": {"F.1": {"state": "FINISHED", "results": {"A": [{"x": 1}, {"x": 2}]}, "uploads": [{"vfs_path": "p"}]}}}}"#).unwrap();
        assert_eq!(
            w.flow("root", "C.1", "F.1").unwrap(),
            Some(json!({"state": "FINISHED"}))
        );
        let page = w.flow_results("root", "C.1", "F.1", "A", Some(1), None).unwrap();
        assert_eq!((page.rows, page.total_rows), (vec![json!({"x": 1})], 2));
        let page = w.flow_results("root", "C.1", "F.1", "A", None, Some(10)).unwrap();
        assert_eq!(page.rows.len(), 1, "the second row would cross the byte budget");
        assert_eq!(w.flow_uploads("root", "C.1", "F.1").unwrap().len(), 1);
        assert_eq!(w.flow("root", "C.1", "F.2").unwrap(), None);
    }

    #[test]
    fn metadata_is_answered_separately_from_client_info() {
        let w =
            World::parse(r#"{"clients": {"C.1": {"client_id": "C.1", "metadata": {"Owner": "ann@corp"}}}}"#).unwrap();
        assert_eq!(w.client_info("root", "C.1").unwrap(), Some(json!({"client_id": "C.1"})));
        assert_eq!(
            w.client_metadata("root", "C.1").unwrap(),
            Some(json!({"Owner": "ann@corp"}))
        );
    }

    #[test]
    fn event_tables_take_the_shapes_of_velociraptor() {
        let w = World::parse(
            r#"{"server_monitoring": ["Server.Monitor.Health", {"artifact": "Custom.Upload", "params": {"Bucket": "b"}}],
                "client_monitoring": {"all": ["Generic.Client.Stats"], "labels": {"linux": ["Linux.Detection.Honeyfiles"]}}}"#,
        )
        .unwrap();
        let t = w.event_tables("root").unwrap();
        assert_eq!(
            t["server"]["artifacts"],
            json!(["Server.Monitor.Health", "Custom.Upload"])
        );
        assert_eq!(
            t["server"]["specs"][1]["parameters"]["env"],
            json!([{"key": "Bucket", "value": "b"}])
        );
        assert_eq!(
            t["client"]["artifacts"]["specs"][0]["artifact"],
            json!("Generic.Client.Stats")
        );
        assert_eq!(t["client"]["label_events"][0]["label"], json!("linux"));
    }

    #[test]
    fn monitoring_logs_after_a_time_in_write_order() {
        let w = World::parse(
            r#"{"monitoring_logs": {"server": {"A": [{"_ts": 3000, "Message": "c"}, {"_ts": 1000, "Message": "a"}, {"_ts": 2000, "Message": "b"}]}}}"#,
        )
        .unwrap();
        let rows = w.monitoring_logs("root", "server", "A", 1000, 3000).unwrap();
        let messages: Vec<&str> = rows.iter().map(|r| r["Message"].as_str().unwrap()).collect();
        assert_eq!(messages, ["b", "c"]);
        let rows = w.monitoring_logs("root", "server", "A", 1000, 2999).unwrap();
        assert_eq!(rows.len(), 1, "rows written after the host's now are not there yet");
    }

    #[test]
    fn label_changes_apply_to_the_world() {
        let w = World::parse(r#"{"clients": {"C.1": {"labels": ["Slack", "linux"]}}}"#).unwrap();
        w.apply_label_change("root", "C.1", false, &["slack".to_string()]);
        assert_eq!(w.clients("root", Some("Slack")).unwrap().len(), 0);
        w.apply_label_change("root", "C.1", true, &["notify_results".to_string()]);
        assert_eq!(
            w.client_info("root", "C.1").unwrap().unwrap()["labels"],
            json!(["linux", "notify_results"])
        );
    }

    #[test]
    fn clients_can_be_listed_by_label() {
        let w = World::parse(r#"{"clients": {"C.1": {"labels": ["Slack"]}, "C.2": {"labels": []}}}"#).unwrap();
        assert_eq!(w.clients("root", Some("slack")).unwrap().len(), 1);
        assert_eq!(w.clients("root", None).unwrap().len(), 2);
    }
}
