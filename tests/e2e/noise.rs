//! Noise control: silences made with `velonotify silence` hold back the
//! notifications they match, in `run` against a real SMTP server and in a
//! replay on its virtual clock; nothing held back is lost from sight.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use velonotify::store::Status;
use velonotify_test_support::browser::Browser;
use velonotify_test_support::peers::{HttpPeer, SmtpOptions, SmtpPeer, free_port};
use velonotify_test_support::service::{Running, metric, post_events, request};
use velonotify_test_support::{jsonl, modules_dir, scratch, stderr};

use super::{EXE, replay_with, velonotify, write_config};

const TOKEN: &str = "ingest-token-0123456789";

/// The Alerts module mailing every alert row at once (no SendInterval).
const ALERTS_TO_SOC: &str = "[[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\n[module.params]\n\
                             Recipients = \"Address\\nsoc@example.org\\n\"\nSendInterval = -1\n";

fn config(dir: &Path, smtp_port: u16, ingest: u16, metrics: u16) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[smtp]
server = "127.0.0.1"
server_port = {smtp_port}
from = "velonotify@example.org"

[delivery]
retry_base_ms = 100
retry_cap_s = 1

[host]
state = "state.db"
{served}
{ALERTS_TO_SOC}
"#,
            served = super::served_sections(ingest, metrics, TOKEN),
        ),
    )
}

/// The operators' bearer token of the tests that serve `[api]`.
const API_TOKEN: &str = "operator-token-0123456789";

/// Adds `[api]` on port `api` (and `more` sections) to `config`.
fn serve_api(config: &Path, api: u16, more: &str) {
    let text = std::fs::read_to_string(config).unwrap()
        + &format!("\n[api]\nlisten = \"127.0.0.1:{api}\"\ntoken = \"{API_TOKEN}\"\n{more}");
    std::fs::write(config, text).unwrap();
}

/// `config`'s text with `module_lines` added to the alerts module and
/// `tail` (more sections) at the end.
fn with_alerts_module(config: &Path, module_lines: &str, tail: &str) -> String {
    let header = "name = \"alerts\"\npath = \"alerts.wasm\"\n";
    let text = std::fs::read_to_string(config).unwrap();
    text.replace(header, &format!("{header}{module_lines}\n")) + "\n" + tail
}

fn alert(name: &str, client: &str, ts_s: u64) -> Value {
    json!({"name": name, "client_id": client, "timestamp": "2026-11-30T10:00:00Z",
           "event_data": {"Severity": "high"}, "_ts": ts_s})
}

fn post_alerts(ingest: u16, rows: &[Value]) {
    let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
    let (status, answer) = post_events(ingest, Some(TOKEN), "queue=Server.Internal.Alerts", body.as_bytes());
    assert_eq!(status, 200, "{answer}");
}

