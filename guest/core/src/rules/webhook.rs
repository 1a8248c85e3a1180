//! Webhook: chat and HTTP notifications (docs/velociraptor.md §11).
//!
//! One module, three jobs, chosen by `Mode`:
//! - `Alerts`: every alert, as Server.Alerts.Notification posts it to Slack,
//!   for Slack, Microsoft Teams, Mattermost or any JSON endpoint;
//! - `ClientsOnline`: Server.Slack.Clients.Online: a client carrying the
//!   watch label is announced when it comes online, then the label is
//!   removed;
//! - `ClientsEnrolled`: Server.Slack.Clients.Enrolled: a client is
//!   announced when its enrolment collection completes.
//!
//! Values from events are escaped for the target's markup, and cannot
//! mention a whole channel.

use serde_json::{Map, Value, json};

use super::alert_names::AlertNameFilter;
use super::alerts::ALERT_QUEUE;
use super::flow_completion::FLOW_COMPLETION_QUEUE;
use super::{Rule, Setup};
use crate::action::{Action, Failure, LabelChange, LabelOp, Webhook};
use crate::host::{Event, Host, LogLevel};
use crate::params::{ParamError, ParamKind, ParamSpec, Params};
use crate::render::{FillTemplate, Links};
use crate::velociraptor::{AlertRow, str_at, strings_at, u64_at};
use crate::vql::{Timestamp, VqlRegex, get_path, render_value_or_empty};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Mode",
        ParamKind::Choices,
        "Alerts",
        "Alerts, ClientsOnline, ClientsEnrolled or FlowCompletion (each finished or failed collection).",
    )
    .with_choices(&["Alerts", "ClientsOnline", "ClientsEnrolled", "FlowCompletion"]),
    ParamSpec::new("WebhookURL", ParamKind::String, "", "The webhook's https:// address."),
    ParamSpec::new(
        "SlackToken",
        ParamKind::String,
        "",
        "The Slack artifacts' name for the incoming-webhook address (use one of the two).",
    ),
    ParamSpec::new(
        "Target",
        ParamKind::Choices,
        "slack",
        "slack, teams (a Workflows webhook: an Adaptive Card), teams-legacy (an Office 365 connector: a \
         MessageCard), mattermost, discord, telegram, json, pagerduty (Events API v2), thehive (TheHive 5 alerts), \
         iris (DFIR-IRIS alerts) or splunk-hec (Splunk's HTTP Event Collector).",
    )
    .with_choices(&[
        "slack",
        "teams",
        "teams-legacy",
        "mattermost",
        "discord",
        "telegram",
        "json",
        "pagerduty",
        "thehive",
        "iris",
        "splunk-hec",
    ]),
    ParamSpec::new(
        "RoutingKey",
        ParamKind::String,
        "",
        "pagerduty: the integration key of the PagerDuty service (Events API v2).",
    ),
    ParamSpec::new(
        "ApiKey",
        ParamKind::String,
        "",
        "thehive, iris: the API key (sent as a Bearer token); splunk-hec: the HEC token.",
    ),
    ParamSpec::new(
        "ChatId",
        ParamKind::String,
        "",
        "telegram: the chat to post in (its number, or @channelname).",
    ),
    ParamSpec::new(
        "CustomerId",
        ParamKind::Int,
        "1",
        "iris: the customer the alerts belong to.",
    ),
    ParamSpec::new(
        "Sourcetype",
        ParamKind::String,
        "velociraptor:alert",
        "splunk-hec: the events' sourcetype.",
    ),
    ParamSpec::new(
        "Index",
        ParamKind::String,
        "",
        "splunk-hec: the index (empty: the token's default index).",
    ),
    ParamSpec::new(
        "Template",
        ParamKind::String,
        "",
        "The message, with {field} placeholders (empty: the artifact's message for the mode).",
    ),
    ParamSpec::new(
        "AlertMsgInclude",
        ParamKind::Regex,
        ".+",
        "Alerts: only alerts whose name matches.",
    ),
    ParamSpec::new(
        "AlertMsgExclude",
        ParamKind::Regex,
        "",
        "Alerts: alerts whose name matches are not posted.",
    ),
    ParamSpec::new(
        "LabelGroup",
        ParamKind::String,
        "Slack",
        "ClientsOnline: the label that puts a client on the watch list.",
    ),
    ParamSpec::new(
        "Period",
        ParamKind::Int,
        "60",
        "ClientsOnline: seconds between two looks at the watch list.",
    ),
    ParamSpec::new(
        "OnlineWithin",
        ParamKind::Int,
        "300",
        "ClientsOnline: a client seen within this many seconds is online.",
    ),
    ParamSpec::new(
        "ArtifactsToAlertOn",
        ParamKind::Regex,
        ".+",
        "FlowCompletion: only collections of an artifact matching this.",
    ),
    ParamSpec::new(
        "ArtifactsToIgnore",
        ParamKind::Regex,
        "^(Custom\\.)?Generic\\.Client\\.Info$",
        "FlowCompletion: collections of this one artifact are not posted.",
    ),
    ParamSpec::new(
        "NotifyHunts",
        ParamKind::Bool,
        "N",
        "FlowCompletion: also post the collections of hunts.",
    ),
    ParamSpec::new(
        "FirstSeenDelay",
        ParamKind::Int,
        "60",
        "ClientsEnrolled: a client first seen within this many seconds of its enrolment is new.",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Alerts,
    ClientsOnline,
    ClientsEnrolled,
    /// Each finished or failed collection, as Server.Monitor.FlowCompletion
    /// e-mails it.
    Flows,
}

