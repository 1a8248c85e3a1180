//! The same rule in each language a module can be written in: the demo's
//! honey-file detection as the Rust `detect` module, in Python
//! (guest/python/examples/honeyfiles) and in JavaScript
//! (guest/js/examples/honeyfiles) raises the same alerts for the same rows.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use velonotify::store::{Payload, Status};
use velonotify_test_support::peers::free_port;
use velonotify_test_support::service::{Running, metric, post_events, rows_reaching};
use velonotify_test_support::{data, js_modules_dir, jsonl, modules_dir, python_modules_dir, scratch, stderr};

use super::{printed_lines, replay_with, rule_test, velonotify, write_config};

const T0: u64 = 1_778_400_000;

fn honey_rows(dir: &Path) -> std::path::PathBuf {
    let rows: String = (0..12)
        .map(|i| {
            let file = match i % 4 {
                0 => format!("/home/bob/passwords-{i}.kdbx"),
                1 => format!("/srv/finance/Salaries-{i}.xlsx"),
                _ => format!("/tmp/cache-{i}"),
            };
            let client = if i % 2 == 0 {
                "C.4b7e1a9c0d2f3e51"
            } else {
                "C.91ac3d5e7f20b846"
            };
            format!(
                "{}\n",
                json!({"Timestamp": T0 + i, "FileName": file, "ClientId": client, "_ts": T0 + i,
                       "_Source": "Linux.Detection.Honeyfiles"})
            )
        })
        .collect();
    let path = dir.join("honey.jsonl");
    std::fs::write(&path, rows).unwrap();
    path
}

