//! A real rsyslog daemon for the syslog tests: Debian's `rsyslogd`
//! (installed by scripts/setup), started in the foreground with its own
//! configuration (tests/support/peers/rsyslog.conf.in), pid file and
//! directory, listening on kernel-chosen ports for octet-counted syslog
//! over TCP and over TLS, and writing what it parsed of each record as a
//! JSON line.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::peers::TestCertificate;
use crate::workspace;

/// A running rsyslogd; killed when dropped.
#[derive(Debug)]
pub struct RsyslogPeer {
    pub tcp_port: u16,
    pub tls_port: u16,
    dir: PathBuf,
    child: Child,
}

impl RsyslogPeer {
    /// Starts rsyslogd in `dir` (created), its TLS listener serving `cert`.
    pub fn started(dir: &Path, cert: &TestCertificate) -> Self {
        std::fs::create_dir_all(dir.join("work")).unwrap();
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let template = std::fs::read_to_string(workspace().join("tests/support/peers/rsyslog.conf.in")).unwrap();
        let config = template
            .replace("@DIR@", &dir.display().to_string())
            .replace("@CERT@", &cert.cert.display().to_string())
            .replace("@KEY@", &cert.key.display().to_string());
        let config_file = dir.join("rsyslog.conf");
        std::fs::write(&config_file, config).unwrap();
        let child = Command::new("/usr/sbin/rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&config_file)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            // Under systemd it would otherwise talk to the service manager.
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting rsyslogd (scripts/setup installs Debian's rsyslog and rsyslog-gnutls)");
        let mut peer = Self {
            tcp_port: 0,
            tls_port: 0,
            dir: dir.to_path_buf(),
            child,
        };
        // The TLS driver makes its Diffie-Hellman parameters first: up to a
        // second or so.
        let started = Instant::now();
        loop {
            if let (Some(tcp), Some(tls)) = (peer.port_in("plain.port"), peer.port_in("tls.port")) {
                (peer.tcp_port, peer.tls_port) = (tcp, tls);
                return peer;
            }
            if let Some(status) = peer.child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read as _;
                peer.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("rsyslogd exited ({status}) before it listened:\n{err}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "rsyslogd did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port rsyslogd wrote to `file` (it may be empty for a moment).
    fn port_in(&self, file: &str) -> Option<u16> {
        std::fs::read_to_string(self.dir.join(file)).ok()?.trim().parse().ok()
    }

    /// What rsyslogd parsed of each record it received, as JSON objects
    /// (`ver`, `pri`, `ts`, `host`, `app`, `procid`, `msgid`, `sd`,
    /// `input`: `tcp` or `tls`, `msg`), waiting up to `timeout` for
    /// `count` of them.
    pub fn received(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.dir.join("out/received.jsonl")).unwrap_or_default();
            let complete: Vec<Value> = text
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect();
            if complete.len() >= count || started.elapsed() > timeout {
                return complete;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// rsyslogd's own messages (errors, TLS trouble).
    pub fn internal_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("out/internal.log")).unwrap_or_default()
    }

    /// Stops rsyslogd now (SIGKILL), as a receiver that went away.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RsyslogPeer {
    fn drop(&mut self) {
        self.kill();
    }
}
