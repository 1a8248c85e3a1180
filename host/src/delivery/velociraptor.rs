//! Actions executed on the Velociraptor server through its API: in-app
//! user messages, client labels, and alert rows written into the server's
//! `Server.Internal.Alerts` queue.

use std::time::Duration;

use serde_json::{Value, json};

use super::Attempt;
use crate::store::{AlertPayload, Payload};
use crate::velociraptor::client::{ApiClient, ApiError};
use crate::velociraptor::{PUSHED_MARK, vql};

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

    /// Executes one outbox item of a user message, a label change or an
    /// alert.
    pub fn execute(&self, module: &str, payload: &Payload) -> Attempt {
        let (org, statement, env, column) = match payload {
            Payload::UserMessage(m) => (
                &m.org_id,
                vql::USER_MESSAGE,
                vec![
                    ("User", m.user.clone()),
                    ("Message", Value::Object(m.message.clone()).to_string()),
                ],
                "Sent",
            ),
            Payload::Label(l) => (
                &l.org_id,
                vql::LABEL,
                vec![
                    ("ClientId", l.client_id.clone()),
                    ("Labels", json!(l.labels).to_string()),
                    ("Op", l.op.as_str().to_string()),
                ],
                "Done",
            ),
            Payload::Alert(a) => (
                &a.org_id,
                vql::PUSH_ALERT,
                vec![("Row", alert_row(a, module).to_string())],
                "Sent",
            ),
            other => {
                return Attempt::Permanent(format!("{} items are not executed through the API", other.kind()));
            }
        };
        match self.client.query_blocking(statement, &env, org, self.timeout) {
            Err(error @ ApiError::Unavailable { .. }) => Attempt::Transient(error.to_string()),
            Err(error) => Attempt::Permanent(error.to_string()),
            Ok(output) => {
                let row = output.rows().first();
                let done = row.is_some_and(|row| !row[column].is_null());
                match (done, output.problems()) {
                    (true, _) => Attempt::Delivered,
                    (false, problems) if !problems.is_empty() => {
                        Attempt::Permanent(format!("the server refused it: {}", problems.join("; ")))
                    }
                    (false, _) if row.is_none() => match payload {
                        Payload::UserMessage(m) => Attempt::Permanent(format!("the server has no user {:?}", m.user)),
                        _ => Attempt::Permanent("the server answered nothing".into()),
                    },
                    (false, _) => Attempt::Permanent(
                        "the server returned NULL (an unknown client, or a server older than 0.77.1 for user messages)"
                            .into(),
                    ),
                }
            }
        }
    }
}

/// An alert as a `Server.Internal.Alerts` row, marked as velonotify's own.
fn alert_row(alert: &AlertPayload, module: &str) -> Value {
    let mut row = json!({
        "name": alert.name,
        "timestamp": alert.timestamp,
        "event_data": alert.event_data,
    });
    let optional = [
        ("client_id", &alert.client_id),
        ("artifact", &alert.artifact),
        ("artifact_type", &alert.artifact_type),
        ("flow_id", &alert.flow_id),
    ];
    for (key, value) in optional {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            row[key] = Value::String(value.to_string());
        }
    }
    row[PUSHED_MARK] = Value::String(module.to_string());
    row
}