/// `velonotify silence ARGS -c CONFIG`, which must succeed; its stdout.
fn silence(config: &Path, args: &[&str]) -> String {
    let config = config.display().to_string();
    let mut all = vec!["silence", "-c", &config];
    all.extend_from_slice(args);
    let output = velonotify(&all);
    assert!(output.status.success(), "silence {args:?}: {}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

fn subjects(smtp: &SmtpPeer, at_least: usize) -> Vec<String> {
    let mut subjects: Vec<String> = smtp
        .wait_for(at_least, Duration::from_secs(60))
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    subjects
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_silence_made_on_the_command_line_holds_back_what_it_matches_while_run_serves() {
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let (ingest, metrics) = (free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, metrics);
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
        r.log().contains("HTTP ingest at")
    });

    let id = silence(
        &config,
        &[
            "add",
            "client_id=\"C.4b7e1a9c0d2f3e51\"",
            "alertname=~\"Honeyfile.*\"",
            "--duration",
            "2h",
            "--comment",
            "IR-1234: re-imaging ws-lin-07",
            "--author",
            "alice",
        ],
    );
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let listed = silence(&config, &["list"]);
    assert!(
        listed.contains(&id) && listed.contains("active") && listed.contains("alice"),
        "{listed}"
    );
    assert!(listed.contains("IR-1234: re-imaging ws-lin-07"), "{listed}");
    let found = silence(&config, &["query", "client_id=C.4b7e1a9c0d2f3e51"]);
    assert!(found.contains(&id), "{found}");
    let not_found = silence(&config, &["query", "client_id=C.other"]);
    assert!(!not_found.contains(&id), "{not_found}");

    let (silenced_client, other_client) = ("C.4b7e1a9c0d2f3e51", "C.91ac3d5e7f20b846");
    let now = now_s();
    post_alerts(
        ingest,
        &[
            alert("Honeyfile 1", silenced_client, now),
            alert("Honeyfile 2", other_client, now),
            alert("Encoded PowerShell", silenced_client, now),
            alert("Honeyfile 3", silenced_client, now),
        ],
    );
    let sent = subjects(&smtp, 2);
    assert_eq!(sent.len(), 2, "{sent:?}\n{}", run.log());
    assert!(sent.iter().any(|s| s.contains("Honeyfile 2")), "{sent:?}");
    assert!(sent.iter().any(|s| s.contains("Encoded PowerShell")), "{sent:?}");
    let series = "velonotify_held_back_total{module=\"alerts\",kind=\"email\",reason=\"silenced\"}";
    run.wait("the silenced count", Duration::from_secs(30), |_| {
        metric(metrics, series) == 2
    });

    // Kept in the outbox, naming the silence; said in the log.
    let list = velonotify(&[
        "outbox",
        "-c",
        &config.display().to_string(),
        "list",
        "--status",
        "silenced",
    ]);
    let list = String::from_utf8(list.stdout).unwrap();
    assert_eq!(list.matches(&format!("silence {id}")).count(), 2, "{list}");
    let store = velonotify_test_support::open_store(dir.path());
    let mut held: Vec<(String, String)> = store
        .list(Some(Status::Silenced), 10)
        .unwrap()
        .into_iter()
        .map(|item| {
            let item = item.unwrap();
            (item.payload.subject().unwrap().to_string(), item.held_by.unwrap())
        })
        .collect();
    held.sort();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        held[0].0.ends_with("Honeyfile 1") && held[1].0.ends_with("Honeyfile 3"),
        "{held:?}"
    );
    assert!(held.iter().all(|(_, by)| *by == format!("silence {id}")), "{held:?}");
    assert!(
        run.log().contains(&format!("held back by silence {id}")),
        "{}",
        run.log()
    );

    // Expired: the next one goes out.
    let expired = silence(&config, &["expire", &id]);
    assert!(expired.contains("expired"), "{expired}");
    assert!(silence(&config, &["list"]).lines().all(|l| !l.contains(&id)));
    assert!(silence(&config, &["list", "--expired"]).contains(&id));
    post_alerts(ingest, &[alert("Honeyfile 4", silenced_client, now_s())]);
    let sent = subjects(&smtp, 3);
    assert!(sent.iter().any(|s| s.contains("Honeyfile 4")), "{sent:?}");
    std::thread::sleep(Duration::from_secs(1)); // room for a stray one
    assert_eq!(smtp.received().len(), 3);
}

#[test]
fn a_bad_silence_is_refused_saying_what_is_wrong() {
    let dir = scratch();
    let config = config(dir.path(), free_port(), free_port(), free_port());
    let config_arg = config.display().to_string();
    let refused = |args: &[&str]| -> String {
        let mut all = vec!["silence", "-c", config_arg.as_str()];
        all.extend_from_slice(args);
        let output = velonotify(&all);
        assert!(!output.status.success(), "{args:?} was accepted");
        stderr(&output)
    };
    let hour = ["--duration", "1h"];
    let past = ["--start", "2019-01-01T00:00:00Z", "--until", "2020-01-01T00:00:00Z"];
    let cases: [(&str, &[&str], &[&str]); 5] = [
        ("alertname=~\"(\"", &hour, &["at character 1", "not a valid regex"]),
        ("{alertname=x", &hour, &["at character 13: '}' missing"]),
        ("alertname!=x", &hour, &["empty label"]),
        ("alertname=x", &["--duration", "soon"], &["--duration", "2h"]),
        ("alertname=x", &past, &["must end in the future"]),
    ];
    for (matcher, when, expected) in cases {
        let mut args = vec!["add", matcher];
        args.extend_from_slice(when);
        args.extend_from_slice(&["--comment", "c", "--author", "a"]);
        let said = refused(&args);
        assert!(expected.iter().all(|e| said.contains(e)), "{matcher}: {said}");
    }
    let said = refused(&["expire", "no-such-id"]);
    assert!(said.contains("no silence with id no-such-id"), "{said}");
}

