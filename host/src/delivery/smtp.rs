//! E-mails over SMTP with lettre, configured like Velociraptor's "SMTP
//! Creds" secret: port 465 is implicit TLS, any other port uses STARTTLS
//! when the server offers it; connections are pooled and reused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lettre::address::{Address, Envelope};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};

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

/// The SMTP settings of every secret, and a transport per secret.
pub struct SmtpSenders {
    default: SmtpSection,
    secrets: HashMap<String, SmtpSection>,
    timeout: Duration,
    transports: Mutex<HashMap<Option<String>, SmtpTransport>>,
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
            transports: Mutex::default(),
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

    /// Sends one message as it is.
    pub fn send(&self, secret: Option<&str>, from: &str, to: &[String], message: &[u8]) -> Attempt {
        let (key, settings) = self.settings(secret);
        let envelope = match envelope(from, to) {
            Ok(e) => e,
            Err(e) => return Attempt::Permanent(format!("invalid envelope: {e}")),
        };
        let transport = {
            let mut transports = self.transports.lock().expect("smtp lock");
            if !transports.contains_key(&key) {
                match transport(settings, self.timeout) {
                    Ok(t) => {
                        transports.insert(key.clone(), t);
                    }
                    Err(e) => return Attempt::Permanent(format!("SMTP settings: {e}")),
                }
            }
            transports[&key].clone()
        };
        let server = || {
            let host = settings.server.as_deref().unwrap_or_default();
            format!("{host}:{}", port(settings))
        };
        let error = match transport.send_raw(&envelope, message) {
            Ok(_) => return Attempt::Delivered,
            Err(e) => e,
        };
        if let Some(why) = tls_failure(&error) {
            // A certificate that does not verify will not verify next time.
            Attempt::Permanent(format!("TLS failure talking to SMTP server {}: {why}", server()))
        } else if error.is_permanent() {
            // 5xx: the server will say the same next time.
            Attempt::Permanent(format!("SMTP server {} refused it: {error}", server()))
        } else if error.is_client() {
            // The server and the settings do not fit (AUTH configured but
            // not offered without TLS, STARTTLS required but not offered):
            // nothing changes until the settings do.
            Attempt::Permanent(format!(
                "SMTP server {} cannot be used with these settings: {error}",
                server()
            ))
        } else {
            Attempt::Transient(format!("SMTP server {}: {}", server(), chain(&error)))
        }
    }
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

/// A transport for `settings`: implicit TLS on port 465, STARTTLS when
/// offered on any other port; `root_ca` (PEM text or a file) trusted
/// besides the usual roots; `skip_verify` accepts any certificate.
fn transport(settings: &SmtpSection, timeout: Duration) -> Result<SmtpTransport, String> {
    let server = settings
        .server
        .clone()
        .filter(|s| !s.is_empty())
        .ok_or("server not specified")?;
    let port = port(settings);
    let mut tls = TlsParameters::builder(server.clone()).dangerous_accept_invalid_certs(settings.skip_verify);
    if let Some(root_ca) = settings.root_ca.as_deref().filter(|r| !r.trim().is_empty()) {
        let pem = if root_ca.trim_start().starts_with("-----BEGIN") {
            root_ca.as_bytes().to_vec()
        } else {
            std::fs::read(root_ca).map_err(|e| format!("root_ca {root_ca}: {e}"))?
        };
        let certificate = Certificate::from_pem(&pem).map_err(|e| format!("root_ca: {e}"))?;
        tls = tls.add_root_certificate(certificate);
    }
    let tls = tls.build_rustls().map_err(|e| format!("TLS: {e}"))?;
    let mut builder = SmtpTransport::builder_dangerous(server)
        .port(port)
        .timeout(Some(timeout))
        .tls(if port == 465 {
            Tls::Wrapper(tls)
        } else {
            Tls::Opportunistic(tls)
        });
    if let Some(user) = settings.auth_username.as_deref().filter(|u| !u.is_empty()) {
        let password = settings.auth_password.clone().unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.to_string(), password));
    }
    Ok(builder.build())
}
