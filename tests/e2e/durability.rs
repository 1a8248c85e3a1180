//! Nothing lost, for real: `velonotify run` is stopped with SIGKILL at each
//! crash point of handling an input and of delivering it, and at random
//! moments under load; its store is made to refuse writes (another writer
//! holding it, a file that cannot grow). A forwarder posts each batch until
//! it is answered 200; every row it posted is e-mailed at least once, and
//! the duplicates are bounded by the deliveries in flight (one per
//! delivery worker per crash).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use velonotify_test_support::peers::{SmtpOptions, SmtpPeer, free_port};
use velonotify_test_support::postgres::store_env;
use velonotify_test_support::service::{Running, post_until_accepted, try_post_events};
use velonotify_test_support::{part, scratch};

use super::{EXE, write_config};

const TOKEN: &str = "durability-token-0123456789";
/// Delivery workers: at most this many messages are in flight at a crash.
const WORKERS: usize = 4;
const QUEUE: &str = "Custom.Crash.Rows";

/// An SMTP server and a configuration: rows posted to the ingest endpoint
/// raise one alert each (`crash-row-NNNNN`, deduplicated for an hour, so a
/// re-posted row is suppressed), which the Alerts module e-mails.
struct Scene {
    dir: tempfile::TempDir,
    smtp: SmtpPeer,
    ingest: u16,
    config: PathBuf,
}

impl Scene {
    fn new(extra: &str) -> Self {
        let dir = scratch();
        let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
        let ingest = free_port();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
[smtp]
server = "127.0.0.1"
server_port = {smtp}
from = "velonotify@example.org"

[delivery]
retry_base_ms = 50
retry_cap_s = 1
workers = {WORKERS}

[host]
state = "state.db"

[ingest]
listen = "127.0.0.1:{ingest}"
token = "{TOKEN}"

[[module]]
name = "crash-detect"
path = "detect.wasm"
[module.params]
Queue = "{QUEUE}"
AlertName = "crash-row-{{Row}}"
Dedup = 3600

[[module]]
name = "alerts"
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@example.org\n"
SendInterval = -1
{extra}
"#,
                smtp = smtp.port,
            ),
        );
        Self {
            dir,
            smtp,
            ingest,
            config,
        }
    }

    fn start(&self, env: &[(&str, &str)]) -> Running {
        Running::start_env(EXE, &self.config, env)
    }

    /// Starts the service and waits until its ingest endpoint is up.
    fn start_ready(&self, env: &[(&str, &str)]) -> Running {
        let before = self.starts();
        let mut run = self.start(env);
        run.wait("the ingest endpoint", Duration::from_secs(120), |r| {
            r.log().matches("HTTP ingest at").count() > before
        });
        run
    }

    /// How many times a service has started in this scene.
    fn starts(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("velonotify.log"))
            .unwrap_or_default()
            .matches("HTTP ingest at")
            .count()
    }

    /// Rows `first..first + count` as JSON lines.
    fn batch(first: u32, count: u32) -> String {
        (first..first + count)
            .map(|n| json!({"Row": format!("{n:05}"), "Detail": "durability"}).to_string() + "\n")
            .collect()
    }

    /// Posts rows `0..rows` in batches of `size`, each until it is answered
    /// 200, pausing `pause` between batches; `hold` (if given) is waited on
    /// before the last tenth of the batches.
    fn post_rows(&self, rows: u32, size: u32, pause: Duration, hold: Option<&dyn Fn() -> bool>) {
        let query = format!("queue={QUEUE}");
        for first in (0..rows).step_by(size as usize) {
            if let Some(hold) = hold
                && first >= rows * 9 / 10
            {
                while !hold() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let body = Self::batch(first, size.min(rows - first));
            post_until_accepted(self.ingest, TOKEN, &query, body.as_bytes(), Duration::from_secs(300));
            std::thread::sleep(pause);
        }
    }

    /// Waits until rows `0..rows` were all e-mailed (or `timeout`), then
    /// for the deliveries still in flight; returns how often each row was
    /// e-mailed.
    fn mailed(&self, rows: u32, timeout: Duration) -> BTreeMap<u32, usize> {
        let started = Instant::now();
        while (rows_mailed(&self.smtp).len() as u32) < rows && started.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(100));
        }
        // A message sent again after a crash may come after every row did.
        velonotify_test_support::wait_until_delivered(&velonotify_test_support::open_store(self.dir.path()));
        rows_mailed(&self.smtp)
    }
}

