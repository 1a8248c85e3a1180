//! The `Operations` table and the audit rows it is matched against.

use serde_json::{Map, Value};

use super::{written_at, written_ms};
use crate::action::Failure;
use crate::host::Host;
use crate::params::{ParamError, Row};
use crate::render::Links;
use crate::vql::{Timestamp, VqlRegex, get_path, render_value};

/// The audited actions that matter by default (the operation names are
/// Velociraptor's; docs/velociraptor.md §2.6).
pub const DEFAULT_OPERATIONS: &str = "Operation,Details,Permission,Description,Severity\n\
     ^CreateHunt$,,,Hunt created,high\n\
     ^ModifyHunt$,state\\W+RUNNING,,Hunt started,high\n\
     ^ScheduleFlow$,,^EXECVE$,Collection of an artifact that runs programs,high\n\
     ^user_create$,,,User created,high\n\
     ^user_grant$,,,User given roles or permissions,high\n\
     ^Set(Client|Server)MonitoringState$,,,Event table changed,medium\n\
     ^(SetArtifactFile|LoadArtifactPack)$,,,Artifact created or modified,medium\n\
     ^client_delete$,,,Client deleted,medium\n";

/// The longest details text an alert carries (the rest is cut): an event
/// table or an artifact's YAML can be large.
const MAX_DETAILS_BYTES: usize = 2_000;

/// Artifacts whose definitions one row's Permission check reads at most.
const MAX_ARTIFACTS_CHECKED: usize = 20;

/// One row of `Operations`.
#[derive(Debug, Clone)]
pub(super) struct OperationRow {
    operation: VqlRegex,
    details: VqlRegex,
    /// None: not checked.
    permission: Option<VqlRegex>,
    description: String,
    severity: String,
}

/// The `Operations` table.
#[derive(Debug, Clone)]
pub(super) struct Operations {
    rows: Vec<OperationRow>,
}

