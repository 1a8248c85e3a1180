//! Server.Monitor.Alerts: e-mails every alert on `Server.Internal.Alerts`
//! (docs/velociraptor.md §7), with velonotify's decisions D1, D4, D5, D7,
//! D8, D9, D10, D13 and D14 (docs/decisions.md).

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::alert_names::AlertNameFilter;
use super::{Rule, Setup};
use crate::action::{Action, Email, Failure};
use crate::context::{
    ContextFilter, ContextRows, MAX_FIELD_LIMIT, MAX_ROW_LIMIT, MAX_VALUE_LIMIT, SeverityRules, SeverityThreshold,
    clamp_limit,
};
use crate::host::{Event, Host, LogLevel, ServerInfo};
use crate::mime::{Attachment, MailContent, build_message};
use crate::params::{ParamKind, ParamSpec, Params};
use crate::recipients::{ExecutorDomains, fixed_recipients, is_address, unique};
use crate::render::{Cell, Fields, Html, Links, MailDocument, elide_right, silence_link_line, subject_safe};
use crate::velociraptor::{
    AlertRow, ClientDetails, FlowFieldsOptions, MetadataField, client_fields, flow_fields, hunt_id_of_flow,
    metadata_fields,
};
use crate::vql::{RawRow, Timestamp, VqlRegex, get_path, parse_timestamp};

/// The queue `alert()` writes to.
pub const ALERT_QUEUE: &str = "Server.Internal.Alerts";

const DEFAULT_SEVERITY_TRANSFORMS: &str = "Member,Regex,Replace
level,(?i)warn,medium
level,(?i)error,high
Level,(?i)warn,medium
Level,(?i)error,high
severity,,
Severity,,
";

use ParamKind::{Bool, Csv, Int, JsonArray, Regex, String as Str};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Recipients",
        Csv,
        "Address\n",
        "Addresses that receive every alert (column Address).",
    ),
    ParamSpec::new(
        "NotifyExecutor",
        Bool,
        "false",
        "Also e-mail the user who started the collection an alert was raised in.",
    ),
    ParamSpec::new(
        "NotifyExecutorDomains",
        Csv,
        "UsernameRegex,Domain\n",
        "Maps user names that are not e-mail addresses to a domain; the first matching row is used.",
    ),
    ParamSpec::new(
        "Sender",
        Str,
        "",
        "From address; when empty the SMTP settings' from address is used.",
    ),
    ParamSpec::new(
        "HTML",
        Bool,
        "true",
        "Send HTML with a plain-text alternative, else plain text only.",
    ),
    ParamSpec::new(
        "AlertMsgInclude",
        Regex,
        ".+",
        "Only alerts whose name matches are sent.",
    ),
    ParamSpec::new("AlertMsgExclude", Regex, "", "Alerts whose name matches are not sent."),
    ParamSpec::new(
        "ServerSecret",
        Str,
        "notify_mail_secret",
        "Name of the SMTP Creds secret to send with.",
    ),
    ParamSpec::new(
        "SendInterval",
        Int,
        "10",
        "Least seconds between two e-mails of this module (0 means 60, negative means no limit).",
    ),
    ParamSpec::new(
        "IncludeClientDetails",
        Bool,
        "true",
        "Add a section about the client the alert is about.",
    ),
    ParamSpec::new(
        "ClientMetadata",
        Csv,
        "Field,Alias\n",
        "Client metadata fields to show, with optional aliases.",
    ),
    ParamSpec::new(
        "IncludeFlowDetails",
        Bool,
        "true",
        "Add a section about the collection the alert was raised in.",
    ),
    ParamSpec::new(
        "IncludeArtifactDetails",
        Bool,
        "false",
        "Add the definition and event-table entry of the artifact that raised the alert.",
    ),
    ParamSpec::new("KeepEmptyRows", Bool, "", "Show rows whose value is empty."),
    ParamSpec::new(
        "SeverityTransforms",
        Csv,
        DEFAULT_SEVERITY_TRANSFORMS,
        "Derive a severity: Member (dotted path into the context), Regex, Replace.",
    ),
    ParamSpec::new(
        "SeverityThreshold",
        JsonArray,
        "[]",
        "Severities that are sent (empty: all); alerts without a severity are always sent.",
    ),
    ParamSpec::new(
        "FlattenContext",
        Bool,
        "true",
        "Flatten nested context values into dotted keys.",
    ),
    ParamSpec::new("ContextInclude", Regex, ".+", "Only context keys that match are shown."),
    ParamSpec::new("ContextExclude", Regex, "", "Context keys that match are not shown."),
    ParamSpec::new(
        "ContextFieldLimit",
        Int,
        "100",
        "Longest context key shown (at most 1000).",
    ),
    ParamSpec::new(
        "ContextValueLimit",
        Int,
        "1000",
        "Longest context value shown (at most 10000).",
    ),
    ParamSpec::new(
        "ContextRowLimit",
        Int,
        "30",
        "Most context rows shown in HTML (at most 100).",
    ),
];

