//! The rest of the family end to end: detections become alerts become
//! e-mails, error monitors read monitoring logs from cursors, and Slack
//! watchers follow labels, with state carried across replays (`--state`).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use velonotify_test_support::{data, emails, header, jsonl, scratch, stderr};

use super::{velonotify, write_config};

const T0: u64 = 1_778_400_000; // 2026-05-10T08:00:00Z
const LIN: &str = "C.4b7e1a9c0d2f3e51";

/// Runs a replay; `extra` adds flags (`--state`, `--start`, ...).
fn replay(config: &Path, events: Option<&Path>, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["replay".to_string(), "-c".into(), config.display().to_string()];
    if let Some(events) = events {
        args.extend(["--events".into(), events.display().to_string()]);
    }
    args.extend(["--out".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = velonotify(&args);
    assert!(output.status.success(), "replay failed:\n{}", stderr(&output));
    output
}

fn write_events(dir: &Path, name: &str, rows: &[Value]) -> PathBuf {
    let path = dir.join(name);
    let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn kinds<'a>(summary: &'a [Value], kind: &str) -> Vec<&'a Value> {
    summary.iter().filter(|s| s["kind"] == kind).collect()
}

// ---- detect -> alert -> e-mail ------------------------------------------

const HONEY_CONFIG: &str = r#"
[lookups]
world = "WORLD"

[[module]]
name = "honeyfiles"
path = "detect.wasm"
[module.params]
Queue = "Linux.Detection.Honeyfiles"
AlertName = 'Honey file "{FileName}" accessed on {client.hostname}'
Dedup = 300
Severity = "high"

[[module]]
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@corp.example\n"
SendInterval = -1
"#;

fn honey_config(dir: &Path) -> PathBuf {
    write_config(
        dir,
        &HONEY_CONFIG.replace("WORLD", &data("demo/world.json").display().to_string()),
    )
}

fn honey(at: u64, file: &str) -> Value {
    json!({"Timestamp": at, "FileName": file, "Pid": 48213, "ProcessName": "wazuh-syscheckd", "ClientId": LIN,
           "_ts": at, "_Source": "Linux.Detection.Honeyfiles"})
}

#[test]
fn honey_file_events_become_alerts_then_emails_with_dedup() {
    let dir = scratch();
    let config = honey_config(dir.path());
    let events = write_events(
        dir.path(),
        "honey.jsonl",
        &[
            honey(T0, "/home/alice/.ssh/id_rsa"),
            honey(T0 + 60, "/home/alice/.ssh/id_rsa"), // same name inside 300 s: suppressed
            honey(T0 + 61, "/srv/finance/salaries.xlsx"), // another file: another name
            honey(T0 + 400, "/home/alice/.ssh/id_rsa"), // after the window: raised again
        ],
    );
    let out = dir.path().join("out");
    let output = replay(&config, Some(&events), &out, &[]);
    let summary = jsonl(&out.join("summary.jsonl"));
    let raised: Vec<(&str, &str)> = kinds(&summary, "alert")
        .iter()
        .map(|s| (s["event"].as_str().unwrap(), s["subject"].as_str().unwrap()))
        .collect();
    assert_eq!(
        raised,
        [
            (
                "honey.jsonl:1",
                "Honey file \"/home/alice/.ssh/id_rsa\" accessed on ws-lin-07"
            ),
            (
                "honey.jsonl:3",
                "Honey file \"/srv/finance/salaries.xlsx\" accessed on ws-lin-07"
            ),
            (
                "honey.jsonl:4",
                "Honey file \"/home/alice/.ssh/id_rsa\" accessed on ws-lin-07"
            ),
        ]
    );
    let suppressed: Vec<Value> = jsonl(&out.join("log.jsonl"))
        .into_iter()
        .filter(|l| l["message"].as_str().unwrap().starts_with("Alert Honey file"))
        .collect();
    assert_eq!(suppressed.len(), 1);
    assert_eq!(suppressed[0]["event"], "honey.jsonl:2");
    assert!(
        suppressed[0]["message"]
            .as_str()
            .unwrap()
            .contains("(Sup): suppressed until 2026-05-10T08:05:00Z (dedup 300 s)")
    );
    assert!(
        stderr(&output).contains("3 alerts raised, 1 suppressed by dedup"),
        "{}",
        stderr(&output)
    );

    let mails = kinds(&summary, "email");
    assert_eq!(mails.len(), 3, "the Alerts module mails each raised alert");
    assert_eq!(
        mails[0]["event"], "honey.jsonl:1#alert1",
        "the alert row's id names the event that raised it"
    );
    assert_eq!(mails[0]["queue"], "Server.Internal.Alerts");
    let (_, first) = &emails(&out)[0];
    let mail = mailparse::parse_mail(first).unwrap();
    assert_eq!(
        header(&mail, "Subject").unwrap(),
        "Alert from client ws-lin-07 (high): Honey file \"/home/alice/.ssh/i…"
    );
    let text = velonotify_test_support::part(&mail, "text/plain").unwrap();
    assert!(
        text.contains("Artifact: Linux.Detection.Honeyfiles (") && text.contains("Artifact type: CLIENT_EVENT"),
        "{text}"
    );
    assert!(text.contains("FileName: /home/alice/.ssh/id_rsa\nPid: 48213"), "{text}");
    assert!(
        text.contains(&format!("ID: {LIN} (")),
        "client details of the attributed client:\n{text}"
    );
}

#[test]
fn alert_dedup_is_kept_across_a_restart() {
    let dir = scratch();
    let config = honey_config(dir.path());
    let state = dir.path().join("state.db");
    let state_flag = state.display().to_string();
    let first = write_events(dir.path(), "first.jsonl", &[honey(T0, "/etc/shadow")]);
    replay(
        &config,
        Some(&first),
        &dir.path().join("out1"),
        &["--state", &state_flag],
    );
    assert_eq!(kinds(&jsonl(&dir.path().join("out1/summary.jsonl")), "alert").len(), 1);

    // The host restarts (a new process) within the dedup window.
    let second = write_events(dir.path(), "second.jsonl", &[honey(T0 + 120, "/etc/shadow")]);
    replay(
        &config,
        Some(&second),
        &dir.path().join("out2"),
        &["--state", &state_flag],
    );
    let summary = jsonl(&dir.path().join("out2/summary.jsonl"));
    assert!(summary.is_empty(), "suppressed after the restart: {summary:?}");

    // Without the state, the same replay raises it.
    replay(&config, Some(&second), &dir.path().join("out3"), &[]);
    assert_eq!(kinds(&jsonl(&dir.path().join("out3/summary.jsonl")), "alert").len(), 1);
}

// ---- error monitors over monitoring logs ---------------------------------

/// Server and client monitoring logs over two hours, with lines the KB's
/// catalogue matches (and lines it does not).
fn monitoring_world() -> Value {
    let server_line = |at: u64, level: &str, message: &str| {
        json!({"Timestamp": format!("2026-05-10 08:{:02}:00 +0000 UTC", (at - T0) / 60 % 60), "Level": level,
               "Message": message, "_ts": at * 1000})
    };
    let client_line = |at: u64, level: &str, message: &str| json!({"client_time": at, "level": level, "message": message, "_ts": at * 1000});
    let every_ten_minutes =
        |f: &dyn Fn(u64) -> Value| -> Vec<Value> { (0..12).map(|i| f(T0 + 300 + i * 600)).collect() };
    json!({
        "clients": {
            "C.1": {"client_id": "C.1", "labels": ["linux"], "os_info": {"hostname": "lin1"}},
            "C.2": {"client_id": "C.2", "labels": ["windows"], "os_info": {"hostname": "win2"}},
        },
        "server_monitoring": ["Custom.Server.Upload.S3", "Server.Monitor.Health"],
        "client_monitoring": {"all": ["Windows.Detection.Registry"], "labels": {"linux": ["Linux.Detection.Honeyfiles"]}},
        "monitoring_logs": {
            "server": {
                "Custom.Server.Upload.S3": every_ten_minutes(&|at| server_line(at, "DEFAULT", "upload_S3: operation error S3: PutObject, https response error StatusCode: 403\n")),
                "Server.Monitor.Health": every_ten_minutes(&|at| server_line(at, "DEFAULT", "vql: Starting query execution.\n")),
            },
            "C.1": {"Linux.Detection.Honeyfiles": every_ten_minutes(&|at| client_line(at, "DEFAULT", "execve: fork/exec /usr/bin/inotifywait: no such file or directory\n"))},
            "C.2": {"Windows.Detection.Registry": every_ten_minutes(&|at| client_line(at, "ERROR", "registry: access denied\n")),
                    "Linux.Detection.Honeyfiles": every_ten_minutes(&|at| client_line(at, "ERROR", "not a linux client\n"))},
        },
    })
}

fn monitors_config(dir: &Path, dedup: i64) -> PathBuf {
    let world = dir.join("world.json");
    std::fs::write(&world, monitoring_world().to_string()).unwrap();
    let catalogue = data("velociraptor/vql_error_catalogue.IncludeFilter.csv")
        .display()
        .to_string();
    write_config(
        dir,
        &format!(
            r#"
[lookups]
world = "world.json"

[[module]]
name = "server-errors"
path = "errors_alert.wasm"
[module.params]
DedupInterval = {dedup}
IncludeFilter = {{ file = "{catalogue}" }}

[[module]]
name = "client-errors"
path = "client_errors_alert.wasm"
[module.params]
DedupInterval = {dedup}
IncludeFilter = {{ file = "{catalogue}" }}
"#
        ),
    )
}

#[test]
fn catalogue_matches_raise_one_alert_per_artifact_per_dedup_interval_and_cursors_persist() {
    let dir = scratch();
    let config = monitors_config(dir.path(), 3600);
    let state = dir.path().join("state.db").display().to_string();
    let window = [
        "--start".to_string(),
        T0.to_string(),
        "--end".into(),
        (T0 + 7200).to_string(),
    ];
    let flags = |state: &str| -> Vec<String> { [window.to_vec(), vec!["--state".into(), state.into()]].concat() };
    let flags1 = flags(&state);
    let flags1: Vec<&str> = flags1.iter().map(String::as_str).collect();
    let out = dir.path().join("out1");
    replay(&config, None, &out, &flags1);
    let summary = jsonl(&out.join("summary.jsonl"));
    let mut names: Vec<String> = kinds(&summary, "alert")
        .iter()
        .map(|s| s["subject"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Client event query error in Linux.Detection.Honeyfiles",
            "Client event query error in Linux.Detection.Honeyfiles",
            "Client event query error in Windows.Detection.Registry",
            "Client event query error in Windows.Detection.Registry",
            "Server event query error in Custom.Server.Upload.S3",
            "Server event query error in Custom.Server.Upload.S3",
        ],
        "two hours of errors: one alert per artifact per hour; the healthy artifact raises none"
    );
    let honey = kinds(&summary, "alert")
        .into_iter()
        .find(|s| s["subject"].as_str().unwrap().contains("Honeyfiles"))
        .unwrap();
    assert_eq!(honey["module"], "client-errors");
    let actions = jsonl(&out.join("actions.jsonl"));
    let honey_alert = actions
        .iter()
        .find(|a| a["name"] == "Client event query error in Linux.Detection.Honeyfiles")
        .unwrap();
    assert_eq!(
        honey_alert["event_data"]["ClientId"], "C.1",
        "only the linux client runs the label group's artifact"
    );
    assert_eq!(honey_alert["event_data"]["Severity"], "high");
    assert_eq!(honey_alert["event_data"]["Explanation"], "Executable not found.");

    // The same window again with the same state: every line was read.
    // DedupInterval -1 shows it is the cursors, not the dedup, that stop them.
    let config = monitors_config(dir.path(), -1);
    let out = dir.path().join("out2");
    replay(&config, None, &out, &flags1);
    assert!(
        jsonl(&out.join("summary.jsonl")).is_empty(),
        "a second replay with the same cursors raises none"
    );

    // A fresh state reads them again (never suppressed with -1: one per tick with errors).
    let fresh = dir.path().join("fresh.db").display().to_string();
    let flags2 = flags(&fresh);
    let flags2: Vec<&str> = flags2.iter().map(String::as_str).collect();
    let out = dir.path().join("out3");
    replay(&config, None, &out, &flags2);
    assert_eq!(
        kinds(&jsonl(&out.join("summary.jsonl")), "alert").len(),
        3 * 12,
        "every error line, once"
    );
}

// ---- Slack: clients coming online ----------------------------------------

#[test]
fn a_watched_client_is_announced_once_and_its_label_removed() {
    let dir = scratch();
    let world = json!({"clients": {
        "C.1": {"client_id": "C.1", "labels": ["Slack", "linux"], "os_info": {"fqdn": "ws1.corp.example"},
                "last_seen_at": (T0 + 40) * 1_000_000},
        "C.2": {"client_id": "C.2", "labels": ["linux"], "os_info": {"fqdn": "ws2.corp.example"},
                "last_seen_at": (T0 + 100) * 1_000_000},
    }});
    std::fs::write(dir.path().join("world.json"), world.to_string()).unwrap();
    let config = write_config(
        dir.path(),
        "[lookups]\nworld = \"world.json\"\n[[module]]\nname = \"slack-online\"\npath = \"webhook.wasm\"\n\
         [module.params]\nMode = \"ClientsOnline\"\nSlackToken = \"https://hooks.slack.com/services/T0/B0/X\"\n",
    );
    let out = dir.path().join("out");
    replay(
        &config,
        None,
        &out,
        &["--start", &T0.to_string(), "--end", &(T0 + 600).to_string()],
    );
    let actions = jsonl(&out.join("actions.jsonl"));
    let summary: Vec<(String, String)> = actions
        .iter()
        .map(|a| (a["kind"].as_str().unwrap().to_string(), a["event"].to_string()))
        .collect();
    assert_eq!(
        summary.len(),
        2,
        "one message and one label change in ten ticks: {actions:?}"
    );
    assert_eq!(actions[0]["kind"], "webhook");
    let body: Value = serde_json::from_str(actions[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"text": "Client ws1.corp.example (C.1) has appeared online 20 seconds ago"})
    );
    assert_eq!(
        actions[1],
        json!({"module": "slack-online", "kind": "label", "event": format!("tick:slack-online@{}", T0 + 60),
               "client_id": "C.1", "op": "remove", "labels": ["Slack"]})
    );
}