impl Operations {
    pub fn from_table(param: &str, table: &[Row]) -> Result<Self, ParamError> {
        let rows = table
            .iter()
            .enumerate()
            .map(|(index, row)| {
                let cell = |column: &str| match row.get(column) {
                    None | Some(Value::Null) => String::new(),
                    Some(v) => render_value(v),
                };
                let regex = |column: &str| {
                    VqlRegex::new(&cell(column))
                        .map_err(|e| ParamError::new(param, format!("row {} {column}: {e}", index + 1)))
                };
                let permission = regex("Permission")?;
                let description = cell("Description");
                if description.is_empty() {
                    return Err(ParamError::new(
                        param,
                        format!("row {}: Description is empty", index + 1),
                    ));
                }
                Ok(OperationRow {
                    operation: regex("Operation")?,
                    details: regex("Details")?,
                    permission: (!permission.is_empty()).then_some(permission),
                    description,
                    severity: cell("Severity"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rows })
    }

    /// The first row `audit` matches, reading the definitions of the
    /// artifacts it names when a row checks their permissions.
    pub fn first_match(&self, audit: &AuditRow, host: &dyn Host) -> Result<Option<&OperationRow>, Failure> {
        for row in &self.rows {
            if !row.operation.is_match(&audit.operation) || !row.details.is_match(&audit.details_text) {
                continue;
            }
            match &row.permission {
                None => return Ok(Some(row)),
                Some(wanted) => {
                    if audit.requires_permission(wanted, host)? {
                        return Ok(Some(row));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// One `Server.Audit.Logs` row, as far as the monitor reads it. Every
/// column may be missing or of another type (anyone allowed to publish to
/// the queue can write any row): missing ones read as empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AuditRow {
    pub operation: String,
    pub principal: String,
    pub details: Value,
    /// `details` as JSON text (what `Details` regexes match).
    pub details_text: String,
    pub written_ms: u64,
}

impl AuditRow {
    pub fn read(row: &Value) -> Self {
        let text = |name: &str| match row.get(name) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => render_value(other),
        };
        let details = row.get("details").cloned().unwrap_or(Value::Null);
        Self {
            operation: text("operation"),
            principal: text("principal"),
            details_text: details.to_string(),
            details,
            written_ms: written_ms(row),
        }
    }

    fn detail(&self, path: &str) -> Option<&str> {
        get_path(&self.details, path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The artifacts the row names: a collection's, a hunt's, an edited
    /// artifact.
    fn artifacts(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for path in [
            "details.artifacts",
            "details.start_request.artifacts",
            "details.spec.artifacts",
        ] {
            if let Some(list) = get_path(&self.details, path).and_then(Value::as_array) {
                names.extend(list.iter().filter_map(Value::as_str));
            }
        }
        if let Some(name) = self.detail("artifact") {
            names.push(name);
        }
        names.dedup();
        names
    }

    /// Whether one of the artifacts the row names requires a permission
    /// matching `wanted` (`required_permissions` of its definition).
    fn requires_permission(&self, wanted: &VqlRegex, host: &dyn Host) -> Result<bool, Failure> {
        for name in self.artifacts().into_iter().take(MAX_ARTIFACTS_CHECKED) {
            let Some(definition) = host.artifact(name)? else {
                continue;
            };
            let permissions = definition.get("required_permissions").and_then(Value::as_array);
            if permissions.is_some_and(|p| p.iter().filter_map(Value::as_str).any(|p| wanted.is_match(p))) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// What the action was done to: a hunt, a client's collection, a user,
    /// an artifact, a client, an event table.
    fn target(&self) -> Option<String> {
        let client = self.detail("client").or_else(|| self.detail("client_id"));
        if let Some(hunt) = self.detail("hunt_id") {
            return Some(hunt.to_string());
        }
        if let Some(user) = self.detail("username") {
            return Some(user.to_string());
        }
        let artifacts = self.artifacts();
        match (artifacts.is_empty(), client) {
            (false, Some(client)) => Some(format!("{} on {client}", artifacts.join(", "))),
            (false, None) => Some(artifacts.join(", ")),
            (true, Some(client)) => Some(client.to_string()),
            (true, None) => match self.operation.as_str() {
                "SetClientMonitoringState" => Some("client event table".into()),
                "SetServerMonitoringState" => Some("server event table".into()),
                _ => None,
            },
        }
    }

    /// The GUI page of what the action was done to.
    fn link(&self, links: &Links) -> Option<String> {
        let client = self.detail("client").or_else(|| self.detail("client_id"));
        if let Some(hunt) = self.detail("hunt_id") {
            return links.hunt(hunt);
        }
        if let (Some(client), Some(flow)) = (client, self.detail("flow_id")) {
            return links.collection(client, flow, "overview");
        }
        if let Some(user) = self.detail("username") {
            return links.user(user);
        }
        if let Some(artifact) = self.detail("artifact") {
            return links.artifact(artifact);
        }
        if let Some(client) = client.filter(|_| self.operation != "client_delete") {
            return links.client(client);
        }
        links.server_events("Server.Audit.Logs")
    }

    /// `<Description> by <principal>[: <target>]`.
    pub fn alert_name(&self, matched: &OperationRow) -> String {
        let principal = if self.principal.is_empty() {
            "(nobody)"
        } else {
            &self.principal
        };
        match self.target() {
            Some(target) => format!("{} by {principal}: {target}", matched.description),
            None => format!("{} by {principal}", matched.description),
        }
    }

    /// The alert's context: what was done, by whom, to what, when, with
    /// its link and (cut) details.
    pub fn context(&self, matched: &OperationRow, links: &Links, now: Timestamp) -> Map<String, Value> {
        let mut context = Map::new();
        let mut put = |key: &str, value: String| {
            context.insert(key.into(), Value::String(value));
        };
        put("Operation", self.operation.clone());
        put("Principal", self.principal.clone());
        if let Some(target) = self.target() {
            put("Target", target);
        }
        if !matched.severity.is_empty() {
            put("Severity", matched.severity.clone());
        }
        put("Time", written_at(self, now));
        if let Some(link) = self.link(links) {
            put("Link", link);
        }
        put("Details", cut(&self.details_text, MAX_DETAILS_BYTES));
        context
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}