impl Mode {
    fn parse(text: &str) -> Self {
        match text {
            "ClientsOnline" => Self::ClientsOnline,
            "ClientsEnrolled" => Self::ClientsEnrolled,
            "FlowCompletion" => Self::Flows,
            _ => Self::Alerts,
        }
    }

    /// The artifact's own message.
    fn default_template(self) -> &'static str {
        match self {
            Self::Alerts => {
                "Alert: {name} | Details: {event_data} | Artifact: {artifact} | ClientId: {client_id} | Timestamp: {timestamp}"
            }
            Self::ClientsOnline => "Client {fqdn} ({client_id}) has appeared online {last_seen} seconds ago",
            Self::ClientsEnrolled => "Enrollment FROM {fqdn} with ClientID {client_id}!",
            Self::Flows => "Collection {state} on {hostname} ({client_id}): {artifacts} | Flow: {flow_id} | {status}",
        }
    }

    fn fields(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Self::Alerts => (
                &[
                    "name",
                    "client_id",
                    "hostname",
                    "fqdn",
                    "artifact",
                    "artifact_type",
                    "flow_id",
                    "timestamp",
                    "event_data",
                ],
                &["event_data."],
            ),
            Self::ClientsOnline => (&["client_id", "hostname", "fqdn", "last_seen", "label"], &[]),
            Self::ClientsEnrolled => (&["client_id", "hostname", "fqdn", "first_seen", "flow_id"], &[]),
            Self::Flows => (
                &[
                    "name",
                    "client_id",
                    "hostname",
                    "fqdn",
                    "flow_id",
                    "artifacts",
                    "state",
                    "status",
                    "creator",
                    "timestamp",
                ],
                &["event_data."],
            ),
        }
    }
}

/// Where the message goes, and how values are escaped for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Slack,
    /// A Teams Workflows webhook, which takes Adaptive Cards only.
    Teams,
    /// A retired Office 365 connector's webhook: a MessageCard.
    TeamsLegacy,
    Mattermost,
    Discord,
    /// The Bot API's `sendMessage`, as plain text.
    Telegram,
    Json,
    /// PagerDuty's Events API v2 (`pagerduty`).
    PagerDuty,
    /// TheHive 5's alerts.
    TheHive,
    /// DFIR-IRIS's alerts.
    Iris,
    /// Splunk's HTTP Event Collector (`splunk-hec`).
    SplunkHec,
}

impl Target {
    fn parse(text: &str) -> Self {
        match text {
            "teams" => Self::Teams,
            "teams-legacy" => Self::TeamsLegacy,
            "mattermost" => Self::Mattermost,
            "discord" => Self::Discord,
            "telegram" => Self::Telegram,
            "json" => Self::Json,
            "pagerduty" => Self::PagerDuty,
            "thehive" => Self::TheHive,
            "iris" => Self::Iris,
            "splunk-hec" => Self::SplunkHec,
            _ => Self::Slack,
        }
    }

