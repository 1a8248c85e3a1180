//! End-to-end tests: the real `velonotify` binary running the real rule
//! components (built by `tests/support/build.rs`).
//!
//! - `demo`: the demo replay, parsed back and pinned by snapshots;
//! - `sandbox`: hostile modules are contained;
//! - `cli`: `check`, `replay` and `run` on good and bad input;
//! - `family`: the other modules, alone and chained;
//! - `delivery`: `run` against real SMTP and HTTP servers, killed and
//!   restarted;
//! - `durability`: `run` killed at each crash point and at random moments,
//!   its store busy or full: nothing lost;
//! - `velociraptor`: `run` against a stand-in Velociraptor gRPC server, and
//!   the HTTP ingest endpoint;
//! - `interests`: declared interests spare calls and change no action;
//! - `receivers`: each vendor target (Teams, PagerDuty, TheHive, IRIS,
//!   Splunk, Discord, Telegram) against a stand-in checking its schema;
//! - `send_email`: SendEmail rows through ingest to a real SMTP server,
//!   files inline and through the API stand-in;
//! - `noise`: silences hold back what they match, in `run` and in a replay;
//! - `hostile`: the ingest endpoint against strangers and careless senders
//!   (peak memory measured).

mod cli;
mod console;
mod delivery;
mod demo;
mod durability;
mod family;
mod hostile;
mod hotswap;
mod interests;
mod languages;
mod monitors;
mod noise;
mod portability;
mod python;
mod receivers;
mod replicas;
mod sandbox;
mod send_email;
mod velociraptor;

use std::path::Path;
use std::process::Output;

/// The binary under test.
const EXE: &str = env!("CARGO_BIN_EXE_velonotify");

/// Runs `velonotify test MODULE --events ROWS` with `more` flags, the
/// compiled module cached with the other tests' components.
fn rule_test(module: &Path, events: &Path, more: &[&str]) -> Output {
    let (module, events) = (module.display().to_string(), events.display().to_string());
    let cache = velonotify_test_support::cache_dir().display().to_string();
    let mut args = vec!["test", &module, "--events", &events, "--cache-dir", &cache];
    args.extend_from_slice(more);
    velonotify(&args)
}

/// The JSON lines a command printed.
fn printed_lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Tests that load the whole machine (compiling a Python or JavaScript
/// component, building a module project) hold this alone; tests whose
/// timing such load would upset (a stream's read-back window) hold it
/// shared, so the two never run at once on a small CI machine.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// For a test that keeps the machine's cores busy.
fn machine_alone() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// For a test that needs the machine not overloaded.
fn machine_calm() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `velonotify` with `args`.
fn velonotify(args: &[&str]) -> Output {
    velonotify_test_support::velonotify(EXE, args)
}

/// Runs `velonotify replay` and asserts that it succeeded.
fn replay(config: &Path, events: &Path, out: &Path) -> Output {
    replay_with(config, events, out, &[])
}

/// As [`replay`], with more flags (`--state DB`, ...).
fn replay_with(config: &Path, events: &Path, out: &Path, extra: &[&str]) -> Output {
    let (config, events, out) = (
        config.display().to_string(),
        events.display().to_string(),
        out.display().to_string(),
    );
    let mut args = vec!["replay", "-c", &config, "--events", &events, "--out", &out];
    args.extend_from_slice(extra);
    let output = velonotify(&args);
    assert!(
        output.status.success(),
        "replay failed:\n{}",
        velonotify_test_support::stderr(&output)
    );
    output
}

/// Writes a configuration file into `dir`.
fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("velonotify.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The sections of a `run` configuration that serves the demo's world,
/// metrics on port `metrics` and the ingest endpoint on port `ingest`
/// (bearer `token`).
fn served_sections(ingest: u16, metrics: u16, token: &str) -> String {
    format!(
        r#"
[lookups]
world = "{world}"

[metrics]
listen = "127.0.0.1:{metrics}"

[ingest]
listen = "127.0.0.1:{ingest}"
token = "{token}"
"#,
        world = velonotify_test_support::data("demo/world.json").display(),
    )
}

/// A `run` configuration in `dir`: the rule module `rule` (named `name`,
/// `Dedup = -1`) whose alerts the User Message module turns into user
/// messages, events from the ingest endpoint on port `ingest` (bearer
/// `token`), metrics on port `metrics`, the demo's world and the shared
/// component cache; `more` adds sections.
fn rule_to_user_messages_config(
    dir: &Path,
    name: &str,
    rule: &Path,
    (ingest, metrics, token): (u16, u16, &str),
    more: &str,
) -> std::path::PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[host]
state = "state.db"
cache_dir = "{cache}"
{served}
{more}
[[module]]
name = "{name}"
path = "{rule}"
[module.params]
Dedup = -1

[[module]]
path = "user_message.wasm"
"#,
            cache = velonotify_test_support::cache_dir().display(),
            served = served_sections(ingest, metrics, token),
            rule = rule.display(),
        ),
    )
}

/// Writes alert rows (queue `Server.Internal.Alerts`) as JSON lines.
fn write_alerts(dir: &Path, rows: &[serde_json::Value]) -> std::path::PathBuf {
    let path = dir.join("events.jsonl");
    let mut text = String::new();
    for row in rows {
        let mut row = row.clone();
        row["_Source"] = "Server.Internal.Alerts".into();
        text.push_str(&row.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}
