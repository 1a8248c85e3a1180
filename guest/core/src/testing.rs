//! A host for the rules' unit tests: answers lookups from a JSON value in
//! the shape of the host's world file, records log lines, keeps state.

use std::cell::RefCell;
use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::host::{Answer, Clock, Links, Log, LogLevel, Lookup, LookupError, Lookups, ResultPage, ServerInfo, State};

pub(crate) struct FakeHost {
    pub now_us: u64,
    /// `clients`, `flows`, `hunts`, `artifacts`, `users`, `event_tables`,
    /// `audit`, as in a world file (`event_tables` already in the shape of
    /// the lookup).
    pub world: Value,
    pub public_url: Option<String>,
    pub org_id: String,
    pub max_email_bytes: u64,
    /// When set, every lookup fails with this outage.
    pub outage: Option<String>,
    /// When set, artifact definitions cannot be read (this error).
    pub artifacts_refused: Option<String>,
    /// What `silence_similar` answers (none: the host serves no page).
    pub silence_link: Option<String>,
    pub logs: RefCell<Vec<(LogLevel, String)>>,
    state: RefCell<HashMap<String, Vec<u8>>>,
}

impl FakeHost {
    pub fn new(world: Value) -> Self {
        Self {
            now_us: 1_778_400_000_000_000,
            world,
            public_url: Some("https://velociraptor.example.org:8889/app/index.html".into()),
            org_id: "root".into(),
            max_email_bytes: 25 << 20,
            outage: None,
            artifacts_refused: None,
            silence_link: None,
            logs: RefCell::default(),
            state: RefCell::default(),
        }
    }

