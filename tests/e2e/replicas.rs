//! Replicas: three `velonotify run` processes sharing one PostgreSQL store
//! (always PostgreSQL here, whichever store the rest of the suite runs on),
//! fed by a stand-in Velociraptor server's event stream and by ingest
//! posts, e-mailing to a real SMTP server, while the replica reading the
//! stream is killed with SIGKILL, twice.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use velonotify_test_support::peers::{SmtpOptions, SmtpPeer, free_port};
use velonotify_test_support::postgres;
use velonotify_test_support::scratch;
use velonotify_test_support::service::{Running, post_until_accepted};
use velonotify_test_support::velociraptor_peer::{ClientCert, TestPki, VelociraptorPeer};

use super::EXE;

const TOKEN: &str = "replica-ingest-token";
const QUEUE: &str = "Server.Internal.Alerts";
const STREAMED: usize = 2_000;
const INGESTED: usize = 1_000;
/// Rows in one ingest post.
const BATCH: usize = 10;
/// Items each replica sends at once (the configuration's default).
const WORKERS: usize = 4;

/// The module e-mailing every alert row at once.
const MAIL_EVERY_ALERT: &str = r#"
[[module]]
name = "alerts"
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@example.org\n"
SendInterval = -1
"#;

const WORLD: &str = r#"{
  "artifacts": {"Server.Internal.Alerts": {"name": "Server.Internal.Alerts", "type": "SERVER_EVENT"}},
  "clients": {"C.r1": {"client_id": "C.r1", "os_info": {"hostname": "ws-r1", "fqdn": "ws-r1.corp"}, "labels": []}}
}"#;

/// One replica: its own directory (configuration, ports, pid file, log),
/// the shared store.
struct Replica {
    config: PathBuf,
    store_url: String,
    ingest: u16,
    run: Running,
}

impl Replica {
    /// A replica reading the stand-in server's stream and e-mailing every
    /// alert row.
    fn streaming(dir: &Path, pki: &TestPki, peer: &VelociraptorPeer, smtp_port: u16, store_url: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        pki.api_client_file(&dir.join("api.yaml"), peer.port, ClientCert::Good);
        let sections = format!("\n[velociraptor]\napi_config = \"api.yaml\"\nheartbeat_s = 1\n{MAIL_EVERY_ALERT}");
        Self::start(dir, smtp_port, store_url, &sections)
    }

    /// A replica with the ingest endpoint, a shared store and `sections`
    /// (sources and modules) in its configuration.
    fn start(dir: &Path, smtp_port: u16, store_url: &str, sections: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ingest = free_port();
        let config = dir.join("velonotify.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[smtp]
server = "127.0.0.1"
server_port = {smtp_port}
from = "velonotify@example.org"

[delivery]
retry_base_ms = 100
retry_cap_s = 1

[store]
url = "{store_url}"

[ingest]
listen = "127.0.0.1:{ingest}"
token = "{TOKEN}"
{sections}"#
            ),
        )
        .unwrap();
        // The URL in the configuration, not the suite's own store.
        let run = Running::start_env(EXE, &config, &[("VELONOTIFY_STORE_URL", store_url)]);
        Self {
            config,
            store_url: store_url.to_string(),
            ingest,
            run,
        }
    }

    fn wait_for_ingest(&mut self) {
        self.run.wait("ingest", Duration::from_secs(120), |r| {
            r.log().contains("HTTP ingest at")
        });
    }

    fn restart(&mut self) {
        self.run = Running::start_env(EXE, &self.config, &[("VELONOTIFY_STORE_URL", &self.store_url)]);
    }

    fn pid(&self) -> u32 {
        self.run.child.id()
    }

    fn alive(&mut self) -> bool {
        self.run.exited().is_none()
    }
}

fn alert(name: &str) -> Value {
    json!({"client_id": "C.r1", "name": name, "timestamp": "2026-12-01T10:00:00Z", "event_data": {"by": name}})
}