/// A replay given the state database applies its silences on the replay's
/// clock: a row inside the silence's time range is held back, those before
/// and after it are not; `summary.jsonl` says which and why.
#[test]
fn a_replay_honours_the_silences_of_its_state_database_on_the_rows_time() {
    let dir = scratch();
    let config = config(dir.path(), free_port(), free_port(), free_port());
    // The store `silence add` wrote to: a file, or a PostgreSQL URL.
    let state = velonotify_test_support::store_argument(dir.path());
    let now = now_s();
    let at = |s: u64| jiff::Timestamp::from_second(s as i64).unwrap().to_string();
    let id = silence(
        &config,
        &[
            "add",
            "{alertname=\"Honeyfile\", severity=\"high\"}",
            "--start",
            &at(now + 3600),
            "--until",
            &at(now + 7200),
            "--comment",
            "maintenance window",
            "--author",
            "bob",
        ],
    );
    let id = id.trim();
    let rows: String = [
        (now + 1800, "Honeyfile"),
        (now + 5400, "Honeyfile"),
        (now + 5401, "Other"),
        (now + 9000, "Honeyfile"),
    ]
    .iter()
    .map(|(ts, name)| {
        let mut row = alert(name, "C.4b7e1a9c0d2f3e51", *ts);
        row["_Source"] = json!("Server.Internal.Alerts");
        format!("{row}\n")
    })
    .collect();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, rows).unwrap();
    let out = dir.path().join("out");
    let replayed = replay_with(&config, &events, &out, &["--state", &state]);
    let summary = jsonl(&out.join("summary.jsonl"));
    let fates: Vec<(&str, &str)> = summary
        .iter()
        .map(|s| (s["event"].as_str().unwrap(), s["fate"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fates,
        [
            ("events.jsonl:1", "sent"),
            ("events.jsonl:2", "silenced"),
            ("events.jsonl:3", "sent"),
            ("events.jsonl:4", "sent"),
        ],
        "{}",
        stderr(&replayed)
    );
    assert_eq!(summary[1]["held_by"], format!("silence {id}"));
    assert_eq!(summary[1]["labels"]["alertname"], "Honeyfile");
    assert_eq!(summary[1]["labels"]["client_id"], "C.4b7e1a9c0d2f3e51");
    let written = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "eml"))
        .count();
    assert_eq!(written, 3, "no e-mail file for the silenced one");
    assert!(
        stderr(&replayed).contains("1 more held back by silences or inhibit rules"),
        "{}",
        stderr(&replayed)
    );
}

