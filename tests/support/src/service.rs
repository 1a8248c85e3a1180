//! `velonotify run` as a long-running process: started with its log in a
//! file, waited on, fed through the HTTP ingest endpoint, and read through
//! its metrics.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::peers::http_get;
use crate::{cache_dir, modules_dir};

/// `velonotify run` (the binary at `exe`) as a process, its log in a file
/// beside the configuration; killed when dropped.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    log: PathBuf,
}

impl Running {
    /// Runs with the test build's modules and the shared component cache.
    pub fn start(exe: &str, config: &Path) -> Self {
        Self::start_in(exe, config, &modules_dir())
    }

    /// Runs with modules from `modules_dir`.
    pub fn start_in(exe: &str, config: &Path, modules_dir: &Path) -> Self {
        Self::start_with_cache(exe, config, modules_dir, &cache_dir())
    }

    /// Runs with modules from `modules_dir`, compiled components cached in
    /// `cache_dir`.
    pub fn start_with_cache(exe: &str, config: &Path, modules_dir: &Path, cache_dir: &Path) -> Self {
        let log = config.with_file_name("velonotify.log");
        let child = Command::new(exe)
            .args(["run", "-c", &config.display().to_string()])
            .args(["--modules-dir", &modules_dir.display().to_string()])
            .args(["--cache-dir", &cache_dir.display().to_string()])
            .env("VELONOTIFY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting velonotify run");
        Self { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `done` holds, at most `timeout`, failing with the log.
    pub fn wait(&mut self, what: &str, timeout: Duration, mut done: impl FnMut(&Self) -> bool) {
        let started = Instant::now();
        while !done(self) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("velonotify exited ({status}) waiting for {what}:\n{}", self.log());
            }
            assert!(
                started.elapsed() < timeout,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 POST of JSON lines to the ingest endpoint at `port`
/// (`query`: the part after `/v1/events?`); the status code and the body.
pub fn post_events(port: u16, token: Option<&str>, query: &str, body: &[u8]) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST /v1/events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/x-ndjson\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = stream.write_all(body);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

/// The value of one Prometheus counter served at `port` (`series`: its
/// name and labels, as in `velonotify_module_handled_total{module="x"}`);
/// 0 when it is not there yet.
pub fn metric(port: u16, series: &str) -> u64 {
    let prefix = format!("{series} ");
    http_get(port, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |n| n.trim().parse().unwrap())
}
