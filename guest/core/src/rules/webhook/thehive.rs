//! `Target = "thehive"`: an alert for TheHive 5 (`POST /api/v1/alert`,
//! <https://docs.strangebee.com/thehive/api-docs/#tag/Alert/operation/Create%20Alert>),
//! authenticated with `Authorization: Bearer` and the `ApiKey` parameter.
//!
//! TheHive keeps one alert per (`type`, `source`, `sourceRef`) and refuses
//! another with the same three. Velociraptor's own TheHive artifact sets a
//! random `sourceRef`, so a resent alert is a second alert; here
//! `sourceRef` is a hash of the alert itself, so the same alert posted
//! again (a retry after a crash, a replay) is refused as already there,
//! and delivery counts that refusal as delivered.
//!
//! | Field | From |
//! |---|---|
//! | `type` | `velociraptor-alert`, or `velociraptor-client` for a client's announcement |
//! | `source` | `velociraptor` |
//! | `sourceRef` | `vr-` and a SHA-256 of what the alert says (name, client, artifact, flow, time, context; not the looked-up host names) |
//! | `title` | `{name} on {host}` for an alert, else the text; at most 512 characters |
//! | `description` | the text (the `Template`, in Markdown) and the alert's context as JSON, at most 48 KiB |
//! | `severity` | the alert's `Severity`: 1 low, 2 medium, 3 high (also when unstated), 4 critical; 1 for an announcement |
//! | `date` | the alert's time, in milliseconds |
//! | `tags` | `velociraptor`, `artifact:{artifact}`, `client:{client_id}` |
//! | `tlp`, `pap` | 2 (amber) |
//! | `externalLink` | the collection, client or artifact in the Velociraptor GUI (with `[server] public_url`) |
//! | `observables` | the client's host name and FQDN, and the IPs, URLs, domains, hashes and file names in the context ([`observables`](super::observables)) |

use serde_json::{Map, Value, json};

use super::facts::{Facts, cut};
use super::observables::observables;
use super::severity::Severity;

/// TheHive's API path for creating an alert.
pub const API_PATH: &str = "/api/v1/alert";

const MAX_TITLE_CHARS: usize = 512;
/// The context shown in the description, in bytes.
const MAX_CONTEXT_BYTES: usize = 48 * 1024;

/// TheHive's traffic light protocol and permissible actions protocol:
/// amber, a default for alerts from an endpoint tool.
const AMBER: u8 = 2;

/// The alert for one notification: its text (escaped for Markdown) and
/// the values it was filled from.
pub fn alert(text: &str, facts: &Map<String, Value>, link: Option<&str>) -> Value {
    let said = Facts(facts);
    let title = match said.is_alert() {
        true => format!("{} on {}", said.at("name"), said.origin()),
        false => text.to_string(),
    };
    let mut description = text.to_string();
    if let Some(context) = said.event_data_json(MAX_CONTEXT_BYTES) {
        description.push_str(&format!("\n\n```json\n{context}\n```"));
    }
    let mut alert = json!({
        "type": if said.is_alert() { "velociraptor-alert" } else { "velociraptor-client" },
        "source": "velociraptor",
        "sourceRef": said.instance_ref("vr-"),
        "title": cut(&title, MAX_TITLE_CHARS),
        "description": description,
        "severity": severity(facts),
        "tags": tags(said),
        "tlp": AMBER,
        "pap": AMBER,
        "observables": observables(facts)
            .into_iter()
            .map(|o| json!({"dataType": o.kind.data_type(), "data": o.data, "tags": ["velociraptor"]}))
            .collect::<Vec<_>>(),
    });
    if let Some(us) = said.time_us() {
        alert["date"] = json!(us / 1000);
    }
    if let Some(link) = link {
        alert["externalLink"] = json!(link);
    }
    alert
}

fn tags(said: Facts<'_>) -> Vec<String> {
    let mut tags = vec!["velociraptor".to_string()];
    if !said.at("artifact").is_empty() {
        tags.push(format!("artifact:{}", said.at("artifact")));
    }
    if !matches!(said.at("client_id"), "" | "server") {
        tags.push(format!("client:{}", said.at("client_id")));
    }
    tags
}

/// TheHive's four severities.
fn severity(facts: &Map<String, Value>) -> u8 {
    match Severity::of(facts).or_default_for(facts) {
        Severity::Low | Severity::Info => 1,
        Severity::Medium => 2,
        Severity::High | Severity::Unstated => 3,
        Severity::Critical => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn an_alert_becomes_a_thehive_alert_with_its_observables() {
        let alert = alert(
            "Alert: Honey",
            &facts(
                json!({"name": "Honey", "client_id": "C.1", "hostname": "ws1", "fqdn": "ws1.corp",
                "artifact": "Linux.Detection.Honeyfiles", "timestamp": "2026-05-10T08:00:00Z",
                "event_data": {"Severity": "critical", "OSPath": "/etc/shadow", "Peer": "203.0.113.9"}}),
            ),
            Some("https://v.example/app/index.html#/collected/C.1/F.1/overview"),
        );
        assert_eq!(
            alert["externalLink"],
            "https://v.example/app/index.html#/collected/C.1/F.1/overview"
        );
        assert_eq!(alert["type"], "velociraptor-alert");
        assert_eq!(alert["title"], "Honey on ws1.corp");
        assert_eq!(alert["severity"], 4);
        assert_eq!(alert["date"], 1_778_400_000_000_i64);
        assert!(alert["sourceRef"].as_str().unwrap().starts_with("vr-"));
        assert!(
            alert["description"]
                .as_str()
                .unwrap()
                .contains("\"OSPath\": \"/etc/shadow\"")
        );
        assert_eq!(
            alert["tags"],
            json!(["velociraptor", "artifact:Linux.Detection.Honeyfiles", "client:C.1"])
        );
        let observed: Vec<(&str, &str)> = alert["observables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["dataType"].as_str().unwrap(), o["data"].as_str().unwrap()))
            .collect();
        assert_eq!(
            observed,
            [
                ("hostname", "ws1"),
                ("fqdn", "ws1.corp"),
                ("filename", "shadow"),
                ("ip", "203.0.113.9")
            ]
        );
    }
}
