//! Server.Monitor.FlowCompletion: e-mails when a collection completes and
//! passes the filters (docs/velociraptor.md §6), with velonotify's decisions
//! D2, D3, D4, D6 and D8 (docs/decisions.md).
//!
//! - [`decision`]: whether a flow notifies (§6.3);
//! - [`content`]: subject, summary, client/flow/upload tables (§6.5);
//! - [`results`]: inline result tables and attachments (§6.6, §6.7).

mod content;
mod decision;
pub(crate) use self::decision::state_name;
mod results;

use serde_json::{Map, Value};

use super::{Rule, Setup};
use crate::action::{Action, Email, Failure};
use crate::host::{Event, Host, LogLevel};
use crate::mime::{Attachment, MailContent, build_message};
use crate::params::{ParamError, ParamKind, ParamSpec, Params};
use crate::recipients::{ExecutorDomains, fixed_recipients, is_address, unique};
use crate::render::Links;
use crate::velociraptor::{MetadataField, hunt_id_of_flow, metadata_fields};
use crate::vql::{Timestamp, parse_timestamp};

use self::decision::{ErrorHandling, FlowFacts, Verdict};
use self::results::{AttachmentFormat, ResultSource};

/// The queue the server writes completed collections to.
pub const FLOW_COMPLETION_QUEUE: &str = "System.Flow.Completion";

use ParamKind::{Bool, Choices, Csv, Int, Multichoice, Regex, String as Str};

const ERROR_HANDLING: &[&str] = &[
    "IncludeHunts",
    "IgnoreCancelled",
    "IgnoreArtifactFilters",
    "IgnoreDelay",
];

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Secret",
        Str,
        "notify_mail_secret",
        "Name of the SMTP Creds secret to send with.",
    ),
    ParamSpec::new(
        "Recipients",
        Csv,
        "Address\n",
        "Addresses that receive every notification (column Address).",
    ),
    ParamSpec::new(
        "NotifyExecutor",
        Bool,
        "false",
        "Also e-mail the user who started the collection.",
    ),
    ParamSpec::new(
        "NotifyExecutorDomains",
        Csv,
        "UsernameRegex,Domain\n",
        "Maps user names that are not e-mail addresses to a domain; the first matching row is used.",
    ),
    ParamSpec::new(
        "NotifyMetadataEMail",
        Str,
        "",
        "Client metadata field holding an address to notify (the device owner).",
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
        "ArtifactsToAlertOn",
        Regex,
        ".+",
        "Notify only when a collected artifact matches.",
    ),
    ParamSpec::new(
        "ArtifactsToIgnore",
        Regex,
        "^(Custom\\.)?Generic\\.Client\\.Info$",
        "Do not notify for single-artifact collections of a matching artifact.",
    ),
    ParamSpec::new(
        "ClientLabelsToAlertOn",
        Regex,
        ".+",
        "Notify only for clients with a matching label (clients without labels always pass).",
    ),
    ParamSpec::new(
        "ClientLabelsToIgnore",
        Regex,
        "",
        "Do not notify for clients with a matching label.",
    ),
    ParamSpec::new(
        "NotifyHunts",
        Bool,
        "",
        "Also notify for collections that are part of a hunt.",
    ),
    ParamSpec::new(
        "NewClientArtifacts",
        Regex,
        "",
        "Notify, whatever the filters say, when a new client collects a matching artifact (empty: off).",
    ),
    ParamSpec::new(
        "ArtifactPermToAlertOn",
        Regex,
        "",
        "Notify only when a collected artifact requires a matching permission (e.g. EXECVE).",
    ),
    ParamSpec::new(
        "NewClientThreshold",
        Int,
        "300",
        "Seconds after first contact during which a client counts as new.",
    ),
    ParamSpec::new(
        "ErrorHandling",
        Multichoice,
        "[\"IgnoreCancelled\"]",
        "IncludeHunts, IgnoreArtifactFilters and IgnoreDelay let failed collections through those filters; \
         IgnoreCancelled drops cancelled ones.",
    )
    .with_choices(ERROR_HANDLING),
    ParamSpec::new(
        "DelayThreshold",
        Int,
        "10",
        "Notify only when the collection completed at least this many seconds after it was scheduled.",
    ),
    ParamSpec::new(
        "SendInterval",
        Int,
        "10",
        "Least seconds between two e-mails of this module (0 means 60, negative means no limit).",
    ),
    ParamSpec::new("KeepEmptyRows", Bool, "", "Show rows whose value is empty."),
    ParamSpec::new(
        "ClientMetadata",
        Csv,
        "Field,Alias\n",
        "Client metadata fields to show, with optional aliases.",
    ),
    ParamSpec::new(
        "IncludeUploadsTableRows",
        Int,
        "10",
        "Rows of the uploads table (at most 100; 0 leaves the table out).",
    ),
    ParamSpec::new(
        "IncludeResultTableFrom",
        Csv,
        "Source,Columns,MaxRows,CellLimit\n",
        "Sources to show as tables: Source and Columns regexes, MaxRows (at most 100), CellLimit (at most 10000).",
    ),
    ParamSpec::new("ResultTableMaxColumns", Int, "4", "Most columns of a result table."),
    ParamSpec::new(
        "IncludeResultAttachmentFrom",
        Csv,
        "Source,Columns,MaxRows\n",
        "Sources to attach as files: Source and Columns regexes, MaxRows (empty: all).",
    ),
    ParamSpec::new("AttachmentFormat", Choices, "jsonl", "Format of attached results.").with_choices(&["csv", "jsonl"]),
    ParamSpec::new(
        "AttachmentsMaxMiB",
        Int,
        "100",
        "Largest total size of the attachments; above it none are attached.",
    ),
    ParamSpec::new(
        "NotifyIfResultsLabels",
        Regex,
        "^notify_results$",
        "Notify, whatever the filters say, when a client label or hunt tag matches and the collection returned rows.",
    ),
    ParamSpec::new(
        "NotifyIfUploadsLabels",
        Regex,
        "^notify_uploads$",
        "Notify, whatever the filters say, when a client label or hunt tag matches and the collection uploaded files.",
    ),
];

