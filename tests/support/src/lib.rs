//! Helpers shared by the end-to-end tests (the ripgrep `util.rs` pattern):
//! where things are, running the `velonotify` binary, and reading what a
//! replay wrote.

pub mod browser;
pub mod builds;
pub mod peers;
pub mod postgres;
pub mod rsyslog;
pub mod service;
pub mod velociraptor_peer;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The directory holding the freshly built components (`alerts.wasm`, ...).
pub fn modules_dir() -> PathBuf {
    PathBuf::from(env!("VELONOTIFY_TEST_MODULES_DIR"))
}

/// The directory holding the Python example modules, built by
/// componentize-py (`process_creation.wasm`, `logon_spread.wasm`).
pub fn python_modules_dir() -> PathBuf {
    PathBuf::from(env!("VELONOTIFY_TEST_PYTHON_MODULES_DIR"))
}

/// The directory holding the JavaScript example modules, built by
/// componentize-js (`honeyfiles.wasm`).
pub fn js_modules_dir() -> PathBuf {
    PathBuf::from(env!("VELONOTIFY_TEST_JS_MODULES_DIR"))
}

/// The repository's root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("VELONOTIFY_TEST_WORKSPACE"))
}

/// A file under `tests/data`.
pub fn data(relative: &str) -> PathBuf {
    workspace().join("tests").join("data").join(relative)
}

/// A compiled-component cache shared by the test processes, so each
/// component is compiled once per test run, not once per test.
pub fn cache_dir() -> PathBuf {
    workspace().join("target").join("test-component-cache")
}

/// A scratch directory that is removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("velonotify-test")
        .tempdir()
        .expect("creating a temp dir")
}

/// Runs `velonotify` (the binary at `exe`) with `args`, finding modules in
/// the test build and caching compiled components.
pub fn velonotify(exe: &str, args: &[&str]) -> Output {
    Command::new(exe)
        .args(with_test_modules(args))
        .env("VELONOTIFY_LOG", "warn")
        .envs(store_env_of(args))
        .output()
        .expect("running velonotify")
}

/// As [`velonotify`], in a process whose address space is limited to
/// `kib` KiB (`ulimit -v`): too small for the pooling allocator's
/// reservation.
pub fn velonotify_in_address_space(exe: &str, args: &[&str], kib: u64) -> Output {
    Command::new("sh")
        .args([
            "-c",
            "ulimit -v \"$1\" && shift && exec \"$@\"",
            "sh",
            &kib.to_string(),
            exe,
        ])
        .args(with_test_modules(args))
        .env("VELONOTIFY_LOG", "warn")
        .envs(store_env_of(args))
        .output()
        .expect("running velonotify under ulimit -v")
}

/// The store environment of a command whose `-c CONFIG` is among `args`
/// (see [`postgres::store_env`]).
pub fn store_env_of(args: &[&str]) -> Vec<(&'static str, String)> {
    let config = args
        .windows(2)
        .find(|w| w[0] == "-c" || w[0] == "--config")
        .map(|w| w[1]);
    match config {
        Some(config) => postgres::store_env(Path::new(config).parent().unwrap_or(Path::new("."))),
        None => Vec::new(),
    }
}

/// What `replay --state` takes for the store of the configuration in
/// `dir`: its PostgreSQL URL, else the path of `state.db` there.
pub fn store_argument(dir: &Path) -> String {
    match postgres::store_env(dir).pop() {
        Some((_, url)) => url,
        None => dir.join("state.db").display().to_string(),
    }
}

/// The store a test's service in `dir` (its configuration's directory)
/// keeps, opened as a command would: its database on PostgreSQL, else
/// `state.db` there.
pub fn open_store(dir: &Path) -> velonotify::store::Store {
    match postgres::store_env(dir).pop() {
        Some((_, url)) => {
            velonotify::store::Store::connect(&velonotify::store::PostgresUrl::parse(&url).expect("a postgres:// URL"))
                .expect("the test's database")
        }
        None => velonotify::store::Store::open(&dir.join("state.db")).expect("the test's state.db"),
    }
}

/// Waits until `store` has `count` items sent, failing after 30 s. The
/// SMTP server holds a message a moment before velonotify records its
/// answer: a test that stops either in between sees the message's fate
/// unknown, and it is rightly sent again.
pub fn wait_until_sent(store: &velonotify::store::Store, count: u64) {
    let waiting = std::time::Instant::now();
    loop {
        let counts = store.counts().expect("the outbox's counts");
        if counts.by_status.get(&velonotify::store::Status::Sent) == Some(&count) {
            return;
        }
        assert!(
            waiting.elapsed() < std::time::Duration::from_secs(30),
            "never {count} marked sent: {counts}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Waits until `store`'s outbox has nothing left to deliver, then a second
/// more for the SMTP server's last write. A message a killed replica had
/// in flight is sent again only once its claims time out (PostgreSQL's
/// `REPLICA_TIMEOUT`), maybe after everything else came. Gives up 30 s
/// past that timeout: the caller's assertions then say what is missing.
pub fn wait_until_delivered(store: &velonotify::store::Store) {
    let bound = velonotify::store::REPLICA_TIMEOUT + std::time::Duration::from_secs(30);
    let waiting = std::time::Instant::now();
    while store.open_outbox().map_or(true, |open| open.items > 0) && waiting.elapsed() < bound {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
}

fn with_test_modules(args: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    if matches!(args.first(), Some(&"replay" | &"check" | &"run")) {
        all.push("--modules-dir".into());
        all.push(modules_dir().display().to_string());
        all.push("--cache-dir".into());
        all.push(cache_dir().display().to_string());
    }
    all
}

/// Text of a process's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The lines of a `.jsonl` output file.
pub fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}: {l}", path.display())))
        .collect()
}

/// The `.eml` files of an output directory, in order.
pub fn emails(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// The decoded body of the first part of `mime_type`.
pub fn part(mail: &mailparse::ParsedMail<'_>, mime_type: &str) -> Option<String> {
    if mail.ctype.mimetype == mime_type {
        return Some(mail.get_body().expect("decodable body"));
    }
    mail.subparts.iter().find_map(|p| part(p, mime_type))
}

/// The value of header `name` (decoded), if present exactly once.
pub fn header(mail: &mailparse::ParsedMail<'_>, name: &str) -> Option<String> {
    let found: Vec<String> = mail
        .headers
        .iter()
        .filter(|h| h.get_key().eq_ignore_ascii_case(name))
        .map(|h| h.get_value())
        .collect();
    assert!(found.len() <= 1, "header {name} appears {} times", found.len());
    found.into_iter().next()
}

/// The event id (`<file>:<line>`) of the first line of `path` containing
/// `needle`: tests name demo events by content, not by position.
pub fn event_id(path: &Path, needle: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let line = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line of {} contains {needle:?}", path.display()));
    format!("{}:{}", path.file_name().unwrap().to_string_lossy(), line + 1)
}
