//! Whether a completed collection notifies (docs/velociraptor.md §6.3), with
//! decisions D2 and D3 (docs/decisions.md).

use std::fmt;

use serde_json::Value;

use super::Completion;
use crate::action::Failure;
use crate::host::Host;
use crate::velociraptor::{str_at, strings_at, u64_at};
use crate::vql::{Timestamp, VqlRegex};

/// The `ErrorHandling` choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ErrorHandling {
    /// Failed hunt flows pass the hunt filter.
    pub include_hunts: bool,
    /// Cancelled flows never notify (unless an override applies).
    pub ignore_cancelled: bool,
    /// Failed flows pass the artifact filters.
    pub ignore_artifact_filters: bool,
    /// Failed flows pass the delay filter.
    pub ignore_delay: bool,
}

impl ErrorHandling {
    pub fn from_list(items: &[Value]) -> Self {
        let has = |name: &str| items.iter().any(|i| i.as_str() == Some(name));
        Self {
            include_hunts: has("IncludeHunts"),
            ignore_cancelled: has("IgnoreCancelled"),
            ignore_artifact_filters: has("IgnoreArtifactFilters"),
            ignore_delay: has("IgnoreDelay"),
        }
    }
}

/// The filter and override parameters.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    pub artifacts_to_alert_on: VqlRegex,
    pub artifacts_to_ignore: VqlRegex,
    pub labels_to_alert_on: VqlRegex,
    pub labels_to_ignore: VqlRegex,
    pub notify_hunts: bool,
    pub new_client_artifacts: VqlRegex,
    pub new_client_threshold: i64,
    pub permission: VqlRegex,
    pub error_handling: ErrorHandling,
    pub delay_threshold: i64,
    pub results_labels: VqlRegex,
    pub uploads_labels: VqlRegex,
}

/// What the decision looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FlowFacts {
    pub flow_id: String,
    /// `state` is not `FINISHED`.
    pub failed: bool,
    /// `status` starts with `Cancelled`.
    pub cancelled: bool,
    /// `request.artifacts`.
    pub artifacts: Vec<String>,
    /// The client's labels.
    pub labels: Vec<String>,
    /// The tags of the hunt a hunt flow belongs to.
    pub hunt_tags: Vec<String>,
    /// Seconds from the client's first contact to the flow's start (its
    /// creation when it never started); None when never seen.
    pub since_first_seen: Option<i64>,
    /// Completion time minus scheduling time, in whole seconds.
    pub delay_seconds: i64,
    /// The `required_permissions` of the collected artifacts.
    pub permissions: Vec<String>,
    /// Some query returned rows.
    pub returned_rows: bool,
    /// Some query uploaded files.
    pub uploaded_files: bool,
}

/// The decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Notify(Reason),
    Skip(Reason),
}

/// Why a flow notifies or not, in words an administrator recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reason(pub String);

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn reason(text: impl Into<String>) -> Reason {
    Reason(text.into())
}

impl FlowFacts {
    /// Reads the facts from the event, the flow, the client and the hunt.
    /// Artifact definitions are only looked up when `ArtifactPermToAlertOn`
    /// needs them.
    /// The members of the collection record [`gather`](Self::gather)
    /// reads: all a decision needs of a record of a few kilobytes.
    pub const FLOW_MEMBERS: &[&str] = &[
        "request.artifacts",
        "create_time",
        "start_time",
        "state",
        "status",
        "query_stats",
    ];

    pub fn gather(
        completion: &Completion,
        flow: &Value,
        client: &Value,
        hunt: Option<&Value>,
        wants_permissions: bool,
        host: &dyn Host,
    ) -> Result<Self, Failure> {
        let artifacts = strings_at(flow, "request.artifacts");
        let created = micros(u64_at(flow, "create_time"));
        let started = micros(u64_at(flow, "start_time"));
        let flow_start = if started.unix_seconds() > 0 { started } else { created };
        let first_seen = u64_at(client, "first_seen_at") as i64;
        let mut permissions = Vec::new();
        if wants_permissions {
            for name in &artifacts {
                if let Some(definition) = host.artifact(name)? {
                    permissions.extend(strings_at(&definition, "required_permissions"));
                }
            }
        }
        let query_stats = flow
            .get("query_stats")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        Ok(Self {
            flow_id: completion.flow_id.clone(),
            failed: state_name(flow) != "FINISHED",
            cancelled: str_at(flow, "status").to_ascii_lowercase().starts_with("cancelled"),
            labels: strings_at(client, "labels"),
            hunt_tags: hunt.map(|h| strings_at(h, "tags")).unwrap_or_default(),
            since_first_seen: (first_seen > 0).then(|| flow_start.unix_seconds() - first_seen),
            delay_seconds: completion.finished.unix_seconds() - created.unix_seconds(),
            permissions,
            returned_rows: query_stats.iter().any(|q| u64_at(q, "result_rows") > 0),
            uploaded_files: query_stats.iter().any(|q| u64_at(q, "uploaded_files") > 0),
            artifacts,
        })
    }

