//! Generic.Utils.SendEmail as a module: each row of its queue (default
//! `Generic.Utils.SendEmail`) is a message to send, carrying that
//! artifact's parameters by their names (`Recipients`, `Subject`,
//! `PlainTextMessage`, `HTMLMessage`, `Sender`, `Secret`,
//! `FilesToUpload`); what a row leaves out comes from the module's own
//! parameters, which default as the artifact does (docs/velociraptor.md
//! §5).
//!
//! Where it differs, on purpose (README, SendEmail):
//! - the message is built as every velonotify e-mail is (`mime`): text
//!   parts always base64 (`EncodeText` is accepted), boundaries quoted and
//!   never in the parts (`UseSimpleBoundary` is accepted);
//! - a file `FilesToUpload` names is read from the server's file store
//!   through the API, or comes in the row as base64 (`Content`); a file
//!   that cannot be attached refuses the message, saying which, instead of
//!   sending it without (Velociraptor logs a warning and sends);
//! - recipients must match `RecipientsAllowed`: whoever may post rows may
//!   not mail the world.

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{Rule, Setup};
use crate::action::{Action, Email, Failure};
use crate::host::{Event, Host, LogLevel};
use crate::mime::{Attachment, MailContent, build_message};
use crate::params::{ParamError, ParamKind, ParamSpec, Params};
use crate::recipients::{is_address, unique};
use crate::render::elide_right;
use crate::vql::VqlRegex;

/// The queue a notebook's or artifact's rows arrive on by default.
pub const SEND_EMAIL_QUEUE: &str = "Generic.Utils.SendEmail";

/// Most recipients of one message.
const MAX_RECIPIENTS: usize = 100;
/// Most files attached to one message.
const MAX_FILES: usize = 20;
/// Longest subject kept, in bytes.
const MAX_SUBJECT_BYTES: usize = 998;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new(
        "Queue",
        ParamKind::String,
        SEND_EMAIL_QUEUE,
        "The queue whose rows are messages to send.",
    ),
    ParamSpec::new(
        "Secret",
        ParamKind::String,
        "",
        "The SMTP Creds secret to send with (a row may name another).",
    ),
    ParamSpec::new(
        "Recipients",
        ParamKind::JsonArray,
        r#"["noone@example.org"]"#,
        "Recipients of rows that name none.",
    ),
    ParamSpec::new("Sender", ParamKind::String, "", "From (empty: the server's sender)."),
    ParamSpec::new(
        "FilesToUpload",
        ParamKind::Csv,
        "Path,Filename",
        "Files attached to rows that name none: Path in the file store, Filename shown.",
    ),
    ParamSpec::new("PlainTextMessage", ParamKind::String, "", "The text body."),
    ParamSpec::new("HTMLMessage", ParamKind::String, "", "The HTML body."),
    ParamSpec::new(
        "EncodeText",
        ParamKind::Bool,
        "Y",
        "Accepted for compatibility: text parts are always base64.",
    ),
    ParamSpec::new(
        "Subject",
        ParamKind::String,
        "A message from Velociraptor",
        "The subject of rows that name none.",
    ),
    ParamSpec::new(
        "Period",
        ParamKind::Int,
        "10",
        "Least seconds between two messages (0 means 60, negative: none); with throttle_mode = \"queue\" \
         each waits for its turn.",
    ),
    ParamSpec::new(
        "UseSimpleBoundary",
        ParamKind::Bool,
        "N",
        "Accepted for compatibility: boundaries are always simple and quoted.",
    ),
    ParamSpec::new(
        "RecipientsAllowed",
        ParamKind::Regex,
        ".+",
        "Every recipient must match (who may post rows may not mail the world).",
    ),
];

/// The configured SendEmail module.
#[derive(Debug, Clone)]
pub struct SendEmailRule {
    /// What a row leaves out.
    defaults: Message,
    allowed: VqlRegex,
    period: i64,
}

/// One entry of `FilesToUpload`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileToUpload {
    /// Its path in the server's file store (empty when inline).
    path: String,
    /// The name the reader sees (default: the path's last part).
    filename: String,
    /// The file's bytes given in the row (`Content`, base64).
    inline: Option<Vec<u8>>,
}