    /// The path of the receiver's API under the address it is given,
    /// for the receivers whose address is their server's.
    fn api_path(self) -> Option<&'static str> {
        match self {
            Self::PagerDuty => Some(pagerduty::API_PATH),
            Self::TheHive => Some(thehive::API_PATH),
            Self::Iris => Some(iris::API_PATH),
            Self::SplunkHec => Some(splunk::API_PATH),
            Self::Telegram => Some("/sendMessage"),
            _ => None,
        }
    }

    /// A value from an event, made inert in the target's markup: Slack's
    /// `&<>` escapes (which also defuse `<!channel>`), Markdown punctuation
    /// for Teams, Mattermost, Discord, TheHive and IRIS, and no
    /// `@channel`-style mentions. Plain-text receivers get it as it is.
    pub(crate) fn escape(self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        for c in value.chars() {
            match (self, c) {
                (Self::Json | Self::PagerDuty | Self::Telegram | Self::SplunkHec, c) => out.push(c),
                // Discord shows entities as they are: `<` is escaped as
                // Markdown (`<@id>` would be a mention).
                (Self::Discord, '&') => out.push(c),
                (Self::Discord, '<' | '>') => {
                    out.push('\\');
                    out.push(c);
                }
                (_, '&') => out.push_str("&amp;"),
                (_, '<') => out.push_str("&lt;"),
                (_, '>') => out.push_str("&gt;"),
                (Self::Slack, c) => out.push(c),
                (_, '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '(' | ')' | '#' | '|' | '!') => {
                    out.push('\\');
                    out.push(c);
                }
                // A zero-width space after @ keeps @channel from paging.
                (_, '@') => out.push_str("@\u{200B}"),
                (_, c) => out.push(c),
            }
        }
        out
    }
}

/// Discord's and Telegram's longest messages, in characters.
const DISCORD_MAX_CHARS: usize = 2000;
const TELEGRAM_MAX_CHARS: usize = 4096;

/// A message for a Teams Workflows webhook ("Post to a channel when a
/// webhook request is received") holding the text.
fn adaptive_card(text: &str) -> Value {
    adaptive_card_message(vec![json!({"type": "TextBlock", "text": text, "wrap": true})])
}

/// The media type of an Adaptive Card attachment.
pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// A Teams message of one Adaptive Card made of `blocks` (`TextBlock`s...).
/// Workflows refuse anything else ("Property 'type' must be
/// 'AdaptiveCard'"). Version 1.4, which every Teams client renders; full
/// width, as alerts are long lines.
pub fn adaptive_card_message(blocks: Vec<Value>) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": ADAPTIVE_CARD,
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": blocks,
            },
        }],
    })
}

/// The configured Webhook module.
#[derive(Debug, Clone)]
pub struct WebhookRule {
    mode: Mode,
    url: String,
    target: Target,
    receiver: ReceiverSettings,
    template: FillTemplate,
    names: AlertNameFilter,
    label: String,
    online_within: i64,
    first_seen_delay: i64,
    flows: FlowFilter,
}

/// Which collections FlowCompletion mode posts.
#[derive(Debug, Clone)]
struct FlowFilter {
    artifacts: VqlRegex,
    ignored: VqlRegex,
    hunts: bool,
}

/// What a receiver takes beside the text: its credentials and where in
/// it the notification goes.
#[derive(Debug, Clone, Default)]
struct ReceiverSettings {
    /// PagerDuty's integration key (`RoutingKey`).
    routing_key: String,
    /// TheHive's and IRIS's API key, Splunk's HEC token (`ApiKey`).
    api_key: String,
    /// Telegram's chat (`ChatId`).
    chat_id: String,
    /// IRIS's customer (`CustomerId`).
    customer_id: i64,
    splunk: splunk::Placement,
}