/// The configured Server.Monitor.FlowCompletion module.
#[derive(Debug, Clone)]
pub struct FlowCompletionRule {
    secret: String,
    recipients: Vec<String>,
    notify_executor: bool,
    executor_domains: ExecutorDomains,
    metadata_email_field: String,
    sender: String,
    html: bool,
    filters: decision::Filters,
    send_interval: i64,
    keep_empty: bool,
    client_metadata: Vec<MetadataField>,
    uploads_rows: usize,
    result_tables: Vec<ResultSource>,
    max_columns: usize,
    attachments: Vec<ResultSource>,
    attachment_format: AttachmentFormat,
    attachments_max_bytes: u64,
}

impl Rule for FlowCompletionRule {
    const NAME: &'static str = "Server.Monitor.FlowCompletion";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "E-mails when a collection completes (System.Flow.Completion) and passes the \
         filters, with client and flow details, uploads, result tables and attachments.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let rule = Self {
            secret: p.text("Secret").to_string(),
            recipients: fixed_recipients("Recipients", p.table("Recipients"))?,
            notify_executor: p.bool("NotifyExecutor"),
            executor_domains: ExecutorDomains::from_rows("NotifyExecutorDomains", p.table("NotifyExecutorDomains"))?,
            metadata_email_field: p.text("NotifyMetadataEMail").trim().to_string(),
            sender: sender_param(p.text("Sender"))?,
            html: p.bool("HTML"),
            filters: decision::Filters {
                artifacts_to_alert_on: p.regex("ArtifactsToAlertOn").clone(),
                artifacts_to_ignore: p.regex("ArtifactsToIgnore").clone(),
                labels_to_alert_on: p.regex("ClientLabelsToAlertOn").clone(),
                labels_to_ignore: p.regex("ClientLabelsToIgnore").clone(),
                notify_hunts: p.bool("NotifyHunts"),
                new_client_artifacts: p.regex("NewClientArtifacts").clone(),
                permission: p.regex("ArtifactPermToAlertOn").clone(),
                error_handling: ErrorHandling::from_list(p.list("ErrorHandling")),
                delay_threshold: p.int("DelayThreshold"),
                new_client_threshold: p.int("NewClientThreshold"),
                results_labels: p.regex("NotifyIfResultsLabels").clone(),
                uploads_labels: p.regex("NotifyIfUploadsLabels").clone(),
            },
            send_interval: p.int("SendInterval"),
            keep_empty: p.bool("KeepEmptyRows"),
            client_metadata: metadata_fields("ClientMetadata", p.table("ClientMetadata"))?,
            uploads_rows: p
                .int("IncludeUploadsTableRows")
                .clamp(0, content::MAX_UPLOADS_ROWS as i64) as usize,
            result_tables: ResultSource::from_rows("IncludeResultTableFrom", p.table("IncludeResultTableFrom"))?,
            max_columns: crate::context::clamp_limit(p.int("ResultTableMaxColumns"), results::MAX_COLUMNS),
            attachments: ResultSource::from_rows(
                "IncludeResultAttachmentFrom",
                p.table("IncludeResultAttachmentFrom"),
            )?,
            attachment_format: AttachmentFormat::parse(p.text("AttachmentFormat")),
            attachments_max_bytes: u64::try_from(p.int("AttachmentsMaxMiB")).unwrap_or(0) << 20,
        };
        let setup = Setup {
            queues: vec![FLOW_COMPLETION_QUEUE.to_string()],
            tick_seconds: None,
            interests: Vec::new(),
        };
        Ok((rule, setup))
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let completion = Completion::parse(&event.row)?;
        if completion.client_id == "server" {
            // Server artifacts run as flows too; the artifact ignores them.
            host.log(
                LogLevel::Debug,
                &format!("flow {}: not notified: a server-side collection", completion.flow_id),
            );
            return Ok(Vec::new());
        }
        let flow = host.flow(&completion.client_id, &completion.flow_id)?.ok_or_else(|| {
            Failure::BadEvent(format!(
                "flow {} of client {}: the lookups do not know this flow",
                completion.flow_id, completion.client_id
            ))
        })?;
        let client = host
            .client_info(&completion.client_id)?
            .unwrap_or_else(|| Value::Object(Map::new()));
        let hunt = match hunt_id_of_flow(&completion.flow_id) {
            Some(hunt_id) => host.hunt(&hunt_id)?,
            None => None,
        };
        let wants_permissions = !self.filters.permission.is_empty();
        let decided_on = flow.members(FlowFacts::FLOW_MEMBERS)?;
        let facts = FlowFacts::gather(
            &completion,
            &decided_on,
            &client,
            hunt.as_ref(),
            wants_permissions,
            host,
        )?;
        let verdict = self.filters.decide(&facts);
        let reason = match verdict {
            Verdict::Skip(reason) => {
                host.log(
                    LogLevel::Debug,
                    &format!("flow {}: not notified: {reason}", completion.flow_id),
                );
                return Ok(Vec::new());
            }
            Verdict::Notify(reason) => reason,
        };
        let flow = flow.value()?;
        host.log(
            LogLevel::Info,
            &format!(
                "Flow {} ({}) completed; notifying: {reason}",
                completion.flow_id,
                facts.artifacts.join(", ")
            ),
        );
        let metadata = if self.metadata_email_field.is_empty() && self.client_metadata.is_empty() {
            None
        } else {
            host.client_metadata(&completion.client_id)?
        };
        let recipients = self.recipients(&flow, metadata.as_ref(), &completion, host);
        if recipients.is_empty() {
            host.log(
                LogLevel::Info,
                &format!(
                    "flow {}: not notified: no recipients (set Recipients, NotifyExecutor or NotifyMetadataEMail)",
                    completion.flow_id
                ),
            );
            return Ok(Vec::new());
        }
        let flow_view = content::FlowView {
            completion: &completion,
            flow: &flow,
            client: &client,
            metadata: metadata.as_ref(),
            hunt: hunt.as_ref(),
            new_client: self.filters.is_new_client(&facts),
        };
        Ok(vec![Action::Email(self.email(event, &flow_view, recipients, host)?)])
    }
}