impl Rule for SendEmailRule {
    const NAME: &'static str = "Generic.Utils.SendEmail";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Sends the messages posted on its queue (Generic.Utils.SendEmail's parameters: \
         Recipients, Subject, PlainTextMessage, HTMLMessage, Sender, Secret, FilesToUpload) through the outbox.";
    const PARAMS: &'static [ParamSpec] = PARAMS;

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let queue = p.text("Queue").trim();
        if queue.is_empty() {
            return Err(ParamError::new("Queue", "name the queue of the messages").into());
        }
        let allowed = p.regex("RecipientsAllowed").clone();
        let recipients = recipients_of(&Value::Array(p.list("Recipients").to_vec()), &allowed)
            .map_err(|why| ParamError::new("Recipients", why))?;
        let files = p
            .table("FilesToUpload")
            .iter()
            .map(file_of)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| ParamError::new("FilesToUpload", why))?;
        let defaults = Message {
            secret: p.text("Secret").trim().to_string(),
            recipients,
            sender: p.text("Sender").trim().to_string(),
            files,
            text: p.text("PlainTextMessage").to_string(),
            html: p.text("HTMLMessage").to_string(),
            subject: p.text("Subject").to_string(),
        };
        let rule = Self {
            defaults,
            allowed,
            period: p.int("Period"),
        };
        let setup = Setup {
            queues: vec![queue.to_string()],
            tick_seconds: None,
            interests: Vec::new(),
        };
        Ok((rule, setup))
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let message = self.message_of(&event.row)?;
        let server = host.server_info();
        let attachments = attach(&message.files, server.max_email_bytes, host)?;
        let sender = match message.sender.as_str() {
            "" => server.default_sender.clone(),
            sender => sender.to_string(),
        };
        if !is_address(&sender) {
            return Err(Failure::BadEvent(format!(
                "Sender: {sender:?} is not an e-mail address"
            )));
        }
        let date = (host.now_us() / 1_000_000) as i64;
        // Ingest numbers each post's rows from 1: the row's time and content
        // keep two messages' Message-IDs apart.
        // (The identity is hashed into the Message-ID and boundaries.)
        let row = serde_json::to_string(&event.row).unwrap_or_default();
        let identity = format!("send-email/{}/{}/{row}", event.id, host.now_us());
        let text = message.text.clone();
        let html = (!message.html.is_empty()).then(|| message.html.clone());
        let bytes = build_message(&MailContent {
            from: &sender,
            to: &message.recipients,
            subject: &message.subject,
            date_unix: date,
            identity: &identity,
            text: &text,
            html: html.as_deref(),
            attachments: &attachments,
        });
        if bytes.len() as u64 > server.max_email_bytes {
            return Err(Failure::BadEvent(format!(
                "the message is {} bytes, over the host's {} (its attachments are too large)",
                bytes.len(),
                server.max_email_bytes
            )));
        }
        host.log(
            LogLevel::Info,
            &format!(
                "message {:?} to {} with {} attachment(s)",
                message.subject,
                message.recipients.join(", "),
                attachments.len()
            ),
        );
        Ok(vec![Action::Email(Email {
            secret: (!message.secret.is_empty()).then_some(message.secret),
            sender,
            recipients: message.recipients,
            subject: message.subject,
            message: bytes,
            send_interval_seconds: self.period,
            link: None,
            text,
            html,
        })])
    }
}

/// One message: a row's, the module's parameters filling what it leaves
/// out (the rule keeps those as a `Message` too).
#[derive(Debug, Clone)]
struct Message {
    secret: String,
    recipients: Vec<String>,
    sender: String,
    files: Vec<FileToUpload>,
    text: String,
    html: String,
    subject: String,
}

impl SendEmailRule {
    fn message_of(&self, row: &Map<String, Value>) -> Result<Message, Failure> {
        let bad = |field: &str, why: String| Failure::BadEvent(format!("{field}: {why}"));
        let text_at = |field: &str, default: &str| -> Result<String, Failure> {
            match row.get(field) {
                None | Some(Value::Null) => Ok(default.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(bad(field, format!("expected text, got {other}"))),
            }
        };
        let recipients = match row.get("Recipients") {
            None | Some(Value::Null) => self.defaults.recipients.clone(),
            Some(given) => recipients_of(given, &self.allowed).map_err(|why| bad("Recipients", why))?,
        };
        let files = match row.get("FilesToUpload") {
            None | Some(Value::Null) => self.defaults.files.clone(),
            Some(given) => files_of(given).map_err(|why| bad("FilesToUpload", why))?,
        };
        let message = Message {
            secret: text_at("Secret", &self.defaults.secret)?.trim().to_string(),
            recipients,
            sender: text_at("Sender", &self.defaults.sender)?.trim().to_string(),
            files,
            text: text_at("PlainTextMessage", &self.defaults.text)?,
            html: text_at("HTMLMessage", &self.defaults.html)?,
            subject: elide_right(&text_at("Subject", &self.defaults.subject)?, MAX_SUBJECT_BYTES).into_owned(),
        };
        if message.text.is_empty() && message.html.is_empty() && message.files.is_empty() {
            return Err(Failure::BadEvent(
                "nothing to send: PlainTextMessage, HTMLMessage and FilesToUpload are all empty".into(),
            ));
        }
        Ok(message)
    }
}

/// Recipients as the artifact takes them (a list), or as a notebook may
/// write them (JSON text of a list, or addresses separated by commas):
/// each an address matching `allowed`, at most [`MAX_RECIPIENTS`].
fn recipients_of(given: &Value, allowed: &VqlRegex) -> Result<Vec<String>, String> {
    let listed: Vec<String> = match given {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("{v} is not text")))
            .collect::<Result<_, _>>()?,
        Value::String(text) if text.trim_start().starts_with('[') => {
            let parsed: Value = serde_json::from_str(text).map_err(|e| format!("not a JSON list: {e}"))?;
            return recipients_of(&parsed, allowed);
        }
        Value::String(text) => text.split([',', ';', '\n']).map(str::to_string).collect(),
        other => return Err(format!("expected a list of addresses, got {other}")),
    };
    let addresses = unique(
        listed
            .into_iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty()),
    );
    if addresses.is_empty() {
        return Err("no recipient".into());
    }
    if addresses.len() > MAX_RECIPIENTS {
        return Err(format!("{} recipients, more than {MAX_RECIPIENTS}", addresses.len()));
    }
    for address in &addresses {
        if !is_address(address) {
            return Err(format!("{address:?} is not an e-mail address"));
        }
        if !allowed.is_match(address) {
            return Err(format!("{address:?} is not allowed by RecipientsAllowed"));
        }
    }
    Ok(addresses)
}

