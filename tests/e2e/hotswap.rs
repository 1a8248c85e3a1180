//! Hot swap under `velonotify run`: new builds of a module replace the
//! running one while events stream in, broken builds never go live, and a
//! build that traps is rolled back without losing the events it trapped on.
//!
//! The builds come from `versioned.wasm` (guest/testing/versioned), whose
//! version and mode sit in one marker string: [`build`] rewrites it in the
//! component's bytes, so every build is a real, different component.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use velonotify::store::{Payload, Status};
use velonotify_test_support::builds::{built_for_wit, install_versioned, swap_latencies_ms, versioned_build};
use velonotify_test_support::peers::free_port;
use velonotify_test_support::service::{Running, metric, post_events, rows_reaching};
use velonotify_test_support::{modules_dir, scratch, stderr};

use super::{EXE, velonotify, write_config};

const TOKEN: &str = "ingest-token-0123456789";
/// A build of the versioned module from the test build.
fn build(version: u32, mode: &str) -> Vec<u8> {
    versioned_build(&modules_dir().join("versioned.wasm"), version, mode)
}

struct Service {
    run: Running,
    dir: PathBuf,
    ingest: u16,
    metrics: u16,
}

impl Service {
    /// `run` with build v000 of the versioned module, `reload` settings
    /// added to the configuration.
    fn start(dir: &Path, reload: &str) -> Self {
        Self::start_with(dir, reload, "")
    }

    /// As [`Service::start`], with `more` modules (TOML) after `swap`.
    fn start_with(dir: &Path, reload: &str, more: &str) -> Self {
        install_versioned(dir, &build(0, "ok"));
        let (ingest, metrics) = (free_port(), free_port());
        let config = write_config(
            dir,
            &format!(
                r#"
[host]
state = "state.db"

[reload]
{reload}

[metrics]
listen = "127.0.0.1:{metrics}"

[ingest]
listen = "127.0.0.1:{ingest}"
token = "{TOKEN}"

[[module]]
name = "swap"
path = "versioned.wasm"
[module.params]
Queue = "Custom.Swap"

{more}
"#
            ),
        );
        let mut run = Running::start_in(EXE, &config, dir);
        run.wait("the ingest endpoint", Duration::from_secs(60), |r| {
            r.log().contains("HTTP ingest at")
        });
        Self {
            run,
            dir: dir.to_path_buf(),
            ingest,
            metrics,
        }
    }

    /// Posts rows `{"n": first}` .. `{"n": first + count - 1}`.
    fn post(&self, first: u64, count: u64) {
        let body: String = (first..first + count).map(|n| format!("{{\"n\":{n}}}\n")).collect();
        let (status, answer) = post_events(self.ingest, Some(TOKEN), "queue=Custom.Swap", body.as_bytes());
        assert_eq!(status, 200, "{answer}");
    }

    fn swaps(&self, result: &str) -> u64 {
        metric(
            self.metrics,
            &format!("velonotify_module_swaps_total{{module=\"swap\",result=\"{result}\"}}"),
        )
    }

    fn wait_swaps(&mut self, result: &str, count: u64) {
        let metrics = self.metrics;
        let series = format!("velonotify_module_swaps_total{{module=\"swap\",result=\"{result}\"}}");
        self.run
            .wait(&format!("{count} swap(s) {result}"), Duration::from_secs(120), |_| {
                metric(metrics, &series) >= count
            });
    }

    /// Which build handled each row: `n` -> builds (one, if handled once).
    fn handled(&self) -> HashMap<u64, Vec<String>> {
        let store = velonotify_test_support::open_store(&self.dir);
        let mut handled: HashMap<u64, Vec<String>> = HashMap::new();
        for row in store.list(Some(Status::WaitingApi), usize::MAX).unwrap() {
            let Payload::UserMessage(message) = row.unwrap().payload else {
                panic!("the versioned module sends user messages")
            };
            let message = &message.message;
            let n = message["n"].as_u64().unwrap();
            handled
                .entry(n)
                .or_default()
                .push(message["build"].as_str().unwrap().to_string());
        }
        handled
    }
}

