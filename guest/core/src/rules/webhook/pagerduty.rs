//! `Target = "pagerduty"`: a PagerDuty Events API v2 `trigger` event
//! (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>),
//! posted to `WebhookURL`: `https://events.pagerduty.com/v2/enqueue`
//! (`https://events.eu.pagerduty.com/v2/enqueue` for an EU account).
//!
//! | Field | From |
//! |---|---|
//! | `routing_key` | the `RoutingKey` parameter |
//! | `dedup_key` | `velonotify-` and a SHA-256 of the alert's name, client and artifact: the same alert again, or replayed, adds to the same incident |
//! | `payload.summary` | the text (the `Template`), cut at 1,024 characters |
//! | `payload.source` | the client's FQDN, else hostname, else client id; `velociraptor-server` for a server alert |
//! | `payload.severity` | the alert's `Severity` (`critical`; `high`/`error`; `medium`/`warning`; `low`/`info`), else `error` for an alert and `info` for a client announcement |
//! | `payload.timestamp`, `component`, `class` | the alert's time, artifact and name |
//! | `payload.custom_details` | the values the template could use (`event_data` included) |
//! | `links` | the collection, client or artifact in the Velociraptor GUI (with `[server] public_url`) |

use super::facts::{Facts, cut};
use super::identity::stable_id;
use super::severity::Severity;
use serde_json::{Map, Value, json};

/// PagerDuty's endpoint for Events API v2.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Its path, added to an address given without it.
pub const API_PATH: &str = "/v2/enqueue";

/// PagerDuty's bounds on the fields it takes, in characters.
const MAX_SUMMARY_CHARS: usize = 1024;
const MAX_SOURCE_CHARS: usize = 255;

/// The event for one notification: its text and the values it was
/// filled from.
pub fn trigger(routing_key: &str, text: &str, facts: &Map<String, Value>, link: Option<&str>) -> Value {
    let said = Facts(facts);
    let (name, client, artifact) = (said.at("name"), said.at("client_id"), said.at("artifact"));
    let mut payload = Map::new();
    payload.insert("summary".into(), json!(cut(text, MAX_SUMMARY_CHARS)));
    payload.insert("source".into(), json!(cut(said.origin(), MAX_SOURCE_CHARS)));
    payload.insert("severity".into(), json!(severity(facts)));
    for (field, value) in [
        ("timestamp", said.at("timestamp")),
        ("component", artifact),
        ("class", name),
    ] {
        if !value.is_empty() {
            payload.insert(field.into(), json!(value));
        }
    }
    payload.insert("custom_details".into(), Value::Object(facts.clone()));
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key(name, client, artifact),
        "payload": payload,
        "client": "velonotify",
    });
    if let Some(link) = link {
        event["links"] = json!([{"href": link, "text": "Open in Velociraptor"}]);
    }
    event
}

/// Stable for the same alert name, client and artifact: a second alert
/// adds to the open incident instead of paging again, and a replay of
/// the same rows makes the same keys.
pub fn dedup_key(name: &str, client: &str, artifact: &str) -> String {
    stable_id("velonotify-", &[name, client, artifact], 16)
}

/// PagerDuty's four severities from the alert's own word for it.
fn severity(facts: &Map<String, Value>) -> &'static str {
    match Severity::of(facts).or_default_for(facts) {
        Severity::Critical => "critical",
        Severity::High | Severity::Unstated => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "info",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(pairs: Value) -> Map<String, Value> {
        pairs.as_object().unwrap().clone()
    }

    #[test]
    fn an_alert_becomes_a_trigger_event_with_its_fields() {
        let alert = facts(
            json!({"name": "Honey", "client_id": "C.1", "hostname": "ws1", "fqdn": "ws1.corp",
                                 "artifact": "Linux.Detection.Honeyfiles", "timestamp": "2026-05-10T08:00:00Z",
                                 "event_data": {"Severity": "High", "File": "/etc/shadow"}}),
        );
        let event = trigger(
            "R0123456789abcdef0123456789abcdef",
            "Alert: Honey",
            &alert,
            Some("https://v.example/x"),
        );
        assert_eq!(
            event["links"],
            json!([{"href": "https://v.example/x", "text": "Open in Velociraptor"}])
        );
        assert_eq!(event["event_action"], "trigger");
        assert_eq!(event["routing_key"], "R0123456789abcdef0123456789abcdef");
        let payload = &event["payload"];
        assert_eq!(payload["summary"], "Alert: Honey");
        assert_eq!(payload["source"], "ws1.corp");
        assert_eq!(payload["severity"], "error");
        assert_eq!(payload["component"], "Linux.Detection.Honeyfiles");
        assert_eq!(payload["class"], "Honey");
        assert_eq!(payload["timestamp"], "2026-05-10T08:00:00Z");
        assert_eq!(payload["custom_details"]["event_data"]["File"], "/etc/shadow");
    }

    #[test]
    fn the_dedup_key_is_stable_per_alert_client_and_artifact() {
        let key = dedup_key("Honey", "C.1", "A");
        assert_eq!(key, dedup_key("Honey", "C.1", "A"));
        assert!(key.starts_with("velonotify-") && key.len() == 43, "{key}");
        assert_ne!(key, dedup_key("Honey", "C.2", "A"));
        assert_ne!(
            dedup_key("ab", "c", ""),
            dedup_key("a", "bc", ""),
            "parts are kept apart"
        );
    }

    #[test]
    fn severities_map_to_pagerdutys_four() {
        let with = |severity: &str| severity_of(json!({"name": "x", "event_data": {"Severity": severity}}));
        assert_eq!(
            ["CRITICAL", "high", "Medium", "low", "whatever"].map(with),
            ["critical", "error", "warning", "info", "error"]
        );
        assert_eq!(severity_of(json!({"client_id": "C.1"})), "info", "an announcement");
    }

    fn severity_of(value: Value) -> &'static str {
        severity(&facts(value))
    }

    #[test]
    fn a_server_alert_comes_from_the_server_and_a_long_text_is_cut() {
        let long = "x".repeat(5000);
        let event = trigger("k", &long, &facts(json!({"name": "n", "client_id": "server"})), None);
        assert!(event.get("links").is_none());
        assert_eq!(event["payload"]["source"], "velociraptor-server");
        let summary = event["payload"]["summary"].as_str().unwrap();
        assert!(
            summary.chars().count() <= MAX_SUMMARY_CHARS && summary.ends_with('…'),
            "{}",
            summary.len()
        );
    }
}