impl FlowCompletionRule {
    /// `Recipients`, the creator (with `NotifyExecutor`) and the address in
    /// the client's `NotifyMetadataEMail` field (docs/velociraptor.md §6.4,
    /// D4).
    fn recipients(
        &self,
        flow: &Value,
        metadata: Option<&Value>,
        completion: &Completion,
        host: &dyn Host,
    ) -> Vec<String> {
        let creator = flow
            .get("request")
            .and_then(|r| r.get("creator"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let creator_address = self
            .notify_executor
            .then(|| self.executor_domains.creator_address(creator))
            .flatten();
        let mut owner = None;
        if !self.metadata_email_field.is_empty() {
            let value = metadata
                .and_then(|m| m.get(&self.metadata_email_field))
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim();
            if is_address(value) {
                owner = Some(value.to_string());
            } else if !value.is_empty() {
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "flow {}: client metadata {} is not an e-mail address: {value:?}",
                        completion.flow_id, self.metadata_email_field
                    ),
                );
            }
        }
        unique(self.recipients.iter().cloned().chain(creator_address).chain(owner))
    }

    fn email(
        &self,
        event: &Event,
        view: &content::FlowView<'_>,
        recipients: Vec<String>,
        host: &dyn Host,
    ) -> Result<Email, Failure> {
        let server = host.server_info();
        let now = Timestamp::from_unix_micros(host.now_us() as i64);
        let links = Links::new(server.public_url.as_deref(), &server.org_id);
        let rendered = content::render(self, view, &server, &links, now, host)?;
        let sender = if self.sender.is_empty() {
            server.default_sender.clone()
        } else {
            self.sender.clone()
        };
        let identity = format!("{}/{}/{}", event.id, Self::NAME, recipients.join(","));
        let body_bytes = rendered.text.len() + rendered.html.as_ref().map_or(0, String::len);
        let mut attachments = Vec::new();
        if let Some(full) = &rendered.full_html {
            attachments.push(Attachment::full_report(full));
        }
        let body_bytes = body_bytes + rendered.full_html.as_ref().map_or(0, String::len);
        attachments.extend(results::attachments(
            self,
            view,
            body_bytes,
            server.max_email_bytes,
            host,
        )?);
        let message = build_message(&MailContent {
            from: &sender,
            to: &recipients,
            subject: &rendered.subject,
            date_unix: now.unix_seconds(),
            identity: &identity,
            text: &rendered.text,
            html: rendered.html.as_deref(),
            attachments: &attachments,
        });
        Ok(Email {
            secret: (!self.secret.is_empty()).then(|| self.secret.clone()),
            sender,
            recipients,
            subject: rendered.subject,
            message,
            send_interval_seconds: self.send_interval,
            link: links.collection(&view.completion.client_id, &view.completion.flow_id, "overview"),
            text: rendered.text,
            html: rendered.html,
        })
    }
}

