//! Delivery against real peers: an aiosmtpd SMTP server with STARTTLS and
//! AUTH on a generated certificate, and HTTP(S) servers for webhooks;
//! `velonotify run` as a real process, killed with SIGKILL where it counts.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use velonotify_test_support::peers::{HttpPeer, SmtpOptions, SmtpPeer, TestCertificate, free_port, http_get};
use velonotify_test_support::postgres::store_env;
use velonotify_test_support::{cache_dir, modules_dir, scratch};

use super::{EXE, write_config};

const USER: &str = "velonotify";
const PASSWORD: &str = "s3cret-for-tests";

/// A configuration delivering to `smtp_port` with STARTTLS and AUTH, fast
/// retries, and `modules` (TOML) appended.
pub(super) fn config(dir: &Path, smtp_port: u16, cert: &TestCertificate, modules: &str) -> PathBuf {
    config_with_delivery(dir, smtp_port, cert, "", modules)
}

/// [`config`] with more `[delivery]` settings (TOML lines).
pub(super) fn config_with_delivery(
    dir: &Path,
    smtp_port: u16,
    cert: &TestCertificate,
    delivery: &str,
    modules: &str,
) -> PathBuf {
    write_config(
        dir,
        &format!(
            r#"
[smtp]
server = "127.0.0.1"
server_port = {smtp_port}
auth_username = "{USER}"
auth_password = "{PASSWORD}"
from = "velonotify@example.org"
root_ca = "{}"

[delivery]
retry_base_ms = 100
retry_cap_s = 1
retry_deadline_s = 120
{delivery}

[host]
state = "state.db"
{modules}
"#,
            cert.cert.display()
        ),
    )
}

/// The Alerts module mailing soc@example.org.
fn alerts_module(send_interval: i64, extra: &str) -> String {
    format!(
        "[[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\n{extra}\n[module.params]\n\
         Recipients = \"Address\\nsoc@example.org\\n\"\nSendInterval = {send_interval}\n"
    )
}

fn smtp(dir: &Path, cert: &TestCertificate) -> SmtpOptions {
    let _ = dir;
    SmtpOptions {
        tls: Some((cert.cert.clone(), cert.key.clone())),
        auth: Some((USER.into(), PASSWORD.into())),
        ..SmtpOptions::default()
    }
}

/// `n` alert rows named "Alert <prefix>-NNNN" (JSON lines).
pub(super) fn alerts(n: usize, prefix: &str) -> String {
    (0..n)
        .map(|i| {
            json!({"_Source": "Server.Internal.Alerts", "client_id": "server", "name": format!("Alert {prefix}-{i:04}"),
                   "timestamp": "2026-05-10T08:00:00Z", "event_data": {"n": i}, "_ts": 1_778_400_000 + i})
            .to_string()
                + "\n"
        })
        .collect()
}

