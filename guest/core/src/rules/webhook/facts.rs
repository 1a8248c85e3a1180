//! What the receivers' fields are filled from: the values a template
//! could use (`name`, `client_id`, `fqdn`, `artifact`, `timestamp`,
//! `event_data`...), read the same way for every receiver.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::identity::stable_id;
use crate::render::{Links, elide_right};
use crate::vql::parse_timestamp_str;

/// The values one notification was filled from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a>(pub &'a Map<String, Value>);

/// The name receivers give a server-side alert's source.
pub const SERVER_SOURCE: &str = "velociraptor-server";

/// Values that come from the lookups, not from the alert: a receiver's
/// identifier must not change when a client is renamed, nor differ
/// between a live run and a replay whose lookups say less.
const LOOKED_UP: &[&str] = &["hostname", "fqdn", "last_seen"];

impl<'a> Facts<'a> {
    /// The text of value `name`, or "".
    pub fn at(&self, name: &str) -> &'a str {
        self.0.get(name).and_then(Value::as_str).unwrap_or("")
    }

    /// Whether these are an alert's (not a client's announcement).
    pub fn is_alert(&self) -> bool {
        self.0.contains_key("name")
    }

    /// The machine the notification is about: its FQDN, else host name,
    /// else client id; [`SERVER_SOURCE`] for the server.
    pub fn origin(&self) -> &'a str {
        [self.at("fqdn"), self.at("hostname"), self.at("client_id")]
            .into_iter()
            .find(|v| !v.is_empty() && *v != "server")
            .unwrap_or(SERVER_SOURCE)
    }

    /// The alert's time in microseconds since the epoch, when it has one.
    pub fn time_us(&self) -> Option<i64> {
        let text = self.at("timestamp");
        let time = parse_timestamp_str(text).filter(|_| !text.trim().is_empty())?;
        Some(time.unix_micros())
    }

    /// One alert's identifier: `prefix` and a hash of everything the alert
    /// itself says (not what was looked up), so the same row gives the
    /// same identifier in a retry or a replay, and another row another. A
    /// client's announcement is all looked up (it comes online again, its
    /// `last_seen` differs): every value counts.
    pub fn instance_ref(&self, prefix: &str) -> String {
        let alert = self.is_alert();
        let said: Vec<String> = self
            .0
            .iter()
            .filter(|(name, _)| !alert || !LOOKED_UP.contains(&name.as_str()))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let parts: Vec<&str> = said.iter().map(String::as_str).collect();
        stable_id(prefix, &parts, 12)
    }

    /// The page of the Velociraptor GUI about this notification: the
    /// collection it came from, else the client, else the artifact.
    pub fn gui_link(&self, links: &Links) -> Option<String> {
        let (client, flow) = (self.at("client_id"), self.at("flow_id"));
        let client = (!client.is_empty() && client != "server").then_some(client);
        match (client, flow) {
            (Some(client), flow) if !flow.is_empty() => links.collection(client, flow, "overview"),
            (Some(client), _) => links.client(client),
            (None, _) => links
                .artifact(self.at("artifact"))
                .filter(|_| !self.at("artifact").is_empty()),
        }
    }

    /// The alert's context as indented JSON, at most `max` bytes.
    pub fn event_data_json(&self, max: usize) -> Option<String> {
        let data = self.0.get("event_data").filter(|d| !d.is_null())?;
        let text = serde_json::to_string_pretty(data).unwrap_or_default();
        Some(elide_right(&text, max).into_owned())
    }
}

/// `text` cut to at most `max` characters, the ellipsis included.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let end = text.char_indices().nth(max - 1).map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end]).into()
        }
    }
}

/// `url` with `path` after it, unless it already ends with it: a
/// receiver's address can be given as its base (`https://thehive:9000`,
/// behind a proxy's prefix too) or as the whole endpoint.
pub fn endpoint(url: &str, path: &str) -> String {
    let base = url.trim_end_matches('/');
    match base.ends_with(path) {
        true => base.to_string(),
        false => format!("{base}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_instance_ref_follows_the_alert_not_the_lookups() {
        let a = json!({"name": "n", "client_id": "C.1", "hostname": "ws1", "timestamp": "t1", "event_data": {"x": 1}});
        let renamed =
            json!({"name": "n", "client_id": "C.1", "hostname": "ws9", "timestamp": "t1", "event_data": {"x": 1}});
        let later =
            json!({"name": "n", "client_id": "C.1", "hostname": "ws1", "timestamp": "t2", "event_data": {"x": 1}});
        let id = |v: &Value| Facts(v.as_object().unwrap()).instance_ref("vr-");
        assert_eq!(id(&a), id(&renamed));
        assert_ne!(id(&a), id(&later));
        assert_eq!(id(&a).len(), 3 + 24);
        let online =
            |seconds: u64| json!({"client_id": "C.1", "hostname": "ws1", "last_seen": seconds, "label": "Slack"});
        assert_ne!(id(&online(5)), id(&online(7)), "a second announcement is another alert");
    }

    #[test]
    fn cut_counts_characters_and_endpoint_appends_the_path_once() {
        assert_eq!(cut("ééééé", 3), "éé…");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(
            endpoint("https://h:9000/", "/api/v1/alert"),
            "https://h:9000/api/v1/alert"
        );
        assert_eq!(
            endpoint("https://h/api/v1/alert", "/api/v1/alert"),
            "https://h/api/v1/alert"
        );
        assert_eq!(
            endpoint("https://h/hive", "/api/v1/alert"),
            "https://h/hive/api/v1/alert"
        );
    }
}
