//! The files a replay writes (see README.md "Command line"):
//! - `NNNN.eml`: each e-mail, as it would be sent; `NNNN.html` its HTML part;
//! - `actions.jsonl`: every other action;
//! - `summary.jsonl`: one line per action:
//!   `{"module","kind","recipients","subject","queue","event","fate"}`,
//!   where `fate` is `sent`, or `silenced` or `inhibited` with `held_by`
//!   (the silence or rule) and `labels` (a silence of the `--state`
//!   database in force at the row's time, or an inhibit rule, held it
//!   back: no `.eml` is written for it);
//! - `log.jsonl`: what modules logged and what went wrong, per event.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::{Value, json};

use super::noise_control::{Fate, NoiseControl};
use super::outbox::{Delivery, Level, Outbox, Report, action_json, summarize};
use crate::clock::Clock;
use crate::contract::Action;
use crate::store::{Changes, RetryChange, StateWrite, Store, StoreError, Throttle};

/// Writes actions and reports into a directory; module state goes to the
/// replay's store.
#[derive(Debug)]
pub struct FileOutbox {
    dir: PathBuf,
    store: std::sync::Arc<Store>,
    /// The replay's clock: state expires by it.
    clock: Clock,
    /// The first file that could not be written, told at the next commit.
    failed: Option<String>,
    next_email: u32,
    summary: BufWriter<File>,
    actions: BufWriter<File>,
    log: BufWriter<File>,
    /// Reports at or above this level are also written to the process log.
    trace_level: Level,
    /// Reports below this level are not written at all.
    log_level: Level,
    counts: Counts,
    /// The silences of the replay's store and the inhibit rules, applied
    /// on its clock; silences read again (if they changed) at the first
    /// notification of each input.
    noise: NoiseControl,
    silences_checked: bool,
}

/// What an outbox has taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub emails: u64,
    pub other_actions: u64,
    /// Notifications silenced or inhibited (not written).
    pub held_back: u64,
    pub warnings: u64,
    pub errors: u64,
}

/// Files a replay writes; a new replay removes the previous ones.
const OUTPUT_FILES: [&str; 3] = ["summary.jsonl", "actions.jsonl", "log.jsonl"];

impl FileOutbox {
    /// A fresh output directory: earlier outputs in it are removed.
    pub fn fresh(dir: &Path, store: std::sync::Arc<Store>, clock: Clock) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if is_numbered_output(name) || OUTPUT_FILES.contains(&name) {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Self::open(dir, 1, store, clock)
    }

    /// An outbox that adds to what the directory already holds.
    pub fn append(dir: &Path, store: std::sync::Arc<Store>, clock: Clock) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut last = 0;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".eml"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                last = last.max(n);
            }
        }
        Self::open(dir, last + 1, store, clock)
    }

    fn open(dir: &Path, next_email: u32, store: std::sync::Arc<Store>, clock: Clock) -> anyhow::Result<Self> {
        let open = |name: &str| -> anyhow::Result<BufWriter<File>> {
            let path = dir.join(name);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            Ok(BufWriter::new(file))
        };
        let noise = NoiseControl::new(store.clone());
        Ok(Self {
            dir: dir.to_path_buf(),
            store,
            clock,
            failed: None,
            next_email,
            summary: open("summary.jsonl")?,
            actions: open("actions.jsonl")?,
            log: open("log.jsonl")?,
            trace_level: Level::Info,
            log_level: Level::Debug,
            counts: Counts::default(),
            noise,
            silences_checked: false,
        })
    }

    /// Applies the configuration's inhibit rules.
    pub fn with_inhibit_rules(mut self, inhibitor: crate::noise::inhibition::Inhibitor) -> Self {
        self.noise = self.noise.with_inhibitor(inhibitor);
        self
    }

    /// Mutes modules in their mute times (and outside their active ones).
    pub fn with_mutes(
        mut self,
        intervals: crate::noise::time_intervals::TimeIntervals,
        mutes: std::collections::HashMap<String, super::noise_control::ModuleMute>,
    ) -> Self {
        self.noise = self.noise.with_mutes(intervals, mutes);
        self
    }

    /// Reports below `level` are left out of `log.jsonl`.
    pub fn with_log_level(mut self, level: Level) -> Self {
        self.log_level = level;
        self
    }

    /// Reports below `level` go to `log.jsonl` only.
    pub fn with_trace_level(mut self, level: Level) -> Self {
        self.trace_level = level;
        self
    }

    pub fn counts(&self) -> Counts {
        self.counts
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.summary.flush()?;
        self.actions.flush()?;
        self.log.flush()?;
        Ok(())
    }

    fn write_email(&mut self, message: &[u8]) -> anyhow::Result<String> {
        let name = format!("{:04}", self.next_email);
        self.next_email += 1;
        let eml = self.dir.join(format!("{name}.eml"));
        std::fs::write(&eml, message).with_context(|| format!("writing {}", eml.display()))?;
        if let Some(html) = message_part(message, "text/html") {
            let path = self.dir.join(format!("{name}.html"));
            std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(name)
    }
}

