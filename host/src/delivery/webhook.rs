//! Webhooks: an HTTP(S) POST with the module's headers and body, with a
//! timeout; TLS failures are reported as such.

use std::time::Duration;

use super::{Attempt, tls_failure};

/// Posts webhook bodies.
#[derive(Debug)]
pub struct WebhookSender {
    agent: ureq::Agent,
}

impl WebhookSender {
    pub fn new(timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .new_agent();
        Self { agent }
    }

    /// One POST: 2xx is delivered; 408, 429 and 5xx are worth retrying;
    /// any other status is permanent; so is a TLS failure.
    pub fn post(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> Attempt {
        let mut request = self.agent.post(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        match request.send(body) {
            Ok(response) => match response.status().as_u16() {
                200..=299 => Attempt::Delivered,
                status @ (408 | 429 | 500..=599) => Attempt::Transient(format!("HTTP {status} from {url}")),
                status => Attempt::Permanent(format!("HTTP {status} from {url}")),
            },
            Err(e) => classify(url, &e),
        }
    }
}

/// A TLS failure is permanent (the certificate will not verify next
/// time); anything else on the way (refused, reset, timeout) is transient.
fn classify(url: &str, error: &ureq::Error) -> Attempt {
    let text = error.to_string();
    let tls = match error {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => true,
        // ureq's errors do not chain their causes: look into the I/O error.
        ureq::Error::Io(io) => tls_failure(io).is_some(),
        _ => false,
    };
    if tls {
        Attempt::Permanent(format!("TLS failure talking to {url}: {text}"))
    } else {
        Attempt::Transient(format!("{url}: {text}"))
    }
}
