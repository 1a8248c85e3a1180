//! `velonotify test`: rows through one module alone, its actions printed
//! (or checked against a file), for a rule author's CI. The rows are read
//! as `replay` and the hot-swap self-test read them; each action prints as
//! one JSON line, as in a replay's `actions.jsonl`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Value, json};

use super::config::{Config, DEFAULT_MAX_EVENT_BYTES, ModuleSection};
use super::runtime::{Overrides, load_world, module_spec};
use crate::capabilities::lookups::LookupSource;
use crate::capabilities::state::StateCapability;
use crate::clock::CallTime;
use crate::contract::Failure;
use crate::engine::{AllocatorChoice, CallError, Engine, EngineOptions, Module};
use crate::pipeline::outbox::{action_json, summarize};
use crate::sources::JsonlSource;

/// Largest rows file read.
const MAX_ROWS_BYTES: u64 = 256 << 20;

/// What `velonotify test` was asked.
#[derive(Debug)]
pub struct RuleTest {
    pub module: PathBuf,
    pub events: PathBuf,
    pub expect: Option<PathBuf>,
    pub world: Option<PathBuf>,
    pub params: Vec<(String, String)>,
    pub org: String,
    /// The queue of rows without `_Source` (default: the module's, if one).
    pub queue: Option<String>,
    pub cache_dir: Option<PathBuf>,
}

impl RuleTest {
    /// Runs the rows; prints each action (and each failed row) as a JSON
    /// line, or with `expect` says where they differ. Ok(false): they
    /// differ.
    pub fn run(&self, out: &mut dyn std::io::Write) -> anyhow::Result<bool> {
        let lines = self.outcome_lines()?;
        let Some(expect) = &self.expect else {
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            return Ok(true);
        };
        let expected = read_expected(expect)?;
        let differences = differences(&expected, &lines);
        for difference in &differences {
            writeln!(out, "{difference}")?;
        }
        if differences.is_empty() {
            writeln!(out, "ok: {} action(s) as expected", lines.len())?;
        }
        Ok(differences.is_empty())
    }

    /// One JSON object per action and per failed row, in order.
    fn outcome_lines(&self) -> anyhow::Result<Vec<Value>> {
        let config = self.config()?;
        let overrides = Overrides {
            world: self.world.clone(),
            ..Overrides::default()
        };
        let lookups: Arc<dyn LookupSource> = Arc::new(load_world(&config, &overrides)?);
        let state = Arc::new(StateCapability::in_memory());
        let time = CallTime::default();
        let section = &config.modules[0];
        let spec = module_spec(&config, section, &lookups, &state, &time, true, None)?;
        let engine = Engine::new(EngineOptions {
            cache_dir: self.cache_dir.clone(),
            allocator: AllocatorChoice::OnDemand,
            max_instances: 1,
            max_memory_bytes: spec.limits.memory_bytes,
        })?;
        let mut module = Module::start(&engine, &self.module, spec)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.module.display()))?;
        let queues = module.setup().queues.clone();
        let rows = crate::files::read_regular(&self.events, MAX_ROWS_BYTES)?;
        let name = self
            .events
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut lines = Vec::new();
        // Rows without `_Source` are the module's, when it reads one queue.
        let default_queue = self.queue.clone().or_else(|| match queues.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        });
        let source = JsonlSource::new(rows.as_slice(), &name, &self.org, DEFAULT_MAX_EVENT_BYTES)
            .with_default_queue(default_queue);
        for item in source {
            let event = match item {
                Ok(event) => event,
                // A row that cannot be read is said, as a replay says it.
                Err(e) => {
                    let id = format!("{}:{}", e.source_name, e.line);
                    lines.push(json!({"event": id, "failure": format!("unreadable row: {}", e.message)}));
                    continue;
                }
            };
            if !queues.contains(&event.queue) {
                continue;
            }
            let now_us = event.ts_us.unwrap_or_else(|| crate::clock::Clock::System.now_us());
            let actions = match module.handle(&event.to_wit(), now_us).result {
                Ok(actions) => actions,
                Err(error) => {
                    lines.push(json!({"event": event.id, "failure": failure_text(&error)}));
                    continue;
                }
            };
            // What `run` would refuse is said, not printed as if it went out.
            let policy = &module.spec().grants.outbound;
            if let Err(problem) = policy.check_count(actions.len()) {
                lines.push(json!({"event": event.id, "refused": problem}));
                continue;
            }
            for action in &actions {
                lines.push(match policy.check(action) {
                    Ok(()) => {
                        let (kind, _, _) = summarize(action);
                        with_head(json!({"event": event.id, "kind": kind}), action_json(action))
                    }
                    Err(problem) => json!({"event": event.id, "refused": problem}),
                });
            }
        }
        Ok(lines)
    }

    /// A configuration of this one module, with defaults for the rest.
    fn config(&self) -> anyhow::Result<Config> {
        let base_dir = std::env::current_dir().context("the current directory")?;
        let params = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
            .collect();
        Ok(Config {
            base_dir,
            modules: vec![ModuleSection {
                path: self.module.clone(),
                org: Some(self.org.clone()),
                params,
                ..ModuleSection::default()
            }],
            ..Config::default()
        })
    }
}

/// `{"event", "kind"}` first, then the action's own members.
fn with_head(mut head: Value, action: Value) -> Value {
    if let (Value::Object(head), Value::Object(members)) = (&mut head, action) {
        head.extend(members);
    }
    head
}

/// A failed call as the line says it: what kind of failure and its text.
fn failure_text(error: &CallError) -> String {
    match error {
        CallError::Failed(Failure::BadEvent(m)) => format!("bad-event: {m}"),
        CallError::Failed(Failure::Lookup(m)) => format!("lookup: {m}"),
        CallError::Failed(Failure::Internal(m)) => format!("internal: {m}"),
        CallError::Failed(Failure::BadConfig(e)) => format!("bad-config: {}: {}", e.param, e.message),
        other => format!("trap: {other}"),
    }
}

fn read_expected(path: &Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("{}:{}: not a JSON line", path.display(), i + 1))
        })
        .collect()
}

/// Where the actions differ from those expected, one line each (none when
/// they are the same, compared as JSON values in order).
fn differences(expected: &[Value], actual: &[Value]) -> Vec<String> {
    let mut found = Vec::new();
    for i in 0..expected.len().max(actual.len()) {
        match (expected.get(i), actual.get(i)) {
            (Some(e), Some(a)) if e == a => {}
            (Some(e), Some(a)) => found.push(format!("action {}: expected {e}\n          got {a}", i + 1)),
            (Some(e), None) => found.push(format!("action {}: expected {e}\n          got nothing", i + 1)),
            (None, Some(a)) => found.push(format!("action {}: not expected: {a}", i + 1)),
            (None, None) => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_action_and_both_sides() {
        let a = json!({"kind": "alert", "name": "x"});
        let b = json!({"kind": "alert", "name": "y"});
        let same = std::slice::from_ref(&a);
        assert!(differences(same, same).is_empty());
        let found = differences(&[a.clone(), a.clone()], &[a.clone(), b.clone()]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("action 2: expected") && found[0].contains("\"y\""),
            "{found:?}"
        );
        assert!(differences(same, &[])[0].contains("got nothing"));
        assert!(differences(&[], &[b])[0].contains("not expected"));
    }
}