impl ReceiverSettings {
    /// The settings `target` takes from `p`, each checked to be there.
    fn from_params(target: Target, p: &Params) -> Result<Self, ParamError> {
        let text = |name: &str| p.text(name).trim().to_string();
        let settings = Self {
            routing_key: text("RoutingKey"),
            api_key: text("ApiKey"),
            chat_id: text("ChatId"),
            customer_id: p.int("CustomerId"),
            splunk: splunk::Placement {
                sourcetype: text("Sourcetype"),
                index: text("Index"),
            },
        };
        let missing = match target {
            Target::PagerDuty if settings.routing_key.is_empty() => Some((
                "RoutingKey",
                "Target pagerduty needs the integration key of the service",
            )),
            Target::TheHive | Target::Iris if settings.api_key.is_empty() => Some((
                "ApiKey",
                "this Target needs the API key of a user allowed to create alerts",
            )),
            Target::SplunkHec if settings.api_key.is_empty() => {
                Some(("ApiKey", "Target splunk-hec needs the HTTP Event Collector's token"))
            }
            Target::SplunkHec if settings.splunk.sourcetype.is_empty() => {
                Some(("Sourcetype", "Target splunk-hec needs a sourcetype"))
            }
            Target::Telegram if settings.chat_id.is_empty() => {
                Some(("ChatId", "Target telegram needs the chat to post in"))
            }
            Target::Iris if settings.customer_id < 1 => Some(("CustomerId", "IRIS's customers are numbered from 1")),
            _ => None,
        };
        match missing {
            Some((param, why)) => Err(ParamError::new(param, why)),
            None => Ok(settings),
        }
    }
}

/// State key of ClientsOnline: clients announced whose label removal has
/// not been seen yet (they are not announced again meanwhile).
const AWAITING_REMOVAL: &str = "awaiting-label-removal";

impl Rule for WebhookRule {
    const NAME: &'static str = "Webhook";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Posts to Slack, Microsoft Teams, Mattermost, Discord, Telegram, PagerDuty, TheHive, \
         DFIR-IRIS, Splunk or a JSON endpoint: every alert \
         (Server.Alerts.Notification), watched clients coming online (Server.Slack.Clients.Online) or new clients \
         (Server.Slack.Clients.Enrolled).";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let mode = Mode::parse(p.text("Mode"));
        let target = Target::parse(p.text("Target"));
        let receiver = ReceiverSettings::from_params(target, p)?;
        let url = webhook_url(p, target)?;
        let url = match target.api_path() {
            Some(path) => facts::endpoint(&url, path),
            None => url,
        };
        let text = p.text("Template");
        let template = FillTemplate::parse(if text.is_empty() { mode.default_template() } else { text })
            .map_err(|e| ParamError::new("Template", e.to_string()))?;
        let (known, prefixes) = mode.fields();
        template
            .check_fields(known, prefixes)
            .map_err(|e| ParamError::new("Template", e.to_string()))?;
        let period = u32::try_from(p.int("Period"))
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| ParamError::new("Period", "must be at least 1 second"))?;
        let label = p.text("LabelGroup").trim().to_string();
        if mode == Mode::ClientsOnline && label.is_empty() {
            return Err(ParamError::new("LabelGroup", "name the watch-list label").into());
        }
        let rule = Self {
            mode,
            url,
            target,
            receiver,
            template,
            names: AlertNameFilter::from_params(p),
            label,
            online_within: p.int("OnlineWithin"),
            first_seen_delay: p.int("FirstSeenDelay"),
            flows: FlowFilter {
                artifacts: p.regex("ArtifactsToAlertOn").clone(),
                ignored: p.regex("ArtifactsToIgnore").clone(),
                hunts: p.bool("NotifyHunts"),
            },
        };
        let setup = match mode {
            Mode::Alerts => Setup {
                queues: vec![ALERT_QUEUE.into()],
                tick_seconds: None,
                interests: rule.names.interests(),
            },
            Mode::ClientsOnline => Setup {
                queues: Vec::new(),
                tick_seconds: Some(period),
                interests: Vec::new(),
            },
            Mode::Flows => Setup {
                queues: vec![FLOW_COMPLETION_QUEUE.into()],
                tick_seconds: None,
                interests: Vec::new(),
            },
            Mode::ClientsEnrolled => Setup {
                queues: vec![FLOW_COMPLETION_QUEUE.into()],
                tick_seconds: None,
                interests: Vec::new(),
            },
        };
        Ok((rule, setup))
    }

    fn may_act(&self, row_text: &str) -> bool {
        self.mode != Mode::Alerts || self.names.may_pass(row_text)
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        match self.mode {
            Mode::Alerts => self.alert(event, host),
            Mode::ClientsEnrolled => self.enrolled(event, host),
            Mode::Flows => self.flow(event, host),
            Mode::ClientsOnline => Ok(Vec::new()),
        }
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        match self.mode {
            Mode::ClientsOnline => self.online(host),
            _ => Ok(Vec::new()),
        }
    }
}

