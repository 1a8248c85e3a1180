//! The labels of a notification: what silences (and, later, grouping and
//! inhibition) match on. The host derives them from the row the module
//! was handling and the action it took, so every module, in any language,
//! gets them without saying anything.
//!
//! | label | from |
//! |---|---|
//! | `alertname` | an alert row's `name`; else the action's subject (an e-mail) or name (an alert); else the queue |
//! | `client_id` | the row's `client_id` or `ClientId`; else the action's client |
//! | `hostname` | `Hostname`, `Fqdn` or `hostname` of the alert's `event_data` or the row |
//! | `artifact` | the row's `artifact` or `Artifact`; else the action's artifact; else the queue |
//! | `severity` | `Severity` or `severity` of the alert's `event_data` or the row |
//! | `org`, `module`, `kind` | the module's org and name, the action's kind |
//!
//! plus, per module, the members its `labels_from` lists, read the same
//! way as `hostname`. Event data is hostile: values are bounded
//! ([`MAX_VALUE_CHARS`]) and labels are only ever compared, never
//! interpreted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest label value kept, in characters; longer values are cut.
pub const MAX_VALUE_CHARS: usize = 512;

/// Most members a module may list in `labels_from`.
pub const MAX_LABELS_FROM: usize = 16;

/// The labels every notification has (some possibly empty).
pub const BUILT_IN: [&str; 8] = [
    "alertname",
    "client_id",
    "hostname",
    "artifact",
    "severity",
    "org",
    "module",
    "kind",
];

/// A notification's labels: names to values, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// The value of `name`; a label a notification does not have reads as
    /// empty (as in Alertmanager).
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// Sets `name` to `value`, cut to [`MAX_VALUE_CHARS`]; an empty value
    /// is left out.
    pub fn set(&mut self, name: &str, value: &str) {
        if value.is_empty() {
            return;
        }
        let value = match value.char_indices().nth(MAX_VALUE_CHARS) {
            Some((cut, _)) => &value[..cut],
            None => value,
        };
        self.0.insert(name.to_string(), value.to_string());
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Labels {
    fn from(pairs: [(&str, &str); N]) -> Self {
        let mut labels = Labels::default();
        for (name, value) in pairs {
            labels.set(name, value);
        }
        labels
    }
}

impl std::fmt::Display for Labels {
    /// `{alertname="x", client_id="C.1"}`: values quoted and escaped, so a
    /// value cannot pass for another label.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={}", super::matchers::quoted(value))?;
        }
        f.write_str("}")
    }
}

impl Labels {
    /// The labels all of `each` have, with the same value (Alertmanager's
    /// common labels): the labels of a digest of them.
    pub fn common<'a>(each: impl IntoIterator<Item = &'a Labels>) -> Labels {
        let mut each = each.into_iter();
        let Some(first) = each.next() else {
            return Labels::default();
        };
        let mut common = first.clone();
        for labels in each {
            common.0.retain(|name, value| labels.0.get(name) == Some(value));
        }
        common
    }
}

/// Whether `name` may be a label name: a letter or `_`, then letters,
/// digits or `_`, at most 64 characters (a context member such as `Rule`
/// or `User`).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

/// Checks a module's `labels_from`: names that may be labels, not the
/// built-in ones, at most [`MAX_LABELS_FROM`].
pub fn check_labels_from(names: &[String]) -> Result<(), String> {
    if names.len() > MAX_LABELS_FROM {
        return Err(format!(
            "labels_from lists {} members; at most {MAX_LABELS_FROM}",
            names.len()
        ));
    }
    for name in names {
        if !is_label_name(name) {
            return Err(format!(
                "labels_from: {name:?} cannot be a label name (a letter or _, then letters, digits or _)"
            ));
        }
        if BUILT_IN.contains(&name.as_str()) {
            return Err(format!(
                "labels_from: {name:?} is a label every notification has already"
            ));
        }
    }
    Ok(())
}

/// What the labels of one notification are derived from.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub module: &'a str,
    pub org_id: &'a str,
    /// The queue of the row the module was handling (none for a tick).
    pub queue: Option<&'a str>,
    /// That row's JSON text.
    pub row: Option<&'a str>,
    /// The action's kind: `email`, `webhook`, `user-message`...
    pub kind: &'a str,
    /// The action's own subject (an e-mail) or name (an alert).
    pub title: Option<&'a str>,
    /// The client and artifact the action names, if it names them.
    pub client_id: Option<&'a str>,
    pub artifact: Option<&'a str>,
    /// The row members the module's `labels_from` lists.
    pub labels_from: &'a [String],
}