/// Starts `velonotify run`, its stdin open for the caller.
fn spawn_run_open(config: &Path) -> (Child, std::process::ChildStdin) {
    let mut child = Command::new(EXE)
        .args(["run", "-c", &config.display().to_string()])
        .args(["--modules-dir", &modules_dir().display().to_string()])
        .args(["--cache-dir", &cache_dir().display().to_string()])
        .env("VELONOTIFY_LOG", "info")
        .envs(store_env(config.parent().unwrap()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting velonotify run");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}

/// Starts `velonotify run`, feeding it `input` and closing its stdin.
fn spawn_run(config: &Path, input: &str) -> Child {
    let (child, mut stdin) = spawn_run_open(config);
    let input = input.to_string();
    std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    child
}

/// Waits for `child` to exit, at most `timeout`.
fn finish(mut child: Child, timeout: Duration) -> Output {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > timeout {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "velonotify run did not finish in {timeout:?}:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "velonotify run failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub(super) fn run(config: &Path, input: &str) -> Output {
    finish(spawn_run(config, input), Duration::from_secs(180))
}

pub(super) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `velonotify outbox list` of a configuration.
pub(super) fn outbox_list(config: &Path, status: &str) -> String {
    let output = Command::new(EXE)
        .envs(store_env(config.parent().unwrap()))
        .args([
            "outbox",
            "-c",
            &config.display().to_string(),
            "list",
            "--status",
            status,
            "--limit",
            "10000",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn subjects(peer: &SmtpPeer) -> Vec<String> {
    peer.received()
        .iter()
        .map(|r| r["subject"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_thousand_alerts_arrive_as_a_thousand_messages_over_starttls_with_auth() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let peer = SmtpPeer::started(&dir.path().join("smtp"), smtp(dir.path(), &cert));
    let config = config(dir.path(), peer.port, &cert, &alerts_module(-1, ""));
    run(&config, &alerts(1000, "a"));
    let received = peer.received();
    assert_eq!(received.len(), 1000);
    let mut by_subject: HashMap<String, usize> = HashMap::new();
    for line in &received {
        assert_eq!(line["tls"], true, "STARTTLS");
        assert_eq!(line["auth"], true, "AUTH");
        assert_eq!(line["rcpt_tos"], json!(["soc@example.org"]));
        let message = peer.message(line["file"].as_str().unwrap());
        let mail = mailparse::parse_mail(&message).expect("parses");
        let subject = mail
            .headers
            .iter()
            .find(|h| h.get_key() == "Subject")
            .unwrap()
            .get_value();
        *by_subject.entry(subject).or_default() += 1;
    }
    for i in 0..1000 {
        let subject = format!("Server alert: Alert a-{i:04}");
        assert_eq!(by_subject.get(&subject), Some(&1), "{subject} arrived once");
    }
}

#[test]
fn run_reports_a_malformed_line_with_its_number_and_delivers_the_rest() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let peer = SmtpPeer::started(&dir.path().join("smtp"), smtp(dir.path(), &cert));
    let config = config(dir.path(), peer.port, &cert, &alerts_module(-1, ""));
    let input = alerts(3, "line").replacen("\n", "\n{\"name\": \"cut short\n", 1);
    let output = run(&config, &input);
    assert!(
        stderr(&output).contains("stdin:2: malformed JSON"),
        "{}",
        stderr(&output)
    );
    let mut subjects = subjects(&peer);
    subjects.sort(); // delivered in parallel
    assert_eq!(
        subjects,
        [
            "Server alert: Alert line-0000",
            "Server alert: Alert line-0001",
            "Server alert: Alert line-0002"
        ]
    );
}

#[test]
fn notifications_wait_for_an_smtp_server_that_comes_up_later() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let mut peer = SmtpPeer::new(free_port(), &dir.path().join("smtp"), smtp(dir.path(), &cert));
    let config = config(dir.path(), peer.port, &cert, &alerts_module(-1, ""));
    let child = spawn_run(&config, &alerts(20, "late"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(peer.received().is_empty());
    peer.start();
    let output = finish(child, Duration::from_secs(120));
    assert_eq!(peer.received().len(), 20, "none lost");
    assert!(
        stderr(&output).contains("retrying in"),
        "the failures were retried:\n{}",
        stderr(&output)
    );
}

#[test]
fn a_host_killed_while_delivering_resumes_after_a_restart() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let options = SmtpOptions {
        delay_ms: 3,
        ..smtp(dir.path(), &cert)
    };
    let peer = SmtpPeer::started(&dir.path().join("smtp"), options);
    let config = config(dir.path(), peer.port, &cert, &alerts_module(-1, ""));
    let mut child = spawn_run(&config, &alerts(2000, "kill"));
    // Every event is in the outbox, and delivery is under way: kill. The
    // outbox is counted in one read: an item being sent is still pending
    // there while the SMTP server already has it.
    let started = Instant::now();
    let mut store = None;
    loop {
        if store.is_none() && !peer.received().is_empty() {
            store = Some(velonotify_test_support::open_store(dir.path()));
        }
        let in_outbox: u64 = store
            .as_ref()
            .and_then(|s| s.counts().ok())
            .map_or(0, |counts| counts.by_status.values().sum());
        if in_outbox >= 2000 && peer.received().len() >= 300 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "never reached the kill point"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = peer.received().len();
    assert!(at_kill < 2000, "killed while delivering ({at_kill} delivered)");

    run(&config, "");
    let received = peer.received();
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for line in &received {
        *per_id
            .entry(line["message_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), 2000, "every notification arrived");
    let duplicates = received.len() - per_id.len();
    eprintln!("SIGKILL after {at_kill} of 2000 delivered: {duplicates} duplicate(s) after the restart");
    assert!(
        duplicates <= 4,
        "at most the messages in flight (4 workers) are sent twice, got {duplicates}"
    );
}

#[test]
fn a_permanent_rejection_is_dead_lettered_at_once_with_the_servers_reply() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let options = SmtpOptions {
        reject: Some("^<?nobody@".into()),
        ..smtp(dir.path(), &cert)
    };
    let peer = SmtpPeer::started(&dir.path().join("smtp"), options);
    let module = "[[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\n[module.params]\n\
                  Recipients = \"Address\\nnobody@example.org\\n\"\nSendInterval = -1\n";
    let config = config(dir.path(), peer.port, &cert, module);
    let output = run(&config, &alerts(1, "reject"));
    assert!(peer.received().is_empty());
    let err = stderr(&output);
    assert!(err.contains("dead-lettered email 1 to nobody@example.org"), "{err}");
    assert!(
        err.contains("550") && err.contains("Recipient address rejected"),
        "the server's reply is logged:\n{err}"
    );
    assert!(!err.contains("retrying in"), "not retried:\n{err}");
    let dead = outbox_list(&config, "dead");
    assert!(dead.lines().nth(1).unwrap().contains("dead         email"), "{dead}");
    assert!(dead.contains("  1  "), "one attempt:\n{dead}");
}

/// Credentials configured for a server that offers no AUTH (as servers do
/// on a connection without TLS): nothing will change until the settings
/// do, so the e-mail is dead-lettered at once, saying why.
#[test]
fn credentials_a_server_cannot_take_are_a_settings_problem_not_retried() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let peer = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let config = config(dir.path(), peer.port, &cert, &alerts_module(-1, ""));
    let output = run(&config, &alerts(1, "noauth"));
    let err = stderr(&output);
    assert!(err.contains("cannot be used with these settings"), "{err}");
    assert!(err.contains("No compatible authentication mechanism"), "{err}");
    assert!(!err.contains("retrying in"), "not retried:\n{err}");
    assert!(peer.received().is_empty());
}

#[test]
fn an_smtp_server_whose_certificate_does_not_verify_is_a_tls_failure_not_retried() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let peer = SmtpPeer::started(&dir.path().join("smtp"), smtp(dir.path(), &cert));
    let untrusting = config(dir.path(), peer.port, &cert, &alerts_module(-1, ""));
    let text = std::fs::read_to_string(&untrusting).unwrap();
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("root_ca"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&untrusting, text).unwrap();
    let output = run(&untrusting, &alerts(1, "untrusted"));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("TLS failure talking to SMTP server 127.0.0.1:{}", peer.port)),
        "{err}"
    );
    assert!(!err.contains("retrying in"), "not retried:\n{err}");
    assert!(peer.received().is_empty());
}

/// Fifty alerts within one 3 s `SendInterval` of the alerts module (with
/// `extra` in its section), run to the end.
fn burst_of_fifty(extra: &str) -> (tempfile::TempDir, SmtpPeer, PathBuf, Output) {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let peer = SmtpPeer::started(&dir.path().join("smtp"), smtp(dir.path(), &cert));
    let config = config(dir.path(), peer.port, &cert, &alerts_module(3, extra));
    let output = run(&config, &alerts(50, "burst"));
    (dir, peer, config, output)
}

#[test]
fn fifty_alerts_in_one_window_make_one_message_and_one_digest_of_the_rest() {
    let (_dir, peer, config, _) = burst_of_fifty("");
    let subjects = subjects(&peer);
    assert_eq!(
        subjects,
        ["Server alert: Alert burst-0000", "49 held notifications from alerts"],
        "one at once, one digest when the window ends"
    );
    let digest = peer.message(peer.received()[1]["file"].as_str().unwrap());
    let mail = mailparse::parse_mail(&digest).unwrap();
    let text = mail.subparts[0].get_body().unwrap();
    for i in 1..50 {
        assert!(
            text.contains(&format!("Server alert: Alert burst-{i:04}")),
            "the digest lists alert {i}"
        );
    }
    assert_eq!(outbox_list(&config, "digested").lines().count() - 2, 49);
}

#[test]
fn in_drop_mode_a_burst_sends_one_and_logs_each_drop() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let peer = SmtpPeer::started(&dir.path().join("smtp"), smtp(dir.path(), &cert));
    let config = config(
        dir.path(),
        peer.port,
        &cert,
        &alerts_module(3, "throttle_mode = \"drop\""),
    );
    let output = run(&config, &alerts(50, "drop"));
    assert_eq!(subjects(&peer), ["Server alert: Alert drop-0000"]);
    assert_eq!(
        stderr(&output)
            .matches("dropped: inside its SendInterval window")
            .count(),
        49
    );
    assert_eq!(outbox_list(&config, "dropped").lines().count() - 2, 49);
}

// ---- webhooks --------------------------------------------------------------

fn webhook_module(url: &str, allowed: &str) -> String {
    format!(
        "[[module]]\nname = \"hook\"\npath = \"webhook.wasm\"\nallowed_hosts = [{allowed}]\n[module.params]\n\
         WebhookURL = \"{url}\"\nTarget = \"json\"\n"
    )
}

#[test]
fn a_webhook_answering_500_then_200_is_retried_and_delivered_once() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let http = HttpPeer::started(dir.path(), "500,200", None);
    let url = format!("http://127.0.0.1:{}/hook", http.port);
    let config = config(dir.path(), free_port(), &cert, &webhook_module(&url, "\"127.0.0.1\""));
    run(&config, &alerts(1, "hook"));
    let requests = http.requests();
    let statuses: Vec<u64> = requests.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [500, 200]);
    let body: Value = serde_json::from_str(requests[1]["body"].as_str().unwrap()).unwrap();
    assert!(
        body["text"].as_str().unwrap().starts_with("Alert: Alert hook-0000 |"),
        "{body}"
    );
    assert_eq!(requests[1]["headers"]["content-type"], "application/json");
    assert_eq!(outbox_list(&config, "sent").lines().count() - 2, 1);
}

#[test]
fn a_webhook_to_a_host_outside_allowed_hosts_is_refused() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let config = config(
        dir.path(),
        free_port(),
        &cert,
        &webhook_module("https://hooks.example.org/x", "\"hooks.slack.com\""),
    );
    let output = run(&config, &alerts(1, "refused"));
    assert!(
        stderr(&output)
            .contains("webhook to hooks.example.org refused: not in the module's allowed_hosts (hooks.slack.com)"),
        "{}",
        stderr(&output)
    );
    assert_eq!(outbox_list(&config, "pending").lines().count(), 2, "nothing queued");
}

#[test]
fn a_webhook_tls_failure_is_reported_as_such() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let https = HttpPeer::started(dir.path(), "200", Some(&cert));
    let url = format!("https://127.0.0.1:{}/hook", https.port);
    let config = config(dir.path(), free_port(), &cert, &webhook_module(&url, "\"127.0.0.1\""));
    let output = run(&config, &alerts(1, "tls"));
    let err = stderr(&output);
    // The URL's path (where webhook services keep their secret) is not
    // shown.
    let shown = format!("https://127.0.0.1:{}/…", https.port);
    assert!(err.contains(&format!("TLS failure talking to {shown}")), "{err}");
    assert!(!err.contains(&url), "{err}");
    assert!(https.requests().is_empty());
    assert!(outbox_list(&config, "dead").contains("TLS failure"));
}

// ---- metrics ---------------------------------------------------------------

#[test]
fn run_serves_prometheus_metrics() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let peer = SmtpPeer::started(&dir.path().join("smtp"), smtp(dir.path(), &cert));
    let metrics_port = free_port();
    let modules = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}",
        alerts_module(-1, "")
    );
    let config = config(dir.path(), peer.port, &cert, &modules);
    let mut child = Command::new(EXE)
        .args(["run", "-c", &config.display().to_string()])
        .args(["--modules-dir", &modules_dir().display().to_string()])
        .args(["--cache-dir", &cache_dir().display().to_string()])
        .envs(store_env(dir.path()))
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(alerts(3, "m").as_bytes()).unwrap();
    stdin.write_all(b"not json\n").unwrap();
    peer.wait_for(3, Duration::from_secs(60));
    let expected = [
        "velonotify_events_total 3",
        "velonotify_module_handled_total{module=\"alerts\"} 3",
        "velonotify_actions_total{module=\"alerts\",kind=\"email\"} 3",
        "velonotify_sent_total{kind=\"email\"} 3",
        "velonotify_queue_depth 0",
    ];
    // The queue depth is set at the end of a delivery round, after the
    // sends it counts: the figures settle a moment after the last e-mail.
    let started = Instant::now();
    loop {
        let text = http_get(metrics_port, "/metrics");
        let missing: Vec<&str> = expected.into_iter().filter(|e| !text.contains(e)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{missing:?} never in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    let _ = child.wait();
}

/// A dead webhook put back in line with `outbox retry` is checked against
/// today's configuration before it is posted: one whose module is gone, or
/// whose host its module's `allowed_hosts` no longer names, is not posted.
#[test]
fn retried_webhooks_go_only_where_todays_configuration_allows() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let http = HttpPeer::started(dir.path(), "404,404,200,200", None);
    let url = format!("http://127.0.0.1:{}/hook", http.port);
    let both = webhook_module(&url, "\"127.0.0.1\"")
        + &webhook_module(&url, "\"127.0.0.1\"").replace("\"hook\"", "\"old-hook\"");
    let config_path = config(dir.path(), free_port(), &cert, &both);
    run(&config_path, &alerts(1, "first"));
    assert_eq!(http.requests().len(), 2);
    assert_eq!(outbox_list(&config_path, "dead").lines().count() - 2, 2);

    // Today: old-hook is gone, and hook may post to another host only.
    config(
        dir.path(),
        free_port(),
        &cert,
        &webhook_module(&url, "\"hooks.example.org\""),
    );
    let retried = Command::new(EXE)
        .args(["outbox", "-c", &config_path.display().to_string(), "retry"])
        .envs(store_env(config_path.parent().unwrap()))
        .output()
        .unwrap();
    assert!(retried.status.success(), "{}", String::from_utf8_lossy(&retried.stderr));
    let log = stderr(&run(&config_path, ""));
    assert_eq!(http.requests().len(), 2, "nothing more was posted");
    assert!(
        log.contains("not sent: module \"old-hook\" is no longer configured, so where its webhooks may go is unknown"),
        "{log}"
    );
    assert!(
        log.contains("not sent: webhook to 127.0.0.1 refused: not in the module's allowed_hosts (hooks.example.org)"),
        "{log}"
    );
    assert_eq!(outbox_list(&config_path, "dead").lines().count() - 2, 2);
}

/// The digest passes the checks every module's e-mail passes: one over its
/// module's `max_action_bytes` (an alert e-mail is about 3 KB, a digest of
/// 49 about 11 KB) is not sent but kept dead with the reason
/// (the held e-mails folded into it, visible, `outbox retry` sends it).
#[test]
fn a_digest_over_its_modules_limits_is_kept_dead_not_sent() {
    let (_dir, peer, config, output) = burst_of_fifty("max_action_bytes = 8000");
    assert_eq!(
        subjects(&peer),
        ["Server alert: Alert burst-0000"],
        "the digest is not sent"
    );
    let err = stderr(&output);
    assert!(
        err.contains("the digest of 49 held e-mails (outbox item 51) is refused: an action of"),
        "{err}"
    );
    assert!(err.contains("(max_action_bytes 8000)"), "{err}");
    assert_eq!(outbox_list(&config, "dead").lines().count() - 2, 1);
    assert_eq!(outbox_list(&config, "digested").lines().count() - 2, 49);
}

/// A kept SMTP connection that the server closed (it restarted, or its
/// idle limit passed) fails the next message's first command: that message
/// goes at once on a new connection, not after a retry's wait.
#[test]
fn a_kept_connection_the_server_closed_costs_the_next_message_nothing() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let mut peer = SmtpPeer::started(&dir.path().join("smtp"), smtp(dir.path(), &cert));
    let config = config(dir.path(), peer.port, &cert, &alerts_module(-1, ""));
    let (child, mut stdin) = spawn_run_open(&config);
    stdin.write_all(alerts(1, "first").as_bytes()).unwrap();
    stdin.flush().unwrap();
    assert_eq!(peer.wait_for(1, Duration::from_secs(60)).len(), 1);
    // Sent as far as velonotify knows: a server stopped before its reply to
    // the message reached velonotify leaves the message's fate unknown, and
    // it is rightly sent again.
    velonotify_test_support::wait_until_sent(&velonotify_test_support::open_store(dir.path()), 1);
    // Within the time a kept connection is used without a NOOP first.
    let restarted = Instant::now();
    peer.stop();
    peer.start();
    stdin.write_all(alerts(1, "second").as_bytes()).unwrap();
    drop(stdin);
    assert!(
        restarted.elapsed() < Duration::from_secs(2),
        "the server restarted in {:?}",
        restarted.elapsed()
    );
    let output = finish(child, Duration::from_secs(60));
    assert_eq!(peer.received().len(), 2, "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("retrying in"),
        "the second message was not failed and retried:\n{}",
        stderr(&output)
    );
}