/// The alerts a replay raised: event, name, client.
fn alerts(config_text: &str, dir: &Path, name: &str) -> Vec<(String, String, String)> {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let config = write_config(&sub, config_text);
    let out = sub.join("out");
    replay_with(&config, &honey_rows(&sub), &out, &["--no-explain"]);
    jsonl(&out.join("actions.jsonl"))
        .iter()
        .filter(|a| a["kind"] == "alert")
        .map(|a: &Value| {
            (
                a["event"].as_str().unwrap().to_string(),
                a["name"].as_str().unwrap().to_string(),
                a["client_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn the_same_rule_in_rust_python_and_javascript_raises_the_same_alerts() {
    let _machine = super::machine_alone();
    let dir = scratch();
    let world = data("demo/world.json").display().to_string();
    let rust = format!(
        r#"[lookups]
world = "{world}"
[[module]]
path = "{}"
[module.params]
Queue = "Linux.Detection.Honeyfiles"
Condition = "Column,Regex\nFileName,salar|passw|secret|\\.kdbx$\n"
AlertName = 'Honeyfile "{{FileName}}" accessed on {{client.hostname}}'
Dedup = 300
"#,
        modules_dir().join("detect.wasm").display()
    );
    let other = |component: &Path| {
        format!(
            "[lookups]\nworld = \"{world}\"\n[[module]]\npath = \"{}\"\n",
            component.display()
        )
    };
    let in_rust = alerts(&rust, dir.path(), "rust");
    let in_python = alerts(
        &other(&python_modules_dir().join("honeyfiles.wasm")),
        dir.path(),
        "python",
    );
    let in_js = alerts(&other(&js_modules_dir().join("honeyfiles.wasm")), dir.path(), "js");
    assert_eq!(in_rust.len(), 6, "{in_rust:?}");
    assert_eq!(
        in_rust[0].1,
        "Honeyfile \"/home/bob/passwords-0.kdbx\" accessed on ws-lin-07"
    );
    assert_eq!(in_python, in_rust);
    assert_eq!(in_js, in_rust);
}

#[test]
fn a_javascript_module_names_a_bad_parameter_and_a_bad_row() {
    let _machine = super::machine_alone();
    let dir = scratch();
    let module = js_modules_dir().join("honeyfiles.wasm");
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(
        &rows,
        "[\"not\", \"an object\"]\n{\"FileName\": \"/x/passwords\", \"_ts\": 1778400000}\n",
    )
    .unwrap();
    let test = |more: &[&str]| rule_test(&module, &rows, more);
    let bad = test(&["--param", "Dedup=ten"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("parameter Dedup: expected an integer, got \"ten\""),
        "{}",
        stderr(&bad)
    );
    let unknown = test(&["--param", "dedup=5"]);
    assert!(
        stderr(&unknown).contains("names are case-sensitive: did you mean Dedup?"),
        "{}",
        stderr(&unknown)
    );
    // Rows without `_Source` are the module's queue's; a row that is not an
    // object is said, and the next row is handled.
    let ran = test(&["--param", "Queue=Custom.Files"]);
    assert!(ran.status.success(), "{}", stderr(&ran));
    let lines = printed_lines(&ran);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["event"], "rows.jsonl:1", "{lines:?}");
    assert!(
        lines[0]["failure"].as_str().unwrap().starts_with("unreadable row:"),
        "{lines:?}"
    );
    assert_eq!(lines[1]["kind"], "alert");
}

/// The JavaScript honey-file rule under `velonotify run`: rows posted to
/// the ingest endpoint in batches reach it (its interest spares it the
/// rest, read by the host), and each alert it raises becomes one user
/// message for the Velociraptor API, none lost, none twice.
#[test]
fn a_javascript_module_runs_in_the_service_and_its_alerts_are_delivered_once() {
    let _machine = super::machine_alone();
    const TOKEN: &str = "ingest-token-0123456789";
    const ROWS: u64 = 300;
    let dir = scratch();
    let (ingest, metrics) = (free_port(), free_port());
    let config = super::rule_to_user_messages_config(
        dir.path(),
        "honeyfiles",
        &js_modules_dir().join("honeyfiles.wasm"),
        (ingest, metrics, TOKEN),
        "",
    );
    let mut run = Running::start_in(super::EXE, &config, &modules_dir());
    run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
        r.log().contains("HTTP ingest at")
    });
    let bait = |n: u64| n.is_multiple_of(5);
    for first in (0..ROWS).step_by(100) {
        let body: String = (first..first + 100)
            .map(|n| {
                let file = if bait(n) {
                    format!("/home/bob/passwords-{n}.kdbx")
                } else {
                    format!("/tmp/cache-{n}")
                };
                let row = json!({"Timestamp": T0 + n, "FileName": file, "ClientId": "C.4b7e1a9c0d2f3e51",
                                 "_ts": T0 + n});
                format!("{row}\n")
            })
            .collect();
        let (status, answer) = post_events(ingest, Some(TOKEN), "queue=Linux.Detection.Honeyfiles", body.as_bytes());
        assert_eq!(status, 200, "{answer}");
    }
    run.wait("every row read", Duration::from_secs(120), |_| {
        rows_reaching(metrics, "honeyfiles") >= ROWS
    });
    let called = metric(metrics, "velonotify_module_handled_total{module=\"honeyfiles\"}");
    assert_eq!(called, ROWS / 5, "only the rows its interest matches call it");

    let store = velonotify_test_support::open_store(dir.path());
    let waiting = || -> Vec<String> {
        let items = store.list(Some(Status::WaitingApi), usize::MAX).unwrap();
        let mut files: Vec<String> = items
            .into_iter()
            .map(|item| match item.unwrap().payload {
                Payload::UserMessage(message) => message.message["Alert"]["FileName"].as_str().unwrap().to_string(),
                other => panic!("only user messages wait for the API, not {other:?}"),
            })
            .collect();
        files.sort();
        files
    };
    run.wait("the user messages", Duration::from_secs(60), |_| {
        waiting().len() as u64 >= ROWS / 5
    });
    std::thread::sleep(Duration::from_secs(1)); // room for a duplicate
    let files = waiting();
    let mut expected: Vec<String> = (0..ROWS)
        .filter(|n| bait(*n))
        .map(|n| format!("/home/bob/passwords-{n}.kdbx"))
        .collect();
    expected.sort();
    assert_eq!(files, expected, "{}", run.log());
}

/// `velonotify new --lang LANG`, built with the project's own `build.sh`,
/// then its self-test rows run through it: the actions are the ones its
/// `expected.jsonl` says.
fn new_project_builds_and_passes_its_self_test(lang: &str, prepare: impl FnOnce(&Path) -> Vec<(String, String)>) {
    let dir = scratch();
    let project = dir.path().join("rule");
    let made = velonotify(&[
        "new",
        "--lang",
        lang,
        "Custom.Detection.Files",
        &project.display().to_string(),
    ]);
    assert!(made.status.success(), "{}", stderr(&made));
    let env = prepare(&project);
    let built = std::process::Command::new(project.join("build.sh"))
        .envs(env)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{lang} project did not build:\n{}{}",
        String::from_utf8_lossy(&built.stdout),
        stderr(&built)
    );
    let stem = "custom_detection_files";
    let at = |file: &str| project.join(file).display().to_string();
    let tested = rule_test(
        &project.join(format!("{stem}.wasm")),
        &project.join(format!("{stem}.selftest.jsonl")),
        &["--expect", &at("expected.jsonl")],
    );
    assert!(
        tested.status.success(),
        "{lang}: {}{}",
        String::from_utf8_lossy(&tested.stdout),
        stderr(&tested)
    );
}

#[test]
fn a_new_python_module_builds_and_passes_its_self_test() {
    let _machine = super::machine_alone();
    new_project_builds_and_passes_its_self_test("python", |_| {
        // componentize-py, from the venv scripts/setup made.
        let venv = velonotify_test_support::workspace().join(".venv/bin");
        let path = format!("{}:{}", venv.display(), std::env::var("PATH").unwrap_or_default());
        vec![("PATH".into(), path)]
    });
}

#[test]
fn a_new_javascript_module_builds_and_passes_its_self_test() {
    let _machine = super::machine_alone();
    new_project_builds_and_passes_its_self_test("js", |project| {
        // The packages its package.json pins, as scripts/setup installed
        // them for guest/js (an `npm install` of its own would fetch 340 MB).
        let installed = velonotify_test_support::workspace().join("guest/js/node_modules");
        std::os::unix::fs::symlink(installed, project.join("node_modules")).unwrap();
        Vec::new()
    });
}

#[test]
fn a_new_rust_module_builds_and_passes_its_self_test() {
    let _machine = super::machine_alone();
    new_project_builds_and_passes_its_self_test("rust", |_| {
        // Shared between runs, and from the crates the workspace already
        // fetched.
        let target = velonotify_test_support::workspace().join("target/new-rust-module");
        vec![
            ("CARGO_TARGET_DIR".into(), target.display().to_string()),
            ("CARGO_NET_OFFLINE".into(), "true".into()),
        ]
    });
}

/// The console and `velonotify_module_info` say which language each
/// module was written in, read from the component: the same rule built by
/// cargo, componentize-py and componentize-js.
#[test]
fn a_components_language_is_read_from_its_bytes() {
    use velonotify::engine::{Language, language_of};
    let of = |path: std::path::PathBuf| language_of(&std::fs::read(&path).unwrap());
    assert_eq!(of(modules_dir().join("detect.wasm")), Language::Rust);
    assert_eq!(of(python_modules_dir().join("honeyfiles.wasm")), Language::Python);
    assert_eq!(of(js_modules_dir().join("honeyfiles.wasm")), Language::JavaScript);
    assert_eq!(language_of(b"\0asm not a component"), Language::Unknown);
}
