//! `velonotify run` against a stand-in Velociraptor server: a real gRPC
//! server with mutual TLS (tests/support/src/velociraptor_peer.rs). Events
//! arrive over `watch_monitoring()`, a cut stream is caught up exactly once,
//! lookups and actions go through the API, no VQL ever carries event data,
//! and wrong client certificates are refused with a clear message. Also the
//! HTTP ingest endpoint.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use velonotify::store::Owner;
use velonotify_test_support::peers::{HttpPeer, SmtpOptions, SmtpPeer, free_port};
use velonotify_test_support::scratch;
use velonotify_test_support::service::{Running, post_events, rows_reaching};
use velonotify_test_support::velociraptor_peer::{ClientCert, TestPki, VelociraptorPeer};

use super::{EXE, write_config};

const WORLD: &str = r#"{
  "artifacts": {
    "Server.Internal.Alerts": {"name": "Server.Internal.Alerts", "type": "SERVER_EVENT"},
    "Custom.Detect.Input": {"name": "Custom.Detect.Input", "type": "CLIENT_EVENT"}
  },
  "clients": {"C.api1": {"client_id": "C.api1", "os_info": {"hostname": "ws-api-1", "fqdn": "ws-api-1.corp"}, "labels": []}},
  "users": [{"name": "ann", "roles": ["administrator"]}, {"name": "bob", "roles": ["reader"]}]
}"#;

/// The alerts module, e-mailing every alert to soc@example.org at once.
pub(super) const ALERTS_TO_SOC: &str = "[[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\n[module.params]\n\
                             Recipients = \"Address\\nsoc@example.org\\n\"\nSendInterval = -1\n";

/// A stand-in server, an SMTP server, and an API client file the server
/// accepts (`api.yaml` in `dir`).
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) peer: VelociraptorPeer,
    pub(super) smtp: SmtpPeer,
    /// Held for the test: its stream's timing must not meet a loaded machine.
    _calm: std::sync::RwLockReadGuard<'static, ()>,
}

impl Fixture {
    pub(super) fn start(world: &str) -> Self {
        let dir = scratch();
        let peer = api_server(dir.path(), world);
        let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
        Self {
            dir,
            peer,
            smtp,
            _calm: super::machine_calm(),
        }
    }
}

/// A stand-in server answering from `world`, and an API client file for it
/// that it accepts (`api.yaml` in `dir`).
fn api_server(dir: &Path, world: &str) -> VelociraptorPeer {
    let pki = TestPki::generate();
    let peer = VelociraptorPeer::start(&pki, world);
    pki.api_client_file(&dir.join("api.yaml"), peer.port, ClientCert::Good);
    peer
}

/// A configuration with the API at `api_config` and `modules` appended.
pub(super) fn config(dir: &Path, smtp_port: u16, modules: &str) -> PathBuf {
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

[velociraptor]
api_config = "api.yaml"
heartbeat_s = 1
{modules}
"#
        ),
    )
}

pub(super) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn alert(i: usize) -> Value {
    json!({"client_id": "C.api1", "name": format!("api-alert-{i:04}"),
           "timestamp": "2026-11-22T10:00:00Z", "event_data": {"n": i}})
}

/// The stand-in refuses, and records, any VQL text holding event data.
pub(super) fn assert_no_event_data_in_vql(peer: &VelociraptorPeer) {
    assert!(!peer.requests().is_empty());
    assert_eq!(peer.violations(), Vec::<String>::new(), "event data reached a VQL text");
}