/// How often each `crash-row-NNNNN` was e-mailed, by row.
fn rows_mailed(smtp: &SmtpPeer) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for message in smtp.received() {
        let subject = message["subject"].as_str().unwrap_or_default();
        if let Some(at) = subject.find("crash-row-") {
            let digits = &subject[at + "crash-row-".len()..][..5];
            *counts.entry(digits.parse::<u32>().unwrap()).or_default() += 1;
        }
    }
    counts
}

/// Rows of `0..rows` never e-mailed, and the e-mails beyond one per row.
fn lost_and_duplicates(mailed: &BTreeMap<u32, usize>, rows: u32) -> (Vec<u32>, usize) {
    let lost = (0..rows).filter(|n| !mailed.contains_key(n)).collect();
    let duplicates = mailed.values().map(|n| n - 1).sum();
    (lost, duplicates)
}

/// Stops the service at crash point `point` (the `after + 1`th time it is
/// reached), restarts it, and checks that every row posted until it was
/// accepted is e-mailed, with at most one message per worker twice.
fn every_row_survives_a_crash_at(point: &str, after: u32) -> usize {
    const ROWS: u32 = 40;
    let scene = Scene::new("");
    let armed = format!("{point}={after}*off->return");
    let mut run = scene.start(&[("FAILPOINTS", &armed)]);
    std::thread::scope(|scope| {
        scope.spawn(|| scene.post_rows(ROWS, 4, Duration::from_millis(20), None));
        let status = run.wait_exit(&format!("the crash at {point}"), Duration::from_secs(180));
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL at {point}:\n{}", run.log());
        assert!(
            run.log().contains(&format!("crash point {point} reached")),
            "{}",
            run.log()
        );
        run = scene.start(&[]);
    });
    let mailed = scene.mailed(ROWS, Duration::from_secs(180));
    let (lost, duplicates) = lost_and_duplicates(&mailed, ROWS);
    assert!(
        lost.is_empty(),
        "rows never e-mailed after a crash at {point}: {lost:?}\n{}",
        run.log()
    );
    assert!(
        duplicates <= WORKERS,
        "{duplicates} duplicates after one crash at {point}, more than the {WORKERS} deliveries in flight"
    );
    duplicates
}

#[test]
fn a_crash_after_a_module_call_loses_no_row() {
    every_row_survives_a_crash_at("engine::after-call", 30);
}

#[test]
fn a_crash_between_the_writes_of_an_input_loses_no_row() {
    every_row_survives_a_crash_at("store::between-writes", 3);
}

#[test]
fn a_crash_before_an_input_is_committed_loses_no_row() {
    every_row_survives_a_crash_at("service::before-commit", 3);
}

/// Committed but not answered: the forwarder posts the batch again, and
/// the dedup window committed with the first post suppresses its alerts.
#[test]
fn a_crash_after_the_commit_before_the_answer_loses_no_row_and_sends_none_twice() {
    let duplicates = every_row_survives_a_crash_at("service::after-commit", 3);
    assert!(duplicates <= WORKERS);
}

/// The SMTP server took the message and the item is not marked sent: the
/// restarted service sends it again (at least once), and only the items in
/// flight at the crash.
#[test]
fn a_crash_after_the_smtp_server_accepted_a_message_sends_it_again() {
    let duplicates = every_row_survives_a_crash_at("delivery::after-send", 5);
    assert!(duplicates >= 1, "the message accepted before the crash is sent again");
}

/// 3,000 rows, the service killed with SIGKILL at least five times at
/// random moments while the forwarder posts: none lost.
#[test]
fn three_thousand_rows_survive_repeated_sigkills_with_none_lost() {
    const ROWS: u32 = 3000;
    const KILLS: u32 = 6;
    let scene = Scene::new("");
    let kills = AtomicU32::new(0);
    let posted = AtomicBool::new(false);
    let mut run = scene.start_ready(&[]);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let enough_kills = || kills.load(Ordering::Relaxed) >= KILLS;
            scene.post_rows(ROWS, 10, Duration::from_millis(10), Some(&enough_kills));
            posted.store(true, Ordering::Relaxed);
        });
        while kills.load(Ordering::Relaxed) < KILLS {
            std::thread::sleep(Duration::from_millis(fastrand::u64(300..2500)));
            run.kill();
            kills.fetch_add(1, Ordering::Relaxed);
            run = scene.start_ready(&[]);
        }
        while !posted.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let mailed = scene.mailed(ROWS, Duration::from_secs(400));
    let (lost, duplicates) = lost_and_duplicates(&mailed, ROWS);
    report(&format!(
        "{ROWS} rows, {KILLS} SIGKILLs: {} lost, {duplicates} duplicate e-mails",
        lost.len()
    ));
    assert!(lost.is_empty(), "rows never e-mailed: {lost:?}");
    assert!(
        duplicates <= KILLS as usize * WORKERS,
        "{duplicates} duplicates, more than {WORKERS} per crash"
    );
    assert!(run.exited().is_none(), "the service is up:\n{}", run.log());
}

