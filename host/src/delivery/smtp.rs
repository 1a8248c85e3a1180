//! E-mails over SMTP with lettre, configured like Velociraptor's "SMTP
//! Creds" secret: port 465 is implicit TLS, any other port uses STARTTLS
//! when the server offers it. Connections are kept and reused.
//!
//! The connections are lettre's (`AsyncSmtpConnection`) over sockets made
//! here with `TCP_NODELAY`: lettre writes a message and its final `.` in
//! two writes, which Nagle's algorithm holds until the server's delayed
//! acknowledgement (40 ms on Linux) when lettre makes the socket itself,
//! so one connection sent 21 e-mails a second. Implicit TLS (465) still
//! goes through lettre's own socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::{Attempt, tls_failure};

/// The fields of Velociraptor's "SMTP Creds" secret: `[smtp]`, and each
/// named secret (`[secrets.notify_mail_secret]`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    pub server: Option<String>,
    pub server_port: Option<u16>,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    pub from: Option<String>,
    #[serde(default)]
    pub skip_verify: bool,
    pub root_ca: Option<String>,
}

/// A connection not used for this long is asked (NOOP) whether it still
/// works before it carries a message; one not used for this long is closed.
const TEST_IDLE_AFTER: Duration = Duration::from_secs(2);
const CLOSE_IDLE_AFTER: Duration = Duration::from_secs(60);
/// Connections kept open per server.
const MAX_IDLE: usize = 16;
/// A message is given `timeout` plus a second for each this many bytes.
const BYTES_PER_EXTRA_SECOND: usize = 256 * 1024;

/// The SMTP settings of every secret, and the servers' kept connections.
pub struct SmtpSenders {
    default: SmtpSection,
    secrets: HashMap<String, SmtpSection>,
    timeout: Duration,
    servers: Mutex<HashMap<Option<String>, Arc<Server>>>,
    /// Drives the connections; made on first use, on the delivery thread.
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for SmtpSenders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSenders")
            .field("secrets", &self.secrets.keys())
            .finish_non_exhaustive()
    }
}

impl SmtpSenders {
    pub fn new(default: SmtpSection, secrets: HashMap<String, SmtpSection>, timeout: Duration) -> Self {
        Self {
            default,
            secrets,
            timeout,
            servers: Mutex::default(),
            runtime: OnceLock::new(),
        }
    }

    /// The settings an e-mail uses: its named secret when configured, else
    /// the default `[smtp]`.
    fn settings(&self, secret: Option<&str>) -> (Option<String>, &SmtpSection) {
        match secret.and_then(|s| self.secrets.get_key_value(s)) {
            Some((name, settings)) => (Some(name.clone()), settings),
            None => (None, &self.default),
        }
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("velonotify-smtp")
                .enable_io()
                .enable_time()
                .build()
                .expect("a runtime for SMTP connections")
        })
    }

    /// The server for `secret`, made on first use.
    fn server(&self, secret: Option<&str>) -> Result<Arc<Server>, String> {
        let (key, settings) = self.settings(secret);
        let mut servers = self.servers.lock().expect("smtp lock");
        if let Some(server) = servers.get(&key) {
            return Ok(server.clone());
        }
        let server = Arc::new(Server::new(settings)?);
        servers.insert(key, server.clone());
        Ok(server)
    }

    /// Sends one message as it is.
    pub fn send(&self, secret: Option<&str>, from: &str, to: &[String], message: &[u8]) -> Attempt {
        let envelope = match envelope(from, to) {
            Ok(e) => e,
            Err(e) => return Attempt::Permanent(format!("invalid envelope: {e}")),
        };
        let server = match self.server(secret) {
            Ok(server) => server,
            Err(e) => return Attempt::Permanent(format!("SMTP settings: {e}")),
        };
        let send_timeout = self.timeout + Duration::from_secs((message.len() / BYTES_PER_EXTRA_SECOND) as u64);
        let sent = self
            .runtime()
            .block_on(server.send(&envelope, message, self.timeout, send_timeout));
        match sent {
            Ok(()) => Attempt::Delivered,
            Err(error) => error.attempt(&server.address()),
        }
    }
}