#[test]
fn two_hundred_thousand_events_across_fifty_swaps_are_each_handled_once_in_order() {
    const BATCH: u64 = 1000;
    const BATCHES: u64 = 200;
    const SWAPS: u64 = 50;
    let dir = scratch();
    let mut service = Service::start(dir.path(), "poll_ms = 20");
    let posted = Arc::new(AtomicU64::new(0));
    // Swaps seen live by the main thread (from the metrics endpoint).
    let live = Arc::new(AtomicU64::new(0));
    let ingest = service.ingest;
    // The poster streams rows without waiting for swaps, but never runs
    // more than a few batches ahead of them, so that the swaps happen
    // while rows flow.
    // With `live` builds swapped in, batches below this may be posted: a
    // few ahead of the swaps, and never into the two batches kept for each
    // build still to come (however slowly builds compile).
    let batches_allowed = |live: u64| (live * 4 + 9).min(BATCHES - 2 * (SWAPS - live));
    let poster = {
        let (posted, live) = (posted.clone(), live.clone());
        std::thread::spawn(move || {
            for b in 0..BATCHES {
                while b >= batches_allowed(live.load(Ordering::SeqCst)) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let body: String = (b * BATCH..(b + 1) * BATCH)
                    .map(|n| format!("{{\"n\":{n}}}\n"))
                    .collect();
                let (status, answer) = post_events(ingest, Some(TOKEN), "queue=Custom.Swap", body.as_bytes());
                assert_eq!(status, 200, "{answer}");
                posted.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    for version in 1..=SWAPS {
        // Each build gets a whole batch posted after it went live and
        // answered before the next is installed, so every version handles
        // rows.
        service.wait_swaps("swapped", version - 1);
        live.store(version - 1, Ordering::SeqCst);
        let live_since = posted.load(Ordering::SeqCst);
        let what = format!("two batches for v{:03} (posted {live_since})", version - 1);
        service.run.wait(&what, Duration::from_secs(60), |_| {
            posted.load(Ordering::SeqCst) >= live_since + 2
        });
        install_versioned(&service.dir, &build(version as u32, "ok"));
    }
    service.wait_swaps("swapped", SWAPS);
    live.store(SWAPS, Ordering::SeqCst);
    poster.join().expect("the poster thread");

    let handled = service.handled();
    let total = BATCH * BATCHES;
    assert_eq!(handled.len() as u64, total, "rows lost");
    let mut previous = 0;
    let mut builds_seen = std::collections::BTreeSet::new();
    for n in 0..total {
        let builds = &handled[&n];
        assert_eq!(builds.len(), 1, "row {n} handled by {builds:?}");
        // Rows are handled in the order posted: a row never meets an
        // older build than the row before it.
        let version: u64 = builds[0][1..].parse().unwrap();
        assert!(version >= previous, "row {n} handled by v{version} after v{previous}");
        previous = version;
        builds_seen.insert(version);
    }
    assert_eq!(
        builds_seen.len() as u64,
        SWAPS + 1,
        "every build handled rows: {builds_seen:?}"
    );
    assert_eq!(service.swaps("swapped"), SWAPS);
    assert_eq!(service.swaps("refused") + service.swaps("rolled-back"), 0);
    let mut latencies = swap_latencies_ms(&service.run.log());
    latencies.sort_by(f64::total_cmp);
    assert_eq!(latencies.len() as u64, SWAPS);
    eprintln!(
        "{total} rows, {SWAPS} swaps; file change to swap: p50 {} ms, max {} ms",
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
}

#[test]
fn broken_builds_are_refused_with_one_log_line_each_and_the_running_version_goes_on() {
    let dir = scratch();
    let mut service = Service::start(dir.path(), "poll_ms = 20");
    service.post(0, 1);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "not wasm",
            b"MZ\x90\x00 this is not a component".to_vec(),
            "is not a WebAssembly component",
        ),
        (
            "WIT 2.0.0",
            built_for_wit(&modules_dir().join("versioned.wasm"), "2.0.0"),
            "it was built for velociraptor:notify@2.0.0 (velociraptor:notify/",
        ),
        (
            "configure fails",
            build(2, "cf"),
            "configure with the running parameters failed: parameter Queue: this build refuses every configuration",
        ),
        (
            "self-test traps",
            build(3, "tr"),
            "self-test event versioned.selftest.jsonl:1 failed: panicked",
        ),
    ];
    std::fs::write(
        dir.path().join("versioned.selftest.jsonl"),
        "{\"_Source\": \"Custom.Swap\", \"n\": -1}\n",
    )
    .unwrap();
    for (refused, (what, bytes, reason)) in cases.into_iter().enumerate() {
        install_versioned(dir.path(), &bytes);
        service.wait_swaps("refused", refused as u64 + 1);
        let log = service.run.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("hot swap refused")).collect();
        assert_eq!(lines.len(), refused + 1, "one line per refusal ({what}):\n{log}");
        let line = lines.last().unwrap();
        assert!(line.contains(reason), "{what}: {line}");
        assert!(line.contains("keeps running"), "{what}: {line}");
        service.post(refused as u64 + 1, 1);
    }
    assert_eq!(service.swaps("swapped"), 0);
    let handled = service.handled();
    assert_eq!(handled.len(), 5);
    assert!(
        handled.values().all(|b| b == &["v000"]),
        "the first build handled everything: {handled:?}"
    );
}

#[test]
fn a_build_that_traps_after_the_swap_is_rolled_back_and_its_events_handled_again() {
    let dir = scratch();
    let mut service = Service::start(
        dir.path(),
        "poll_ms = 20\nprobation_events = 50\nmax_probation_traps = 3",
    );
    install_versioned(dir.path(), &build(1, "tr"));
    service.wait_swaps("swapped", 1);
    service.post(0, 10);
    assert_eq!(service.swaps("rolled-back"), 1);
    let log = service.run.log();
    assert!(
        log.contains(
            "trapped, or failed where the previous version did not, on 4 of its first 4 calls (more than \
             max_probation_traps 3): rolled back to version"
        ),
        "{log}"
    );
    // The four rows v001 trapped on went to v000 again: nothing lost.
    let handled = service.handled();
    assert_eq!(handled.len(), 10, "{handled:?}");
    assert!(handled.values().all(|b| b == &["v000"]), "{handled:?}");

    // The same bytes are not tried again; a new build is.
    install_versioned(dir.path(), &build(2, "ok"));
    service.wait_swaps("swapped", 2);
    service.post(10, 1);
    assert_eq!(service.handled()[&10], ["v002"]);
}

/// A build that answers every event with an internal error is as broken
/// as one that traps: the previous version handles each event it failed
/// on, and comes back for good past `max_probation_traps`.
#[test]
fn a_build_whose_calls_fail_after_the_swap_is_rolled_back_and_loses_nothing() {
    let dir = scratch();
    let mut service = Service::start(
        dir.path(),
        "poll_ms = 20\nprobation_events = 50\nmax_probation_traps = 3",
    );
    install_versioned(dir.path(), &build(1, "fa"));
    service.wait_swaps("swapped", 1);
    service.post(0, 10);
    assert_eq!(service.swaps("rolled-back"), 1, "{}", service.run.log());
    assert!(service.run.log().contains("build v001 fails on every event"));
    let handled = service.handled();
    assert_eq!(handled.len(), 10, "{handled:?}");
    assert!(handled.values().all(|b| b == &["v000"]), "{handled:?}");
}

/// Before any rollback, each event the new build trapped on is handled by
/// the previous version in the same input: a crash before a rollback that
/// never comes loses nothing.
#[test]
fn an_event_a_build_on_probation_traps_on_is_handled_at_once_by_the_previous_version() {
    let dir = scratch();
    let mut service = Service::start(
        dir.path(),
        "poll_ms = 20\nprobation_events = 50\nmax_probation_traps = 3",
    );
    install_versioned(dir.path(), &build(1, "tr"));
    service.wait_swaps("swapped", 1);
    service.post(0, 2);
    assert_eq!(
        service.swaps("rolled-back"),
        0,
        "two traps are within max_probation_traps"
    );
    let handled = service.handled();
    assert_eq!(handled.len(), 2, "{handled:?}");
    assert!(handled.values().all(|b| b == &["v000"]), "{handled:?}");
}

#[test]
fn without_watching_a_new_build_waits_for_velonotify_reload() {
    let dir = scratch();
    let mut service = Service::start(dir.path(), "watch = false");
    install_versioned(dir.path(), &build(1, "ok"));
    std::thread::sleep(Duration::from_millis(300));
    service.post(0, 1);
    assert_eq!(service.swaps("swapped"), 0);
    let config = dir.path().join("velonotify.toml").display().to_string();
    let output = velonotify(&["reload", "-c", &config]);
    assert!(output.status.success(), "{}", stderr(&output));
    service.wait_swaps("swapped", 1);
    service.post(1, 1);
    let handled = service.handled();
    assert_eq!(handled[&0], ["v000"]);
    assert_eq!(handled[&1], ["v001"]);
}

/// A module's path replaced by what is not a regular file is refused with
/// one log line each, naming it, without blocking the watcher (a FIFO) or
/// reading without end (a link to `/dev/zero`); the next real build still
/// goes live.
#[test]
fn a_module_path_that_is_not_a_regular_file_is_refused_without_blocking() {
    let dir = scratch();
    let mut service = Service::start(dir.path(), "poll_ms = 20");
    let path = dir.path().join("versioned.wasm");
    type Replace = fn(&Path);
    let cases: [(Replace, &str); 3] = [
        (
            |path| {
                rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
            },
            "versioned.wasm is a FIFO, not a regular file",
        ),
        (
            |path| std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            "versioned.wasm is a character device, not a regular file",
        ),
        (
            |path| std::fs::create_dir(path).unwrap(),
            "versioned.wasm is a directory, not a regular file",
        ),
    ];
    for (refused, (replace, reason)) in cases.into_iter().enumerate() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => std::fs::remove_dir(&path).unwrap(),
            other => other.unwrap(),
        }
        replace(&path);
        service.wait_swaps("refused", refused as u64 + 1);
        let log = service.run.log();
        let line = log.lines().rfind(|l| l.contains("hot swap refused")).unwrap();
        assert!(line.contains(reason) && line.contains("keeps running"), "{line}");
    }
    let peak_mib = velonotify_test_support::service::peak_rss_kib(service.run.child.id()) >> 10;
    assert!(peak_mib < 300, "the watcher read without end: {peak_mib} MiB");
    std::fs::remove_dir(&path).unwrap();
    install_versioned(dir.path(), &build(1, "ok"));
    service.wait_swaps("swapped", 1);
    service.post(0, 1);
    assert_eq!(service.handled()[&0], ["v001"]);
}

