//! A `Server.Internal.Alerts` row (docs/velociraptor.md §2.2).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::action::Failure;
use crate::vql::{Timestamp, is_truthy, parse_timestamp, render_value};

/// The columns of an alert row, borrowed from the row (a rule that drops
/// the alert copies nothing). Missing text columns are empty.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow<'row> {
    pub name: &'row str,
    /// The client the alert is about, or `server`.
    pub client_id: Cow<'row, str>,
    pub flow_id: Cow<'row, str>,
    pub artifact: Cow<'row, str>,
    pub artifact_type: Cow<'row, str>,
    /// When `alert()` was called.
    pub time: Option<Timestamp>,
    /// The free-form context.
    pub event_data: Cow<'row, Map<String, Value>>,
}

impl<'row> AlertRow<'row> {
    /// Reads a row; a missing `name` or `client_id`, or a mistyped column,
    /// is a bad event.
    pub fn parse(row: &'row Map<String, Value>) -> Result<Self, Failure> {
        let column = |name: &str| -> Result<Cow<'row, str>, Failure> {
            match row.get(name) {
                None | Some(Value::Null) => Ok(Cow::Borrowed("")),
                Some(Value::String(s)) => Ok(Cow::Borrowed(s)),
                Some(other) => Err(Failure::BadEvent(format!("column {name} should be text, got {other}"))),
            }
        };
        let name = match row.get("name") {
            Some(Value::String(s)) => s.as_str(),
            Some(other) => return Err(Failure::BadEvent(format!("column name should be text, got {other}"))),
            None => return Err(Failure::BadEvent("alert row has no name column".into())),
        };
        let event_data = match row.get("event_data") {
            None | Some(Value::Null) => Cow::Owned(Map::new()),
            Some(Value::Object(map)) => Cow::Borrowed(map),
            Some(other) => {
                return Err(Failure::BadEvent(format!(
                    "column event_data should be an object, got {other}"
                )));
            }
        };
        let client_id = column("client_id")?;
        if client_id.is_empty() {
            return Err(Failure::BadEvent("alert row has no client_id".into()));
        }
        Ok(Self {
            client_id,
            flow_id: column("flow_id")?,
            artifact: column("artifact")?,
            artifact_type: column("artifact_type")?,
            time: row.get("timestamp").and_then(parse_timestamp),
            name,
            event_data,
        })
    }

    /// Server.Monitor.Alerts' view (docs/velociraptor.md §7.2): `ClientId`, `FlowId`,
    /// `Artifact` and `ArtifactType` of the context win over the row's
    /// columns when they are set.
    pub fn with_overrides(mut self) -> Self {
        let take = |member: &str, column: &mut Cow<'row, str>, data: &Map<String, Value>| {
            if let Some(v) = data.get(member).filter(|v| is_truthy(v)) {
                *column = Cow::Owned(render_value(v));
            }
        };
        take("ClientId", &mut self.client_id, &self.event_data);
        take("FlowId", &mut self.flow_id, &self.event_data);
        take("Artifact", &mut self.artifact, &self.event_data);
        take("ArtifactType", &mut self.artifact_type, &self.event_data);
        self
    }

    pub fn is_server(&self) -> bool {
        self.client_id == "server"
    }
}