#[test]
fn events_stream_in_and_a_cut_stream_is_caught_up_exactly_once() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let modules = ALERTS_TO_SOC;
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, modules));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    run.wait("the catch-up position", Duration::from_secs(10), |r| {
        r.log().contains("subscribed to the Velociraptor event queues")
    });

    let total = 120;
    for i in 0..total {
        peer.publish("Server.Internal.Alerts", alert(i));
        if i == 40 {
            peer.disconnect_all();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let received = smtp.wait_for(total, Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(2)); // room for a duplicate to show
    let received = smtp.wait_for(received.len() + 1, Duration::from_millis(10));

    let mut per_alert: HashMap<String, usize> = HashMap::new();
    for line in &received {
        *per_alert
            .entry(line["subject"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let log = run.log();
    for i in 0..total {
        // The host name comes from a client_info lookup through the API.
        let subject = format!("Alert from client ws-api-1: api-alert-{i:04}");
        let got = per_alert.get(&subject).copied().unwrap_or(0);
        assert_eq!(got, 1, "{subject} arrived {got} times\n{log}");
    }
    assert!(log.contains("reconnecting in"), "the cut was noticed:\n{log}");
    assert!(log.contains("caught up on rows written while disconnected"), "{log}");

    assert_no_event_data_in_vql(&peer);
    let requests = peer.requests();
    let watched: Vec<&Value> = requests
        .iter()
        .filter(|r| r["vql"].as_str().unwrap().contains("watch_monitoring"))
        .collect();
    assert!(watched.len() >= 2, "subscribed again after the cut");
    assert_eq!(watched[0]["env"]["Queue0"], "Server.Internal.Alerts");
}

/// A server that takes 0.8 s to answer a lookup: the time the alerts module
/// waits for the client's details is not counted against its 500 ms
/// deadline (lookups have their own timeout), so the alert is e-mailed.
#[test]
fn a_slow_lookup_does_not_spend_the_modules_deadline() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let modules = "[[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\ndeadline_ms = 500\n[module.params]\n\
                   Recipients = \"Address\\nsoc@example.org\\n\"\nSendInterval = -1\n";
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, modules));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    peer.delay_lookups(Duration::from_millis(800));
    peer.publish("Server.Internal.Alerts", alert(1));
    let received = smtp.wait_for(1, Duration::from_secs(60));
    let log = run.log();
    assert_eq!(received.len(), 1, "{log}");
    assert_eq!(received[0]["subject"], "Alert from client ws-api-1: api-alert-0001");
    assert!(!log.contains("deadline"), "{log}");
}

/// A lookup the server refuses (the API user lacks a role) fails the
/// alerts module's call: the alert is kept, with the server's reason, and
/// handed to the module again, across a SIGKILL, until the role is given.
#[test]
fn an_alert_whose_lookup_is_refused_is_handed_again_and_arrives_once_allowed() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let modules = ALERTS_TO_SOC;
    let config = config(dir.path(), smtp.port, modules);
    let mut run = Running::start(EXE, &config);
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    peer.deny("clients");
    peer.publish("Server.Internal.Alerts", alert(1));
    run.wait("a second refusal", Duration::from_secs(60), |r| {
        r.log().contains("(attempt 2 failed)")
    });
    let log = run.log();
    assert!(
        log.contains("lookup denied: the server refused the API user: clients: PermissionDenied"),
        "said as a refusal, not an unknown client: {log}"
    );
    assert!(
        log.contains("the event is handed to the module again in 5s (attempt 1 failed)"),
        "{log}"
    );
    run.kill();
    assert!(smtp.wait_for(1, Duration::from_millis(10)).is_empty());

    peer.allow_all();
    let mut run = Running::start(EXE, &config);
    let received = smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(received.len(), 1, "{}", run.log());
    assert_eq!(received[0]["subject"], "Alert from client ws-api-1: api-alert-0001");
    run.wait("the retry done", Duration::from_secs(10), |r| {
        r.log().contains("handled on attempt")
    });
    std::thread::sleep(Duration::from_secs(2)); // room for a second e-mail
    assert_eq!(smtp.wait_for(2, Duration::from_millis(10)).len(), 1);
}

/// Past the retry window (`[delivery] retry_deadline_s`) the event is
/// given up on, and said so: never dropped silently.
#[test]
fn an_alert_whose_lookup_keeps_failing_is_given_up_on_loudly() {
    let dir = scratch();
    let peer = api_server(dir.path(), WORLD);
    let modules = ALERTS_TO_SOC;
    let text = std::fs::read_to_string(config(dir.path(), free_port(), modules)).unwrap();
    let config = write_config(
        dir.path(),
        &text.replace("retry_cap_s = 1", "retry_cap_s = 1\nretry_deadline_s = 3"),
    );
    let mut run = Running::start(EXE, &config);
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    peer.deny("clients");
    peer.publish("Server.Internal.Alerts", alert(1));
    run.wait("the event given up on", Duration::from_secs(60), |r| {
        r.log().contains("given up after 2 attempts")
    });
    assert!(
        run.log().contains("the event is not handed to this module again"),
        "{}",
        run.log()
    );
}

/// A row nested 130 deep (past the JSON parser's limit), live and read
/// back after a cut: it is reported and left out on its own, the rows
/// around it are handled once each, and the stream does not reconnect over
/// it again and again.
#[test]
fn a_row_nested_too_deep_is_left_out_and_the_rows_around_it_are_handled() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let modules = ALERTS_TO_SOC;
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, modules));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    run.wait("the catch-up position", Duration::from_secs(10), |r| {
        r.log().contains("subscribed to the Velociraptor event queues")
    });
    let mut deep = json!(1);
    for _ in 0..130 {
        deep = json!([deep]);
    }
    let deep_row = json!({"client_id": "C.api1", "name": "too-deep", "event_data": {"deep": deep}});
    peer.publish("Server.Internal.Alerts", alert(0));
    peer.publish("Server.Internal.Alerts", deep_row.clone());
    peer.publish("Server.Internal.Alerts", alert(1));
    std::thread::sleep(Duration::from_millis(500));
    peer.disconnect_all();
    peer.publish("Server.Internal.Alerts", alert(2));
    peer.publish("Server.Internal.Alerts", deep_row);
    peer.publish("Server.Internal.Alerts", alert(3));
    smtp.wait_for(4, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let subjects: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| m["subject"].as_str().unwrap().to_string())
        .collect();
    let log = run.log();
    for i in 0..4 {
        let subject = format!("Alert from client ws-api-1: api-alert-{i:04}");
        assert_eq!(
            subjects.iter().filter(|s| **s == subject).count(),
            1,
            "{subjects:?}\n{log}"
        );
    }
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert!(
        log.contains("cannot be read and is left out: recursion limit exceeded"),
        "{log}"
    );
    assert!(log.matches("reconnecting in").count() <= 2, "no reconnect loop:\n{log}");
}

/// Waits until the service has committed a stream position: killed after
/// that, it catches up from there on its next start (killed before, it
/// rightly starts from "now"). The "subscribed" log line comes first.
fn wait_for_a_stored_position(run: &mut Running, dir: &Path) {
    let store = velonotify_test_support::open_store(dir);
    run.wait("a stored stream position", Duration::from_secs(30), |_| {
        store.state_bytes(&Owner::StreamPositions).unwrap_or(0) > 0
    });
}

