//! The `Operations` table and the audit rows it is matched against.

use serde_json::{Map, Value};

use std::collections::HashMap;

use super::written_at;
use crate::host::Host;
use crate::params::{ParamError, Row};
use crate::render::Links;
use crate::velociraptor::audit_written_ms as written_ms;
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
     ^client_delete$,,,Client deleted,medium\n\
     ^hunt_delete$,,,Hunt deleted,medium\n\
     ^user_delete$,,,User deleted,medium\n\
     ^delete_flow$,,,Collection deleted,medium\n";

/// The longest details text an alert carries (the rest is cut): an event
/// table or an artifact's YAML can be large.
const MAX_DETAILS_BYTES: usize = 2_000;

/// Artifacts whose definitions one row's Permission check reads at most.
const MAX_ARTIFACTS_CHECKED: usize = 20;

/// Artifact definitions one tick looks up at most (each once): rows
/// naming more are taken to match, their check noted as not made.
const MAX_DEFINITIONS_PER_TICK: usize = 200;

/// The longest alert name (principals and targets come from the row).
const MAX_NAME_BYTES: usize = 500;

/// Artifacts a row's target names at most (the rest are counted).
const MAX_TARGET_ARTIFACTS: usize = 3;

/// The required permissions of the artifacts one tick has looked up, by
/// name (None: no such artifact).
#[derive(Debug, Default)]
pub(super) struct PermissionChecks {
    definitions: HashMap<String, Option<Vec<String>>>,
}

/// Why a row that names artifacts matched without its permission check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UncheckedPermission(pub String);

impl PermissionChecks {
    /// The permissions `artifact` requires, looked up once per tick; an
    /// error (a lookup refused, the server down) or the tick's bound says
    /// why it is unknown.
    fn required_by(&mut self, artifact: &str, host: &dyn Host) -> Result<Option<&Vec<String>>, UncheckedPermission> {
        if !self.definitions.contains_key(artifact) {
            if self.definitions.len() >= MAX_DEFINITIONS_PER_TICK {
                return Err(UncheckedPermission(format!(
                    "not checked: more than {MAX_DEFINITIONS_PER_TICK} artifacts in one reading"
                )));
            }
            let definition = host
                .artifact(artifact)
                .map_err(|e| UncheckedPermission(format!("not checked: the definition of {artifact}: {e}")))?;
            let required = definition.map(|d| {
                d.get("required_permissions")
                    .and_then(Value::as_array)
                    .map(|p| p.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default()
            });
            self.definitions.insert(artifact.to_string(), required);
        }
        Ok(self.definitions[artifact].as_ref())
    }
}

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
    /// artifacts it names when a row checks their permissions. A check
    /// that cannot be made (a lookup failed) matches, and says so: an
    /// audited action is not let through unseen because the server did
    /// not answer.
    pub fn first_match(
        &self,
        audit: &AuditRow,
        host: &dyn Host,
        checks: &mut PermissionChecks,
    ) -> Option<(&OperationRow, Option<UncheckedPermission>)> {
        for row in &self.rows {
            if !row.operation.is_match(&audit.operation) || !row.details.is_match(&audit.details_text) {
                continue;
            }
            match &row.permission {
                None => return Some((row, None)),
                Some(wanted) => match audit.requires_permission(wanted, host, checks) {
                    Ok(true) => return Some((row, None)),
                    Ok(false) => {}
                    Err(unchecked) => return Some((row, Some(unchecked))),
                },
            }
        }
        None
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
    fn requires_permission(
        &self,
        wanted: &VqlRegex,
        host: &dyn Host,
        checks: &mut PermissionChecks,
    ) -> Result<bool, UncheckedPermission> {
        for name in self.artifacts().into_iter().take(MAX_ARTIFACTS_CHECKED) {
            if checks
                .required_by(name, host)?
                .is_some_and(|required| required.iter().any(|p| wanted.is_match(p)))
            {
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
        let mut named = artifacts
            .iter()
            .take(MAX_TARGET_ARTIFACTS)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if artifacts.len() > MAX_TARGET_ARTIFACTS {
            named.push_str(&format!(" (+{} more)", artifacts.len() - MAX_TARGET_ARTIFACTS));
        }
        match (artifacts.is_empty(), client) {
            (false, Some(client)) => Some(format!("{named} on {client}")),
            (false, None) => Some(named),
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

    /// `<Description> by <principal>[: <target>]`, cut at
    /// [`MAX_NAME_BYTES`] (the name is also the dedup key).
    pub fn alert_name(&self, matched: &OperationRow) -> String {
        let principal = if self.principal.is_empty() {
            "(nobody)"
        } else {
            &self.principal
        };
        let name = match self.target() {
            Some(target) => format!("{} by {principal}: {target}", matched.description),
            None => format!("{} by {principal}", matched.description),
        };
        cut(&name, MAX_NAME_BYTES)
    }

    /// The alert's context: what was done, by whom, to what, when, with
    /// its link and (cut) details.
    pub fn context(
        &self,
        matched: &OperationRow,
        unchecked: Option<&UncheckedPermission>,
        links: &Links,
        now: Timestamp,
    ) -> Map<String, Value> {
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
        if let Some(UncheckedPermission(why)) = unchecked {
            put("Permission", why.clone());
        }
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