/// A new version may declare other interests than the one it replaces:
/// the host tests each row against the running version's, after a swap
/// and after a rollback alike.
#[test]
fn each_version_is_spared_the_rows_its_own_interest_refuses() {
    let dir = scratch();
    let mut service = Service::start(dir.path(), "poll_ms = 20\nprobation_events = 1");
    install_versioned(dir.path(), &build(1, "ev"));
    service.wait_swaps("swapped", 1);
    service.post(0, 10);
    install_versioned(dir.path(), &build(2, "ok"));
    service.wait_swaps("swapped", 2);
    service.post(10, 10);
    let handled = service.handled();
    let by = |n: u64| handled.get(&n).cloned().unwrap_or_default();
    for n in 0..10 {
        let expected: &[&str] = if n % 2 == 0 { &["v001"] } else { &[] };
        assert_eq!(by(n), expected, "row {n} under the even-only build");
    }
    for n in 10..20 {
        assert_eq!(by(n), ["v002"], "row {n}: the next build declares no interest");
    }
    assert_eq!(
        metric(service.metrics, "velonotify_module_rows_spared_total{module=\"swap\"}"),
        5
    );
}

/// A version rolled back while a row is being handed out changes which
/// rows the modules after it are tested for from the next row on: the
/// modules after it in that row are tested as the row began (here `later`,
/// whose test sits in another place of the host's index once the rolled-back
/// version's interest is back).
#[test]
fn a_rollback_during_a_row_leaves_the_next_modules_tests_as_they_were() {
    let dir = scratch();
    let later = format!(
        "[[module]]\nname = \"later\"\npath = \"{}\"\n[module.params]\nQueue = \"Custom.Swap\"\n\
         Condition = \"Column,Regex\\nm,^hit$\\n\"\nAlertName = \"hit {{n}}\"\nDedup = -1\n",
        modules_dir().join("detect.wasm").display()
    );
    let mut service = Service::start_with(
        dir.path(),
        "poll_ms = 20\nprobation_events = 1\nmax_probation_traps = 0",
        &later,
    );
    // An even-only build passes its probation on one row...
    install_versioned(dir.path(), &build(1, "ev"));
    service.wait_swaps("swapped", 1);
    service.post(0, 1);
    // ... then a build without interests traps on the next, and is rolled
    // back to it during that row, before `later` is tested.
    install_versioned(dir.path(), &build(2, "tr"));
    service.wait_swaps("swapped", 2);
    let body = "{\"n\":2,\"m\":\"hit\"}\n{\"n\":4,\"m\":\"miss\"}\n";
    let (status, answer) = post_events(service.ingest, Some(TOKEN), "queue=Custom.Swap", body.as_bytes());
    assert_eq!(status, 200, "{answer}\n{}", service.run.log());
    assert_eq!(service.swaps("rolled-back"), 1);
    assert_eq!(rows_reaching(service.metrics, "later"), 3, "{}", service.run.log());
    // The first row lacks `m` (the module decides), the hit is its; the
    // miss is spared.
    assert_eq!(
        metric(service.metrics, "velonotify_module_handled_total{module=\"later\"}"),
        2
    );
}