/// The same over HTTP, in Alertmanager's API v2 shapes: a silence posted
/// holds back what it matches; it is listed, filtered, read and expired;
/// nothing is answered without the token.
#[test]
fn a_silence_made_over_http_holds_back_what_it_matches() {
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let (ingest, metrics, api) = (free_port(), free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, metrics);
    serve_api(&config, api, "");
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the API", Duration::from_secs(120), |r| {
        r.log().contains("operator API at")
    });
    let call = |method: &str, path: &str, body: &Value| {
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        request(api, method, path, Some(API_TOKEN), &body)
    };

    let (status, _) = request(api, "GET", "/v1/silences", None, b"");
    assert_eq!(status, 401, "no token, no answer");
    let (status, _) = request(api, "GET", "/v1/silences", Some("wrong-token-0123456789"), b"");
    assert_eq!(status, 401);
    // The token is checked before a body is read; a body is bounded.
    let large = vec![b'x'; 200_000];
    assert_eq!(request(api, "POST", "/v1/silences", None, &large).0, 401);
    assert_eq!(request(api, "POST", "/v1/silences", Some(API_TOKEN), &large).0, 413);

    let at = |s: u64| jiff::Timestamp::from_second(s as i64).unwrap().to_string();
    let now = now_s();
    let posted = json!({
        "matchers": [{"name": "alertname", "value": "Honeyfile.*", "isRegex": true, "isEqual": true},
                     {"name": "severity", "value": "high", "isRegex": false}],
        "startsAt": at(now - 60), "endsAt": at(now + 3600),
        "createdBy": "bob", "comment": "IR-77: bait files moved"});
    let (status, answer) = call("POST", "/v1/silences", &posted);
    assert_eq!(status, 200, "{answer}");
    let id = serde_json::from_str::<Value>(&answer).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();

    let (status, answer) = call(
        "POST",
        "/v1/silences",
        &json!({"matchers": [], "startsAt": at(now), "endsAt": at(now + 60),
                                                               "createdBy": "bob", "comment": "c"}),
    );
    assert_eq!(status, 400);
    assert!(answer.contains("at least one matcher"), "{answer}");
    let (status, answer) = call(
        "POST",
        "/v1/silences",
        &json!({"matchers": [{"name": "a", "value": "(", "isRegex": true}],
                                                               "startsAt": at(now), "endsAt": at(now + 60),
                                                               "createdBy": "bob", "comment": "c"}),
    );
    assert_eq!(status, 400);
    assert!(
        answer.contains("matchers[0]") && answer.contains("not a valid regex"),
        "{answer}"
    );

    post_alerts(
        ingest,
        &[
            alert("Honeyfile 1", "C.4b7e1a9c0d2f3e51", now),
            alert("Process injection", "C.4b7e1a9c0d2f3e51", now),
        ],
    );
    let sent = subjects(&smtp, 1);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].contains("Process injection"), "{sent:?}");
    let series = "velonotify_held_back_total{module=\"alerts\",kind=\"email\",reason=\"silenced\"}";
    run.wait("the silenced count", Duration::from_secs(30), |_| {
        metric(metrics, series) == 1
    });

    let (status, answer) = call("GET", "/v1/silences", &Value::Null);
    assert_eq!(status, 200);
    let listed: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"]["state"], "active");
    assert_eq!(listed[0]["createdBy"], "bob");
    assert_eq!(
        listed[0]["matchers"][0],
        json!({"name": "alertname", "value": "Honeyfile.*", "isRegex": true, "isEqual": true})
    );
    let (_, filtered) = call("GET", "/v1/silences?filter=%7Bseverity%3D%22low%22%7D", &Value::Null);
    assert_eq!(filtered.trim(), "[]");
    let (status, one) = call("GET", &format!("/v1/silences/{id}"), &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&one).unwrap()["comment"],
        "IR-77: bait files moved"
    );

    let (status, _) = call("DELETE", &format!("/v1/silences/{id}"), &Value::Null);
    assert_eq!(status, 200);
    let (_, one) = call("GET", &format!("/v1/silences/{id}"), &Value::Null);
    assert_eq!(
        serde_json::from_str::<Value>(&one).unwrap()["status"]["state"],
        "expired"
    );
    let (status, _) = call("DELETE", "/v1/silences/no-such-id", &Value::Null);
    assert_eq!(status, 404);
    post_alerts(ingest, &[alert("Honeyfile 2", "C.4b7e1a9c0d2f3e51", now_s())]);
    let sent = subjects(&smtp, 2);
    assert!(sent.iter().any(|s| s.contains("Honeyfile 2")), "{sent:?}");
}

/// The text part of an accepted e-mail.
fn text_of(smtp: &SmtpPeer, received: &Value) -> String {
    let bytes = smtp.message(received["file"].as_str().unwrap());
    let mail = mailparse::parse_mail(&bytes).unwrap();
    let part = mail.subparts.first().unwrap_or(&mail);
    part.get_body().unwrap()
}