/// Started, stopped before any row came, and started again after one was
/// written: the row is caught up, because the stream's first position was
/// kept when it started, not when its first row came.
#[test]
fn a_row_written_while_stopped_before_the_first_row_is_caught_up() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let modules = ALERTS_TO_SOC;
    let config = config(dir.path(), smtp.port, modules);
    let mut run = Running::start(EXE, &config);
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    run.wait("the catch-up position", Duration::from_secs(10), |r| {
        r.log().contains("subscribed to the Velociraptor event queues")
    });
    wait_for_a_stored_position(&mut run, dir.path());
    run.kill();
    std::thread::sleep(Duration::from_millis(1100));
    peer.publish("Server.Internal.Alerts", alert(7));
    let run = Running::start(EXE, &config);
    let received = smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(received.len(), 1, "{}", run.log());
    assert_eq!(received[0]["subject"], "Alert from client ws-api-1: api-alert-0007");
}

/// `watch_monitoring()` starts watching a moment after the query starts:
/// a row written in between is neither streamed nor in the first
/// catch-up. It is read back once the watchers are in place; a row that
/// comes both ways is e-mailed once.
#[test]
fn a_row_written_before_the_server_watches_is_read_back_once() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    peer.delay_watchers(Duration::from_millis(1500));
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, ALERTS_TO_SOC));
    run.wait("the stream started", Duration::from_secs(60), |r| {
        r.log().contains("subscribed to the Velociraptor event queues")
    });
    assert_eq!(peer.watchers(), 0, "not watching yet");
    peer.publish("Server.Internal.Alerts", alert(1));
    run.wait("the watcher", Duration::from_secs(10), |_| peer.watchers() >= 1);
    peer.publish("Server.Internal.Alerts", alert(2));
    let received = smtp.wait_for(2, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3)); // room for a duplicate
    let received = smtp.wait_for(received.len() + 1, Duration::from_millis(10));
    let mut subjects: Vec<&str> = received.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    subjects.sort();
    assert_eq!(
        subjects,
        [
            "Alert from client ws-api-1: api-alert-0001",
            "Alert from client ws-api-1: api-alert-0002"
        ],
        "{}",
        run.log()
    );
    assert!(
        run.log()
            .contains("caught up on rows written while the server started watching")
    );
}

/// The server watches again before the catch-up reads the queue: a row
/// written in between comes both live and in the catch-up, and is handled
/// once.
#[test]
fn a_row_both_caught_up_and_streamed_after_a_cut_is_handled_once() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, ALERTS_TO_SOC));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    peer.publish("Server.Internal.Alerts", alert(1));
    smtp.wait_for(1, Duration::from_secs(60));
    peer.delay_backfill_reads(Duration::from_millis(1500));
    peer.disconnect_all();
    run.wait("subscribed again", Duration::from_secs(30), |r| {
        r.log().matches("subscribed to the").count() >= 2
    });
    run.wait("the watcher", Duration::from_secs(10), |_| peer.watchers() >= 1);
    peer.publish("Server.Internal.Alerts", alert(2));
    peer.publish("Server.Internal.Alerts", alert(3));
    let received = smtp.wait_for(3, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(4)); // room for a duplicate
    let received = smtp.wait_for(received.len() + 1, Duration::from_millis(10));
    let mut subjects: Vec<&str> = received.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    subjects.sort();
    let expected: Vec<String> = (1..=3)
        .map(|i| format!("Alert from client ws-api-1: api-alert-{i:04}"))
        .collect();
    assert_eq!(subjects, expected, "{}", run.log());
}

/// A frontend restarting behind a proxy drops its watchers and leaves the
/// stream open and silent: the missing heartbeats are noticed, the stream
/// opened again, and the rows written meanwhile read back once.
#[test]
fn a_stream_whose_watchers_were_dropped_is_noticed_and_caught_up() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, ALERTS_TO_SOC));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    peer.publish("Server.Internal.Alerts", alert(1));
    smtp.wait_for(1, Duration::from_secs(60));
    peer.drop_watchers();
    run.wait("the watcher gone", Duration::from_secs(10), |_| peer.watchers() == 0);
    peer.publish("Server.Internal.Alerts", alert(2));
    run.wait("the silence noticed", Duration::from_secs(30), |r| {
        r.log().contains("no heartbeat for 3 s")
    });
    let received = smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(received.len(), 2, "{}", run.log());
    assert_eq!(received[1]["subject"], "Alert from client ws-api-1: api-alert-0002");
    std::thread::sleep(Duration::from_secs(3)); // room for a duplicate
    assert_eq!(smtp.wait_for(3, Duration::from_millis(10)).len(), 2);
}

/// Rows of one queue do not come in the order of their `_ts` (writers
/// race): each is handled once, live and across a cut, including a row
/// dated before the newest one handled that is written after the cut,
/// while the server is not yet watching again (it is read back).
#[test]
fn rows_out_of_order_are_each_handled_once_across_a_cut() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, ALERTS_TO_SOC));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    std::thread::sleep(Duration::from_millis(2500)); // past the first read-back
    let now = now_us() / 1_000_000;
    for (i, second) in [(1, now + 2), (2, now), (3, now + 1), (4, now - 1)] {
        peer.publish_at("Server.Internal.Alerts", alert(i), second);
    }
    smtp.wait_for(4, Duration::from_secs(60));
    peer.delay_watchers(Duration::from_millis(1500));
    peer.disconnect_all();
    run.wait("subscribed again", Duration::from_secs(30), |r| {
        r.log().matches("subscribed to the").count() >= 2
    });
    assert_eq!(peer.watchers(), 0, "not watching yet");
    peer.publish_at("Server.Internal.Alerts", alert(5), now + 1);
    let received = smtp.wait_for(5, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3)); // room for a duplicate
    let received = smtp.wait_for(received.len() + 1, Duration::from_millis(10));
    let mut subjects: Vec<&str> = received.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    subjects.sort();
    let expected: Vec<String> = (1..=5)
        .map(|i| format!("Alert from client ws-api-1: api-alert-{i:04}"))
        .collect();
    assert_eq!(subjects, expected, "{}", run.log());
}