impl Labels {
    /// The labels of the notification `origin` describes.
    pub fn of(origin: &Origin<'_>) -> Labels {
        let row = origin
            .row
            .and_then(|text| serde_json::from_str::<Map<String, Value>>(text).ok());
        let row = row.as_ref();
        // An alert row (`Server.Internal.Alerts`) carries its context in
        // `event_data`: it is read first.
        let event_data = row.and_then(|r| r.get("event_data")).and_then(Value::as_object);
        let member = |names: &[&str]| -> Option<String> {
            [event_data, row]
                .into_iter()
                .flatten()
                .find_map(|object| names.iter().find_map(|name| object.get(*name).and_then(text)))
        };
        let top = |names: &[&str]| -> Option<String> {
            row.and_then(|r| names.iter().find_map(|name| r.get(*name).and_then(text)))
        };
        let alert_name = event_data.and(top(&["name"]));
        let mut labels = Labels::default();
        let alertname = alert_name
            .or_else(|| origin.title.map(str::to_string))
            .or_else(|| origin.queue.map(str::to_string));
        labels.set("alertname", alertname.as_deref().unwrap_or(""));
        let client = top(&["client_id", "ClientId"]).or_else(|| origin.client_id.map(str::to_string));
        labels.set("client_id", client.as_deref().unwrap_or(""));
        labels.set(
            "hostname",
            &member(&["Hostname", "Fqdn", "hostname"]).unwrap_or_default(),
        );
        let artifact = top(&["artifact", "Artifact"])
            .or_else(|| origin.artifact.map(str::to_string))
            .or_else(|| origin.queue.map(str::to_string));
        labels.set("artifact", artifact.as_deref().unwrap_or(""));
        labels.set("severity", &member(&["Severity", "severity"]).unwrap_or_default());
        labels.set("org", origin.org_id);
        labels.set("module", origin.module);
        labels.set("kind", origin.kind);
        for name in origin.labels_from {
            labels.set(name, &member(&[name.as_str()]).unwrap_or_default());
        }
        labels
    }
}

/// A JSON value as a label value: strings as they are, numbers and
/// booleans as written; objects, arrays and null are no label.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin<'a>(row: &'a str, labels_from: &'a [String]) -> Origin<'a> {
        Origin {
            module: "alerts",
            org_id: "root",
            queue: Some("Server.Internal.Alerts"),
            row: Some(row),
            kind: "email",
            title: Some("Alert from client ws-07: Honeyfile"),
            client_id: None,
            artifact: None,
            labels_from,
        }
    }

    /// An alert row: its name, client and artifact, and the host name,
    /// severity and listed members of its context.
    #[test]
    fn an_alert_rows_labels_come_from_the_alert_and_its_context() {
        let row = r#"{"name": "Honeyfile accessed", "client_id": "C.1", "artifact": "Linux.Detection.Honeyfiles",
                      "event_data": {"Hostname": "ws-07", "Severity": "high", "Rule": "bait", "User": {"x": 1}}}"#;
        let listed = ["Rule".to_string(), "User".to_string()];
        let labels = Labels::of(&origin(row, &listed));
        let expected = Labels::from([
            ("alertname", "Honeyfile accessed"),
            ("client_id", "C.1"),
            ("hostname", "ws-07"),
            ("artifact", "Linux.Detection.Honeyfiles"),
            ("severity", "high"),
            ("org", "root"),
            ("module", "alerts"),
            ("kind", "email"),
            ("Rule", "bait"),
        ]);
        assert_eq!(labels, expected, "an object member is no label");
    }

    /// A row that is no alert (a flow completion): the action's subject
    /// names it, the queue is its artifact.
    #[test]
    fn another_rows_labels_come_from_the_action_and_the_queue() {
        let row = r#"{"ClientId": "C.2", "FlowId": "F.1", "Severity": 3}"#;
        let mut origin = origin(row, &[]);
        origin.queue = Some("System.Flow.Completion");
        origin.title = Some("Collection finished");
        let labels = Labels::of(&origin);
        assert_eq!(labels.get("alertname"), "Collection finished");
        assert_eq!(labels.get("client_id"), "C.2");
        assert_eq!(labels.get("artifact"), "System.Flow.Completion");
        assert_eq!(labels.get("severity"), "3");
        assert_eq!(labels.get("hostname"), "", "a label it lacks reads as empty");
    }

    #[test]
    fn a_long_value_is_cut_and_shown_quoted() {
        let mut labels = Labels::default();
        labels.set("alertname", &"é\"".repeat(400));
        assert_eq!(labels.get("alertname").chars().count(), MAX_VALUE_CHARS);
        let shown = labels.to_string();
        assert!(shown.starts_with("{alertname=\"é\\\"é"), "{shown}");
    }

    #[test]
    fn a_digest_has_the_labels_its_members_share() {
        let a = Labels::from([("alertname", "x"), ("client_id", "C.1"), ("kind", "email")]);
        let b = Labels::from([("alertname", "x"), ("client_id", "C.2"), ("kind", "email")]);
        assert_eq!(
            Labels::common([&a, &b]),
            Labels::from([("alertname", "x"), ("kind", "email")])
        );
        assert_eq!(Labels::common([]), Labels::default());
    }

    #[test]
    fn labels_from_names_members_that_can_be_labels() {
        assert!(check_labels_from(&["Rule".into(), "User_2".into()]).is_ok());
        let refused = |name: &str| check_labels_from(&[name.to_string()]).unwrap_err();
        assert!(refused("a-b").contains("cannot be a label name"));
        assert!(refused("hostname").contains("every notification has already"));
        assert!(check_labels_from(&vec!["A".to_string(); 17]).is_err());
    }
}