/// The "Silence similar for 2 h" link of an e-mail, opened in headless
/// Chromium: the page shows the hostile alert name as text and what it
/// silences; the reader gives a name and confirms; the next alert like it
/// is kept as silenced with that silence's id while another client's is
/// sent; an altered link is refused.
#[test]
fn an_e_mails_silence_link_opens_a_page_in_a_browser_that_silences_similar_alerts() {
    const HOSTILE: &str = "Honeyfile <script>document.title='owned'</script> \"x\"";
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let (ingest, metrics, api) = (free_port(), free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, metrics);
    serve_api(
        &config,
        api,
        &format!("[server]\nvelonotify_url = \"http://127.0.0.1:{api}/\"\n"),
    );
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the API", Duration::from_secs(120), |r| {
        r.log().contains("operator API at")
    });

    // Two posts: each numbers its rows from 1, so both alerts have the
    // event id `ingest:1`; the second e-mail's link is followed.
    post_alerts(ingest, &[alert("Process injection", "C.3", now_s())]);
    assert_eq!(smtp.wait_for(1, Duration::from_secs(60)).len(), 1);
    post_alerts(ingest, &[alert(HOSTILE, "C.1", now_s())]);
    let received = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(received.len(), 2);
    let text = text_of(&smtp, &received[1]);
    let page = format!("http://127.0.0.1:{api}/silence?t=");
    let link = text
        .lines()
        .find_map(|line| line.strip_prefix("Silence similar for 2 h: "))
        .unwrap_or_else(|| panic!("no silence link in the e-mail:\n{text}"))
        .trim()
        .to_string();
    assert!(link.starts_with(&page), "{link}");

    let browser = Browser::start();
    browser.goto(&link);
    assert_eq!(browser.title(), "Silence similar notifications for 2 h · velonotify");
    assert_eq!(browser.scripts(), 0, "the alert's name is shown, never run");
    let subject = browser.text("#subject");
    assert!(
        subject.starts_with("Alert from client C.1 (high): Honeyfile <script>"),
        "{subject}"
    );
    assert_eq!(
        browser.text("#matchers"),
        r#"{alertname="Honeyfile <script>document.title='owned'</script> \"x\"", client_id="C.1", module="alerts"}"#
    );
    assert_eq!(browser.text("#recent-count"), "1");
    assert!(!browser.has("#covering"), "nothing silences it yet");
    browser.type_into("#author", "ann");
    browser.type_into("#comment", "IR-9: bait moved");
    browser.click("#silence");
    browser.wait_for_title("Silence created · velonotify");
    let id = browser.text("#silence-id");
    let (status, answer) = request(api, "GET", &format!("/v1/silences/{id}"), Some(API_TOKEN), b"");
    assert_eq!(status, 200, "{answer}");
    let made: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        (made["createdBy"].as_str(), made["comment"].as_str()),
        (Some("ann"), Some("IR-9: bait moved"))
    );
    assert_eq!(made["status"]["state"], "active");

    // The same alert on the same client is held back; on another, sent.
    post_alerts(
        ingest,
        &[alert(HOSTILE, "C.1", now_s()), alert(HOSTILE, "C.2", now_s())],
    );
    let series = "velonotify_held_back_total{module=\"alerts\",kind=\"email\",reason=\"silenced\"}";
    run.wait("the silenced alert", Duration::from_secs(30), |_| {
        metric(metrics, series) == 1
    });
    let sent = subjects(&smtp, 3);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.iter().any(|s| s.contains("client_C.2")), "{sent:?}");
    let config_arg = config.display().to_string();
    let outbox = velonotify(&["outbox", "-c", &config_arg, "list", "--status", "silenced"]);
    let listed = String::from_utf8(outbox.stdout).unwrap();
    assert!(listed.contains(&format!("silence {id}")), "{listed}");

    // The page says so now, and an altered link opens nothing.
    // A link makes one silence: opened again, it shows the one it made.
    browser.goto(&link);
    assert!(browser.has("#already"));
    assert_eq!(browser.text("#silence-id"), id);
    let altered = link.replace("?t=", "?t=A");
    browser.goto(&altered);
    assert_eq!(browser.title(), "Link refused · velonotify");
    assert!(
        browser.text("#refusal").contains("signature does not match"),
        "{}",
        browser.source()
    );
}

/// An inhibit rule: a failing server event query holds back the client
/// alerts of the same artifact for its window, in a replay; the others go
/// out. `summary.jsonl` names the rule.
#[test]
fn a_server_side_failure_inhibits_the_client_alerts_it_causes() {
    let dir = scratch();
    let config = config(dir.path(), free_port(), free_port(), free_port());
    let text = std::fs::read_to_string(&config).unwrap()
        + "\n[[inhibit]]\nsource_matchers = ['alertname=\"Server event query error\"']\n\
           target_matchers = ['client_id=~\"C\\\\..+\"']\nequal = [\"artifact\"]\nwindow_s = 600\n";
    std::fs::write(&config, text).unwrap();
    let t0 = 1_778_400_000;
    let row = |ts: u64, name: &str, client: &str, artifact: &str| {
        json!({"name": name, "client_id": client, "artifact": artifact, "timestamp": "2026-05-10T08:00:00Z",
               "event_data": {}, "_ts": ts, "_Source": "Server.Internal.Alerts"})
    };
    let rows = [
        row(t0, "Server event query error", "server", "Custom.Hunt.Files"),
        row(t0 + 10, "Bad file", "C.4b7e1a9c0d2f3e51", "Custom.Hunt.Files"),
        row(t0 + 20, "Bad file", "C.91ac3d5e7f20b846", "Other.Artifact"),
        row(t0 + 700, "Bad file", "C.4b7e1a9c0d2f3e51", "Custom.Hunt.Files"),
    ];
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, rows.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
    let out = dir.path().join("out");
    let replayed = replay_with(&config, &events, &out, &[]);
    let summary = jsonl(&out.join("summary.jsonl"));
    let fates: Vec<&str> = summary.iter().map(|s| s["fate"].as_str().unwrap()).collect();
    assert_eq!(fates, ["sent", "inhibited", "sent", "sent"], "{}", stderr(&replayed));
    assert_eq!(
        summary[1]["held_by"],
        "inhibit rule 1 (source {alertname=\"Server event query error\"})"
    );

    // A bad rule is refused by `check`, naming it and the position.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("source_matchers = ['alertname=", "source_matchers = ['{alertname=");
    std::fs::write(&config, text).unwrap();
    let checked = velonotify(&["check", "-c", &config.display().to_string()]);
    assert!(!checked.status.success());
    assert!(
        stderr(&checked).contains("inhibit 1: source_matchers: bad matcher"),
        "{}",
        stderr(&checked)
    );
}