/// `System.Flow.Completion` is a client event queue, stored per client:
/// what was written during a cut, or while velonotify was stopped, cannot
/// be read back fleet-wide, so the stretch is logged with its times.
#[test]
fn a_gap_in_a_client_event_queue_is_logged_with_its_times() {
    let world = json!({
        "artifacts": {"System.Flow.Completion": {"name": "System.Flow.Completion", "type": "CLIENT_EVENT"}},
    });
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(&world.to_string());
    let modules = "[[module]]\nname = \"flows\"\npath = \"detect.wasm\"\n[module.params]\n\
                   Queue = \"System.Flow.Completion\"\nCondition = \"Column,Regex\\nFlowId,.\\n\"\n\
                   AlertName = \"flow done\"\n";
    let config = config(dir.path(), smtp.port, modules);
    let gap = "event stream: rows of System.Flow.Completion written between ";
    let mut run = Running::start(EXE, &config);
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!run.log().contains(gap), "no gap yet: {}", run.log());
    peer.disconnect_all();
    run.wait("the cut's gap logged", Duration::from_secs(30), |r| {
        r.log().contains(gap)
    });
    assert!(
        run.log()
            .contains("cannot be read back: it is not a server event queue")
    );
    run.kill();
    let before = run.log().matches(gap).count();
    std::thread::sleep(Duration::from_secs(2));
    let mut run = Running::start(EXE, &config);
    run.wait("the downtime's gap logged", Duration::from_secs(60), |r| {
        r.log().matches(gap).count() > before
    });
    let log = run.log();
    let line = log.lines().rev().find(|l| l.contains(gap)).unwrap();
    let (from_s, to_s) = (field(line, "from_s"), field(line, "to_s"));
    assert!(to_s >= from_s + 2, "the stretch covers the downtime: {line}");
}

