//! Real peers for delivery tests: an SMTP server (aiosmtpd) and an HTTP(S)
//! server, each a Python process from `tests/support/peers/`, started on a
//! free port and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::workspace;

/// The Python of the test venv (made by `scripts/setup`).
fn python() -> PathBuf {
    let python = workspace().join(".venv").join("bin").join("python");
    assert!(python.exists(), "{} is missing: run scripts/setup", python.display());
    python
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:`port`; the whole response, headers included.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files.
#[derive(Debug)]
pub struct TestCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCertificate {
    pub fn generate(dir: &Path) -> Self {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("generating a certificate");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        Self { cert, key }
    }
}

/// A running peer process.
#[derive(Debug)]
struct Peer {
    child: Child,
}

impl Peer {
    fn start(script: &str, args: &[String], ready: &Path) -> Self {
        let _ = std::fs::remove_file(ready);
        let script = workspace().join("tests").join("support").join("peers").join(script);
        let mut child = Command::new(python())
            .arg(&script)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting a test peer");
        let started = Instant::now();
        while !ready.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read as _;
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("{} exited ({status}) before it was ready:\n{err}", script.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{} did not start",
                script.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the SMTP peer behaves.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Offer (and require) STARTTLS with this certificate.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Require AUTH with this user and password.
    pub auth: Option<(String, String)>,
    /// Refuse recipients matching this regex with a 550.
    pub reject: Option<String>,
    /// Take this long to accept each message.
    pub delay_ms: u32,
}

/// An SMTP server that records what it accepts in `dir`.
#[derive(Debug)]
pub struct SmtpPeer {
    pub port: u16,
    pub dir: PathBuf,
    options: SmtpOptions,
    peer: Option<Peer>,
}

impl SmtpPeer {
    /// A peer on `port` (not started: see [`SmtpPeer::start`]).
    pub fn new(port: u16, dir: &Path, options: SmtpOptions) -> Self {
        Self {
            port,
            dir: dir.to_path_buf(),
            options,
            peer: None,
        }
    }

    /// Starts a peer on a free port.
    pub fn started(dir: &Path, options: SmtpOptions) -> Self {
        let mut peer = Self::new(free_port(), dir, options);
        peer.start();
        peer
    }

    pub fn start(&mut self) {
        let ready = self.dir.join("ready");
        let mut args = vec![
            "--port".to_string(),
            self.port.to_string(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--ready-file".into(),
            ready.display().to_string(),
        ];
        if let Some((cert, key)) = &self.options.tls {
            args.extend([
                "--tls-cert".into(),
                cert.display().to_string(),
                "--tls-key".into(),
                key.display().to_string(),
            ]);
        }
        if let Some((user, password)) = &self.options.auth {
            args.extend(["--auth".into(), format!("{user}:{password}")]);
        }
        if let Some(reject) = &self.options.reject {
            args.extend(["--reject".into(), reject.clone()]);
        }
        if self.options.delay_ms > 0 {
            args.extend(["--delay-ms".into(), self.options.delay_ms.to_string()]);
        }
        self.peer = Some(Peer::start("smtp_server.py", &args, &ready));
    }

    /// Kills the server (it is down until started again).
    pub fn stop(&mut self) {
        self.peer = None;
    }

    /// One line per accepted message: `file`, `mail_from`, `rcpt_tos`,
    /// `message_id`, `subject`, `tls`, `auth`.
    pub fn received(&self) -> Vec<Value> {
        complete_json_lines(&self.dir.join("received.jsonl"))
    }

    /// The bytes of an accepted message.
    pub fn message(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap()
    }

    /// Waits until at least `count` messages arrived (or `timeout`).
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let received = self.received();
            if received.len() >= count || started.elapsed() > timeout {
                return received;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// An HTTP(S) server answering with scripted status codes.
#[derive(Debug)]
pub struct HttpPeer {
    pub port: u16,
    log: PathBuf,
    _peer: Peer,
}

impl HttpPeer {
    /// `responses`: status codes in turn, the last one repeating
    /// (`"500,200"`); `tls`: serve HTTPS with this certificate.
    pub fn started(dir: &Path, responses: &str, tls: Option<&TestCertificate>) -> Self {
        Self::start_as(dir, responses, tls, None, &[])
    }

    /// A stand-in for `vendor`'s endpoint (`teams-workflow`), which checks
    /// each request against the vendor's documented schema and refuses, in
    /// the vendor's words, what does not hold (tests/support/peers/http_server.py).
    pub fn vendor(dir: &Path, vendor: &str) -> Self {
        Self::start_as(dir, "200", None, Some(vendor), &[])
    }

    /// [`HttpPeer::vendor`] answering `responses` in turn (a 503 first, to
    /// be retried) when a request holds, over HTTPS with `tls`, with the
    /// stand-in's further `options` (`--api-key`, `--indexes`).
    pub fn vendor_with(
        dir: &Path,
        vendor: &str,
        responses: &str,
        tls: Option<&TestCertificate>,
        options: &[&str],
    ) -> Self {
        Self::start_as(dir, responses, tls, Some(vendor), options)
    }

    fn start_as(
        dir: &Path,
        responses: &str,
        tls: Option<&TestCertificate>,
        vendor: Option<&str>,
        options: &[&str],
    ) -> Self {
        let port = free_port();
        let ready = dir.join(format!("http-{port}.ready"));
        let log = dir.join(format!("http-{port}.jsonl"));
        let mut args = vec![
            "--port".to_string(),
            port.to_string(),
            "--log".into(),
            log.display().to_string(),
            "--ready-file".into(),
            ready.display().to_string(),
            "--responses".into(),
            responses.to_string(),
        ];
        if let Some(cert) = tls {
            args.extend([
                "--tls-cert".into(),
                cert.cert.display().to_string(),
                "--tls-key".into(),
                cert.key.display().to_string(),
            ]);
        }
        if let Some(vendor) = vendor {
            args.extend(["--vendor".into(), vendor.to_string()]);
        }
        args.extend(options.iter().map(|o| o.to_string()));
        let peer = Peer::start("http_server.py", &args, &ready);
        Self { port, log, _peer: peer }
    }

    /// One line per request: `method`, `path`, `headers`, `body`, `status`.
    pub fn requests(&self) -> Vec<Value> {
        complete_json_lines(&self.log)
    }
}

/// The JSON lines a peer wrote to `path`, but for a last line it is still
/// appending (a read may come mid-write): that one is read next time.
fn complete_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display())))
        .collect()
}