/// A module muted at night: in a replay, an alert before the night is
/// sent, one in it is muted until the night ends (or dropped with
/// `mute_mode = "drop"`); `summary.jsonl` says so.
#[test]
fn a_module_is_muted_in_its_mute_time_in_a_replay() {
    let dir = scratch();
    let config = config(dir.path(), free_port(), free_port(), free_port());
    let base = with_alerts_module(
        &config,
        "mute_time_intervals = [\"night\"]\nMODE",
        "[[time_interval]]\nname = \"night\"\ntimes = [{start_time = \"22:00\", end_time = \"24:00\"}]\n",
    );
    let at = |t: &str| velonotify::clock::parse_rfc3339(t).unwrap() / 1_000_000;
    let rows: String = [
        ("2026-11-30T21:59:00Z", "before"),
        ("2026-11-30T22:30:00Z", "in the night"),
    ]
    .iter()
    .map(|(t, name)| {
        let mut row = alert(name, "C.4b7e1a9c0d2f3e51", at(t));
        row["_Source"] = json!("Server.Internal.Alerts");
        format!("{row}\n")
    })
    .collect();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, rows).unwrap();
    for (mode, fate) in [("", "muted"), ("mute_mode = \"drop\"", "dropped")] {
        std::fs::write(&config, base.replace("MODE", mode)).unwrap();
        let out = dir.path().join(format!("out-{fate}"));
        let replayed = replay_with(&config, &events, &out, &[]);
        let summary = jsonl(&out.join("summary.jsonl"));
        let fates: Vec<&str> = summary.iter().map(|s| s["fate"].as_str().unwrap()).collect();
        assert_eq!(fates, ["sent", fate], "{}", stderr(&replayed));
        assert_eq!(
            summary[1]["held_by"],
            "mute time interval \"night\" (until 2026-12-01T00:00:00Z)"
        );
    }
    // A name that is no interval is refused by `check`.
    std::fs::write(&config, base.replace("MODE", "").replace("[\"night\"]", "[\"nigth\"]")).unwrap();
    let checked = velonotify(&["check", "-c", &config.display().to_string()]);
    assert!(
        stderr(&checked).contains("module 1: mute_time_intervals: no time_interval named \"nigth\""),
        "{}",
        stderr(&checked)
    );
}

/// Under `run`, an e-mail in its module's mute time is held, and goes out
/// (as a digest) when the mute ends, to the real SMTP server.
#[test]
fn a_muted_e_mail_goes_out_when_the_mute_ends() {
    // The mute is this minute (UTC): start early enough in it.
    if now_s() % 60 > 40 {
        std::thread::sleep(Duration::from_secs(61 - now_s() % 60));
    }
    let minute = |s: u64| format!("{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60);
    let now = now_s();
    let (start, end) = (minute(now), minute(now + 60));
    if end == "00:00" {
        return; // the last minute of the day: the interval cannot end at 24:00 here
    }
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let (ingest, metrics) = (free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, metrics);
    let text = with_alerts_module(
        &config,
        "mute_time_intervals = [\"now\"]",
        &format!("[[time_interval]]\nname = \"now\"\ntimes = [{{start_time = \"{start}\", end_time = \"{end}\"}}]\n"),
    );
    std::fs::write(&config, text).unwrap();
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
        r.log().contains("HTTP ingest at")
    });
    post_alerts(
        ingest,
        &[
            alert("Muted 1", "C.4b7e1a9c0d2f3e51", now_s()),
            alert("Muted 2", "C.4b7e1a9c0d2f3e51", now_s()),
        ],
    );
    let series = "velonotify_held_back_total{module=\"alerts\",kind=\"email\",reason=\"muted\"}";
    run.wait("the muted count", Duration::from_secs(30), |_| {
        metric(metrics, series) == 2
    });
    assert!(smtp.received().is_empty(), "nothing goes out during the mute");
    let received = smtp.wait_for(1, Duration::from_secs(90));
    assert_eq!(received.len(), 1, "one digest: {}", run.log());
    assert!(now_s() >= now / 60 * 60 + 60, "not before the mute ended");
    assert_eq!(received[0]["subject"], "2 held notifications from alerts");
    let digest = smtp.message(received[0]["file"].as_str().unwrap());
    let text = mailparse::parse_mail(&digest).unwrap().subparts[0].get_body().unwrap();
    assert!(text.contains("Muted 1") && text.contains("Muted 2"), "{text}");
    assert!(
        text.contains("while it was muted (mute time interval \"now\")"),
        "{text}"
    );
}

