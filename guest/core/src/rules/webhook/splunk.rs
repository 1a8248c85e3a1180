//! `Target = "splunk-hec"`: an event for Splunk's HTTP Event Collector
//! (`POST /services/collector/event`,
//! <https://docs.splunk.com/Documentation/Splunk/latest/Data/FormateventsforHTTPEventCollector>),
//! authenticated with `Authorization: Splunk` and the `ApiKey` parameter
//! (the HEC token).
//!
//! | Field | From |
//! |---|---|
//! | `time` | the alert's time, in seconds with microseconds (else Splunk's time of receipt) |
//! | `host` | the client's FQDN, else host name, else client id; `velociraptor-server` for the server |
//! | `source` | `velociraptor:{artifact}` (`velociraptor` without one) |
//! | `sourcetype` | the `Sourcetype` parameter (default `velociraptor:alert`) |
//! | `index` | the `Index` parameter (unset: the token's default index) |
//! | `event` | `message` (the text) and the values the template could use |

use serde_json::{Map, Value, json};

use super::facts::Facts;

/// The collector's path for events in JSON.
pub const API_PATH: &str = "/services/collector/event";

/// Where the events go in Splunk.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub sourcetype: String,
    /// Empty: the token's default index.
    pub index: String,
}

/// The event for one notification.
pub fn event(text: &str, facts: &Map<String, Value>, placement: &Placement) -> Value {
    let said = Facts(facts);
    let mut inner = Map::new();
    inner.insert("message".into(), json!(text));
    inner.extend(facts.iter().map(|(k, v)| (k.clone(), v.clone())));
    let source = match said.at("artifact") {
        "" => "velociraptor".to_string(),
        artifact => format!("velociraptor:{artifact}"),
    };
    let mut event = json!({
        "host": said.origin(),
        "source": source,
        "sourcetype": placement.sourcetype,
        "event": inner,
    });
    if let Some(us) = said.time_us() {
        event["time"] = json!(us as f64 / 1e6);
    }
    if !placement.index.is_empty() {
        event["index"] = json!(placement.index);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_becomes_a_hec_event_in_the_index() {
        let facts = json!({"name": "Honey", "client_id": "server", "artifact": "Server.Monitor",
            "timestamp": "2026-05-10T08:00:00.25Z"});
        let placement = Placement {
            sourcetype: "velociraptor:alert".into(),
            index: "dfir".into(),
        };
        let event = event("Alert: Honey", facts.as_object().unwrap(), &placement);
        assert_eq!(event["time"], 1_778_400_000.25);
        assert_eq!(event["host"], "velociraptor-server");
        assert_eq!(event["source"], "velociraptor:Server.Monitor");
        assert_eq!(event["index"], "dfir");
        assert_eq!(event["event"]["message"], "Alert: Honey");
        assert_eq!(event["event"]["name"], "Honey");
    }
}