/// The same with an error monitor: 3,000 server event artifacts each log
/// one error over half a minute; the monitor's cursors move only with the
/// alerts they raised, so every error is e-mailed across the SIGKILLs.
#[test]
fn an_error_monitor_keeps_its_cursors_with_its_alerts_across_sigkills() {
    const ARTIFACTS: usize = 3000;
    const KILLS: u32 = 5;
    let scene = Scene::new("");
    let first_line_ms = now_ms() + 10_000;
    let spread_ms = 30_000;
    let world = error_world(ARTIFACTS, first_line_ms, spread_ms);
    std::fs::write(scene.dir.path().join("world.json"), world.to_string()).unwrap();
    let config = std::fs::read_to_string(&scene.config).unwrap();
    std::fs::write(
        &scene.config,
        config.replace("[host]\n", "[lookups]\nworld = \"world.json\"\n\n[host]\n")
            + "\n[[module]]\nname = \"errors\"\npath = \"errors_alert.wasm\"\ndeadline_ms = 10000\nmax_actions = 5000\n\
               [module.params]\nPeriod = 1\nDedupInterval = -1\n",
    )
    .unwrap();
    let mut run = scene.start_ready(&[]);
    // The monitor's cursors start at its first tick; kill only once the
    // errors begin.
    while now_ms() < first_line_ms {
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(fastrand::u64(1000..4000)));
        run.kill();
        run = scene.start_ready(&[]);
    }
    let started = Instant::now();
    let mut mailed = artifacts_mailed(&scene.smtp);
    while mailed.len() < ARTIFACTS && started.elapsed() < Duration::from_secs(400) {
        std::thread::sleep(Duration::from_millis(500));
        mailed = artifacts_mailed(&scene.smtp);
    }
    std::thread::sleep(Duration::from_secs(1));
    let mailed = artifacts_mailed(&scene.smtp);
    let lost: Vec<usize> = (0..ARTIFACTS).filter(|i| !mailed.contains_key(i)).collect();
    let duplicates: usize = mailed.values().map(|n| n - 1).sum();
    report(&format!(
        "{ARTIFACTS} error-monitor lines, {KILLS} SIGKILLs: {} lost, {duplicates} duplicate e-mails",
        lost.len()
    ));
    assert!(lost.is_empty(), "errors never e-mailed: {lost:?}\n{}", run.log());
    assert!(
        duplicates <= KILLS as usize * WORKERS,
        "{duplicates} duplicates, more than {WORKERS} per crash"
    );
    assert!(run.exited().is_none(), "the service is up:\n{}", run.log());
}