/// `WebhookURL` or `SlackToken`: one http(s) address. There is no
/// default, not even a vendor's public endpoint: the host lets a module
/// post only where its configuration names.
fn webhook_url(p: &Params, target: Target) -> Result<String, ParamError> {
    let (url, param) = match (p.text("WebhookURL").trim(), p.text("SlackToken").trim()) {
        ("", "") => {
            let why = match target {
                Target::PagerDuty => format!(
                    "set WebhookURL to PagerDuty's endpoint, {} (an EU account: events.eu.pagerduty.com)",
                    pagerduty::EVENTS_URL
                ),
                Target::Telegram => "set WebhookURL to https://api.telegram.org/bot<token> (the bot's token)".into(),
                _ => "set WebhookURL (or SlackToken) to the webhook's address".into(),
            };
            return Err(ParamError::new("WebhookURL", why));
        }
        (url, "") => (url, "WebhookURL"),
        ("", token) => (token, "SlackToken"),
        (url, token) if url == token => (url, "WebhookURL"),
        _ => return Err(ParamError::new("SlackToken", "set WebhookURL or SlackToken, not both")),
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) || url.contains(char::is_whitespace) {
        return Err(ParamError::new(param, format!("{url:?} is not an http(s) address")));
    }
    Ok(url.to_string())
}

impl WebhookRule {
    /// The post of `text`, filled from `facts`; `data` is what a JSON
    /// target gets beside the text.
    fn post(&self, text: String, data: Value, facts: &Map<String, Value>, host: &dyn Host) -> Action {
        let settings = &self.receiver;
        // Where the receivers that take a link send their reader.
        let link = || {
            let server = host.server_info();
            facts::Facts(facts).gui_link(&Links::new(server.public_url.as_deref(), &server.org_id))
        };
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        let mut authorization = |scheme: &str| {
            headers.push(("Authorization".into(), format!("{scheme} {}", settings.api_key)));
        };
        let body = match self.target {
            Target::Slack | Target::Mattermost => json!({ "text": text }),
            Target::Teams => adaptive_card(&text),
            Target::TeamsLegacy => json!({
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": crate::render::elide_right(&text, 100),
                "text": text,
            }),
            // No mention pings, whatever the text holds.
            Target::Discord => json!({
                "content": facts::cut(&text, DISCORD_MAX_CHARS),
                "allowed_mentions": {"parse": []},
            }),
            // Plain text: no parse_mode, so nothing in it is markup.
            Target::Telegram => json!({
                "chat_id": settings.chat_id,
                "text": facts::cut(&text, TELEGRAM_MAX_CHARS),
                "link_preview_options": {"is_disabled": true},
            }),
            Target::Json => json!({ "text": text, "data": data }),
            Target::PagerDuty => pagerduty::trigger(&settings.routing_key, &text, facts, link().as_deref()),
            Target::TheHive => {
                authorization("Bearer");
                thehive::alert(&text, facts, link().as_deref())
            }
            Target::Iris => {
                authorization("Bearer");
                iris::alert(&text, facts, settings.customer_id, link().as_deref())
            }
            Target::SplunkHec => {
                authorization("Splunk");
                splunk::event(&text, facts, &settings.splunk)
            }
        };
        Action::Webhook(Webhook {
            url: self.url.clone(),
            headers,
            body: body.to_string().into_bytes(),
        })
    }

    /// Fills the template, escaping every value for the target.
    fn text(&self, values: &Map<String, Value>) -> String {
        let all = Value::Object(values.clone());
        self.template.fill(|field| {
            let value = values.get(field).or_else(|| get_path(&all, field));
            value.map(|v| self.target.escape(&render_value_or_empty(v)))
        })
    }