/// Why a message was not sent.
#[derive(Debug)]
enum SendError {
    /// No connection could be made.
    Connect(std::io::Error),
    /// The server did not answer in time (connecting, or this long into
    /// sending the message).
    TimedOut(Duration),
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for SendError {
    fn from(error: lettre::transport::smtp::Error) -> Self {
        Self::Smtp(error)
    }
}

impl SendError {
    /// Whether trying again can help, and what to say.
    fn attempt(self, server: &str) -> Attempt {
        let error = match self {
            Self::Connect(e) => return Attempt::Transient(format!("SMTP server {server}: connecting: {}", chain(&e))),
            Self::TimedOut(after) => {
                return Attempt::Transient(format!("SMTP server {server}: no answer within {after:?}"));
            }
            Self::Smtp(error) => error,
        };
        if let Some(why) = tls_failure(&error) {
            // A certificate that does not verify will not verify next time.
            Attempt::Permanent(format!("TLS failure talking to SMTP server {server}: {why}"))
        } else if error.is_permanent() {
            // 5xx: the server will say the same next time.
            Attempt::Permanent(format!("SMTP server {server} refused it: {error}"))
        } else if error.is_client() {
            // The server and the settings do not fit (AUTH configured but
            // not offered without TLS, STARTTLS required but not offered):
            // nothing changes until the settings do.
            Attempt::Permanent(format!(
                "SMTP server {server} cannot be used with these settings: {error}"
            ))
        } else {
            Attempt::Transient(format!("SMTP server {server}: {}", chain(&error)))
        }
    }
}

/// One SMTP server (the settings of one secret) and its open connections.
struct Server {
    host: String,
    port: u16,
    tls: TlsParameters,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl Server {
    /// The server of `settings`; `root_ca` (PEM text or a file) is trusted
    /// besides the usual roots, `skip_verify` accepts any certificate.
    fn new(settings: &SmtpSection) -> Result<Self, String> {
        let host = settings
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or("server not specified")?;
        let mut tls = TlsParameters::builder(host.clone()).dangerous_accept_invalid_certs(settings.skip_verify);
        if let Some(root_ca) = settings.root_ca.as_deref().filter(|r| !r.trim().is_empty()) {
            let pem = super::pem_of(root_ca)?;
            let certificate = Certificate::from_pem(&pem).map_err(|e| format!("root_ca: {e}"))?;
            tls = tls.add_root_certificate(certificate);
        }
        let credentials = settings
            .auth_username
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|user| Credentials::new(user.to_string(), settings.auth_password.clone().unwrap_or_default()));
        Ok(Self {
            host,
            port: port(settings),
            tls: tls.build_rustls().map_err(|e| format!("TLS: {e}"))?,
            credentials,
            hello: ClientId::default(),
            idle: Mutex::default(),
        })
    }

    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Sends on a kept connection, or a new one; keeps the connection if
    /// it is still good afterwards. A kept connection the server dropped
    /// meanwhile (its idle or per-session limit) is not the message's
    /// failure: the message goes once more, on a new connection.
    async fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
        timeout: Duration,
        send_timeout: Duration,
    ) -> Result<(), SendError> {
        if let Some(kept) = self.kept(timeout).await {
            match self.send_on(kept, envelope, message, send_timeout).await {
                Err(SendError::Smtp(error)) if is_dropped_connection(&error) => {
                    tracing::debug!(server = %self.address(), %error, "a kept SMTP connection was dropped; sending on a new one");
                }
                sent => return sent,
            }
        }
        let fresh = self.connect(timeout).await?;
        self.send_on(fresh, envelope, message, send_timeout).await
    }

    /// Sends one message on `connection`, and keeps it if it is still good.
    async fn send_on(
        &self,
        mut connection: AsyncSmtpConnection,
        envelope: &Envelope,
        message: &[u8],
        send_timeout: Duration,
    ) -> Result<(), SendError> {
        let sent = tokio::time::timeout(send_timeout, connection.send(envelope, message))
            .await
            .map_err(|_| SendError::TimedOut(send_timeout))?;
        if sent.is_ok() && !connection.has_broken() {
            let mut idle = self.idle.lock().expect("smtp lock");
            if idle.len() < MAX_IDLE {
                idle.push((connection, Instant::now()));
            }
        }
        sent.map(drop).map_err(SendError::from)
    }

