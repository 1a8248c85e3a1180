//! __MODULE_NAME__: a velonotify rule module in Rust, on the WIT world in
//! `wit/` (generated bindings, no other SDK).
//!
//! It alerts when a file whose name matches FileRegex is accessed. Change
//! `handle` to your rule; `velonotify test` checks it against the rows in
//! __STEM__.selftest.jsonl (see README.md).

use std::cell::RefCell;

use regex::Regex;
use serde_json::{Map, Value};

wit_bindgen::generate!({ path: "wit", world: "rule-module" });

// The world's own types (`Event`, `ModuleInfo`, `Setup`, `Failure`,
// `Action`) are generated at the crate's root; the others are here.
use velociraptor::notify::actions::Alert;
use velociraptor::notify::types::{ColumnTest, Interest, Param, ParamError, ParamKind, ValueTest};

/// The parameters, as configured.
struct Config {
    queue: String,
    file_regex: Regex,
    /// The pattern as written, for the host's interest.
    file_pattern: String,
    dedup: i64,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn param(name: &str, kind: ParamKind, default: &str, description: &str) -> Param {
    Param {
        name: name.into(),
        kind,
        default: default.into(),
        description: description.into(),
        choices: Vec::new(),
    }
}

fn params() -> Vec<Param> {
    vec![
        param("Queue", ParamKind::String, "Linux.Detection.Honeyfiles", "The event queue to watch."),
        param(
            "FileRegex",
            ParamKind::Regex,
            "passw|secret",
            "Names of the files to alert on (the FileName column).",
        ),
        param("Dedup", ParamKind::Int, "300", "Seconds during which the same alert is raised once."),
    ]
}

fn bad_config(param: &str, message: impl Into<String>) -> Failure {
    Failure::BadConfig(ParamError {
        param: param.into(),
        message: message.into(),
    })
}

struct Rule;

impl Guest for Rule {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "__MODULE_NAME__".into(),
            version: "0.1.0".into(),
            description: "Alerts when a file whose name matches FileRegex is accessed.".into(),
            params: params(),
        }
    }

    fn configure(given: Vec<(String, String)>) -> Result<Setup, Failure> {
        let mut values: Map<String, Value> = params()
            .into_iter()
            .map(|p| (p.name, Value::String(p.default)))
            .collect();
        for (name, value) in given {
            if !values.contains_key(&name) {
                let known: Vec<&str> = values.keys().map(String::as_str).collect();
                return Err(bad_config(&name, format!("unknown parameter (this module accepts: {})", known.join(", "))));
            }
            values.insert(name, Value::String(value));
        }
        let text = |name: &str| values[name].as_str().unwrap_or_default().to_string();
        let file_pattern = text("FileRegex");
        // Case-insensitive and unanchored, like VQL's `=~`.
        let file_regex = Regex::new(&format!("(?i){file_pattern}"))
            .map_err(|e| bad_config("FileRegex", format!("the regex does not compile: {e}")))?;
        let dedup_text = text("Dedup");
        let dedup = match dedup_text.trim() {
            "" => 0,
            digits => digits
                .parse()
                .map_err(|_| bad_config("Dedup", format!("expected an integer, got {dedup_text:?}")))?,
        };
        let config = Config {
            queue: text("Queue"),
            file_regex,
            file_pattern,
            dedup,
        };
        let setup = Setup {
            queues: vec![config.queue.clone()],
            tick_seconds: None,
            // The host tests FileName itself and spares the rule the other rows.
            interests: vec![Interest {
                queue: config.queue.clone(),
                columns: vec![ColumnTest {
                    column: "FileName".into(),
                    test: ValueTest::Matches(config.file_pattern.clone()),
                }],
            }],
        };
        CONFIG.with(|c| *c.borrow_mut() = Some(config));
        Ok(setup)
    }

    fn handle(event: Event) -> Result<Vec<Action>, Failure> {
        let row: Map<String, Value> = serde_json::from_str(&event.row)
            .map_err(|e| Failure::BadEvent(format!("the row is not a JSON object: {e}")))?;
        CONFIG.with(|c| {
            let config = c.borrow();
            let config = config.as_ref().ok_or_else(|| Failure::Internal("not configured".into()))?;
            let file_name = row.get("FileName").and_then(Value::as_str).unwrap_or_default();
            if !config.file_regex.is_match(file_name) {
                return Ok(Vec::new());
            }
            Ok(vec![Action::Alert(Alert {
                name: format!("Honey file \"{file_name}\" accessed"),
                dedup_seconds: Some(config.dedup),
                event_data: Value::Object(row.clone()).to_string(),
                client_id: row.get("ClientId").and_then(Value::as_str).map(str::to_string),
                artifact: Some(config.queue.clone()),
                artifact_type: None,
                flow_id: None,
            })])
        })
    }

    fn tick() -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }
}

export!(Rule);
