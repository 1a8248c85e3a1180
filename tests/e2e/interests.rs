//! Interests and decisions in place spare work, never actions: the same
//! replay (`--no-explain`, as `run` works) with the modules' declared
//! interests and without them (`--no-interests`) writes the same files,
//! byte for byte (e-mails, webhooks, user messages, reports from info up),
//! and the same actions as a replay that builds and handles every row
//! (the default, which explains each drop), over the demo and over
//! generated rows meant to sit on every edge of a test (escapes, numbers,
//! null, lists, nested and missing columns).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use velonotify_test_support::{data, scratch, stderr};

use super::{velonotify, write_config};

/// How a replay runs.
#[derive(Clone, Copy)]
enum Mode {
    /// As `run`: interests spare calls, modules decide in place.
    Fast,
    /// `--no-interests`: every module called, deciding in place.
    EveryModule,
    /// The default: every module called, each row built and handled, and
    /// every drop explained.
    Explained,
}

/// Replays one way; the files written and the rows the modules were
/// spared (the summary's `spared` column, summed).
fn replay(config: &Path, events: &Path, out: &Path, mode: Mode) -> (BTreeMap<String, Vec<u8>>, u64) {
    let (config, events, out) = (
        config.display().to_string(),
        events.display().to_string(),
        out.display().to_string(),
    );
    let mut args = vec!["replay", "-c", &config, "--events", &events, "--out", &out];
    match mode {
        Mode::Fast => args.push("--no-explain"),
        Mode::EveryModule => args.extend(["--no-explain", "--no-interests"]),
        Mode::Explained => {}
    }
    let output = velonotify(&args);
    let log = stderr(&output);
    assert!(output.status.success(), "replay failed:\n{log}");
    let spared = log
        .lines()
        .filter_map(|line| line.split("spared").nth(1))
        .map(|n| n.trim().parse::<u64>().unwrap())
        .sum();
    (files(Path::new(&out)), spared)
}

/// The files of a replay's output directory (it has no subdirectories).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

/// Every file but the log: what the modules did, not what they said.
fn actions(mut files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files.remove("log.jsonl");
    files
}

fn assert_same(with: &BTreeMap<String, Vec<u8>>, without: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        with.keys().collect::<Vec<_>>(),
        without.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (name, bytes) in with {
        assert!(
            *bytes == without[name],
            "{name} differs with interests:\n{}\nwithout:\n{}",
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&without[name])
        );
    }
}

#[test]
fn interests_change_nothing_the_demo_does() {
    let dir = scratch();
    let (config, events) = (data("demo/velonotify.toml"), data("demo/events.jsonl"));
    let (with, spared) = replay(&config, &events, &dir.path().join("with"), Mode::Fast);
    let (without, none) = replay(&config, &events, &dir.path().join("without"), Mode::EveryModule);
    let (explained, _) = replay(&config, &events, &dir.path().join("explained"), Mode::Explained);
    assert!(spared > 0, "the demo's name filters spare calls");
    assert_eq!(none, 0, "--no-interests calls every module for every row");
    assert!(
        with.keys().any(|k| k.ends_with(".eml")),
        "the demo sends e-mails: {:?}",
        with.keys()
    );
    assert_same(&with, &without);
    // Deciding in place and sparing calls act as building every row does.
    assert_same(&actions(with), &actions(explained));
}

/// Detections with conditions on text, numbers, lists, nested and missing
/// columns raise alerts that name filters pass on or hold back.
const GENERATED_CONFIG: &str = r#"
[lookups]
world = "WORLD"

[[module]]
name = "tools"
path = "detect.wasm"
[module.params]
Queue = "Windows.Events.ProcessCreation"
Condition = "Column,Regex\nImage,\\\\tools\\\\\nUser,^(ann|bob)$\n"
AlertName = "tool {Image} by {User}"
Dedup = -1

[[module]]
name = "numbers-and-lists"
path = "detect.wasm"
[module.params]
Queue = "Windows.Events.ProcessCreation"
Condition = "Column,Regex\nPid,^1\nTags,admin\n"
AlertName = "pid {Pid} tagged {Tags}"
Dedup = -1

[[module]]
name = "nested-and-missing"
path = "detect.wasm"
[module.params]
Queue = "Windows.Events.ProcessCreation"
Condition = "Column,Regex\nParent.Image,services\nMissing,^$\n"
AlertName = "child of {Parent.Image}"
Dedup = -1

