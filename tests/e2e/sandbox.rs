//! Hostile modules are contained: each is stopped, reported by name and
//! restarted, and the other modules handle every event.

use std::time::Duration;

use serde_json::json;
use velonotify_test_support::peers::free_port;
use velonotify_test_support::service::{Running, metric, post_events};
use velonotify_test_support::{jsonl, scratch, stderr};

use super::{EXE, replay, write_alerts, write_config};

/// The Alerts module beside one hostile module per misbehaviour. The
/// hostile ones misbehave on alerts named "boom ..." and echo the others.
const CONFIG: &str = r#"
[smtp]
from = "velonotify@example.org"

[[module]]
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@example.org\n"
SendInterval = -1

[[module]]
name = "loops-forever"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
deadline_ms = 200
[module.params]
Behaviour = "loop"
Trigger = "^boom"

[[module]]
name = "allocates-forever"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
memory_mib = 16
[module.params]
Behaviour = "alloc"
Trigger = "^boom"

[[module]]
name = "recurses-forever"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
[module.params]
Behaviour = "recurse"
Trigger = "^boom"

[[module]]
name = "recurses-natively"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
[module.params]
Behaviour = "recurse-native"
Trigger = "^boom"

[[module]]
name = "panics"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
[module.params]
Behaviour = "panic"
Trigger = "^boom"

[[module]]
name = "floods"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
[module.params]
Behaviour = "flood"
Trigger = "^boom"

[[module]]
name = "outputs-100mb"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
[module.params]
Behaviour = "huge"
Trigger = "^boom"

[[module]]
name = "answers-bad-json"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
max_action_bytes = 4096
[module.params]
Behaviour = "bad-json"
Trigger = "^boom"
"#;

fn alerts() -> Vec<serde_json::Value> {
    ["boom 1", "calm", "boom 2", "calm again"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"client_id": "server", "name": name, "timestamp": "2026-05-10T08:00:00Z",
                   "event_data": {"n": i}, "_ts": 1_778_400_000 + i as u64})
        })
        .collect()
}

struct Outcome {
    summary: Vec<serde_json::Value>,
    log: Vec<serde_json::Value>,
    stderr: String,
}

fn run_hostile() -> Outcome {
    let dir = scratch();
    let config = write_config(dir.path(), CONFIG);
    let events = write_alerts(dir.path(), &alerts());
    let out = dir.path().join("out");
    let output = replay(&config, &events, &out);
    Outcome {
        summary: jsonl(&out.join("summary.jsonl")),
        log: jsonl(&out.join("log.jsonl")),
        stderr: stderr(&output),
    }
}

fn errors_of<'a>(outcome: &'a Outcome, module: &str) -> Vec<&'a str> {
    outcome
        .log
        .iter()
        .filter(|l| l["module"] == module && l["level"] == "error")
        .map(|l| l["message"].as_str().unwrap())
        .collect()
}

fn sent_by<'a>(outcome: &'a Outcome, module: &str) -> Vec<&'a str> {
    outcome
        .summary
        .iter()
        .filter(|s| s["module"] == module)
        .map(|s| s["event"].as_str().unwrap())
        .collect()
}

#[test]
fn the_other_modules_handle_every_event_while_hostile_ones_trap() {
    let outcome = run_hostile();
    assert_eq!(
        sent_by(&outcome, "Server.Monitor.Alerts"),
        ["events.jsonl:1", "events.jsonl:2", "events.jsonl:3", "events.jsonl:4"],
        "{}",
        outcome.stderr
    );
}

#[test]
fn a_module_that_loops_forever_is_stopped_at_its_deadline_within_a_second() {
    let outcome = run_hostile();
    let errors = errors_of(&outcome, "loops-forever");
    assert_eq!(errors.len(), 2, "{errors:?}");
    for error in errors {
        assert!(
            error.starts_with("stopped at its deadline of 200 ms (after "),
            "{error}"
        );
        let ms: u64 = error
            .rsplit("after ")
            .next()
            .unwrap()
            .trim_end_matches(" ms)")
            .parse()
            .unwrap();
        assert!(ms < 1000, "stopped after {ms} ms");
    }
    assert_eq!(
        sent_by(&outcome, "loops-forever"),
        ["events.jsonl:2", "events.jsonl:4"],
        "restarted after each trap"
    );
}

