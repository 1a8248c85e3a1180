//! Webhooks: an HTTP(S) POST with the module's headers and body, with a
//! timeout; TLS failures are reported as such.
//!
//! A webhook whose host the module's allowed hosts do not name as such
//! (it matched a `*.domain` entry) must not reach the host's own network:
//! its name is resolved by [`PublicOnly`], which drops loopback,
//! link-local, private and other non-public addresses, at connection time
//! (a name cannot resolve to a public address for the check and a private
//! one for the post).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, parse_pem};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::{Attempt, tls_failure};
use crate::store::redacted_url;

/// What [`PublicOnly`] says when nothing public is left.
const ONLY_PRIVATE: &str = "resolves only to addresses of a private network";

/// Posts webhook bodies.
#[derive(Debug)]
pub struct WebhookSender {
    /// For hosts the module names: any address.
    named: ureq::Agent,
    /// For the others: public addresses only.
    public: ureq::Agent,
}

/// How receivers' certificates are checked.
#[derive(Debug, Clone, Default)]
pub struct WebhookTls {
    /// PEM text or a file of CA certificates trusted instead of the
    /// public roots.
    pub root_ca: Option<String>,
    pub skip_verify: bool,
}

impl WebhookTls {
    /// Whether the root CA can be read (`check`).
    pub fn check(&self) -> Result<(), String> {
        self.config().map(drop)
    }

    fn config(&self) -> Result<TlsConfig, String> {
        let mut tls = TlsConfig::builder().disable_verification(self.skip_verify);
        if let Some(root_ca) = self.root_ca.as_deref().filter(|r| !r.trim().is_empty()) {
            let pem = super::pem_of(root_ca)?;
            let certificates: Vec<Certificate<'static>> = parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(format!("root CA {root_ca}: {e}"))),
                })
                .collect::<Result<_, _>>()?;
            if certificates.is_empty() {
                return Err(format!("root CA {root_ca}: no certificate in it"));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certificates));
        }
        Ok(tls.build())
    }
}

impl WebhookSender {
    /// A sender whose requests end after `timeout`, checking receivers'
    /// certificates as `tls` says; an unreadable root CA is an error.
    pub fn new(timeout: Duration, tls: &WebhookTls) -> Result<Self, String> {
        let tls = tls.config()?;
        let config = || {
            ureq::Agent::config_builder()
                .timeout_global(Some(timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .tls_config(tls.clone())
                .build()
        };
        Ok(Self {
            named: config().new_agent(),
            public: ureq::Agent::with_parts(config(), DefaultConnector::default(), PublicOnly::default()),
        })
    }

    /// One POST: 2xx is delivered; 408, 429 and 5xx are worth retrying;
    /// any other status is permanent; so is a TLS failure, a URL that does
    /// not parse and a host that resolves only to private addresses when
    /// `may_reach_private` is false.
    /// What it says names the URL without its secret ([`redacted_url`]).
    pub fn post(&self, url: &str, headers: &[(String, String)], body: &[u8], may_reach_private: bool) -> Attempt {
        let agent = if may_reach_private { &self.named } else { &self.public };
        let mut request = agent.post(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let shown = redacted_url(url);
        match request.send(body) {
            Ok(response) => {
                let status = response.status().as_u16();
                if (200..=299).contains(&status) {
                    return Attempt::Delivered;
                }
                let answer = answer_of(response);
                if already_there(status, &answer) {
                    return Attempt::Delivered;
                }
                let why = format!("HTTP {status} from {shown}{}", said(&answer));
                match status {
                    408 | 429 | 500..=599 => Attempt::Transient(why),
                    _ => Attempt::Permanent(why),
                }
            }
            Err(e) => classify(&shown, &e),
        }
    }
}

/// Most of a refusal's body kept in its error, in characters.
const SAID_CHARS: usize = 300;

/// What a receiver said with a refusal (Teams: "Property 'type' must be
/// 'AdaptiveCard'"), read bounded and made one printable line: `: ...`, or
/// nothing when it said nothing.
fn said(answer: &str) -> String {
    let line: String = answer
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SAID_CHARS)
        .collect();
    match line.trim() {
        "" => String::new(),
        line => format!(": {line}"),
    }
}

/// A refusal's body, read bounded ("" when unreadable).
fn answer_of(response: http::Response<ureq::Body>) -> String {
    let mut body = response.into_body();
    body.with_config().limit(4096).read_to_string().unwrap_or_default()
}

/// Whether a refusal says the receiver already holds what was posted:
/// TheHive refuses an alert whose (`type`, `source`, `sourceRef`) it has
/// with 400 `CreateError` "... already exist ...". The Webhook module's
/// `sourceRef` is the same for the same alert, so this is an alert posted
/// before (its answer lost to a crash, or by another host): delivered.
fn already_there(status: u16, answer: &str) -> bool {
    let Ok(refusal) = serde_json::from_str::<serde_json::Value>(answer) else {
        return false;
    };
    let said = |field: &str| refusal.get(field).and_then(|v| v.as_str()).unwrap_or("");
    status == 400 && said("type") == "CreateError" && said("message").contains("already exist")
}

/// A TLS failure, a bad URL and a private destination are permanent (the
/// same will happen next time); anything else on the way (refused, reset,
/// timeout) is transient. `url` is as shown, without its secret.
fn classify(url: &str, error: &ureq::Error) -> Attempt {
    let text = error.to_string();
    match error {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            Attempt::Permanent(format!("TLS failure talking to {url}: {text}"))
        }
        // ureq's errors do not chain their causes: look into the I/O error.
        ureq::Error::Io(io) if tls_failure(io).is_some() => {
            Attempt::Permanent(format!("TLS failure talking to {url}: {text}"))
        }
        ureq::Error::Io(io) if io.to_string().contains(ONLY_PRIVATE) => Attempt::Permanent(format!(
            "{url}: refused: {io}; name its host in the module's allowed_hosts to post there"
        )),
        // Their text holds the URL whole.
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => Attempt::Permanent(format!("{url}: the URL does not parse")),
        _ => Attempt::Transient(format!("{url}: {text}")),
    }
}

/// The system's resolver, keeping public addresses only.
#[derive(Debug, Default)]
struct PublicOnly {
    system: DefaultResolver,
}

impl Resolver for PublicOnly {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let resolved = self.system.resolve(uri, config, timeout)?;
        let mut public = self.empty();
        for address in resolved.iter().filter(|a| is_public(a.ip())) {
            public.push(*address);
        }
        if public.is_empty() {
            let addresses: Vec<String> = resolved.iter().map(|a| a.ip().to_string()).collect();
            let host = uri.host().unwrap_or_default();
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{host} {ONLY_PRIVATE} ({})", addresses.join(", ")),
            )));
        }
        Ok(public)
    }
}