    pub fn logged(&self, level: LogLevel) -> Vec<String> {
        self.logs
            .borrow()
            .iter()
            .filter(|(l, _)| *l == level)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn up(&self) -> Lookup<()> {
        match &self.outage {
            Some(why) => Err(LookupError::Unavailable(why.clone())),
            None => Ok(()),
        }
    }

    fn at(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(&self.world, |v, key| v.get(*key))
    }

    fn flow_object(&self, client_id: &str, flow_id: &str) -> Option<&Value> {
        self.at(&["flows", client_id, flow_id])
    }
}

fn without(value: &Value, keys: &[&str]) -> Value {
    let mut map: Map<String, Value> = value.as_object().cloned().unwrap_or_default();
    for key in keys {
        map.remove(*key);
    }
    Value::Object(map)
}

impl Clock for FakeHost {
    fn now_us(&self) -> u64 {
        self.now_us
    }
}

impl Links for FakeHost {
    fn silence_similar(&self) -> Option<String> {
        self.silence_link.clone()
    }
}

impl Log for FakeHost {
    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

impl Lookups for FakeHost {
    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            org_id: self.org_id.clone(),
            org_name: if self.org_id == "root" {
                "root".into()
            } else {
                "Finance Org".into()
            },
            public_url: self.public_url.clone(),
            default_sender: "velonotify@example.org".into(),
            max_email_bytes: self.max_email_bytes,
        }
    }
    fn client_info(&self, client_id: &str) -> Lookup<Option<Value>> {
        self.up()?;
        Ok(self.at(&["clients", client_id]).map(|c| without(c, &["metadata"])))
    }
    fn client_metadata(&self, client_id: &str) -> Lookup<Option<Value>> {
        self.up()?;
        Ok(self.at(&["clients", client_id, "metadata"]).cloned())
    }
    fn clients(&self, label: Option<&str>) -> Lookup<Vec<Value>> {
        self.up()?;
        let all = self
            .at(&["clients"])
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Ok(all
            .values()
            .filter(|c| {
                label.is_none_or(|wanted| {
                    c.get("labels").and_then(Value::as_array).is_some_and(|ls| {
                        ls.iter()
                            .any(|l| l.as_str().is_some_and(|l| l.eq_ignore_ascii_case(wanted)))
                    })
                })
            })
            .map(|c| without(c, &["metadata"]))
            .collect())
    }
    fn flow(&self, client_id: &str, flow_id: &str) -> Lookup<Option<Answer>> {
        self.up()?;
        Ok(self
            .flow_object(client_id, flow_id)
            .map(|f| Answer::from_value(&without(f, &["results", "uploads"]))))
    }
    fn flow_results(
        &self,
        client_id: &str,
        flow_id: &str,
        source: &str,
        max_rows: Option<u32>,
        max_bytes: Option<u64>,
    ) -> Lookup<ResultPage> {
        self.up()?;
        let all = self
            .flow_object(client_id, flow_id)
            .and_then(|f| f.get("results"))
            .and_then(|r| r.get(source))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut budget = max_bytes.unwrap_or(u64::MAX);
        let mut rows = Vec::new();
        for row in all.iter().take(max_rows.map_or(usize::MAX, |m| m as usize)) {
            let size = row.to_string().len() as u64;
            if size > budget {
                break;
            }
            budget -= size;
            rows.push(row.clone());
        }
        Ok(ResultPage {
            rows,
            total_rows: all.len() as u64,
        })
    }
    fn flow_uploads(&self, client_id: &str, flow_id: &str) -> Lookup<Vec<Value>> {
        self.up()?;
        Ok(self
            .flow_object(client_id, flow_id)
            .and_then(|f| f.get("uploads"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
    fn hunt(&self, hunt_id: &str) -> Lookup<Option<Value>> {
        self.up()?;
        Ok(self.at(&["hunts", hunt_id]).cloned())
    }
    fn artifact(&self, name: &str) -> Lookup<Option<Value>> {
        self.up()?;
        if let Some(why) = &self.artifacts_refused {
            return Err(LookupError::Denied(why.clone()));
        }
        Ok(self.at(&["artifacts", name]).cloned())
    }
    fn event_tables(&self) -> Lookup<Value> {
        self.up()?;
        Ok(self.at(&["event_tables"]).cloned().unwrap_or_else(|| json!({})))
    }
    fn users(&self) -> Lookup<Vec<Value>> {
        self.up()?;
        Ok(self
            .at(&["users"])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }
    fn monitoring_logs(&self, client_id: &str, artifact: &str, since_ms: u64) -> Lookup<Vec<Answer>> {
        self.up()?;
        let rows = self
            .at(&["monitoring_logs", client_id, artifact])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(rows
            .into_iter()
            .filter(|r| r.get("_ts").and_then(Value::as_u64).unwrap_or(0) > since_ms)
            .map(|r| Answer::from_value(&r))
            .collect())
    }
    /// The world's `audit` rows written after `since_us`, newest first
    /// (as the host answers).
    fn audit_log(&self, since_us: u64) -> Lookup<Vec<Value>> {
        self.up()?;
        let mut rows: Vec<Value> = self
            .at(&["audit"])
            .and_then(Value::as_array)
            .map(|rows| {
                let written_ms = crate::velociraptor::audit_written_ms;
                rows.iter()
                    .filter(|r| written_ms(r) > since_us / 1000)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        rows.sort_by_key(|r| std::cmp::Reverse(crate::velociraptor::audit_written_ms(r)));
        Ok(rows)
    }
    /// The world's `files`: path → base64 of the bytes.
    fn server_file(&self, path: &str, max_bytes: u64) -> Lookup<Option<crate::host::FileBytes>> {
        use base64::Engine as _;
        self.up()?;
        let Some(text) = self.at(&["files", path]).and_then(Value::as_str) else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| LookupError::Unavailable(format!("files.{path}: {e}")))?;
        Ok(Some(crate::host::FileBytes::bounded(bytes, max_bytes)))
    }
    /// The world's `hunts` that run and were created by now, newest first
    /// (as the host answers).
    fn running_hunts(&self) -> Lookup<Vec<Value>> {
        use crate::velociraptor::activity;
        self.up()?;
        let hunts = self.at(&["hunts"]).and_then(Value::as_object);
        let hunts = hunts.into_iter().flat_map(|h| h.values());
        let created = hunts.filter(|h| activity::create_time(h) <= self.now_us).cloned();
        Ok(activity::newest_hunts(created.collect()))
    }
    /// The world's unfinished `flows` in the window and created by now,
    /// oldest first (as the host answers).
    fn active_flows(&self, created_after_us: u64, created_before_us: u64) -> Lookup<Vec<Value>> {
        use crate::velociraptor::activity;
        self.up()?;
        let mut rows = Vec::new();
        for (client_id, flows) in self.at(&["flows"]).and_then(Value::as_object).into_iter().flatten() {
            for (flow_id, flow) in flows.as_object().into_iter().flatten() {
                rows.push(activity::active_flow_row(client_id, flow_id, flow));
            }
        }
        let before_us = created_before_us.min(self.now_us);
        Ok(activity::oldest_flows(rows, created_after_us, before_us))
    }
}

impl State for FakeHost {
    fn state_get(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().get(key).cloned()
    }
    fn state_put(&self, key: &str, value: &[u8], _ttl_seconds: u32) {
        self.state.borrow_mut().insert(key.to_string(), value.to_vec());
    }
}

/// Any JSON value a column may hold, for property tests of decisions made
/// on a row read in place: one of `texts`, a number, null, a boolean, a
/// list of texts, or an object holding a text under `member` (a dotted
/// path's head).
pub(crate) fn json_value(
    texts: Vec<&'static str>,
    member: &'static str,
) -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let text = prop::sample::select(texts).prop_map(|s| Value::String(s.to_string()));
    prop_oneof![
        text.clone(),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::collection::vec(text.clone(), 0..3).prop_map(Value::Array),
        text.prop_map(move |t| json!({ member: t })),
    ]
}

/// `html` without its `style` and `scope` attributes: what tests read to
/// check a document's structure and text, not its look.
pub fn bare(html: &str) -> String {
    let attributes = regex::Regex::new(r#" (style|scope)="[^"]*""#).expect("a valid regex");
    attributes.replace_all(html, "").into_owned()
}

/// The alerts a monitor's tick raises (any other action fails the test).
pub(crate) fn tick_alerts<R: crate::rules::Rule>(rule: &mut R, host: &FakeHost) -> Vec<crate::action::Alert> {
    rule.tick(host)
        .unwrap()
        .into_iter()
        .map(|a| match a {
            crate::action::Action::Alert(alert) => alert,
            other => panic!("expected an alert, got {other:?}"),
        })
        .collect()
}

/// An alert's event data.
pub(crate) fn alert_context(alert: &crate::action::Alert) -> Value {
    serde_json::from_str(&alert.event_data).unwrap()
}
