//! What the server monitors (the error monitors, the audit and fleet
//! monitors) share: the alerts they raise are the server's own.

use serde_json::{Map, Value};

use crate::action::{Action, Alert};

/// An alert raised by a server monitoring artifact (the monitor itself),
/// about the server: `context` is its event data.
pub(crate) fn server_alert(name: String, dedup: i64, monitor: &str, context: Map<String, Value>) -> Action {
    Action::Alert(Alert {
        name,
        dedup_seconds: Some(dedup),
        event_data: Value::Object(context).to_string(),
        client_id: Some("server".into()),
        artifact: Some(monitor.into()),
        artifact_type: Some("SERVER_MONITORING".into()),
        flow_id: None,
    })
}