#[test]
fn a_module_that_allocates_without_bound_is_stopped_at_its_memory_limit() {
    let outcome = run_hostile();
    let errors = errors_of(&outcome, "allocates-forever");
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("stopped at its memory limit of 16 MiB")),
        "{errors:?}"
    );
    assert_eq!(
        sent_by(&outcome, "allocates-forever"),
        ["events.jsonl:2", "events.jsonl:4"]
    );
}

#[test]
fn deep_recursion_and_panics_are_contained_and_named() {
    let outcome = run_hostile();
    let shadow_stack = errors_of(&outcome, "recurses-forever");
    assert!(
        shadow_stack.len() == 2
            && shadow_stack
                .iter()
                .all(|e| e.contains("out-of-bounds memory access (a stack overflow")),
        "{shadow_stack:?}"
    );
    let wasm_stack = errors_of(&outcome, "recurses-natively");
    assert!(
        wasm_stack.len() == 2 && wasm_stack.iter().all(|e| e.starts_with("stopped by a stack overflow")),
        "{wasm_stack:?}"
    );
    let panics = errors_of(&outcome, "panics");
    assert!(
        panics.len() == 2
            && panics
                .iter()
                .all(|e| e.contains("panicked: hostile module panics on purpose")),
        "{panics:?}"
    );
    assert_eq!(sent_by(&outcome, "panics"), ["events.jsonl:2", "events.jsonl:4"]);
}

#[test]
fn floods_huge_outputs_and_invalid_json_are_refused_and_named() {
    let outcome = run_hostile();
    let expect = |module: &str, message: &str| {
        let errors = errors_of(&outcome, module);
        assert!(
            errors.len() == 2 && errors.iter().all(|e| message.split(" | ").any(|m| e.contains(m))),
            "{module}: {errors:?}"
        );
        // The module goes on: the calm events are still echoed.
        assert_eq!(
            sent_by(&outcome, module),
            ["events.jsonl:2", "events.jsonl:4"],
            "{module}"
        );
    };
    expect(
        "floods",
        "10000 actions from one call, more than its max_actions (100): none kept",
    );
    // Copying 100 MB out of the instance can outlast the call's deadline
    // (in debug builds): then the deadline stops it, else the size check.
    expect(
        "outputs-100mb",
        "dropped an invalid action from the module: a webhook body of 104857600 bytes | stopped at its deadline",
    );
    expect(
        "answers-bad-json",
        "dropped an invalid action from the module: a user message that is not a JSON object",
    );
}

#[test]
fn the_replay_summary_counts_traps_per_module() {
    let outcome = run_hostile();
    let line = outcome
        .stderr
        .lines()
        .find(|l| l.trim_start().starts_with("loops-forever"))
        .unwrap();
    assert!(line.contains("trapped    2"), "{line}");
    assert!(
        outcome.stderr.contains("stopped at its deadline"),
        "traps are on stderr too:\n{}",
        outcome.stderr
    );
}

/// A module that asks for a tick every 60 s and echoes each tick's time.
const TICKING: &str = r#"
[[module]]
name = "ticker"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
[module.params]
Behaviour = "echo"
TickSeconds = 60
"#;

