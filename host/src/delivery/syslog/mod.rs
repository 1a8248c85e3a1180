//! Syslog receivers (`[[syslog]]`): a record of every notification of the
//! modules a receiver names, as RFC 5424 or CEF, over TCP or TLS with
//! octet counting (RFC 6587, `LEN SP MSG`), so a message may hold any
//! byte and a SIEM keeps the record.
//!
//! Records are outbox items like any notification (the pipeline queues
//! one per notification and receiver, in the same commit), so they are
//! retried and survive restarts. Syslog over TCP has no acknowledgement: a
//! record counts as delivered once the operating system took it. A kept
//! connection the receiver closed is noticed before writing and made
//! again, so a record is not written into a dead connection.

mod record;
mod transport;

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

pub use self::record::{Format, Record};
use self::transport::Connections;
use super::Attempt;
use crate::store::SyslogPayload;

/// One `[[syslog]]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogSection {
    /// What records and logs call it.
    pub name: String,
    /// `host:port` of the receiver (rsyslog, syslog-ng, a SIEM's collector).
    pub address: String,
    /// `tcp` (default) or `tls`.
    #[serde(default)]
    pub transport: Transport,
    /// `rfc5424` (default) or `cef` (ArcSight's Common Event Format in the
    /// message).
    #[serde(default)]
    pub format: Format,
    /// `tls`: the receiver's CA (PEM text or a file) instead of the public
    /// roots.
    pub root_ca: Option<String>,
    /// The modules whose notifications it records (default: all).
    pub modules: Option<Vec<String>>,
    /// The syslog facility (default `local0`).
    #[serde(default)]
    pub facility: Facility,
    /// APP-NAME of the records (default `velonotify`).
    pub app_name: Option<String>,
}

impl SyslogSection {
    /// What `check` refuses: a name used twice is caught by the caller.
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 100 || self.name.chars().any(char::is_control) {
            return Err(format!("{:?}: a name is 1 to 100 characters", self.name));
        }
        transport::split_address(&self.address)?;
        if self.transport == Transport::Tcp && self.root_ca.is_some() {
            return Err("root_ca is for transport = \"tls\"".into());
        }
        transport::tls_config(self.root_ca.as_deref()).map(drop)
    }
}

/// How records travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Tls,
}

/// RFC 5424's facilities by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    User,
    Daemon,
    Auth,
    Authpriv,
    #[default]
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// Its code (RFC 5424, table 1).
    pub fn code(self) -> u8 {
        match self {
            Self::User => 1,
            Self::Daemon => 3,
            Self::Auth => 4,
            Self::Authpriv => 10,
            Self::Local0 => 16,
            Self::Local1 => 17,
            Self::Local2 => 18,
            Self::Local3 => 19,
            Self::Local4 => 20,
            Self::Local5 => 21,
            Self::Local6 => 22,
            Self::Local7 => 23,
        }
    }
}

/// Sends records to the configured receivers, keeping a connection to each.
pub struct SyslogSenders {
    receivers: HashMap<String, (SyslogSection, Connections)>,
    /// HOSTNAME of the records: this machine's name.
    hostname: String,
}

impl std::fmt::Debug for SyslogSenders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSenders")
            .field("receivers", &self.receivers.keys())
            .finish_non_exhaustive()
    }
}

impl SyslogSenders {
    /// Senders for `sections`, each connection attempt and write bounded
    /// by `timeout`; an unreadable root CA is an error.
    pub fn new(sections: &[SyslogSection], timeout: Duration) -> Result<Self, String> {
        let mut receivers = HashMap::new();
        for section in sections {
            let connections =
                Connections::new(section, timeout).map_err(|e| format!("syslog {}: {e}", section.name))?;
            receivers.insert(section.name.clone(), (section.clone(), connections));
        }
        let hostname = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        Ok(Self { receivers, hostname })
    }

    /// Writes one record to its receiver.
    pub fn send(&self, payload: &SyslogPayload) -> Attempt {
        let Some((section, connections)) = self.receivers.get(&payload.sink) else {
            return Attempt::Permanent(format!(
                "no [[syslog]] named {:?} in today's configuration",
                payload.sink
            ));
        };
        let record = Record {
            facility: section.facility,
            app_name: section.app_name.as_deref().unwrap_or("velonotify"),
            hostname: &self.hostname,
            payload,
        };
        let message = record.render(section.format);
        connections.write_frame(&message)
    }
}
