//! Actions executed on the Velociraptor server through its API: in-app
//! user messages, client labels, and alert rows written into the server's
//! `Server.Internal.Alerts` queue.

use std::time::Duration;

use serde_json::{Value, json};

use super::Attempt;
use crate::velociraptor::client::{ApiClient, ApiError};
use crate::velociraptor::events::PUSHED_MARK;
use crate::velociraptor::vql;

/// Runs outbox items of kinds `user-message`, `label` and `alert` as VQL.
#[derive(Debug, Clone)]
pub struct ApiActions {
    client: ApiClient,
    timeout: Duration,
}

impl ApiActions {
    pub fn new(client: ApiClient, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// Executes one item; `payload` is the action as the outbox keeps it.
    pub fn execute(&self, kind: &str, module: &str, payload: &[u8]) -> Attempt {
        let action: Value = match serde_json::from_slice(payload) {
            Ok(value) => value,
            Err(e) => return Attempt::Permanent(format!("malformed {kind} in the outbox: {e}")),
        };
        let org = action["org_id"].as_str().unwrap_or_default();
        let text = |key: &str| action[key].as_str().unwrap_or_default().to_string();
        let (statement, env, column) = match kind {
            "user-message" => (
                vql::USER_MESSAGE,
                vec![("User", text("user")), ("Message", action["message"].to_string())],
                "Sent",
            ),
            "label" => (
                vql::LABEL,
                vec![
                    ("ClientId", text("client_id")),
                    ("Labels", action["labels"].to_string()),
                    ("Op", text("op")),
                ],
                "Done",
            ),
            "alert" => (
                vql::PUSH_ALERT,
                vec![("Row", alert_row(&action, module).to_string())],
                "Sent",
            ),
            other => return Attempt::Permanent(format!("{other} actions are not executed through the API")),
        };
        match self.client.query_blocking(statement, &env, org, self.timeout) {
            Err(error @ ApiError::Unavailable { .. }) => Attempt::Transient(error.to_string()),
            Err(error) => Attempt::Permanent(error.to_string()),
            Ok(output) => {
                let done = output.rows().first().is_some_and(|row| !row[column].is_null());
                match (done, output.errors()) {
                    (true, _) => Attempt::Delivered,
                    (false, errors) if !errors.is_empty() => {
                        Attempt::Permanent(format!("the server refused it: {}", errors.join("; ")))
                    }
                    (false, _) => Attempt::Permanent(
                        "the server returned NULL (unknown client or user, or a server older than 0.77.1 for user messages)"
                            .into(),
                    ),
                }
            }
        }
    }
}

/// An alert as a `Server.Internal.Alerts` row, marked as velonotify's own.
fn alert_row(action: &Value, module: &str) -> Value {
    let mut row = json!({
        "name": action["name"],
        "timestamp": action["timestamp"],
        "event_data": action["event_data"],
    });
    for key in ["client_id", "artifact", "artifact_type", "flow_id"] {
        if let Some(value) = action[key].as_str().filter(|v| !v.is_empty()) {
            row[key] = Value::String(value.to_string());
        }
    }
    row[PUSHED_MARK] = Value::String(module.to_string());
    row
}