/// The database a store URL names.
fn database_of(store_url: &str) -> String {
    let path = store_url.rsplit('/').next().unwrap();
    path.split('?').next().unwrap().to_string()
}

/// What the SMTP server received once every alert came and the outbox
/// has nothing left to deliver: what a killed replica had in flight is
/// sent again only when its claims time out, maybe after every alert came.
fn settled(smtp: &SmtpPeer, store_url: &str, alerts: usize) -> Vec<Value> {
    let waiting = Instant::now();
    while count_subjects(&smtp.received()).len() < alerts && waiting.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = velonotify::store::PostgresUrl::parse(store_url).unwrap();
    velonotify_test_support::wait_until_delivered(&velonotify::store::Store::connect(&url).unwrap());
    smtp.received()
}

/// The subjects of the e-mails received, each with how many times it came.
fn count_subjects(received: &[Value]) -> HashMap<String, usize> {
    let mut per_subject: HashMap<String, usize> = HashMap::new();
    for line in received {
        *per_subject
            .entry(line["subject"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    per_subject
}

/// The process id of the replica reading the org's stream, if one does.
fn stream_holder(database: &str) -> Option<u32> {
    let sql = "SELECT r.pid FROM leases l JOIN replicas r ON r.id = l.holder WHERE l.name = 'stream/root'";
    postgres::server().sql_in(database, sql).trim().parse().ok()
}

#[test]
fn three_replicas_lose_nothing_when_the_stream_holder_is_killed_twice() {
    let _alone = super::machine_alone();
    let dir = scratch();
    let store_url = postgres::server().database();
    let database = database_of(&store_url);
    let pki = TestPki::generate();
    let peer = VelociraptorPeer::start(&pki, WORLD);
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::streaming(&dir.path().join(format!("r{i}")), &pki, &peer, smtp.port, &store_url))
        .collect();
    replicas.iter_mut().for_each(Replica::wait_for_ingest);
    let started = Instant::now();
    while stream_holder(&database).is_none() || peer.watchers() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no replica took the stream"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut takeovers = Vec::new();
    let mut kill_at = [STREAMED / 3, 2 * STREAMED / 3].into_iter().peekable();
    let mut ingested = 0;
    let mut post_to = 0;
    for i in 0..STREAMED {
        peer.publish(QUEUE, alert(&format!("streamed-{i:04}")));
        if i % (STREAMED / (INGESTED / BATCH)) == 0 && ingested < INGESTED {
            let body: String = (ingested..ingested + BATCH)
                .map(|n| format!("{}\n", alert(&format!("ingested-{n:04}"))))
                .collect();
            // A forwarder posts to a replica that answers (a load balancer
            // would take the killed one out).
            post_to = (post_to + 1) % replicas.len();
            while !replicas[post_to].alive() {
                post_to = (post_to + 1) % replicas.len();
            }
            let port = replicas[post_to].ingest;
            post_until_accepted(
                port,
                TOKEN,
                &format!("queue={QUEUE}"),
                body.as_bytes(),
                Duration::from_secs(60),
            );
            ingested += BATCH;
        }
        if kill_at.peek() == Some(&i) {
            kill_at.next();
            takeovers.push(kill_the_stream_holder(&mut replicas, &database));
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    let total = STREAMED + INGESTED;
    let received = settled(&smtp, &store_url, total);
    let per_alert = count_subjects(&received);
    let expected: Vec<String> = (0..STREAMED)
        .map(|i| format!("streamed-{i:04}"))
        .chain((0..INGESTED).map(|n| format!("ingested-{n:04}")))
        .collect();
    let lost: Vec<&String> = expected
        .iter()
        .filter(|name| !per_alert.contains_key(&format!("Alert from client ws-r1: {name}")))
        .collect();
    let duplicates: usize = per_alert.values().map(|n| n - 1).sum();
    eprintln!(
        "replicas: {total} alerts, 2 SIGKILLs of the stream holder; takeovers in {takeovers:.2?}; {} lost, \
         {duplicates} duplicate(s)",
        lost.len()
    );
    assert!(lost.is_empty(), "alerts never e-mailed: {lost:?}");
    // Each kill may send again what the killed replica had in flight (one
    // per worker) and what a post it took but did not answer held.
    let bound = 2 * (WORKERS + BATCH);
    assert!(duplicates <= bound, "{duplicates} duplicates, more than {bound}");
    for took in &takeovers {
        assert!(*took < Duration::from_secs(5), "a takeover took {took:?}");
    }

    let status = std::process::Command::new(EXE)
        .args(["status", "-c", &replicas[0].config.display().to_string()])
        .env("VELONOTIFY_STORE_URL", &store_url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{}", velonotify_test_support::stderr(&status));
    assert!(text.contains("replicas: 3 alive"), "{text}");
    assert!(text.contains("stream/root  held by"), "{text}");
    assert!(text.contains("outbox: 0 to deliver"), "{text}");
}

/// Kills the replica reading the stream with SIGKILL, waits until another
/// one reads it, and starts the killed one again; returns how long the
/// stream had no reader.
fn kill_the_stream_holder(replicas: &mut [Replica], database: &str) -> Duration {
    let holder = stream_holder(database).expect("a replica reads the stream");
    let victim = replicas
        .iter_mut()
        .find(|r| r.pid() == holder)
        .expect("the holder is one of ours");
    victim.run.kill();
    let killed = Instant::now();
    loop {
        let now = stream_holder(database);
        if now.is_some_and(|pid| pid != holder) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "nobody took the stream over"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = killed.elapsed();
    victim.restart();
    took
}

/// Two replicas taking the same alerts at the same moment (a forwarder
/// that posts to both, or two forwarders of one source) raise each once:
/// a module's decision reads the state the other replica's input left,
/// never the state from before it.
#[test]
fn two_replicas_taking_the_same_alerts_at_once_send_each_once() {
    const ROUNDS: usize = 6;
    const NAMES: usize = 40;
    let _alone = super::machine_alone();
    let dir = scratch();
    let store_url = postgres::server().database();
    let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
    let sections = r#"
[[module]]
name = "detect"
path = "detect.wasm"
[module.params]
Queue = "Custom.Hits"
AlertName = "hit {Name}"
ArtifactType = "SERVER_MONITORING"
Dedup = 3600
"#;
    let sections = format!("{sections}{MAIL_EVERY_ALERT}");
    let mut replicas: Vec<Replica> = (0..2)
        .map(|i| Replica::start(&dir.path().join(format!("r{i}")), smtp.port, &store_url, &sections))
        .collect();
    replicas.iter_mut().for_each(Replica::wait_for_ingest);

    for round in 0..ROUNDS {
        let body: String = (0..NAMES)
            .map(|n| format!("{}\n", json!({"Name": format!("r{round}-{n:02}")})))
            .collect();
        let both_ready = std::sync::Barrier::new(replicas.len());
        std::thread::scope(|scope| {
            for replica in &replicas {
                let (body, both_ready) = (&body, &both_ready);
                scope.spawn(move || {
                    both_ready.wait();
                    let query = "queue=Custom.Hits";
                    post_until_accepted(replica.ingest, TOKEN, query, body.as_bytes(), Duration::from_secs(60));
                });
            }
        });
    }

    let alerts = ROUNDS * NAMES;
    let received = settled(&smtp, &store_url, alerts);
    let per_subject = count_subjects(&received);
    let twice: Vec<&String> = per_subject.iter().filter(|(_, n)| **n > 1).map(|(s, _)| s).collect();
    assert_eq!(per_subject.len(), alerts, "every alert e-mailed once or more");
    assert!(
        twice.is_empty(),
        "{} of {alerts} alerts e-mailed more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(3)]
    );
}