    fn alert(&self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let alert = AlertRow::parse(&event.row)?;
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
        let client = if alert.is_server() {
            None
        } else {
            host.client_info(&alert.client_id)?
        };
        let os = |key: &str| {
            client
                .as_ref()
                .map(|c| str_at(c, &format!("os_info.{key}")).to_string())
                .unwrap_or_default()
        };
        let timestamp = alert.time.map(|t| t.rfc3339_precise()).unwrap_or_default();
        let mut values = Map::new();
        for (key, value) in [
            ("name", alert.name.to_string()),
            ("client_id", alert.client_id.to_string()),
            ("hostname", os("hostname")),
            ("fqdn", os("fqdn")),
            ("artifact", alert.artifact.to_string()),
            ("artifact_type", alert.artifact_type.to_string()),
            ("flow_id", alert.flow_id.to_string()),
            ("timestamp", timestamp),
        ] {
            values.insert(key.into(), Value::String(value));
        }
        values.insert("event_data".into(), Value::Object(alert.event_data.into_owned()));
        let text = self.text(&values);
        Ok(vec![self.post(text, Value::Object(event.row.clone()), &values, host)])
    }

    fn online(&self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let now_us = host.now_us();
        let mut clients = host.clients(Some(&self.label))?;
        clients.sort_by(|a, b| str_at(a, "client_id").cmp(str_at(b, "client_id")));
        let labelled: Vec<&str> = clients.iter().map(|c| str_at(c, "client_id")).collect();
        let mut awaiting: Vec<String> = host
            .state_get(AWAITING_REMOVAL)
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        // Once the label is gone, the client may be watched again later.
        awaiting.retain(|id| labelled.contains(&id.as_str()));
        let mut actions = Vec::new();
        for client in &clients {
            let id = str_at(client, "client_id");
            let last_seen = u64_at(client, "last_seen_at");
            if id.is_empty() || last_seen == 0 {
                continue;
            }
            let seconds_ago = (now_us as i64 - last_seen as i64) / 1_000_000;
            // Seen "in the future" beyond a minute of clock skew: not yet
            // (a replay's world holds the whole session's last contacts).
            if seconds_ago >= self.online_within || seconds_ago < -60 {
                continue;
            }
            if awaiting.iter().any(|a| a == id) {
                host.log(
                    LogLevel::Debug,
                    &format!("client {id}: announced; waiting for label {} to be removed", self.label),
                );
                continue;
            }
            let mut values = Map::new();
            values.insert("client_id".into(), Value::String(id.into()));
            values.insert(
                "hostname".into(),
                Value::String(str_at(client, "os_info.hostname").into()),
            );
            values.insert("fqdn".into(), Value::String(str_at(client, "os_info.fqdn").into()));
            values.insert("last_seen".into(), Value::from(seconds_ago.max(0)));
            values.insert("label".into(), Value::String(self.label.clone()));
            actions.push(self.post(self.text(&values), Value::Object(values.clone()), &values, host));
            actions.push(Action::Label(LabelChange {
                client_id: id.to_string(),
                op: LabelOp::Remove,
                labels: vec![self.label.clone()],
            }));
            awaiting.push(id.to_string());
        }
        let json = serde_json::to_vec(&awaiting).unwrap_or_default();
        host.state_put(AWAITING_REMOVAL, &json, 0);
        Ok(actions)
    }