impl FileOutbox {
    fn write(&mut self, delivery: Delivery<'_>) -> anyhow::Result<()> {
        let (kind, recipients, subject) = summarize(delivery.action);
        if delivery.is_notification() && !self.silences_checked {
            self.noise.refresh();
            self.silences_checked = true;
        }
        let held_back = match delivery.is_notification() && !self.noise.is_idle() {
            true => {
                let labels = delivery.labels();
                match self.noise.decide(&labels, self.clock.now_us()) {
                    Fate::Notify => None,
                    Fate::Silenced(held_by) => Some(("silenced", held_by, labels)),
                    Fate::Inhibited(held_by) => Some(("inhibited", held_by, labels)),
                    Fate::Grouped { held_by, until_us } => {
                        let until = crate::clock::rfc3339(until_us);
                        Some(("grouped", format!("{held_by} (until {until})"), labels))
                    }
                    Fate::Muted {
                        held_by,
                        until_us,
                        drop,
                    } => {
                        let fate = if drop { "dropped" } else { "muted" };
                        let until = crate::clock::rfc3339(until_us);
                        Some((fate, format!("{held_by} (until {until})"), labels))
                    }
                }
            }
            false => None,
        };
        let mut summary = json!({
            "module": delivery.module,
            "kind": kind,
            "recipients": recipients,
            "subject": subject,
            "queue": delivery.queue,
            "event": delivery.event,
            "fate": "sent",
        });
        if let Some((fate, held_by, labels)) = held_back {
            summary["fate"] = json!(fate);
            summary["held_by"] = json!(held_by);
            summary["labels"] = json!(labels);
            self.counts.held_back += 1;
            writeln!(self.summary, "{summary}")?;
            return Ok(());
        }
        match delivery.action {
            Action::Email(email) => {
                self.write_email(&email.message)?;
                self.counts.emails += 1;
            }
            other => {
                let mut line = json!({"module": delivery.module, "kind": kind, "event": delivery.event});
                if let (Value::Object(m), Value::Object(fields)) = (&mut line, action_json(other)) {
                    m.extend(fields);
                }
                writeln!(self.actions, "{line}")?;
                self.counts.other_actions += 1;
            }
        }
        writeln!(self.summary, "{summary}")?;
        Ok(())
    }
}

fn is_numbered_output(name: &str) -> bool {
    let stem = name.strip_suffix(".eml").or_else(|| name.strip_suffix(".html"));
    stem.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
}

/// The decoded first part of a message of `mime_type` (`text/html`,
/// `text/plain`), if it has one.
pub fn message_part(message: &[u8], mime_type: &str) -> Option<String> {
    fn find(part: &mailparse::ParsedMail<'_>, mime_type: &str) -> Option<String> {
        if part.ctype.mimetype == mime_type {
            return part.get_body().ok();
        }
        part.subparts.iter().find_map(|p| find(p, mime_type))
    }
    find(&mailparse::parse_mail(message).ok()?, mime_type)
}

impl Outbox for FileOutbox {
    fn accept(&mut self, delivery: Delivery<'_>) {
        if let Err(e) = self.write(delivery)
            && self.failed.is_none()
        {
            self.failed = Some(format!("{e:#}"));
        }
    }

    /// Stores the input's state; the files are written as actions come
    /// (and flushed at the end of the replay).
    fn commit(&mut self, state: &[StateWrite]) -> Result<(), StoreError> {
        let changes = Changes {
            state,
            items: &[],
            retries: &[],
            fences: &[],
        };
        let now_us = self.clock.now_us();
        self.store.commit(&changes, now_us, now_us, &Throttle::default())?;
        self.silences_checked = false;
        match self.failed.take() {
            Some(problem) => Err(StoreError::files(&self.dir, problem)),
            None => Ok(()),
        }
    }

    /// A replay is not run again later: an event a module failed on for
    /// want of a lookup stays failed, as reported.
    fn defer(&mut self, change: RetryChange) {
        if let RetryChange::Schedule(retry) = change {
            self.report(Report::new(
                Level::Warn,
                &retry.module,
                Some(&retry.event_id),
                "a replay does not hand an event to a module again: this one is not handled by it",
            ));
        }
    }

    fn report(&mut self, report: Report) {
        match report.level {
            Level::Warn => self.counts.warnings += 1,
            Level::Error => self.counts.errors += 1,
            _ => {}
        }
        if report.level >= self.trace_level {
            report.trace();
        }
        if report.level < self.log_level {
            return;
        }
        let line = LogLine {
            level: report.level.as_str(),
            module: report.module.as_deref(),
            event: report.event.as_deref(),
            message: &report.message,
        };
        let written = serde_json::to_writer(&mut self.log, &line)
            .map_err(std::io::Error::from)
            .and_then(|()| self.log.write_all(b"\n"));
        if let Err(e) = written {
            tracing::error!(error = %e, "could not write log.jsonl");
        }
    }
}

/// One line of `log.jsonl`, written straight from the report (a replay
/// can write one per row).
#[derive(serde::Serialize)]
struct LogLine<'a> {
    level: &'a str,
    module: Option<&'a str>,
    event: Option<&'a str>,
    message: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_numbered_outputs_are_cleared() {
        assert!(is_numbered_output("0001.eml"));
        assert!(is_numbered_output("0012.html"));
        assert!(!is_numbered_output("notes.html"));
        assert!(!is_numbered_output(".eml"));
    }
}