    /// A hunt flow's id ends with `.H` (decision D3: the VQL's `.H$` lost
    /// its backslash).
    pub fn is_hunt(&self) -> bool {
        self.flow_id.ends_with(".H")
    }
}

fn micros(value: u64) -> Timestamp {
    Timestamp::from_unix_micros(value.min(i64::MAX as u64) as i64)
}

/// `state` as its name: `flows()` gives names, the journal's `Flow`
/// column gives numbers.
pub(crate) fn state_name(flow: &Value) -> &str {
    match flow.get("state") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => "UNSET",
            Some(1) => "RUNNING",
            Some(2) => "FINISHED",
            Some(3) => "ERROR",
            _ => "UNKNOWN",
        },
        _ => "UNSET",
    }
}

fn any(regex: &VqlRegex, items: &[String]) -> bool {
    regex.matches_any(items.iter().map(String::as_str))
}

impl Filters {
    /// `notify = (F_art AND F_delay AND F_hunt AND F_cancel AND F_labels
    /// AND F_perm) OR O_new OR O_results OR O_uploads`, with the first
    /// filter that stops a flow named.
    pub fn decide(&self, facts: &FlowFacts) -> Verdict {
        match self.first_stop(facts) {
            None => Verdict::Notify(reason("passed every filter")),
            Some(stop) => match self.override_reason(facts) {
                Some(why) => Verdict::Notify(reason(format!("{why} (despite: {stop})"))),
                None => Verdict::Skip(stop),
            },
        }
    }

    fn first_stop(&self, f: &FlowFacts) -> Option<Reason> {
        let eh = self.error_handling;
        let arts = &f.artifacts;
        let include = self.artifacts_to_alert_on.is_empty() || any(&self.artifacts_to_alert_on, arts);
        let exclude =
            !self.artifacts_to_ignore.is_empty() && arts.len() == 1 && self.artifacts_to_ignore.is_match(&arts[0]);
        if !((f.failed && eh.ignore_artifact_filters) || (include && !exclude)) {
            return Some(if !include {
                reason("no collected artifact matches ArtifactsToAlertOn")
            } else {
                reason(format!("ArtifactsToIgnore matches {}", arts[0]))
            });
        }
        if !((f.failed && eh.ignore_delay) || f.delay_seconds >= self.delay_threshold) {
            return Some(reason(format!(
                "completed {} s after it was scheduled, less than DelayThreshold ({} s)",
                f.delay_seconds, self.delay_threshold
            )));
        }
        if !(self.notify_hunts || (f.failed && eh.include_hunts) || !f.is_hunt()) {
            return Some(reason("part of a hunt (NotifyHunts is off)"));
        }
        if eh.ignore_cancelled && f.cancelled {
            return Some(reason("cancelled (ErrorHandling has IgnoreCancelled)"));
        }
        let labels_in =
            self.labels_to_alert_on.is_empty() || f.labels.is_empty() || any(&self.labels_to_alert_on, &f.labels);
        if !labels_in {
            return Some(reason("no client label matches ClientLabelsToAlertOn"));
        }
        if !self.labels_to_ignore.is_empty() && any(&self.labels_to_ignore, &f.labels) {
            return Some(reason("a client label matches ClientLabelsToIgnore"));
        }
        if !self.permission.is_empty() && !any(&self.permission, &f.permissions) {
            return Some(reason(
                "no collected artifact requires a permission matching ArtifactPermToAlertOn",
            ));
        }
        None
    }

    /// A client first seen less than NewClientThreshold seconds before the
    /// flow started.
    pub fn is_new_client(&self, f: &FlowFacts) -> bool {
        f.since_first_seen.is_some_and(|s| s < self.new_client_threshold)
    }

    /// The overrides bypass every filter.
    fn override_reason(&self, f: &FlowFacts) -> Option<String> {
        // D2: an empty NewClientArtifacts turns the override off.
        if self.is_new_client(f)
            && !self.new_client_artifacts.is_empty()
            && any(&self.new_client_artifacts, &f.artifacts)
        {
            return Some("a new client collected an artifact matching NewClientArtifacts".into());
        }
        let tagged = |labels: &VqlRegex| !labels.is_empty() && (any(labels, &f.labels) || any(labels, &f.hunt_tags));
        if tagged(&self.results_labels) && f.returned_rows {
            return Some(
                "a client label or hunt tag matches NotifyIfResultsLabels and the collection returned rows".into(),
            );
        }
        if tagged(&self.uploads_labels) && f.uploaded_files {
            return Some(
                "a client label or hunt tag matches NotifyIfUploadsLabels and the collection uploaded files".into(),
            );
        }
        None
    }
}