/// The number after `name=` in a log line.
fn field(line: &str, name: &str) -> u64 {
    let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
    line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

/// A detection publishing the same row twice in one second, and once more
/// seconds later, raised three alerts: three e-mails, also when a cut makes
/// the stream read those rows back.
#[test]
fn the_same_row_published_again_is_another_row_live_and_read_back() {
    let Fixture { dir, peer, smtp, _calm } = Fixture::start(WORLD);
    let modules = ALERTS_TO_SOC;
    let mut run = Running::start(EXE, &config(dir.path(), smtp.port, modules));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    run.wait("the catch-up position", Duration::from_secs(10), |r| {
        r.log().contains("subscribed to the Velociraptor event queues")
    });
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    peer.publish_at("Server.Internal.Alerts", alert(5), second);
    peer.publish_at("Server.Internal.Alerts", alert(5), second);
    peer.publish_at("Server.Internal.Alerts", alert(5), second + 5);
    smtp.wait_for(3, Duration::from_secs(60));
    peer.disconnect_all();
    run.wait("the catch-up", Duration::from_secs(30), |r| {
        r.log().matches("subscribed to the Velociraptor event queues").count() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.received().len(), 3, "{}", run.log());
}

/// 20,000 rows written in one second while velonotify was stopped, one of
/// them nested too deep: read back a page at a time and handled once each,
/// the deep one reported; the position of that second fits its state value,
/// so a second restart handles none of them again.
#[test]
fn a_burst_of_twenty_thousand_rows_in_one_second_is_caught_up_once() {
    // Timed (the catch-up's bound): never beside a build.
    let _calm = super::machine_calm();
    const ROWS: u64 = 20_000;
    let dir = scratch();
    let peer = api_server(dir.path(), WORLD);
    let metrics_port = free_port();
    let modules = format!(
        "[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\
         [[module]]\nname = \"burst\"\npath = \"detect.wasm\"\n[module.params]\nQueue = \"Server.Internal.Alerts\"\n\
         Condition = \"Column,Regex\\nname,^never$\\n\"\nAlertName = \"{{name}}\"\n"
    );
    let config = config(dir.path(), 1, &modules);
    let mut run = Running::start(EXE, &config);
    run.wait("the catch-up position", Duration::from_secs(60), |r| {
        r.log().contains("subscribed to the Velociraptor event queues")
    });
    wait_for_a_stored_position(&mut run, dir.path());
    run.kill();
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    for i in 0..ROWS {
        if i == ROWS / 2 {
            let mut deep = json!(1);
            for _ in 0..130 {
                deep = json!([deep]);
            }
            peer.publish_at(
                "Server.Internal.Alerts",
                json!({"name": "too-deep", "event_data": deep}),
                second,
            );
        }
        peer.publish_at(
            "Server.Internal.Alerts",
            json!({"name": format!("burst-{i}"), "event_data": {}}),
            second,
        );
    }
    let started = std::time::Instant::now();
    let mut run = Running::start(EXE, &config);
    let serving = |r: &Running, starts: usize| r.log().matches("serving Prometheus metrics").count() >= starts;
    run.wait("the metrics", Duration::from_secs(60), |r| serving(r, 2));
    let handled = || rows_reaching(metrics_port, "burst");
    run.wait("the burst", Duration::from_secs(120), |_| handled() >= ROWS);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(handled(), ROWS, "each once:\n{}", run.log());
    assert!(
        run.log()
            .contains("cannot be read and is left out: recursion limit exceeded"),
        "{}",
        run.log()
    );
    let peak = velonotify_test_support::service::peak_rss_kib(run.child.id());
    eprintln!("20,000 rows caught up in {took:.1?}, peak RSS {} MiB", peak / 1024);
    assert!(took < Duration::from_secs(5), "caught up in {took:?}");
    assert!(peak < 400 * 1024, "peak RSS {peak} KiB");
    run.kill();

    // Started again: the position of that second says all of it was handled.
    let mut run = Running::start(EXE, &config);
    run.wait("the metrics", Duration::from_secs(60), |r| serving(r, 3));
    run.wait("the catch-up", Duration::from_secs(60), |r| {
        r.log().matches("subscribed to the Velociraptor event queues").count() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(handled(), 0, "nothing handled twice:\n{}", run.log());
}

/// A server whose clock is an hour behind the host's: the position of a
/// queue starts at the server's time, so a row written while velonotify was
/// stopped is read back, and the difference is logged.
#[test]
fn a_server_an_hour_behind_loses_no_gap() {
    // Read back in a window, as the fixture's tests are: never beside a build.
    let _calm = super::machine_calm();
    let dir = scratch();
    let peer = api_server(dir.path(), WORLD);
    peer.set_clock_offset(-3600);
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let modules = ALERTS_TO_SOC;
    let config = config(dir.path(), smtp.port, modules);
    let mut run = Running::start(EXE, &config);
    run.wait("the catch-up position", Duration::from_secs(60), |r| {
        r.log().contains("subscribed to the Velociraptor event queues")
    });
    wait_for_a_stored_position(&mut run, dir.path());
    run.kill();
    std::thread::sleep(Duration::from_millis(1100));
    peer.publish("Server.Internal.Alerts", alert(9));
    let run = Running::start(EXE, &config);
    let received = smtp.wait_for(1, Duration::from_secs(60));
    assert_eq!(received.len(), 1, "{}", run.log());
    // Both runs share the log: each one saw the skew.
    assert!(
        run.log().matches("clock is 3600 s behind this host's").count() >= 2,
        "{}",
        run.log()
    );
}

#[test]
fn user_messages_and_pushed_alerts_are_executed_on_the_server_once() {
    let dir = scratch();
    let peer = api_server(dir.path(), WORLD);
    let modules = r#"push_alerts = true

[[module]]
name = "detect"
path = "detect.wasm"
[module.params]
Queue = "Custom.Detect.Input"
Condition = "Column,Regex\nName,^suspicious\n"
AlertName = "Detected {Name} on {client.hostname}"
Dedup = -1

[[module]]
name = "user-message"
path = "user_message.wasm"
"#;
    let mut run = Running::start(EXE, &config(dir.path(), free_port(), modules));
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    peer.publish(
        "Custom.Detect.Input",
        json!({"Name": "suspicious'); DROP", "ClientId": "C.api1"}),
    );
    peer.publish("Custom.Detect.Input", json!({"Name": "benign", "ClientId": "C.api1"}));
    run.wait("the user message", Duration::from_secs(60), |_| {
        peer.actions().iter().any(|a| a.get("user_message").is_some())
    });
    std::thread::sleep(Duration::from_secs(3)); // room for a second round to show
    let actions = peer.actions();
    let pushed: Vec<&Value> = actions.iter().filter_map(|a| a.get("alert")).collect();
    assert_eq!(pushed.len(), 1, "{actions:?}");
    assert_eq!(pushed[0]["name"], "Detected suspicious'); DROP on ws-api-1");
    assert_eq!(pushed[0]["velonotify_module"], "detect");
    let messages: Vec<&Value> = actions.iter().filter_map(|a| a.get("user_message")).collect();
    // ann is an administrator, bob is not; the pushed alert coming back on
    // the server's queue is not handled a second time.
    assert_eq!(messages.len(), 1, "{actions:?}\n{}", run.log());
    assert_eq!(messages[0]["user"], "ann");
    assert_eq!(
        messages[0]["message"]["Message"],
        "Detected suspicious'); DROP on ws-api-1"
    );
    assert_no_event_data_in_vql(&peer);
}

/// `user_message()` accepts any name: a message to a user deleted after the
/// module last listed the users is not counted delivered but dead-lettered,
/// with the reason.
#[test]
fn a_message_to_a_user_the_server_no_longer_has_is_not_counted_delivered() {
    let dir = scratch();
    let peer = api_server(dir.path(), WORLD);
    let modules = "[[module]]\nname = \"user-message\"\npath = \"user_message.wasm\"\n";
    let config = config(dir.path(), free_port(), modules);
    let mut run = Running::start(EXE, &config);
    run.wait("the event stream", Duration::from_secs(60), |_| peer.watchers() >= 1);
    peer.publish("Server.Internal.Alerts", alert(1));
    run.wait("the first message", Duration::from_secs(60), |_| {
        peer.actions().len() == 1
    });
    // The users list stays cached for 30 s: the module still picks ann.
    peer.remove_user("ann");
    peer.publish("Server.Internal.Alerts", alert(2));
    run.wait("the second message dead-lettered", Duration::from_secs(60), |r| {
        r.log().contains("the server has no user \"ann\"")
    });
    assert_eq!(peer.actions().len(), 1, "{:?}", peer.actions());
    assert!(run.log().contains("dead-lettered"), "{}", run.log());
}

/// A server with one online client on the `Slack` watch list.
fn one_watched_client() -> String {
    json!({
        "clients": {"C.watch1": {"client_id": "C.watch1", "os_info": {"hostname": "laptop-7"},
                                 "labels": ["Slack"], "last_seen_at": now_us()}},
    })
    .to_string()
}

/// A Clients.Online webhook module looking at the `Slack` watch list every
/// second and posting to `hook`.
fn watch_list_module(hook: &HttpPeer) -> String {
    format!(
        "[[module]]\nname = \"online\"\npath = \"webhook.wasm\"\n[module.params]\nMode = \"ClientsOnline\"\n\
         WebhookURL = \"http://127.0.0.1:{}/hook\"\nLabelGroup = \"Slack\"\nPeriod = 1\n",
        hook.port
    )
}

/// The server's ACL checks refuse a function with a plain log line and a
/// NULL: the label change is dead-lettered with the server's words, not
/// taken for an unknown client.
#[test]
fn a_refused_label_change_is_dead_lettered_with_the_servers_reason() {
    let dir = scratch();
    let peer = api_server(dir.path(), &one_watched_client());
    peer.deny("label");
    let hook = HttpPeer::started(dir.path(), "200", None);
    let mut run = Running::start(EXE, &config(dir.path(), free_port(), &watch_list_module(&hook)));
    run.wait("the label change dead-lettered", Duration::from_secs(60), |r| {
        r.log().contains("dead-lettered label")
    });
    let log = run.log();
    assert!(
        log.contains("the server refused it: label: PermissionDenied: Permission denied: [LABEL_CLIENT]"),
        "{log}"
    );
    assert!(peer.actions().is_empty(), "{:?}", peer.actions());
}

/// `watch_monitoring()` ends quietly on a queue the server does not know,
/// and an artifact that is not an event artifact never fires: both are
/// said at start, naming the queue.
#[test]
fn a_queue_that_is_unknown_or_not_an_event_queue_is_reported_at_start() {
    let dir = scratch();
    let world = json!({
        "artifacts": {"Server.Internal.Alerts": {"name": "Server.Internal.Alerts", "type": "SERVER_EVENT"},
                      "Generic.Client.Info": {"name": "Generic.Client.Info", "type": "CLIENT"}},
    });
    let _server = api_server(dir.path(), &world.to_string());
    let detect = |name: &str, queue: &str| {
        format!(
            "[[module]]\nname = \"{name}\"\npath = \"detect.wasm\"\n[module.params]\nQueue = \"{queue}\"\n\
             Condition = \"Column,Regex\\nName,.\\n\"\nAlertName = \"seen\"\n"
        )
    };
    let modules = detect("typo", "Custom.Detect.Inptu") + &detect("not-events", "Generic.Client.Info");
    let mut run = Running::start(EXE, &config(dir.path(), free_port(), &modules));
    run.wait("the queues reported", Duration::from_secs(60), |r| {
        r.log().contains("is a CLIENT artifact") && r.log().contains("Artifact Custom.Detect.Inptu not known")
    });
    let log = run.log();
    assert!(
        log.contains("the Velociraptor server does not know the queue \"Custom.Detect.Inptu\""),
        "{log}"
    );
    assert!(
        log.contains("\"Generic.Client.Info\" is a CLIENT artifact, not an event queue"),
        "{log}"
    );
    assert!(
        log.contains("event stream: watch_monitoring: Artifact Custom.Detect.Inptu not known"),
        "{log}"
    );
}

#[test]
fn a_watched_client_is_announced_once_and_its_label_removed_on_the_server() {
    let dir = scratch();
    let now_us = now_us();
    // The server's label search is a prefix match: `Slack` also finds
    // `SlackOld`, which is not on the watch list.
    let world = json!({
        "clients": {"C.watch1": {"client_id": "C.watch1", "os_info": {"hostname": "laptop-7", "fqdn": "laptop-7.corp"},
                                 "labels": ["Slack"], "last_seen_at": now_us},
                    "C.watch2": {"client_id": "C.watch2", "os_info": {"hostname": "old-9", "fqdn": "old-9.corp"},
                                 "labels": ["SlackOld"], "last_seen_at": now_us}},
    });
    let peer = api_server(dir.path(), &world.to_string());
    let hook = HttpPeer::started(dir.path(), "200", None);
    let mut run = Running::start(EXE, &config(dir.path(), free_port(), &watch_list_module(&hook)));
    run.wait("the label change", Duration::from_secs(60), |_| {
        peer.actions().iter().any(|a| a.get("label").is_some())
    });
    std::thread::sleep(Duration::from_secs(3)); // three more ticks
    let actions = peer.actions();
    assert_eq!(
        actions,
        [json!({"label": {"client_id": "C.watch1", "op": "remove", "labels": ["Slack"]}})],
        "{}",
        run.log()
    );
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "announced once: {requests:?}");
    assert!(requests[0]["body"].as_str().unwrap().contains("laptop-7"));
    assert_no_event_data_in_vql(&peer);
}

/// Velociraptor's Clients.Online removes the watch-list label even when
/// the post failed, and the client is never announced. Here the label
/// change waits for its announcement and goes with it when it is
/// dead-lettered: the client keeps its label.
#[test]
fn a_label_change_is_not_made_when_its_announcement_failed() {
    let dir = scratch();
    let peer = api_server(dir.path(), &one_watched_client());
    let hook = HttpPeer::started(dir.path(), "400", None);
    let mut run = Running::start(EXE, &config(dir.path(), free_port(), &watch_list_module(&hook)));
    run.wait("the label change dead-lettered", Duration::from_secs(60), |r| {
        r.log().contains("dead-lettered label")
    });
    std::thread::sleep(Duration::from_secs(2)); // two more ticks
    let log = run.log();
    assert!(log.contains("dead-lettered webhook"), "{log}");
    assert!(log.contains("not done: it follows outbox item"), "{log}");
    assert_eq!(hook.requests().len(), 1, "{:?}", hook.requests());
    assert!(peer.actions().is_empty(), "the label stays: {:?}", peer.actions());
}

/// A certificate the server would refuse stops `check` and `run` at once,
/// naming the file, the field and the reason; nothing is sent.
fn refused_at_start(which: ClientCert, expected: &str) {
    let dir = scratch();
    let pki = TestPki::generate();
    let peer = VelociraptorPeer::start(&pki, WORLD);
    let api = pki.api_client_file(&dir.path().join("api.yaml"), peer.port, which);
    let modules = "[[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\n";
    let config = config(dir.path(), free_port(), modules);
    let wanted = format!("velociraptor.api_config: {}: client_cert: {expected}", api.display());
    for command in ["check", "run"] {
        let output = super::velonotify(&[command, "-c", &config.display().to_string()]);
        let err = velonotify_test_support::stderr(&output);
        assert!(!output.status.success(), "{command} should fail");
        assert!(err.contains(&wanted), "{command}:\n{err}");
    }
    assert!(peer.requests().is_empty(), "nothing was sent");
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_clearly() {
    refused_at_start(
        ClientCert::ForeignCa,
        "the server would refuse this certificate: it is not signed by ca_certificate",
    );
}

#[test]
fn an_expired_client_certificate_is_refused_clearly() {
    refused_at_start(
        ClientCert::Expired,
        "the server would refuse this certificate: it has expired",
    );
}

#[test]
fn an_api_client_file_for_another_server_is_refused_clearly_and_retried() {
    let dir = scratch();
    let pki = TestPki::generate();
    let peer = VelociraptorPeer::start(&pki, WORLD);
    pki.api_client_file(&dir.path().join("api.yaml"), peer.port, ClientCert::OtherServer);
    let modules = "[[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\n";
    let mut run = Running::start(EXE, &config(dir.path(), free_port(), modules));
    let expected = "the server's certificate does not check against ca_certificate and the server name";
    run.wait("the refusal", Duration::from_secs(60), |r| r.log().contains(expected));
    run.wait("a second attempt", Duration::from_secs(60), |r| {
        r.log().matches(expected).count() >= 2
    });
    assert_eq!(peer.watchers(), 0);
    assert!(
        peer.requests().is_empty(),
        "the TLS handshake failed: nothing got through"
    );
}

const TOKEN: &str = "ingest-token-0123456789";

/// One POST of rows to the `Custom.Ingest` queue.
fn post(port: u16, token: Option<&str>, body: &[u8]) -> (u16, String) {
    post_events(port, token, "queue=Custom.Ingest", body)
}

#[test]
fn the_ingest_endpoint_checks_token_size_and_lines_and_takes_ten_thousand_rows() {
    let dir = scratch();
    let (ingest_port, metrics_port) = (free_port(), free_port());
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[host]
state = "state.db"
[ingest]
listen = "127.0.0.1:{ingest_port}"
token = "{TOKEN}"
max_body_bytes = 2000000
[metrics]
listen = "127.0.0.1:{metrics_port}"
[[module]]
name = "detect"
path = "detect.wasm"
[module.params]
Queue = "Custom.Ingest"
Condition = "Column,Regex\nName,^never$\n"
AlertName = "{{Name}}"
"#
        ),
    );
    let mut run = Running::start(EXE, &config);
    run.wait("the endpoint", Duration::from_secs(60), |r| {
        r.log().contains("HTTP ingest at")
    });

    let row = |i: usize| format!("{{\"Name\":\"row-{i}\",\"ClientId\":\"C.1\"}}\n");
    assert_eq!(post(ingest_port, None, row(0).as_bytes()).0, 401);
    assert_eq!(
        post(ingest_port, Some("wrong-token-0123456789"), row(0).as_bytes()).0,
        401
    );
    let (status, body) = post(
        ingest_port,
        Some(TOKEN),
        format!("{}{{\"Name\": oops}}\n{}", row(1), row(2)).as_bytes(),
    );
    assert_eq!(status, 400);
    assert!(body.contains("line 2: malformed JSON"), "{body}");
    let oversize = "x".repeat(2_100_000);
    assert_eq!(post(ingest_port, Some(TOKEN), oversize.as_bytes()).0, 413);
    assert_eq!(
        rows_reaching(metrics_port, "detect"),
        0,
        "refused bodies reach no module"
    );

    let rows: String = (0..10_000).map(row).collect();
    let (status, body) = post(ingest_port, Some(TOKEN), rows.as_bytes());
    assert_eq!((status, body.as_str()), (200, "{\"accepted\":10000,\"unwatched\":0}"));
    assert_eq!(
        rows_reaching(metrics_port, "detect"),
        10_000,
        "answered once every row was handled"
    );
}

#[test]
fn a_module_of_one_org_never_sees_another_orgs_events() {
    let dir = scratch();
    let (ingest_port, metrics_port) = (free_port(), free_port());
    let detect = |org: &str| {
        format!(
            "[[module]]\nname = \"detect-{org}\"\npath = \"detect.wasm\"\norg = \"{org}\"\n[module.params]\n\
             Queue = \"Custom.Ingest\"\nCondition = \"Column,Regex\\nName,^never$\\n\"\nAlertName = \"{{Name}}\"\n"
        )
    };
    let config = write_config(
        dir.path(),
        &format!(
            "[host]\nstate = \"state.db\"\n[ingest]\nlisten = \"127.0.0.1:{ingest_port}\"\ntoken = \"{TOKEN}\"\n\
             orgs = [\"O1\", \"O2\", \"O3\"]\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n{}{}",
            detect("O1"),
            detect("O2")
        ),
    );
    let mut run = Running::start(EXE, &config);
    run.wait("the endpoint", Duration::from_secs(60), |r| {
        r.log().contains("HTTP ingest at")
    });
    let post_to = |org: &str, n: usize| {
        let rows: String = (0..n).map(|i| format!("{{\"Name\":\"{org}-{i}\"}}\n")).collect();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", ingest_port)).unwrap();
        write!(
            stream,
            "POST /v1/events?queue=Custom.Ingest&org_id={org} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{rows}",
            rows.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    };
    post_to("O1", 3);
    post_to("O2", 2);
    post_to("O3", 4);
    assert_eq!(rows_reaching(metrics_port, "detect-O1"), 3);
    assert_eq!(rows_reaching(metrics_port, "detect-O2"), 2);
}

/// `Server.Velonotify.Forward` posts each alert row as
/// `serialize(item=[Row,], format="json")` writes it: an indented array of
/// one row, every column of its `dict()` present (null where the row has
/// none). Such bodies are taken, and an alert velonotify pushed to the
/// server itself (its `velonotify_module` kept by the `dict()`) is not
/// handled a second time.
#[test]
fn the_forwarders_posts_are_taken_and_velonotifys_own_alerts_left_out() {
    let artifact: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            velonotify_test_support::workspace().join("host/velociraptor-artifacts/Server.Velonotify.Forward.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let alerts_query = artifact["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Alerts")
        .unwrap()["query"]
        .as_str()
        .unwrap()
        .to_string();
    for source in artifact["sources"].as_array().unwrap() {
        let query = source["query"].as_str().unwrap();
        assert!(
            query.contains(r#"data=serialize(item=[Row,], format="json")"#),
            "{query}"
        );
    }
    // The columns the Alerts source's dict() carries.
    let dict = &alerts_query[alerts_query.find("Row=dict(").unwrap() + "Row=dict(".len()..];
    let dict = &dict[..dict.find("))").unwrap()];
    let columns: Vec<&str> = dict
        .split(',')
        .map(|arg| arg.split('=').next().unwrap().trim())
        .collect();
    assert!(columns.contains(&"velonotify_module"), "{columns:?}");

    let dir = scratch();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), Default::default());
    let ingest_port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            "[smtp]\nserver = \"127.0.0.1\"\nserver_port = {}\nfrom = \"v@example.org\"\n[host]\nstate = \"state.db\"\n\
             [ingest]\nlisten = \"127.0.0.1:{ingest_port}\"\ntoken = \"{TOKEN}\"\n\
             [[module]]\nname = \"alerts\"\npath = \"alerts.wasm\"\n[module.params]\n\
             Recipients = \"Address\\nsoc@example.org\\n\"\nSendInterval = -1\n",
            smtp.port
        ),
    );
    let mut run = Running::start(EXE, &config);
    run.wait("the endpoint", Duration::from_secs(60), |r| {
        r.log().contains("HTTP ingest at")
    });
    // A row of the queue as the artifact's dict() makes it.
    let row = |name: &str, mark: Value| {
        let sample = json!({"client_id": "server", "name": name, "timestamp": "2026-11-30T08:00:00Z",
                            "event_data": {"File": "/etc/shadow"}, "artifact": "Custom.Forwarded",
                            "velonotify_module": mark, "_ts": 1_767_000_000});
        let mut out = serde_json::Map::new();
        for column in &columns {
            out.insert(column.to_string(), sample.get(*column).cloned().unwrap_or(Value::Null));
        }
        Value::Object(out)
    };
    // Go's json.MarshalIndent, as serialize() calls it: one row per post.
    let indented = |row: Value| {
        let mut body = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut serializer = serde_json::Serializer::with_formatter(&mut body, formatter);
        serde::Serialize::serialize(&json!([row]), &mut serializer).unwrap();
        body
    };
    let query = "queue=Server.Internal.Alerts";
    let forwarded = indented(row("Forwarded detection", Value::Null));
    assert!(forwarded.iter().filter(|b| **b == b'\n').count() > 5, "many lines");
    let (status, answer) = post_events(ingest_port, Some(TOKEN), query, &forwarded);
    assert_eq!((status, answer.as_str()), (200, "{\"accepted\":1,\"unwatched\":0}"));
    let own = indented(row("Pushed by velonotify", json!("detect")));
    assert_eq!(post_events(ingest_port, Some(TOKEN), query, &own).0, 200);

    let received = smtp.wait_for(1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let subjects: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(received.len(), 1, "{subjects:?}");
    assert!(subjects[0].contains("Forwarded detection"), "{subjects:?}");
}
