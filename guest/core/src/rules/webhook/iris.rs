//! `Target = "iris"`: an alert for DFIR-IRIS (`POST /alerts/add`,
//! <https://docs.dfir-iris.org/latest/_static/iris_api_reference_v2.0.4.html#tag/Alerts>),
//! authenticated with `Authorization: Bearer` and the `ApiKey` parameter.
//!
//! IRIS names severities, statuses and IOC types by database ids. The
//! severity and status ids are those every IRIS install creates first, in
//! the same order; IOC type ids differ between installs, so the
//! observables go in `alert_context` for the analyst (and IRIS's own
//! pipelines), not as IOCs IRIS would refuse.
//!
//! | Field | From |
//! |---|---|
//! | `alert_title` | `{name} on {host}` for an alert, else the text |
//! | `alert_description` | the text (the `Template`) |
//! | `alert_source` | `Velociraptor` |
//! | `alert_source_ref` | as TheHive's `sourceRef`: stable for the same alert |
//! | `alert_source_event_time` | the alert's time |
//! | `alert_source_link` | the collection, client or artifact in the Velociraptor GUI (with `[server] public_url`) |
//! | `alert_severity_id` | the alert's `Severity`: 2 informational (`info`, or an announcement), 3 low, 4 medium, 5 high (also when unstated), 6 critical |
//! | `alert_status_id` | 2 (New) |
//! | `alert_customer_id` | the `CustomerId` parameter (default 1, IRIS's first customer) |
//! | `alert_tags` | `velociraptor`, the artifact, the client id (comma separated) |
//! | `alert_source_content` | the values the template could use |
//! | `alert_context` | the client, host and observables by type |

use serde_json::{Map, Value, json};

use super::facts::{Facts, cut};
use super::observables::observables;
use super::severity::Severity;

/// IRIS's API path for adding an alert.
pub const API_PATH: &str = "/alerts/add";

/// IRIS's "New" alert status.
const STATUS_NEW: u8 = 2;
const MAX_TITLE_CHARS: usize = 512;

/// The alert for one notification in customer `customer_id`.
pub fn alert(text: &str, facts: &Map<String, Value>, customer_id: i64, link: Option<&str>) -> Value {
    let said = Facts(facts);
    let title = match said.is_alert() {
        true => format!("{} on {}", said.at("name"), said.origin()),
        false => text.to_string(),
    };
    let mut by_type = Map::new();
    for observable in observables(facts) {
        let list = by_type
            .entry(observable.kind.data_type())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.push(Value::String(observable.data));
        }
    }
    let tags: Vec<&str> = ["velociraptor", said.at("artifact"), said.at("client_id")]
        .into_iter()
        .filter(|t| !t.is_empty() && *t != "server")
        .collect();
    let mut alert = json!({
        "alert_title": cut(&title, MAX_TITLE_CHARS),
        "alert_description": text,
        "alert_source": "Velociraptor",
        "alert_source_ref": said.instance_ref("vr-"),
        "alert_severity_id": severity_id(facts),
        "alert_status_id": STATUS_NEW,
        "alert_customer_id": customer_id,
        "alert_tags": tags.join(","),
        "alert_source_content": facts,
        "alert_context": {
            "client_id": said.at("client_id"),
            "host": said.origin(),
            "observables": by_type,
        },
    });
    if !said.at("timestamp").is_empty() {
        alert["alert_source_event_time"] = json!(said.at("timestamp"));
    }
    if let Some(link) = link {
        alert["alert_source_link"] = json!(link);
    }
    alert
}

/// IRIS's severity ids, as every install creates them: 1 Unspecified,
/// 2 Informational, 3 Low, 4 Medium, 5 High, 6 Critical.
fn severity_id(facts: &Map<String, Value>) -> u8 {
    match Severity::of(facts) {
        Severity::Info => 2,
        Severity::Unstated if !Facts(facts).is_alert() => 2,
        Severity::Low => 3,
        Severity::Medium => 4,
        Severity::High | Severity::Unstated => 5,
        Severity::Critical => 6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_becomes_an_iris_alert_in_the_customer() {
        let facts = json!({"name": "Honey", "client_id": "C.1", "fqdn": "ws1.corp", "artifact": "A",
            "timestamp": "2026-05-10T08:00:00Z", "event_data": {"Severity": "low", "Url": "https://x.example/p"}});
        let alert = alert(
            "Alert: Honey",
            facts.as_object().unwrap(),
            3,
            Some("https://v.example/app/index.html#/host/C.1"),
        );
        assert_eq!(alert["alert_source_link"], "https://v.example/app/index.html#/host/C.1");
        assert_eq!(alert["alert_title"], "Honey on ws1.corp");
        assert_eq!(alert["alert_severity_id"], 3);
        assert_eq!(alert["alert_customer_id"], 3);
        assert_eq!(alert["alert_tags"], "velociraptor,A,C.1");
        assert_eq!(alert["alert_context"]["observables"]["domain"], json!(["x.example"]));
        assert_eq!(alert["alert_source_event_time"], "2026-05-10T08:00:00Z");
    }
}