/// The issue's scenario, against the real SMTP server: a burst of one
/// detection on 300 hosts, grouped by alertname, is one e-mail listing
/// them; a silence on one host holds it back (299 listed); a server-side
/// failure inhibits the client alerts it causes; every item is in the
/// outbox with what became of it.
#[test]
fn a_burst_on_300_hosts_is_one_e_mail_less_the_silenced_host_and_the_inhibited_alerts() {
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let (ingest, metrics) = (free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, metrics);
    let text = with_alerts_module(
        &config,
        "group_by = [\"alertname\"]\ngroup_wait_s = 5",
        "[[inhibit]]\nsource_matchers = ['alertname=\"Server event query error\"']\n\
         target_matchers = ['client_id=~\"C\\\\..+\"']\nequal = [\"artifact\"]\n",
    );
    std::fs::write(&config, text).unwrap();
    let client = |i: usize| format!("C.{i:016x}");
    silence(
        &config,
        &[
            "add",
            &format!("client_id=\"{}\"", client(7)),
            "--duration",
            "1h",
            "--comment",
            "re-imaging",
            "--author",
            "alice",
        ],
    );
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
        r.log().contains("HTTP ingest at")
    });

    let now = now_s();
    let hit = |i: usize, artifact: &str| {
        let mut row = alert("Honeyfile accessed", &client(i), now);
        row["artifact"] = json!(artifact);
        row
    };
    for batch in (0..300).collect::<Vec<usize>>().chunks(100) {
        let rows: Vec<Value> = batch.iter().map(|i| hit(*i, "Linux.Detection.Honeyfiles")).collect();
        post_alerts(ingest, &rows);
    }
    let mut error = alert("Server event query error", "server", now);
    error["artifact"] = json!("Custom.Broken");
    let broken: Vec<Value> = (1000..1003).map(|i| hit(i, "Custom.Broken")).collect();
    post_alerts(ingest, &[vec![error], broken].concat());

    let received = smtp.wait_for(2, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2)); // room for a stray one
    let received = smtp.wait_for(received.len() + 1, Duration::from_millis(10));
    let mut subjects: Vec<&str> = received.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "1 notification from alerts: {alertname=\"Server event query error\"}",
            "299 notifications from alerts: {alertname=\"Honeyfile accessed\"}",
        ],
        "{}",
        run.log()
    );
    let group = received
        .iter()
        .find(|m| m["subject"].as_str().unwrap().starts_with("299"))
        .unwrap();
    let message = smtp.message(group["file"].as_str().unwrap());
    let text = mailparse::parse_mail(&message).unwrap().subparts[0].get_body().unwrap();
    for i in (0..300).filter(|i| *i != 7) {
        assert!(text.contains(&client(i)), "host {} listed", client(i));
    }
    assert!(!text.contains(&client(7)), "the silenced host is not listed");

    let store = velonotify_test_support::open_store(dir.path());
    velonotify_test_support::wait_until_sent(&store, 2);
    let counts = store.counts().unwrap().by_status;
    assert_eq!(counts.get(&Status::Silenced), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&Status::Inhibited), Some(&3), "{counts:?}");
    assert_eq!(counts.get(&Status::Digested), Some(&300), "{counts:?}");
    assert_eq!(counts.get(&Status::Sent), Some(&2), "{counts:?}");
    let inhibited = velonotify(&[
        "outbox",
        "-c",
        &config.display().to_string(),
        "list",
        "--status",
        "inhibited",
    ]);
    assert_eq!(
        String::from_utf8(inhibited.stdout)
            .unwrap()
            .matches("inhibit rule 1")
            .count(),
        3
    );
}