[[module]]
name = "mail-tools-not-bob"
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@corp.example\n"
AlertMsgInclude = "^tool"
AlertMsgExclude = "bob"
SendInterval = -1

[[module]]
name = "mail-pids"
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@corp.example\n"
HTML = false
AlertMsgInclude = "^pid 1"
SendInterval = -1

[[module]]
name = "panel"
path = "user_message.wasm"
[module.params]
AlertMsgInclude = "child|tool"

[[module]]
name = "slack"
path = "webhook.wasm"
[module.params]
SlackToken = "https://hooks.slack.com/services/T0000TEST/B0000TEST/test"
AlertMsgExclude = "^tool"
"#;

/// Rows of one queue whose columns take every kind of value, from a fixed
/// seed, and alert rows whose names are as varied.
fn generated_rows(count: usize) -> Vec<Value> {
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let texts = [
        "C:\\Tools\\x.exe",
        "c:\\TOOLS\\",
        "C:\\Windows\\System32\\svchost.exe",
        "ann",
        "bob",
        "Ann",
        "services.exe",
        "admin",
        "\"quoted\"",
        "line\nbreak",
        "é",
        "",
    ];
    let value = |next: &mut dyn FnMut(usize) -> usize| -> Option<Value> {
        match next(8) {
            0 => None,
            1 => Some(Value::Null),
            2 => Some(json!(next(300))),
            3 => Some(json!([texts[next(texts.len())], texts[next(texts.len())]])),
            4 => Some(json!({"Image": texts[next(texts.len())]})),
            5 => Some(json!(next(2) == 0)),
            _ => Some(json!(texts[next(texts.len())])),
        }
    };
    let mut rows = Vec::new();
    for i in 0..count {
        let mut row = serde_json::Map::new();
        row.insert("_ts".into(), json!(1_778_400_000 + i));
        row.insert("ClientId".into(), json!("C.4b7e1a9c0d2f3e51"));
        if i % 10 == 9 {
            row.insert("_Source".into(), json!("Server.Internal.Alerts"));
            row.insert("client_id".into(), json!("server"));
            row.insert("artifact".into(), json!("Custom.Generated"));
            if let Some(name) = value(&mut next) {
                row.insert("name".into(), name);
            }
        } else {
            row.insert("_Source".into(), json!("Windows.Events.ProcessCreation"));
            for column in ["Image", "User", "Pid", "Tags", "Parent", "Missing"] {
                if let Some(v) = value(&mut next) {
                    row.insert(column.into(), v);
                }
            }
        }
        rows.push(Value::Object(row));
    }
    rows
}

#[test]
fn interests_change_nothing_on_generated_rows() {
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &GENERATED_CONFIG.replace("WORLD", &data("demo/world.json").display().to_string()),
    );
    let events = dir.path().join("events.jsonl");
    let text: String = generated_rows(3000).iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&events, text).unwrap();
    let (with, spared) = replay(&config, &events, &dir.path().join("with"), Mode::Fast);
    let (without, _) = replay(&config, &events, &dir.path().join("without"), Mode::EveryModule);
    let (explained, _) = replay(&config, &events, &dir.path().join("explained"), Mode::Explained);
    let emails = with.keys().filter(|k| k.ends_with(".eml")).count();
    assert!(emails >= 20, "enough rows act to compare: {emails} e-mails");
    assert!(spared >= 3000, "most calls spared: {spared}");
    assert_same(&with, &without);
    // Deciding in place and sparing calls act as building every row does.
    assert_same(&actions(with), &actions(explained));
}

#[test]
fn a_replay_that_explains_says_why_every_module_dropped_a_row() {
    let dir = scratch();
    let (config, events) = (data("demo/velonotify.toml"), data("demo/events.jsonl"));
    let out = dir.path().join("explained");
    let (config, events, shown) = (
        config.display().to_string(),
        events.display().to_string(),
        out.display().to_string(),
    );
    let output = velonotify(&["replay", "-c", &config, "--events", &events, "--out", &shown]);
    assert!(output.status.success(), "{}", stderr(&output));
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    // The pager's name filter drops the demo's first alert: it says so,
    // though its interest and its decision in place would have spared it.
    let dropped = log.lines().find(|line| {
        line.contains("\"oncall-pager\"") && line.contains("\"events.jsonl:1\"") && line.contains("name filtered out")
    });
    assert!(dropped.is_some(), "{log}");
    assert!(
        !stderr(&output)
            .lines()
            .any(|l| l.contains("spared") && !l.ends_with(" 0")),
        "nothing spared"
    );
}
