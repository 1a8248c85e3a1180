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
        Self::spawn(exe, config, modules_dir, cache_dir, &[])
    }

    /// Runs with `env` set (`FAILPOINTS` to arm a crash point). The log
    /// goes on in the same file across restarts.
    pub fn start_env(exe: &str, config: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn(exe, config, &modules_dir(), &cache_dir(), env)
    }

    fn spawn(exe: &str, config: &Path, modules_dir: &Path, cache_dir: &Path, env: &[(&str, &str)]) -> Self {
        let log = config.with_file_name("velonotify.log");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(exe)
            .args(["run", "-c", &config.display().to_string()])
            .args(["--modules-dir", &modules_dir.display().to_string()])
            .args(["--cache-dir", &cache_dir.display().to_string()])
            .env("VELONOTIFY_LOG", "info")
            .envs(crate::postgres::store_env(config.parent().unwrap_or(Path::new("."))))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("starting velonotify run");
        Self { child, log }
    }

    /// Stops the process as a crash would: SIGKILL, nothing flushed.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How the process ended, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Waits until the process has ended, at most `timeout`, failing with
    /// the log.
    pub fn wait_exit(&mut self, what: &str, timeout: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                started.elapsed() < timeout,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
    try_post_events(port, token, query, body).expect("connecting to the ingest endpoint")
}

/// As [`post_events`]; None when nothing listens (the service is down).
/// A connection cut before the answer is status 0.
pub fn try_post_events(port: u16, token: Option<&str>, query: &str, body: &[u8]) -> Option<(u16, String)> {
    let path = format!("/v1/events?{query}");
    try_request(port, "POST", &path, token, "application/x-ndjson", body)
}

/// One HTTP/1.1 request to 127.0.0.1:`port`, with a bearer token if given;
/// the status code and the body. A connection cut before the answer is
/// status 0.
pub fn request(port: u16, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    try_request(port, method, path, token, "application/json", body).expect("connecting to velonotify")
}

fn try_request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let _ = stream.write_all(body);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

/// Posts `body` until it is answered 200, as a forwarder that re-posts
/// what was not accepted: through connection failures (the service is
/// down), 503s and cut connections. Returns how many posts it took.
pub fn post_until_accepted(port: u16, token: &str, query: &str, body: &[u8], timeout: Duration) -> u32 {
    let started = Instant::now();
    let mut posts = 0;
    loop {
        posts += 1;
        match try_post_events(port, Some(token), query, body) {
            Some((200, _)) => return posts,
            None | Some((0 | 503, _)) => {}
            Some((status, answer)) => panic!("the ingest endpoint refused a batch: {status} {answer}"),
        }
        assert!(
            started.elapsed() < timeout,
            "a batch was not accepted within {timeout:?} ({posts} posts)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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

/// The rows of its queues that reached `module`: the calls it answered and
/// the rows its declared interest spared it (read for it by the host).
pub fn rows_reaching(port: u16, module: &str) -> u64 {
    metric(port, &format!("velonotify_module_handled_total{{module=\"{module}\"}}"))
        + metric(
            port,
            &format!("velonotify_module_rows_spared_total{{module=\"{module}\"}}"),
        )
}

/// The peak resident memory of process `pid` so far (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