/// Says what a soak found, on stderr and in `target/durability-report.txt`,
/// which `scripts/test` prints once the tests pass.
fn report(line: &str) {
    use std::io::Write as _;
    eprintln!("{line}");
    let path = velonotify_test_support::workspace()
        .join("target")
        .join("durability-report.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A world whose server event table runs `artifacts` artifacts, artifact
/// `i` logging one error at `first_ms + i * spread_ms / artifacts`.
fn error_world(artifacts: usize, first_ms: u64, spread_ms: u64) -> serde_json::Value {
    let name = |i: usize| format!("Custom.Soak.A{i:04}");
    let mut logs = serde_json::Map::new();
    for i in 0..artifacts {
        let ts = first_ms + i as u64 * spread_ms / artifacts as u64;
        logs.insert(
            name(i),
            json!([{"Timestamp": "2026-11-30T00:00:00Z", "Level": "ERROR",
                    "Message": format!("soak failure in A{i:04}"), "_ts": ts}]),
        );
    }
    json!({
        "server_monitoring": (0..artifacts).map(name).collect::<Vec<_>>(),
        "monitoring_logs": {"server": logs},
    })
}

/// How often the error of each soak artifact was e-mailed.
fn artifacts_mailed(smtp: &SmtpPeer) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for message in smtp.received() {
        let bytes = smtp.message(message["file"].as_str().unwrap());
        let mail = mailparse::parse_mail(&bytes).unwrap();
        let text = part(&mail, "text/plain").unwrap_or_default();
        if let Some(at) = text.find("soak failure in A") {
            let digits = &text[at + "soak failure in A".len()..][..4];
            *counts.entry(digits.parse::<usize>().unwrap()).or_default() += 1;
        }
    }
    counts
}

/// `velonotify outbox retry` and `list` in a loop, writing to the same
/// database while rows flow for a minute: the service waits for the lock
/// instead of exiting, and handles every row.
#[test]
fn the_service_stays_up_while_outbox_commands_write_to_its_database() {
    const SECONDS: u64 = 60;
    let scene = Scene::new("");
    let mut run = scene.start_ready(&[]);
    let stop = Arc::new(AtomicBool::new(false));
    let commands = AtomicU32::new(0);
    let mut rows = 0;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let config = scene.config.display().to_string();
            while !stop.load(Ordering::Relaxed) {
                for args in [&["retry"][..], &["list", "--limit", "20"]] {
                    let output = std::process::Command::new(EXE)
                        .args(["outbox", "-c", &config])
                        .envs(store_env(scene.dir.path()))
                        .args(args)
                        .output()
                        .unwrap();
                    assert!(
                        output.status.success(),
                        "outbox {args:?}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                    commands.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let started = Instant::now();
        let query = format!("queue={QUEUE}");
        while started.elapsed() < Duration::from_secs(SECONDS) {
            let body = Scene::batch(rows, 2);
            let (status, answer) =
                try_post_events(scene.ingest, Some(TOKEN), &query, body.as_bytes()).unwrap_or_else(|| {
                    panic!(
                        "the service went away:\n{}",
                        std::fs::read_to_string(scene.dir.path().join("velonotify.log")).unwrap()
                    )
                });
            assert_eq!(status, 200, "{answer}");
            rows += 2;
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(run.exited().is_none(), "the service is up:\n{}", run.log());
    assert!(commands.load(Ordering::Relaxed) > 20, "the commands ran in a loop");
    let mailed = scene.mailed(rows, Duration::from_secs(300));
    let (lost, duplicates) = lost_and_duplicates(&mailed, rows);
    assert!(lost.is_empty(), "rows never e-mailed: {lost:?}");
    assert_eq!(duplicates, 0, "nothing crashed: nothing is sent twice");
    assert!(!run.log().contains("database is locked"), "{}", run.log());
}

/// The state database cannot grow (a file size limit set on the running
/// process; on PostgreSQL, the server answering every insert into the
/// outbox with its `disk_full` error): the ingest endpoint answers 503 with
/// Retry-After, the service stays up, and once the limit is lifted it
/// carries on; every row it answered 200 for, and every row re-posted
/// after a 503, is e-mailed.
#[test]
fn a_full_disk_makes_ingest_answer_503_and_loses_nothing_when_space_returns() {
    let scene = Scene::new("");
    let mut run = scene.start_ready(&[]);
    let query = format!("queue={QUEUE}");
    let post = |first: u32| {
        post_until_accepted(
            scene.ingest,
            TOKEN,
            &query,
            Scene::batch(first, 5).as_bytes(),
            Duration::from_secs(120),
        )
    };
    let mut next = 0;
    for _ in 0..4 {
        post(next);
        next += 5;
    }
    let pid = rustix::process::Pid::from_child(&run.child);
    let on_postgres = velonotify_test_support::postgres::testing_on_postgres();
    let limit = |bytes: Option<u64>| {
        if on_postgres {
            let sql = match bytes {
                Some(_) => {
                    "CREATE FUNCTION full_disk() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = 'disk_full';
                     END $$;
                     CREATE TRIGGER full_disk BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION full_disk()"
                }
                None => "DROP TRIGGER full_disk ON outbox",
            };
            velonotify_test_support::postgres::sql_in_store_of(scene.dir.path(), sql);
            return;
        }
        let limit = rustix::process::Rlimit {
            current: bytes,
            maximum: None,
        };
        rustix::process::prlimit(Some(pid), rustix::process::Resource::Fsize, limit).unwrap();
    };
    // No file of the service may grow any more: its database, nor its
    // log (a log that cannot be written must not stop it either).
    let db = file_size(&scene.dir.path().join("state.db"));
    let log = file_size(&scene.dir.path().join("velonotify.log"));
    limit(Some(db.min(log)));
    // Each probe posts on a thread of its own: the batch whose commit fails
    // first waits for space, the next ones are refused.
    let (answers, answered) = std::sync::mpsc::channel();
    let mut refused = Vec::new();
    let mut retry_after = None;
    let started = Instant::now();
    while refused.is_empty() && started.elapsed() < Duration::from_secs(60) {
        let (answers, port, query, first) = (answers.clone(), scene.ingest, query.clone(), next);
        std::thread::spawn(move || {
            let answer = try_post_events(port, Some(TOKEN), &query, Scene::batch(first, 5).as_bytes());
            let _ = answers.send((first, answer));
        });
        next += 5;
        std::thread::sleep(Duration::from_millis(100));
        while let Ok((first, answer)) = answered.try_recv() {
            match answer {
                Some((200, _)) => {}
                Some((503, body)) => {
                    refused.push(first);
                    retry_after = Some(body);
                }
                other => panic!("a probe was answered {other:?}"),
            }
        }
    }
    assert!(
        !refused.is_empty(),
        "no 503 while the file could not grow:\n{}",
        run.log()
    );
    assert!(
        retry_after.as_deref().unwrap_or_default().contains("post again later"),
        "{retry_after:?}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(run.exited().is_none(), "the service is up while full:\n{}", run.log());
    // (Its log is a file too: what it wrote while full is lost.)
    limit(None);
    // The probes that waited are answered now.
    drop(answers);
    for (first, answer) in answered {
        match answer {
            Some((200, _)) => {}
            Some((503, _)) => refused.push(first),
            other => panic!("a probe was answered {other:?}"),
        }
    }
    for first in refused {
        post(first);
    }
    let rows = next;
    let mailed = scene.mailed(rows, Duration::from_secs(180));
    let (lost, _) = lost_and_duplicates(&mailed, rows);
    assert!(lost.is_empty(), "rows never e-mailed: {lost:?}\n{}", run.log());
    assert!(run.log().contains("takes writes again"), "{}", run.log());
    assert!(run.exited().is_none(), "the service is up:\n{}", run.log());
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Two `run`s of one configuration would deliver everything twice: the
/// second is refused, naming the first, and the first goes on alone.
#[test]
fn a_second_run_of_the_same_state_database_is_refused() {
    let scene = Scene::new("");
    let first = scene.start_ready(&[]);
    let mut second = scene.start(&[]);
    let status = second.wait_exit("the second run to be refused", Duration::from_secs(60));
    assert!(!status.success());
    // On PostgreSQL a second process is a replica, but one per
    // configuration directory (its ports, its pid file).
    let expected = match velonotify_test_support::postgres::testing_on_postgres() {
        true => format!(
            "another `velonotify run` (pid {}) runs this configuration",
            first.child.id()
        ),
        false => format!(
            "another `velonotify run` (pid {}) is using the state database",
            first.child.id()
        ),
    };
    assert!(second.log().contains(&expected), "{}", second.log());
    let query = format!("queue={QUEUE}");
    post_until_accepted(
        scene.ingest,
        TOKEN,
        &query,
        Scene::batch(0, 3).as_bytes(),
        Duration::from_secs(60),
    );
    let mailed = scene.mailed(3, Duration::from_secs(60));
    assert_eq!(lost_and_duplicates(&mailed, 3), (vec![], 0));
    drop(first);
}

/// The outbox has a bound: with the mail server down, once it holds
/// `max_open_items` undelivered e-mails the service takes no more events
/// (ingest answers 503 naming the bound) instead of filling the disk; when
/// the mail server is back it catches up, takes events again, and every
/// row is e-mailed.
#[test]
fn a_full_outbox_holds_back_ingest_with_503_until_delivery_catches_up() {
    let mut scene = Scene::new("[outbox]\nmax_open_items = 6\n");
    scene.smtp.stop();
    let mut run = scene.start_ready(&[]);
    let query = format!("queue={QUEUE}");
    for first in [0, 5] {
        let answer = try_post_events(scene.ingest, Some(TOKEN), &query, Scene::batch(first, 5).as_bytes());
        assert_eq!(answer.map(|(status, _)| status), Some(200));
    }
    run.wait("the bound", Duration::from_secs(30), |r| {
        r.log().contains("taking no more events until delivery catches up")
    });
    let answer = try_post_events(scene.ingest, Some(TOKEN), &query, Scene::batch(10, 5).as_bytes());
    let (status, body) = answer.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the outbox holds 10 undelivered items (outbox.max_open_items 6)"),
        "{body}"
    );
    assert!(scene.smtp.received().is_empty());

    scene.smtp.start();
    post_until_accepted(
        scene.ingest,
        TOKEN,
        &query,
        Scene::batch(10, 5).as_bytes(),
        Duration::from_secs(120),
    );
    let mailed = scene.mailed(15, Duration::from_secs(120));
    let (lost, _) = lost_and_duplicates(&mailed, 15);
    assert!(lost.is_empty(), "rows never e-mailed: {lost:?}\n{}", run.log());
    assert!(run.log().contains("below its bound again"), "{}", run.log());
}