/// `FilesToUpload` of a row: a list of `{Path, Filename, Content}` (the
/// artifact's dicts; `Content` is velonotify's inline base64), or CSV text.
fn files_of(given: &Value) -> Result<Vec<FileToUpload>, String> {
    let rows: Vec<Map<String, Value>> = match given {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_object().cloned().ok_or_else(|| format!("{v} is not an object")))
            .collect::<Result<_, _>>()?,
        Value::String(text) => crate::params::parse_csv_table(text)?,
        other => return Err(format!("expected a list of files, got {other}")),
    };
    if rows.len() > MAX_FILES {
        return Err(format!("{} files, more than {MAX_FILES}", rows.len()));
    }
    rows.iter().map(file_of).collect()
}

fn file_of(row: &Map<String, Value>) -> Result<FileToUpload, String> {
    let at = |name: &str| row.get(name).and_then(Value::as_str).unwrap_or("").trim().to_string();
    let (path, content) = (at("Path"), at("Content"));
    let inline = match content.is_empty() {
        true => None,
        false => Some(
            base64::engine::general_purpose::STANDARD
                .decode(content.as_bytes())
                .map_err(|e| format!("the Content of {path:?} is not base64: {e}"))?,
        ),
    };
    if path.is_empty() && inline.is_none() {
        return Err("a file without Path or Content".into());
    }
    let filename = match at("Filename") {
        name if !name.is_empty() => name,
        _ => path.rsplit(['/', '\\']).next().unwrap_or("").to_string(),
    };
    let filename = match filename.rsplit(['/', '\\']).next() {
        Some(base) if !base.is_empty() => base.to_string(),
        _ => "attachment".to_string(),
    };
    Ok(FileToUpload { path, filename, inline })
}

/// The files, read from the row or the server's file store, within the
/// host's e-mail size: a file that is missing or does not fit refuses the
/// message; a store that cannot be reached now is a lookup failure (the
/// row is handed again later).
fn attach(files: &[FileToUpload], max_email_bytes: u64, host: &dyn Host) -> Result<Vec<Attachment>, Failure> {
    // Base64 makes 3 bytes 4 (plus line ends): the raw budget is 3/4.
    let mut budget = max_email_bytes / 4 * 3;
    let mut attachments = Vec::with_capacity(files.len());
    for file in files {
        let data = match &file.inline {
            Some(data) => data.clone(),
            None => {
                let read = host.server_file(&file.path, budget)?.ok_or_else(|| {
                    Failure::BadEvent(format!("FilesToUpload: {:?} is not in the file store", file.path))
                })?;
                if read.truncated {
                    return Err(Failure::BadEvent(format!(
                        "FilesToUpload: {:?} is larger than the {} bytes left for attachments",
                        file.path, budget
                    )));
                }
                read.data
            }
        };
        budget = budget
            .checked_sub(data.len() as u64)
            .ok_or_else(|| Failure::BadEvent(format!("FilesToUpload: {:?} does not fit the e-mail", file.filename)))?;
        attachments.push(Attachment {
            filename: file.filename.clone(),
            content_type: content_type_of(&file.filename).to_string(),
            data,
        });
    }
    Ok(attachments)
}

/// The media type a reader's mail client opens the file with.
fn content_type_of(filename: &str) -> &'static str {
    let extension = filename.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("jsonl" | "ndjson") => "application/x-ndjson",
        Some("txt" | "log") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("pdf") => "application/pdf",
        Some("zip") => "application/zip",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests;
