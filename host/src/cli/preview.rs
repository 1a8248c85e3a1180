//! The console's preview: rows an analyst pasted, replayed through the
//! modules of the configuration on a throw-away state (in memory, a
//! virtual clock, no delivery), as `velonotify replay` does. The console
//! (in `operator`) knows only the [`Previewer`] trait; this is its
//! implementation, which needs the configuration.

use std::sync::Mutex;

use anyhow::Context as _;
use serde_json::Value;

use super::config::Config;
use super::runtime::{self, Overrides, Runtime};
use crate::clock::Clock;
use crate::operator::console::{Preview, PreviewAction, Previewer};
use crate::pipeline::files::{FileOutbox, message_part};
use crate::pipeline::outbox::Level;
use crate::sources::JsonlSource;
use crate::store::redacted_url;

/// Replays previews with the configuration `run` started with.
#[derive(Debug)]
pub struct ReplayPreviewer {
    config: Config,
    overrides: Overrides,
    /// One preview at a time: each starts every module.
    one_at_a_time: Mutex<()>,
}

impl ReplayPreviewer {
    pub fn new(config: &Config, overrides: &Overrides) -> Self {
        Self {
            config: config.clone(),
            // A state of its own, in memory: the service's is not touched.
            overrides: Overrides {
                state: None,
                ..overrides.clone()
            },
            one_at_a_time: Mutex::new(()),
        }
    }
}

impl Previewer for ReplayPreviewer {
    fn preview(&self, rows: &[u8]) -> anyhow::Result<Preview> {
        let _one = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let config = &self.config;
        let mut runtime = Runtime::start(config, &self.overrides, Clock::virtual_at(0))?;
        let dir = tempfile::tempdir().context("a directory for the preview")?;
        let clock = runtime.pipeline.clock().clone();
        let mut out = FileOutbox::fresh(dir.path(), runtime.store(), clock)?
            .with_trace_level(Level::Warn)
            .with_log_level(Level::Info)
            .with_inhibit_rules(config.inhibitor()?)
            .with_mutes(config.time_intervals()?, runtime::module_mutes(config, &runtime));
        let source = JsonlSource::new(
            std::io::Cursor::new(rows.to_vec()),
            "preview",
            config.default_org(),
            config.max_event_bytes(),
        );
        let (events, skipped) = super::replay_into(&mut runtime.pipeline, source, &mut out, (None, None))?;
        read_back(dir.path(), events, skipped)
    }
}

/// What the replay wrote: each notification in order, an e-mail's
/// message beside it; the warnings of the log.
fn read_back(dir: &std::path::Path, events: u64, skipped: u64) -> anyhow::Result<Preview> {
    let lines = |name: &str| -> anyhow::Result<Vec<Value>> {
        let text = std::fs::read_to_string(dir.join(name)).with_context(|| format!("reading {name}"))?;
        Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
    };
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    let mut actions = Vec::new();
    let mut next_email = 1;
    for line in lines("summary.jsonl")? {
        let kind = text(&line, "kind");
        // A webhook's address may hold its secret: shown as the CLI and
        // the outbox page show it.
        let shown = |to: &str| match kind.as_str() {
            "webhook" => redacted_url(to),
            _ => to.to_string(),
        };
        let mut action = PreviewAction {
            module: text(&line, "module"),
            recipients: line["recipients"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).map(shown).collect())
                .unwrap_or_default(),
            kind,
            subject: text(&line, "subject"),
            fate: text(&line, "fate"),
            held_by: text(&line, "held_by"),
            html: None,
            text: None,
        };
        if action.kind == "email" && action.fate == "sent" {
            let message = std::fs::read(dir.join(format!("{next_email:04}.eml")))?;
            next_email += 1;
            action.html = message_part(&message, "text/html");
            action.text = message_part(&message, "text/plain");
        }
        actions.push(action);
    }
    let log = lines("log.jsonl")?
        .iter()
        .map(|l| format!("{} {}: {}", text(l, "level"), text(l, "module"), text(l, "message")))
        .collect();
    Ok(Preview {
        events,
        skipped,
        actions,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a preview shows of a webhook is what the outbox page shows:
    /// no secret of its address.
    #[test]
    fn a_previewed_webhooks_address_is_shown_without_its_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::json!({"module": "hook", "kind": "webhook", "fate": "sent", "subject": null,
                                      "recipients": ["https://user:pw@hooks.example/T0/B0/secret?token=abc"]});
        std::fs::write(dir.path().join("summary.jsonl"), format!("{line}\n")).unwrap();
        std::fs::write(dir.path().join("log.jsonl"), "").unwrap();
        let preview = read_back(dir.path(), 1, 0).unwrap();
        let shown = &preview.actions[0].recipients[0];
        assert_eq!(
            shown,
            &redacted_url("https://user:pw@hooks.example/T0/B0/secret?token=abc")
        );
        assert!(!shown.contains("pw") && !shown.contains("abc"), "{shown}");
    }
}