/// An empty Sender means "the SMTP settings' from"; anything else must be
/// an address that can go into a header (D8).
fn sender_param(sender: &str) -> Result<String, Failure> {
    let sender = sender.trim();
    if !sender.is_empty() && !is_address(sender) {
        return Err(ParamError::new("Sender", format!("{sender:?} is not an e-mail address")).into());
    }
    Ok(sender.to_string())
}

/// A `System.Flow.Completion` row (docs/velociraptor.md §2.1).
#[derive(Debug, Clone)]
pub(crate) struct Completion {
    pub client_id: String,
    pub flow_id: String,
    /// When the server saw the collection complete.
    pub finished: Timestamp,
}

impl Completion {
    fn parse(row: &Map<String, Value>) -> Result<Self, Failure> {
        let flow_id = match row.get("FlowId") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => return Err(bad(format!("column FlowId should be a flow id, got {other}"))),
            None => return Err(bad("the row has no FlowId column".into())),
        };
        let bad_flow = |message: String| Failure::BadEvent(format!("flow {flow_id}: {message}"));
        let client_id = match row.get("ClientId") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => return Err(bad_flow(format!("column ClientId should be a client id, got {other}"))),
            None => return Err(bad_flow("the row has no ClientId column".into())),
        };
        match row.get("Flow") {
            Some(Value::Object(_)) => {}
            Some(other) => return Err(bad_flow(format!("column Flow should be the flow object, got {other}"))),
            None => return Err(bad_flow("the row has no Flow column".into())),
        }
        let finished = row
            .get("Timestamp")
            .or_else(|| row.get("_ts"))
            .filter(|v| v.is_number() || v.is_string())
            .and_then(parse_timestamp)
            .ok_or_else(|| bad_flow("the row has no readable Timestamp".into()))?;
        Ok(Self {
            client_id,
            flow_id,
            finished,
        })
    }
}

fn bad(message: String) -> Failure {
    Failure::BadEvent(format!("System.Flow.Completion row: {message}"))
}

#[cfg(test)]
mod tests;
