//! The connection to a syslog receiver: TCP, or TLS (rustls) verified
//! against the public roots or the section's `root_ca`, kept between
//! records and made again when the receiver closed it.

use std::io::{ErrorKind, Read as _, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{SyslogSection, Transport};
use crate::delivery::{Attempt, tls_failure};

/// A connection, plain or TLS.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Tcp(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref(),
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Tcp(tcp) => tcp.write_all(bytes),
            Self::Tls(tls) => tls.write_all(bytes).and_then(|()| tls.flush()),
        }
    }

    /// Whether the receiver closed its side, so the next write would be
    /// lost. Over TCP a syslog receiver sends nothing: anything readable
    /// is the end. Over TLS it may send session tickets after the
    /// handshake: what arrived is handed to rustls, and only the end of the
    /// stream or a close_notify counts.
    fn closed_by_peer(&mut self) -> bool {
        if self.tcp().set_nonblocking(true).is_err() {
            return true;
        }
        let closed = match self {
            Self::Tcp(tcp) => !matches!(tcp.peek(&mut [0u8; 1]), Err(ref e) if e.kind() == ErrorKind::WouldBlock),
            Self::Tls(tls) => loop {
                match tls.conn.read_tls(&mut tls.sock) {
                    Ok(0) => break true,
                    Ok(_) => match tls.conn.process_new_packets() {
                        Ok(state) if state.peer_has_closed() => break true,
                        Ok(_) => {}
                        Err(_) => break true,
                    },
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            },
        };
        closed || self.tcp().set_nonblocking(false).is_err()
    }
}

/// The kept connection to one receiver.
pub struct Connections {
    host: String,
    port: u16,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    kept: Mutex<Option<Stream>>,
}

impl Connections {
    pub fn new(section: &SyslogSection, timeout: Duration) -> Result<Self, String> {
        let (host, port) = split_address(&section.address)?;
        let tls = match section.transport {
            Transport::Tcp => None,
            Transport::Tls => Some(tls_config(section.root_ca.as_deref())?),
        };
        Ok(Self {
            host,
            port,
            tls,
            timeout,
            kept: Mutex::new(None),
        })
    }

    /// Writes `message` as one octet-counted frame: on the kept
    /// connection if the receiver still holds it, else on a new one.
    pub fn write_frame(&self, message: &[u8]) -> Attempt {
        let mut frame = format!("{} ", message.len()).into_bytes();
        frame.extend_from_slice(message);
        // The kept connection is taken out of the lock for the write: a
        // receiver that is slow or down holds up only the records that
        // are waiting for it, each on its own attempt.
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner()).take();
        let kept = kept.and_then(|mut stream| (!stream.closed_by_peer()).then_some(stream));
        let mut stream = match kept {
            Some(stream) => stream,
            None => match self.connect() {
                Ok(stream) => stream,
                Err(attempt) => return attempt,
            },
        };
        match stream.write_all(&frame) {
            Ok(()) => {
                *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
                Attempt::Delivered
            }
            Err(e) => self.failure(&e),
        }
    }

    fn connect(&self) -> Result<Stream, Attempt> {
        let addresses: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.failure(&e))?
            .collect();
        // Each address in turn (an unreachable IPv6 one must not hide the
        // IPv4 one).
        let mut last = Attempt::Transient(format!("syslog {}: no address", self.shown()));
        let mut connected = None;
        for address in &addresses {
            match TcpStream::connect_timeout(address, self.timeout) {
                Ok(tcp) => {
                    connected = Some(tcp);
                    break;
                }
                Err(e) => last = self.failure(&e),
            }
        }
        let Some(tcp) = connected else {
            return Err(last);
        };
        let _ = tcp.set_write_timeout(Some(self.timeout));
        let _ = tcp.set_read_timeout(Some(self.timeout));
        let _ = tcp.set_nodelay(true);
        let Some(config) = &self.tls else {
            return Ok(Stream::Tcp(tcp));
        };
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| Attempt::Permanent(format!("syslog {}: {e}", self.shown())))?;
        let connection = ClientConnection::new(config.clone(), name)
            .map_err(|e| Attempt::Permanent(format!("syslog {}: {e}", self.shown())))?;
        let mut tls = StreamOwned::new(connection, tcp);
        // Shake hands now, so a certificate that does not verify is told
        // apart from a write that failed.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).map_err(|e| self.failure(&e))?;
        }
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// A TLS failure is permanent (it will fail the same way); anything
    /// else on the way (refused, reset, timeout) is transient.
    fn failure(&self, error: &std::io::Error) -> Attempt {
        match tls_failure(error) {
            Some(tls) => Attempt::Permanent(format!("TLS failure talking to syslog {}: {tls}", self.shown())),
            None => Attempt::Transient(format!("syslog {}: {error}", self.shown())),
        }
    }

    fn shown(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        // Say goodbye, so the receiver does not log a broken connection.
        if let Some(Stream::Tls(tls)) = self.kept.get_mut().ok().and_then(Option::as_mut) {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
            let _ = tls.sock.read(&mut [0u8; 0]);
        }
    }
}

/// `host:port` (`[v6]:port` for an IPv6 address).
pub fn split_address(address: &str) -> Result<(String, u16), String> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("address {address:?}: write host:port"))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("address {address:?}: {port:?} is not a port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("address {address:?}: no host"));
    }
    Ok((host.to_string(), port))
}

/// rustls verifying against `root_ca` (PEM text or file), else the public
/// roots.
pub fn tls_config(root_ca: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match root_ca.filter(|r| !r.trim().is_empty()) {
        Some(root_ca) => {
            let pem = crate::delivery::pem_of(root_ca)?;
            for certificate in CertificateDer::pem_slice_iter(&pem) {
                let certificate = certificate.map_err(|e| format!("root CA {root_ca}: {e}"))?;
                roots.add(certificate).map_err(|e| format!("root CA {root_ca}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("root CA {root_ca}: no certificate in it"));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that closed the kept connection (a restart, an idle
    /// timeout) does not swallow the next record: it goes on a new
    /// connection.
    #[test]
    fn a_connection_the_receiver_closed_is_made_again_before_writing() {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = std::thread::spawn(move || {
            let mut frames = Vec::new();
            listener.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while frames.len() < 2 && std::time::Instant::now() < deadline {
                // One frame per connection, then the receiver hangs up.
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut frame = vec![0u8; 9];
                stream.read_exact(&mut frame).unwrap();
                frames.push(String::from_utf8(frame).unwrap());
            }
            frames
        });
        let section: SyslogSection = toml::from_str(&format!("name = \"r\"\naddress = \"127.0.0.1:{port}\"")).unwrap();
        let connections = Connections::new(&section, Duration::from_secs(5)).unwrap();
        assert_eq!(connections.write_frame(b"1234567"), Attempt::Delivered);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(connections.write_frame(b"abcdefg"), Attempt::Delivered);
        assert_eq!(receiver.join().unwrap(), ["7 1234567", "7 abcdefg"]);
    }

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(split_address("siem.corp:6514").unwrap(), ("siem.corp".into(), 6514));
        assert_eq!(split_address("[::1]:514").unwrap(), ("::1".into(), 514));
        assert!(split_address("siem.corp").unwrap_err().contains("host:port"));
        assert!(split_address("siem:0").is_err() && split_address(":514").is_err());
    }
}