fn tick_times(out: &std::path::Path) -> Vec<u64> {
    jsonl(&out.join("actions.jsonl"))
        .iter()
        .filter(|a| a["url"] == "https://hooks.example.org/tick")
        .map(|a| {
            serde_json::from_str::<serde_json::Value>(a["body"].as_str().unwrap()).unwrap()["tick_us"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[test]
fn periodic_modules_tick_on_the_virtual_clock_between_rows() {
    let dir = scratch();
    let config = write_config(dir.path(), TICKING);
    let t0 = 1_778_400_000u64;
    let rows = [json!({"name": "a", "_ts": t0}), json!({"name": "b", "_ts": t0 + 300})];
    let events = write_alerts(dir.path(), &rows);
    let out = dir.path().join("out");
    let output = super::velonotify(&[
        "replay",
        "-c",
        &config.display().to_string(),
        "--events",
        &events.display().to_string(),
        "--out",
        &out.display().to_string(),
        "--end",
        &(t0 + 600).to_string(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let expected: Vec<u64> = (1..=10).map(|i| (t0 + 60 * i) * 1_000_000).collect();
    assert_eq!(
        tick_times(&out),
        expected,
        "a tick every 60 s from the first row to --end"
    );
    let order: Vec<String> = jsonl(&out.join("actions.jsonl"))
        .iter()
        .map(|a| {
            let event = a["event"].as_str().unwrap();
            if event.starts_with("tick:ticker@") {
                "tick".to_string()
            } else {
                event.to_string()
            }
        })
        .collect();
    assert_eq!(
        order[..6],
        ["events.jsonl:1", "tick", "tick", "tick", "tick", "tick"],
        "ticks before t0+300 come before row 2"
    );
    assert_eq!(order[6], "events.jsonl:2");
}

#[test]
fn a_long_gap_gives_one_tick_not_thousands() {
    let dir = scratch();
    let config = write_config(dir.path(), TICKING);
    let rows = [
        json!({"name": "2020", "_ts": 1_602_103_388u64}),
        json!({"name": "2026", "_ts": 1_778_400_000u64}),
    ];
    let events = write_alerts(dir.path(), &rows);
    let out = dir.path().join("out");
    replay(&config, &events, &out);
    let ticks = tick_times(&out);
    assert_eq!(ticks.len(), 1, "{} ticks", ticks.len());
    assert!(ticks[0] <= 1_778_400_000_000_000 && ticks[0] > 1_778_400_000_000_000 - 60_000_000);
    let log = jsonl(&out.join("log.jsonl"));
    assert!(
        log.iter()
            .any(|l| l["module"] == "ticker" && l["message"].as_str().unwrap().contains("ticks skipped")),
        "{log:?}"
    );
}

/// Linear memory never shrinks, so an instance that grew is replaced by a
/// fresh one (at `recycle_above_mib`, or after `recycle_after_calls`)
/// between two events; what the module keeps in its state carries on.
/// Per module, the metrics show call latency, memory now and at most, and
/// the recycles by reason.
#[test]
fn instances_that_grew_or_served_long_are_recycled_without_losing_state() {
    const TOKEN: &str = "recycle-token-0123456789";
    let dir = scratch();
    let (ingest, metrics_port) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[host]
state = "state.db"
[ingest]
listen = "127.0.0.1:{ingest}"
token = "{TOKEN}"
[metrics]
listen = "127.0.0.1:{metrics_port}"

[[module]]
name = "grows"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
recycle_above_mib = 32
[module.params]
Behaviour = "grow"
Trigger = "^grow"
Queue = "Custom.Ingest"

[[module]]
name = "echoes"
path = "hostile.wasm"
allowed_hosts = ["hooks.example.org"]
recycle_after_calls = 2
[module.params]
Behaviour = "echo"
Queue = "Custom.Ingest"
"#
        ),
    );
    let mut run = Running::start(EXE, &config);
    run.wait("the endpoint", Duration::from_secs(60), |r| {
        r.log().contains("HTTP ingest at")
    });
    let rows: String = (1..=3).map(|n| format!("{{\"name\":\"grow {n}\"}}\n")).collect();
    let (status, answer) = post_events(ingest, Some(TOKEN), "queue=Custom.Ingest", rows.as_bytes());
    assert_eq!(status, 200, "{answer}");

    let series = |name: &str, labels: &str| metric(metrics_port, &format!("velonotify_{name}{{{labels}}}"));
    assert_eq!(series("module_recycles_total", "module=\"grows\",reason=\"memory\""), 3);
    assert_eq!(series("module_recycles_total", "module=\"echoes\",reason=\"calls\""), 1);
    assert_eq!(series("module_call_seconds_count", "module=\"grows\""), 3);
    assert!(series("module_memory_high_water_bytes", "module=\"grows\"") >= 48 << 20);
    let now = series("module_memory_bytes", "module=\"grows\"");
    assert!(0 < now && now < 32 << 20, "the fresh instance holds {now} bytes");

    let store = velonotify_test_support::open_store(dir.path());
    let mut grown: Vec<_> = store.list(None, 100).unwrap().into_iter().flatten().collect();
    grown.retain(|item| item.module == "grows");
    grown.sort_by_key(|item| item.id);
    let bodies: Vec<String> = grown
        .into_iter()
        .map(|item| String::from_utf8(item.body).unwrap())
        .collect();
    assert_eq!(
        bodies,
        [r#"{"grown":1}"#, r#"{"grown":2}"#, r#"{"grown":3}"#],
        "the state written before each recycle is read after it"
    );
}