/// WIT 0.3.1 added an import (`links`), 0.3.2 a lookup
/// (`lookups.server-file`) and 0.3.3 two (`running-hunts`,
/// `active-flows`); a module built against 0.3.0 imports every interface
/// at 0.3.0 and must still load and run: the linker resolves a
/// semver-compatible import to the host's 0.3.3.
#[test]
fn a_module_built_against_an_earlier_patch_of_the_wit_runs_on_this_host() {
    let dir = scratch();
    let module = dir.path().join("versioned-0.3.0.wasm");
    let bytes = built_for_wit(&modules_dir().join("versioned.wasm"), "0.3.0");
    assert!(bytes.windows(6).any(|w| w == b"@0.3.0"));
    assert!(!bytes.windows(6).any(|w| w == b"@0.3.3"), "every name rewritten");
    std::fs::write(&module, bytes).unwrap();
    let rows = dir.path().join("rows.jsonl");
    std::fs::write(&rows, "{\"n\": 1, \"_ts\": 1778400000}\n").unwrap();
    let tested = super::rule_test(&module, &rows, &["--param", "Queue=Custom.Swap"]);
    assert!(tested.status.success(), "{}", stderr(&tested));
    let lines = super::printed_lines(&tested);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["kind"], "user-message", "{lines:?}");
}