/// Grouping holds a module's webhooks too: a burst of one alert on five
/// hosts is one post to the webhook listing the five, in the receiver's
/// own shape (a Slack message), and another alert, a group of one, is
/// posted as the module made it.
#[test]
fn a_group_of_webhooks_is_one_post_listing_its_members() {
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let hook = HttpPeer::started(dir.path(), "200", None);
    let (ingest, metrics) = (free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, metrics);
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[[module]]\nname = \"hook\"\npath = \"webhook.wasm\"\nallowed_hosts = [\"127.0.0.1\"]\n\
             group_by = [\"alertname\"]\ngroup_wait_s = 2\n[module.params]\n\
             WebhookURL = \"http://127.0.0.1:{}/hook\"\nTarget = \"slack\"\n",
            hook.port
        );
    std::fs::write(&config, text).unwrap();
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
        r.log().contains("HTTP ingest at")
    });
    let now = now_s();
    let mut rows: Vec<Value> = (1..=5)
        .map(|i| alert("Honeyfile accessed", &format!("C.{i}"), now))
        .collect();
    rows.push(alert("Process injection", "C.9", now));
    post_alerts(ingest, &rows);

    run.wait("two posts", Duration::from_secs(60), |_| hook.requests().len() >= 2);
    std::thread::sleep(Duration::from_secs(3)); // room for a stray one
    let mut texts: Vec<String> = hook
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            assert_eq!(body.as_object().unwrap().len(), 1, "a Slack message: {body}");
            body["text"].as_str().unwrap().to_string()
        })
        .collect();
    texts.sort();
    assert_eq!(texts.len(), 2, "{texts:?}");
    // A group of one goes as its member was.
    assert!(texts[1].starts_with("Alert: Process injection |"), "{texts:?}");
    let lines: Vec<&str> = texts[0].lines().collect();
    assert_eq!(
        lines[0], "5 notifications from hook: {alertname=\"Honeyfile accessed\"}",
        "{texts:?}"
    );
    assert_eq!(lines.len(), 6, "{texts:?}");
    for i in 1..=5 {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("• ") && l.contains(&format!("C.{i}"))),
            "C.{i}: {texts:?}"
        );
    }
    let config_arg = config.display().to_string();
    let digested = velonotify(&["outbox", "-c", &config_arg, "list", "--status", "digested"]);
    let digested = String::from_utf8(digested.stdout).unwrap();
    assert_eq!(digested.matches(" webhook ").count(), 6, "{digested}");
}

/// A receiver's API object is one per post: grouped PagerDuty events are
/// not folded into a list PagerDuty would refuse, but released one by one,
/// each accepted by the stand-in that checks PagerDuty's schema.
#[test]
fn grouped_events_for_a_receivers_api_go_one_per_post() {
    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let pagerduty = HttpPeer::vendor(dir.path(), "pagerduty");
    let (ingest, metrics) = (free_port(), free_port());
    let config = config(dir.path(), smtp.port, ingest, metrics);
    let text = std::fs::read_to_string(&config).unwrap()
        + &format!(
            "\n[[module]]\nname = \"pager\"\npath = \"webhook.wasm\"\nallowed_hosts = [\"127.0.0.1\"]\n\
             group_by = [\"alertname\"]\ngroup_wait_s = 2\n[module.params]\n\
             WebhookURL = \"http://127.0.0.1:{}/v2/enqueue\"\nTarget = \"pagerduty\"\n\
             RoutingKey = \"R0123456789abcdef0123456789abcde\"\n",
            pagerduty.port
        );
    std::fs::write(&config, text).unwrap();
    let mut run = Running::start_in(EXE, &config, &modules_dir());
    run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
        r.log().contains("HTTP ingest at")
    });
    let now = now_s();
    let rows: Vec<Value> = (1..=3)
        .map(|i| alert("Honeyfile accessed", &format!("C.{i}"), now))
        .collect();
    post_alerts(ingest, &rows);
    run.wait("three events", Duration::from_secs(60), |_| {
        pagerduty.requests().len() >= 3
    });
    std::thread::sleep(Duration::from_secs(3)); // room for a stray one
    let statuses: Vec<u64> = pagerduty
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 202, 202], "{:?}", pagerduty.requests());
    let config_arg = config.display().to_string();
    let dead = velonotify(&["outbox", "-c", &config_arg, "list", "--status", "dead"]);
    assert_eq!(String::from_utf8(dead.stdout).unwrap().lines().count(), 2, "none dead");
}