    /// A kept connection that still works, if there is one. One that does
    /// not answer its NOOP means the others, as old or older, are closed
    /// too: they all go.
    async fn kept(&self, timeout: Duration) -> Option<AsyncSmtpConnection> {
        let (mut connection, since) = {
            let mut idle = self.idle.lock().expect("smtp lock");
            idle.retain(|(_, since)| since.elapsed() < CLOSE_IDLE_AFTER);
            idle.pop()?
        };
        if since.elapsed() < TEST_IDLE_AFTER
            || tokio::time::timeout(timeout, connection.test_connected()).await == Ok(true)
        {
            return Some(connection);
        }
        self.idle.lock().expect("smtp lock").clear();
        None
    }

    /// A new connection: greeting, EHLO, STARTTLS when offered (implicit
    /// TLS on 465), AUTH when configured; each address gets `timeout` to
    /// take the connection, the conversation `timeout` more.
    async fn connect(&self, timeout: Duration) -> Result<AsyncSmtpConnection, SendError> {
        let timed_out = |_| SendError::TimedOut(timeout);
        let mut connection = if self.port == 465 {
            // lettre's own socket (Nagle on): it has no way to take ours
            // and then wrap it in TLS before the greeting.
            let connecting = AsyncSmtpConnection::connect_tokio1(
                (self.host.as_str(), self.port),
                Some(timeout),
                &self.hello,
                Some(self.tls.clone()),
                None,
            );
            tokio::time::timeout(timeout * 2, connecting)
                .await
                .map_err(timed_out)??
        } else {
            let socket = self.socket(timeout).await.map_err(SendError::Connect)?;
            let greeting = async {
                let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(socket), &self.hello).await?;
                if connection.can_starttls() {
                    connection.starttls(self.tls.clone(), &self.hello).await?;
                }
                Ok::<_, SendError>(connection)
            };
            tokio::time::timeout(timeout, greeting).await.map_err(timed_out)??
        };
        if let Some(credentials) = &self.credentials {
            tokio::time::timeout(timeout, connection.auth(DEFAULT_MECHANISMS, credentials))
                .await
                .map_err(timed_out)??;
        }
        Ok(connection)
    }

    /// A TCP connection to the first of the server's addresses that takes
    /// one within `timeout`, with Nagle's algorithm off.
    async fn socket(&self, timeout: Duration) -> std::io::Result<tokio::net::TcpStream> {
        let mut last = None;
        for address in tokio::net::lookup_host((self.host.as_str(), self.port)).await? {
            match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
                Ok(Ok(socket)) => {
                    socket.set_nodelay(true)?;
                    return Ok(socket);
                }
                Ok(Err(error)) => last = Some(error),
                Err(_) => {
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{address}: no answer within {timeout:?}"),
                    ))
                }
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the name resolves to no address")))
    }
}

/// A failure of the connection itself (closed, reset), not an answer of
/// the server nor a problem with the settings or TLS.
fn is_dropped_connection(error: &lettre::transport::smtp::Error) -> bool {
    !error.is_response() && !error.is_client() && !error.is_timeout() && !error.is_tls() && tls_failure(error).is_none()
}

fn envelope(from: &str, to: &[String]) -> Result<Envelope, String> {
    let from: Address = from.parse().map_err(|e| format!("sender {from:?}: {e}"))?;
    let to = to
        .iter()
        .map(|t| t.parse::<Address>().map_err(|e| format!("recipient {t:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Envelope::new(Some(from), to).map_err(|e| e.to_string())
}

/// Port 587 (submission) unless set.
fn port(settings: &SmtpSection) -> u16 {
    settings.server_port.unwrap_or(587)
}

/// An error with its causes: lettre's own text ("network error") says
/// little without them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