/// Whether `ip` is on the public internet: not loopback, private,
/// link-local (cloud metadata at 169.254.169.254), shared (100.64/10),
/// unspecified, broadcast, multicast, documentation, benchmarking or
/// reserved; an IPv4 address inside IPv6 is judged as IPv4.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local()
        || ip.is_unicast_link_local()
        || (first & 0xffc0) == 0xfec0
        || first == 0x2001 && ip.segments()[1] == 0x0db8
        || first == 0x0064 && ip.segments()[1] == 0xff9b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on 127.0.0.1 answering 200 to each request; returns its
    /// port and how many connections it took.
    fn local_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = taken.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        (port, taken)
    }

    /// A webhook whose host the module does not name is not posted to an
    /// address of the host's network, however it is spelt; dead-lettered
    /// at once, saying why. A named host is posted to.
    #[test]
    fn a_webhook_not_named_by_its_module_never_reaches_a_private_address() {
        let (port, taken) = local_server();
        let sender = WebhookSender::new(Duration::from_secs(5), &WebhookTls::default()).unwrap();
        for url in [
            format!("http://127.0.0.1:{port}/hook"),
            format!("http://localhost:{port}/hook"),
            format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        ] {
            match sender.post(&url, &[], b"{}", false) {
                Attempt::Permanent(why) => {
                    assert!(why.contains(ONLY_PRIVATE), "{url}: {why}");
                    assert!(why.contains("allowed_hosts"), "{why}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        assert_eq!(
            taken.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "no connection was made"
        );
        let named = sender.post(&format!("http://127.0.0.1:{port}/hook"), &[], b"{}", true);
        assert_eq!(named, Attempt::Delivered);
    }

    #[test]
    fn a_url_that_does_not_parse_is_permanent() {
        let sender = WebhookSender::new(Duration::from_secs(5), &WebhookTls::default()).unwrap();
        assert!(matches!(
            sender.post("http://exa mple.org/", &[], b"{}", true),
            Attempt::Permanent(_)
        ));
    }

    #[test]
    fn only_public_addresses_are_public() {
        let private = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
            "64:ff9b::7f00:1",
        ];
        for text in private {
            assert!(!is_public(text.parse().unwrap()), "{text} is not public");
        }
        for text in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(text.parse().unwrap()), "{text} is public");
        }
    }
}