    /// A finished or failed collection: the artifacts it ran, its state
    /// and status; filtered as Server.Monitor.FlowCompletion filters
    /// (`ArtifactsToAlertOn`, `ArtifactsToIgnore` for a one-artifact
    /// collection, hunts only with `NotifyHunts`).
    fn flow(&self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let row = Value::Object(event.row.clone());
        let (client_id, flow_id) = (str_at(&row, "ClientId"), str_at(&row, "FlowId"));
        let flow = row
            .get("Flow")
            .filter(|f| f.is_object())
            .ok_or_else(|| Failure::BadEvent(format!("flow {flow_id}: the row has no Flow object")))?;
        if client_id.is_empty() || flow_id.is_empty() {
            return Err(Failure::BadEvent("the row has no ClientId or FlowId".into()));
        }
        let artifacts = strings_at(flow, "request.artifacts");
        let skip = |why: String| {
            host.log(LogLevel::Debug, &format!("flow {flow_id}: {why}"));
            Ok(Vec::new())
        };
        if flow_id.ends_with(".H") && !self.flows.hunts {
            return skip("a hunt's collection (NotifyHunts is off)".into());
        }
        if !self.flows.artifacts.matches_any(artifacts.iter().map(String::as_str)) {
            return skip(format!("no artifact of {artifacts:?} matches ArtifactsToAlertOn"));
        }
        if let [only] = artifacts.as_slice()
            && self.flows.ignored.is_match(only)
        {
            return skip(format!("{only} matches ArtifactsToIgnore"));
        }
        let client = host.client_info(client_id)?;
        let os = |key: &str| {
            client
                .as_ref()
                .map(|c| str_at(c, &format!("os_info.{key}")).to_string())
                .unwrap_or_default()
        };
        let state = super::flow_completion::state_name(flow).to_string();
        let failed = state != "FINISHED";
        let listed = artifacts.join(", ");
        let timestamp = row
            .get("Timestamp")
            .and_then(crate::vql::parse_timestamp)
            .map(|t| t.rfc3339())
            .unwrap_or_default();
        let mut values = Map::new();
        for (key, value) in [
            (
                "name",
                format!("Collection {}: {listed}", if failed { "failed" } else { "finished" }),
            ),
            ("client_id", client_id.to_string()),
            ("hostname", os("hostname")),
            ("fqdn", os("fqdn")),
            ("flow_id", flow_id.to_string()),
            ("artifacts", listed.clone()),
            ("state", state.clone()),
            ("status", str_at(flow, "status").to_string()),
            ("creator", str_at(flow, "request.creator").to_string()),
            ("timestamp", timestamp),
        ] {
            values.insert(key.into(), Value::String(value));
        }
        // What case management and paging read as the alert's context.
        let severity = if failed { "high" } else { "info" };
        values.insert(
            "event_data".into(),
            serde_json::json!({"Severity": severity, "State": state, "Artifacts": artifacts,
                               "TotalRows": u64_at(flow, "total_collected_rows")}),
        );
        let text = self.text(&values);
        Ok(vec![self.post(text, row, &values, host)])
    }

    fn enrolled(&self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let row = Value::Object(event.row.clone());
        let client_id = str_at(&row, "ClientId");
        if client_id.is_empty() || client_id == "server" {
            return Ok(Vec::new());
        }
        let with_results = strings_at(&row, "Flow.artifacts_with_results");
        let basic_information = VqlRegex::new("Generic.Client.Info/BasicInformation").expect("a valid regex");
        if !basic_information.matches_any(with_results.iter().map(String::as_str)) {
            return Ok(Vec::new());
        }
        let Some(client) = host.client_info(client_id)? else {
            return Err(Failure::BadEvent(format!(
                "client {client_id} is not known to the lookups"
            )));
        };
        let first_seen = u64_at(&client, "first_seen_at") as i64;
        let now = (host.now_us() / 1_000_000) as i64;
        if first_seen == 0 || now - first_seen >= self.first_seen_delay {
            host.log(
                LogLevel::Debug,
                &format!("client {client_id}: not new (first seen {} s ago)", now - first_seen),
            );
            return Ok(Vec::new());
        }
        let mut values = Map::new();
        values.insert("client_id".into(), Value::String(client_id.into()));
        values.insert(
            "hostname".into(),
            Value::String(str_at(&client, "os_info.hostname").into()),
        );
        values.insert("fqdn".into(), Value::String(str_at(&client, "os_info.fqdn").into()));
        values.insert(
            "first_seen".into(),
            Value::String(Timestamp::from_unix_seconds(first_seen).rfc3339()),
        );
        values.insert("flow_id".into(), Value::String(str_at(&row, "FlowId").into()));
        Ok(vec![self.post(
            self.text(&values),
            Value::Object(values.clone()),
            &values,
            host,
        )])
    }
}

mod facts;
mod identity;
mod iris;
mod observables;
mod pagerduty;
mod severity;

pub use self::severity::Severity;
mod splunk;
mod thehive;

#[cfg(test)]
mod tests;