/// Alert names are shown up to these lengths.
const SUBJECT_NAME_LIMIT: usize = 30;
const SUMMARY_NAME_LIMIT: usize = 1000;
const MESSAGE_ROW_LIMIT: usize = 300;
/// Room the plain text of an e-mail gets up front (most fit).
const TEXT_BYTES_GUESS: usize = 2048;

/// The configured Server.Monitor.Alerts module.
#[derive(Debug, Clone)]
pub struct AlertsRule {
    recipients: Vec<String>,
    notify_executor: bool,
    executor_domains: ExecutorDomains,
    sender: String,
    html: bool,
    names: AlertNameFilter,
    secret: String,
    send_interval: i64,
    include_client_details: bool,
    client_metadata: Vec<MetadataField>,
    include_flow_details: bool,
    include_artifact_details: bool,
    keep_empty: bool,
    severity: SeverityRules,
    threshold: SeverityThreshold,
    context: ContextFilter,
}

impl Rule for AlertsRule {
    const NAME: &'static str = "Server.Monitor.Alerts";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "E-mails every alert raised with alert() (the Server.Internal.Alerts queue), \
         with the alert's context, severity, client, collection and artifact.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let keep_empty = p.bool("KeepEmptyRows");
        let rule = Self {
            recipients: fixed_recipients("Recipients", p.table("Recipients"))?,
            notify_executor: p.bool("NotifyExecutor"),
            executor_domains: ExecutorDomains::from_rows("NotifyExecutorDomains", p.table("NotifyExecutorDomains"))?,
            sender: sender_param(p.text("Sender"))?,
            html: p.bool("HTML"),
            names: AlertNameFilter::from_params(p),
            secret: p.text("ServerSecret").to_string(),
            send_interval: p.int("SendInterval"),
            include_client_details: p.bool("IncludeClientDetails"),
            client_metadata: metadata_fields("ClientMetadata", p.table("ClientMetadata"))?,
            include_flow_details: p.bool("IncludeFlowDetails"),
            include_artifact_details: p.bool("IncludeArtifactDetails"),
            keep_empty,
            severity: SeverityRules::from_rows("SeverityTransforms", p.table("SeverityTransforms"))?,
            threshold: SeverityThreshold::from_list(p.list("SeverityThreshold")),
            context: ContextFilter {
                flatten: p.bool("FlattenContext"),
                include: p.regex("ContextInclude").clone(),
                exclude: p.regex("ContextExclude").clone(),
                field_limit: clamp_limit(p.int("ContextFieldLimit"), MAX_FIELD_LIMIT),
                value_limit: clamp_limit(p.int("ContextValueLimit"), MAX_VALUE_LIMIT),
                row_limit: clamp_limit(p.int("ContextRowLimit"), MAX_ROW_LIMIT),
                keep_empty,
            },
        };
        let setup = Setup {
            queues: vec![ALERT_QUEUE.to_string()],
            tick_seconds: None,
            interests: rule.names.interests(),
        };
        Ok((rule, setup))
    }

    /// The name filter and the severity threshold, decided on the row
    /// read in place: only the context members the severity is derived
    /// from are built. A row that cannot be read so goes to `handle`.
    fn may_act(&self, row_text: &str) -> bool {
        let Some(row) = RawRow::parse(row_text) else {
            return true;
        };
        self.names.admits(&row) && self.severity_may_pass(&row)
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let alert = AlertRow::parse(&event.row)?.with_overrides();
        if !self.names.passes(alert.name) {
            host.log(
                LogLevel::Debug,
                &format!(
                    "alert {:?}: name filtered out by AlertMsgInclude/AlertMsgExclude",
                    alert.name
                ),
            );
            return Ok(Vec::new());
        }
        let severity = self.severity.derive(&alert.event_data);
        if !self.threshold.allows(severity.as_deref()) {
            host.log(
                LogLevel::Debug,
                &format!(
                    "alert {:?}: severity {:?} is not in SeverityThreshold",
                    alert.name,
                    severity.unwrap_or_default()
                ),
            );
            return Ok(Vec::new());
        }
        let facts = self.look_up(&alert, host)?;
        let recipients = self.recipients(&facts);
        if recipients.is_empty() {
            // D7: say so once, send nothing, consume no throttle window.
            host.log(
                LogLevel::Error,
                &format!(
                    "alert {:?}: No recipients resolved: set Recipients or enable NotifyExecutor.",
                    alert.name
                ),
            );
            return Ok(Vec::new());
        }
        let email = self.email(event, &alert, severity.as_deref(), &facts, recipients, host);
        Ok(vec![Action::Email(email)])
    }
}

/// An empty Sender means "the SMTP settings' from"; anything else must be
/// an address that can go into a header (D8).
fn sender_param(sender: &str) -> Result<String, Failure> {
    let sender = sender.trim();
    if !sender.is_empty() && !is_address(sender) {
        return Err(crate::params::ParamError::new("Sender", format!("{sender:?} is not an e-mail address")).into());
    }
    Ok(sender.to_string())
}

/// What the lookups told us about an alert.
#[derive(Debug, Default)]
struct Facts {
    server: Option<ServerInfo>,
    client: Option<Value>,
    metadata: Option<Value>,
    flow: Option<Value>,
    hunt: Option<Value>,
    artifact_details: Option<ContextRows>,
    now: Option<Timestamp>,
}

impl Facts {
    fn hostname(&self) -> &str {
        self.client
            .as_ref()
            .and_then(|c| get_path(c, "os_info.hostname"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn creator(&self) -> &str {
        self.flow
            .as_ref()
            .and_then(|f| get_path(f, "request.creator"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

impl AlertsRule {
    /// Whether the alert's severity, derived from its context read in
    /// place, is one `SeverityThreshold` lets through (or cannot be told).
    fn severity_may_pass(&self, row: &RawRow) -> bool {
        // No context, or one `handle` will report: decided there.
        let Some(context) = row.raw("event_data").and_then(|data| RawRow::parse(data.get())) else {
            return true;
        };
        // The members the transforms read, as `get_member_path` finds
        // them: by their own name, else the head of a dotted path.
        let mut members = Map::new();
        for member in self.severity.members() {
            let name = match member.split_once('.') {
                Some((head, _)) if context.raw(member).is_none() => head,
                _ => member,
            };
            if let Some(value) = context.value(name) {
                members.insert(name.to_string(), value);
            }
        }
        let severity = self.severity.derive(&members);
        self.threshold.allows(severity.as_deref())
    }

    /// Asks the host only for what the configured e-mail shows.
    fn look_up(&self, alert: &AlertRow, host: &dyn Host) -> Result<Facts, Failure> {
        let mut facts = Facts {
            server: Some(host.server_info()),
            now: Some(Timestamp::from_unix_micros(host.now_us() as i64)),
            ..Facts::default()
        };
        if !alert.is_server() {
            facts.client = host.client_info(&alert.client_id)?;
            if self.include_client_details && !self.client_metadata.is_empty() {
                facts.metadata = host.client_metadata(&alert.client_id)?;
            }
        }
        let wants_flow = self.include_flow_details || self.notify_executor;
        if wants_flow && !alert.flow_id.is_empty() {
            facts.flow = host
                .flow(&alert.client_id, &alert.flow_id)?
                .map(|flow| flow.value())
                .transpose()?;
            if self.include_flow_details
                && let Some(hunt_id) = hunt_id_of_flow(&alert.flow_id)
            {
                facts.hunt = host.hunt(&hunt_id)?;
            }
        }
        if self.include_artifact_details && !alert.artifact.is_empty() {
            facts.artifact_details = Some(self.artifact_details(alert, host)?);
        }
        Ok(facts)
    }

    /// `Recipients` plus, with `NotifyExecutor`, the collection's creator.
    fn recipients(&self, facts: &Facts) -> Vec<String> {
        let creator = self
            .notify_executor
            .then(|| self.executor_domains.creator_address(facts.creator()))
            .flatten();
        unique(self.recipients.iter().cloned().chain(creator))
    }

    fn email(
        &self,
        event: &Event,
        alert: &AlertRow,
        severity: Option<&str>,
        facts: &Facts,
        recipients: Vec<String>,
        host: &dyn Host,
    ) -> Email {
        let server = facts.server.clone().unwrap_or_else(|| host.server_info());
        let now = facts.now.unwrap_or_else(Timestamp::zero);
        let links = Links::new(server.public_url.as_deref(), &server.org_id);
        let source = if alert.is_server() {
            "the server".to_string()
        } else {
            display_host(facts.hostname(), &alert.client_id).to_string()
        };
        let title = if alert.is_server() {
            "Server alert".to_string()
        } else {
            format!("Alert from client {source}")
        };
        let mut subject = title.clone();
        if let Some(severity) = severity {
            subject.push_str(&format!(" ({severity})"));
        }
        subject.push_str(&format!(": {}", elide_right(alert.name, SUBJECT_NAME_LIMIT)));
        let subject = subject_safe(&subject);

        let alert_time = alert.time.map_or_else(|| "(unknown)".to_string(), |t| t.rfc3339());
        let summary_name = elide_right(alert.name, SUMMARY_NAME_LIMIT);
        let summary_text = format!("An alert was sent from {source} at {alert_time}: {summary_name}");
        let mut summary_html = Html::text(&format!("An alert was sent from {source} at {alert_time}: "));
        summary_html.push(&Html::bold(&Html::text(&summary_name)));

        let sections = self.sections(alert, severity, facts, &server, &links, now);
        let mut text = summary_text;
        text.reserve(TEXT_BYTES_GUESS);
        for (_, body) in &sections {
            text.push_str("\n\n");
            body.write_text(&mut text);
        }
        text.push('\n');
        let silence_link = host.silence_similar();
        if let Some(url) = &silence_link {
            text.push('\n');
            text.push_str(&silence_link_line(url));
            text.push('\n');
        }

        let html = self.html.then(|| {
            // The HTML of a section is about three times its text.
            let mut document = MailDocument::begin(&title, &summary_html, true, 3 * text.len());
            for (title, body) in &sections {
                document.section(title, |out| body.write_html(out));
            }
            document.finish(
                &format!("Sent from Velociraptor by velonotify ({})", Self::NAME),
                silence_link.as_deref(),
            )
        });

        let sender = if self.sender.is_empty() {
            server.default_sender.clone()
        } else {
            self.sender.clone()
        };
        let identity = format!("{}/{}/{}", event.id, Self::NAME, recipients.join(","));
        let message = build_message(&MailContent {
            from: &sender,
            to: &recipients,
            subject: &subject,
            date_unix: now.unix_seconds(),
            identity: &identity,
            text: &text,
            html: html.as_ref().map(|h| h.html.as_str()),
            attachments: &html
                .as_ref()
                .and_then(|h| h.full.as_deref())
                .map(Attachment::full_report)
                .into_iter()
                .collect::<Vec<_>>(),
        });
        let html = html.map(|h| h.html);
        let link = if !alert.flow_id.is_empty() && !alert.is_server() {
            links.collection(&alert.client_id, &alert.flow_id, "overview")
        } else if !alert.is_server() {
            links.client(&alert.client_id)
        } else if !alert.artifact.is_empty() {
            links.artifact(&alert.artifact)
        } else {
            None
        };
        Email {
            secret: (!self.secret.is_empty()).then(|| self.secret.clone()),
            sender,
            recipients,
            subject,
            message,
            send_interval_seconds: self.send_interval,
            link,
            text,
            html,
        }
    }

    /// The e-mail's sections in order; empty sections are left out.
    fn sections<'a>(
        &self,
        alert: &AlertRow,
        severity: Option<&str>,
        facts: &'a Facts,
        server: &ServerInfo,
        links: &Links,
        now: Timestamp,
    ) -> Vec<(&'static str, SectionBody<'a>)> {
        let mut sections = Vec::new();
        let mut push = |title: &'static str, body: SectionBody<'a>| {
            if !body.is_empty() {
                sections.push((title, body));
            }
        };
        push(
            "Alert summary",
            SectionBody::Fields(self.summary_fields(alert, severity, links, now)),
        );

        let mut removed: Vec<&str> = self.severity.members().collect();
        removed.extend(["Severity", "ClientId", "FlowId", "Artifact", "ArtifactType"]);
        push(
            "Alert details",
            SectionBody::Context(Cow::Owned(self.context.apply(&alert.event_data, &removed))),
        );
        if self.include_client_details && !alert.is_server() {
            let empty = Value::Object(Map::new());
            let details = ClientDetails {
                client_id: &alert.client_id,
                info: facts.client.as_ref().unwrap_or(&empty),
                metadata: facts.metadata.as_ref(),
                new_client: false,
            };
            push(
                "Client details",
                SectionBody::Fields(client_fields(
                    &details,
                    &self.client_metadata,
                    server,
                    links,
                    self.keep_empty,
                )),
            );
        }
        if self.include_flow_details && !alert.flow_id.is_empty() && !alert.client_id.is_empty() {
            let empty = Value::Object(Map::new());
            let options = FlowFieldsOptions {
                finished: None,
                keep_empty: self.keep_empty,
                now,
            };
            let fields = flow_fields(
                &alert.client_id,
                &alert.flow_id,
                facts.flow.as_ref().unwrap_or(&empty),
                facts.hunt.as_ref(),
                links,
                options,
            );
            push("Flow details", SectionBody::Fields(fields));
        }
        if let Some(details) = &facts.artifact_details {
            push("Artifact details", SectionBody::Context(Cow::Borrowed(details)));
        }
        sections
    }

    fn summary_fields(&self, alert: &AlertRow, severity: Option<&str>, links: &Links, now: Timestamp) -> Fields {
        let mut fields = Fields::new(self.keep_empty);
        let later = alert.time.is_none_or(|t| now.unix_seconds() > t.unix_seconds());
        fields.push_if(later, "Server time", Cell::Text(now.rfc3339()));
        if let Some(time) = alert.time {
            fields.push(
                "Alert time",
                Cell::Text(crate::velociraptor::timestamp_string(time, now)),
            );
        }
        fields.push("Severity", Cell::text(severity.unwrap_or("")));
        fields.push(
            "Message",
            Cell::Text(elide_right(alert.name, MESSAGE_ROW_LIMIT).into_owned()),
        );
        if !alert.artifact.is_empty() {
            fields.push(
                "Artifact",
                Cell::Link {
                    text: alert.artifact.to_string(),
                    url: links.artifact(&alert.artifact),
                },
            );
        }
        fields.push("Artifact type", Cell::text(&*alert.artifact_type));
        fields
    }

    /// The artifact's definition and its event-table entry, flattened as
    /// `Definition.*` and `Execution.*` (the `Artifact details` section of
    /// docs/velociraptor.md §7.5).
    fn artifact_details(&self, alert: &AlertRow, host: &dyn Host) -> Result<ContextRows, Failure> {
        let mut details = Map::new();
        let mut definition = Map::new();
        if let Some(def) = host.artifact(&alert.artifact)? {
            for key in [
                "name",
                "type",
                "author",
                "built_in",
                "is_inherited",
                "required_permissions",
                "implied_permissions",
                "metadata",
            ] {
                if let Some(v) = def.get(key) {
                    definition.insert(key.to_string(), v.clone());
                }
            }
        }
        let since = host.now_us().saturating_sub(24 * 3600 * 1_000_000);
        let audit = host.audit_log(since)?;
        let newest = |wanted: &dyn Fn(&Value) -> bool| audit.iter().find(|row| wanted(row)).cloned();
        if let Some(row) = newest(&|row| {
            row.get("operation").and_then(Value::as_str) == Some("SetArtifactFile")
                && get_path(row, "details.artifact").and_then(Value::as_str) == Some(&*alert.artifact)
        }) {
            definition.insert("ModifiedAt".into(), audit_time(&row));
            definition.insert(
                "ModifiedBy".into(),
                row.get("principal").cloned().unwrap_or(Value::Null),
            );
        }
        if !definition.is_empty() {
            details.insert("Definition".into(), Value::Object(definition));
        }

        let mut execution = event_table_entry(&host.event_tables()?, &alert.artifact, &alert.artifact_type);
        let table_op = match &*alert.artifact_type {
            "SERVER_MONITORING" => Some("SetServerMonitoringState"),
            "CLIENT_EVENT" => Some("SetClientMonitoringState"),
            _ => None,
        };
        if let Some(op) = table_op
            && let Some(row) = newest(&|row| row.get("operation").and_then(Value::as_str) == Some(op))
        {
            execution.insert("EventTableModifiedAt".into(), audit_time(&row));
            execution.insert(
                "EventTableModifiedBy".into(),
                row.get("principal").cloned().unwrap_or(Value::Null),
            );
        }
        if !execution.is_empty() {
            details.insert("Execution".into(), Value::Object(execution));
        }
        let all = ContextFilter {
            flatten: true,
            include: VqlRegex::new("").expect("empty regex"),
            exclude: VqlRegex::new("").expect("empty regex"),
            ..self.context.clone()
        };
        Ok(all.apply(&details, &[]))
    }
}

/// What one section of the e-mail shows, written both ways.
#[derive(Debug)]
enum SectionBody<'a> {
    Fields(Fields),
    Context(Cow<'a, ContextRows>),
}

impl SectionBody<'_> {
    fn is_empty(&self) -> bool {
        match self {
            Self::Fields(fields) => fields.is_empty(),
            Self::Context(rows) => rows.is_empty(),
        }
    }

    fn write_html(&self, out: &mut Html) {
        match self {
            Self::Fields(fields) => fields.write_html(out),
            Self::Context(rows) => {
                rows.write_html(out);
            }
        }
    }

    fn write_text(&self, out: &mut String) {
        match self {
            Self::Fields(fields) => fields.write_text(out),
            Self::Context(rows) => rows.write_text(out),
        }
    }
}

/// The client's hostname, or its id when the hostname is unknown.
fn display_host<'a>(hostname: &'a str, client_id: &'a str) -> &'a str {
    if hostname.is_empty() { client_id } else { hostname }
}

fn audit_time(row: &Value) -> Value {
    row.get("_ts")
        .and_then(parse_timestamp)
        .map_or(Value::Null, |t| Value::String(t.rfc3339()))
}

/// The event-table entry of `artifact`: `Label`, `Artifact` and `Params`
/// from `get_server_monitoring()` / `get_client_monitoring()` specs.
fn event_table_entry(tables: &Value, artifact: &str, artifact_type: &str) -> Map<String, Value> {
    let find = |specs: Option<&Value>| -> Option<Map<String, Value>> {
        specs?.as_array()?.iter().find_map(|spec| {
            (spec.get("artifact").and_then(Value::as_str) == Some(artifact)).then(|| {
                let mut params = Map::new();
                for entry in get_path(spec, "parameters.env")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(key) = entry.get("key").and_then(Value::as_str) {
                        params.insert(key.to_string(), entry.get("value").cloned().unwrap_or(Value::Null));
                    }
                }
                let mut entry = Map::new();
                entry.insert("Artifact".into(), Value::String(artifact.to_string()));
                entry.insert("Params".into(), Value::Object(params));
                entry
            })
        })
    };
    let with_label = |mut entry: Map<String, Value>, label: Option<&str>| {
        let mut out = Map::new();
        out.insert(
            "Label".into(),
            label.map_or(Value::Null, |l| Value::String(l.to_string())),
        );
        out.append(&mut entry);
        out
    };
    if artifact_type != "CLIENT_EVENT"
        && let Some(entry) = find(get_path(tables, "server.specs"))
    {
        return with_label(entry, None);
    }
    if artifact_type != "SERVER_MONITORING" {
        if let Some(entry) = find(get_path(tables, "client.artifacts.specs")) {
            return with_label(entry, None);
        }
        for group in get_path(tables, "client.label_events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(entry) = find(get_path(group, "artifacts.specs")) {
                return with_label(entry, group.get("label").and_then(Value::as_str));
            }
        }
    }
    Map::new()
}

#[cfg(test)]
mod tests;
