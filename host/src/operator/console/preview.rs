//! `/preview`: JSON lines pasted or uploaded, and what each module would
//! do with them: a replay on a throw-away state (the service's state,
//! outbox and silences are not touched, nothing is delivered), with the
//! e-mails as they would be rendered. Read-only: viewers may preview.
//!
//! The replay needs the configuration, which this room does not see: the
//! service hands the console a [`Previewer`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use maud::{Markup, html};

use super::Console;
use super::auth::{Session, redirect};
use super::layout::{page, respond};
use super::outbox::sandboxed;

/// Rows a preview takes at most, and bytes.
const MAX_LINES: usize = 1_000;
const MAX_BYTES: usize = 1 << 20;
/// Previews kept to be looked at (the oldest goes).
const KEPT: usize = 8;

/// Replays rows through the configured modules on a throw-away state.
pub trait Previewer: Send + Sync + std::fmt::Debug {
    fn preview(&self, rows: &[u8]) -> anyhow::Result<Preview>;
}

/// What the modules did with the rows.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    pub events: u64,
    /// Lines that were not events.
    pub skipped: u64,
    /// Each notification or action, in order.
    pub actions: Vec<PreviewAction>,
    /// The warnings and errors of the replay.
    pub log: Vec<String>,
}

/// One thing a module asked for.
#[derive(Debug, Clone, Default)]
pub struct PreviewAction {
    pub module: String,
    pub kind: String,
    pub recipients: Vec<String>,
    pub subject: String,
    /// sent, or what would have held it back (silenced, inhibited, ...).
    pub fate: String,
    pub held_by: String,
    /// An e-mail's parts.
    pub html: Option<String>,
    pub text: Option<String>,
}

/// The previews made, by id, each for the user who made it.
#[derive(Debug, Default)]
pub(super) struct Previews(Mutex<VecDeque<(String, String, Arc<Preview>)>>);

impl Previews {
    fn keep(&self, user: &str, preview: Preview) -> String {
        let id = super::auth::random_token();
        let mut kept = self.0.lock().expect("previews lock");
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((id.clone(), user.to_string(), Arc::new(preview)));
        id
    }

    fn get(&self, user: &str, id: &str) -> Option<Arc<Preview>> {
        let kept = self.0.lock().expect("previews lock");
        kept.iter()
            .find(|(i, u, _)| i == id && u == user)
            .map(|(_, _, p)| p.clone())
    }
}

/// `GET /preview`.
pub(super) async fn form(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    match console.session(&headers) {
        Ok(session) => respond(
            StatusCode::OK,
            page("Preview", Some(&session), preview_form(&session, None)),
        ),
        Err(denied) => denied.response(),
    }
}

fn preview_form(session: &Session, problem: Option<&str>) -> Markup {
    html! {
        p { "Paste JSON lines (one Velociraptor row each, with " code { "_Source" } " naming its queue), or upload a file of them: \
             every module of this configuration handles them on a state of its own. Nothing is delivered, and the \
             service's state is not touched." }
        @if let Some(problem) = problem { p #problem { (problem) } }
        form #preview method="post" action="/preview" enctype="multipart/form-data" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Rows " textarea name="rows" rows="8" {} }
            label { "Or a file " input type="file" name="file" accept=".jsonl,.json,application/json"; }
            button #run-preview type="submit" { "Preview" }
        }
    }
}

/// `POST /preview`: runs one, then shows it.
pub(super) async fn run(State(console): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Response {
    let Some(previewer) = console.context.previewer.clone() else {
        return (StatusCode::NOT_FOUND, "no preview in this process").into_response();
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = match crate::http::read_bounded(body, MAX_BYTES + (16 << 10), std::time::Duration::from_secs(30)).await
    {
        Ok(bytes) => bytes,
        Err(refusal) => return super::auth::forbidden(&refusal.to_string()),
    };
    let fields = match form_fields(&content_type, &bytes) {
        Ok(fields) => fields,
        Err(problem) => return super::auth::forbidden(&problem),
    };
    let csrf = String::from_utf8_lossy(fields.get("csrf").map_or(&[][..], Vec::as_slice)).into_owned();
    let session = match console.form_session(&headers, &csrf) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let rows = match rows_of(&fields) {
        Ok(rows) => rows,
        Err(problem) => {
            return respond(
                StatusCode::BAD_REQUEST,
                page("Preview", Some(&session), preview_form(&session, Some(&problem))),
            );
        }
    };
    tracing::info!(user = %session.user, bytes = rows.len(), "console: preview");
    let replayed = tokio::task::spawn_blocking(move || previewer.preview(&rows)).await;
    match replayed {
        Ok(Ok(preview)) => {
            let id = console.previews.keep(&session.user, preview);
            redirect(&format!("/preview/{id}"), &[])
        }
        Ok(Err(e)) => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            page(
                "Preview",
                Some(&session),
                preview_form(&session, Some(&format!("The preview failed: {e:#}"))),
            ),
        ),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            page(
                "Preview",
                Some(&session),
                preview_form(&session, Some(&format!("The preview stopped: {e}"))),
            ),
        ),
    }
}

/// The rows of the form: the file's, else the pasted ones, bounded.
fn rows_of(fields: &std::collections::HashMap<String, Vec<u8>>) -> Result<Vec<u8>, String> {
    let rows = [fields.get("file"), fields.get("rows")]
        .into_iter()
        .flatten()
        .find(|r| !r.iter().all(u8::is_ascii_whitespace))
        .ok_or("paste rows or choose a file")?;
    if rows.len() > MAX_BYTES {
        return Err(format!(
            "{} bytes of rows; a preview takes at most {MAX_BYTES}",
            rows.len()
        ));
    }
    let lines = rows.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    if lines > MAX_LINES {
        return Err(format!("{lines} lines; a preview takes at most {MAX_LINES}"));
    }
    Ok(rows.clone())
}

/// The fields of a `multipart/form-data` body, by name. The body is read
/// as the MIME message it is, with the request's own content type.
fn form_fields(content_type: &str, body: &[u8]) -> Result<std::collections::HashMap<String, Vec<u8>>, String> {
    if !content_type.starts_with("multipart/form-data") || content_type.contains(['\r', '\n']) {
        return Err("the form must be sent as multipart/form-data".into());
    }
    let mut message = format!("Content-Type: {content_type}\r\n\r\n").into_bytes();
    message.extend_from_slice(body);
    let parsed = mailparse::parse_mail(&message).map_err(|e| format!("the form cannot be read: {e}"))?;
    let mut fields = std::collections::HashMap::new();
    for part in &parsed.subparts {
        let disposition = part.get_content_disposition();
        if let (Some(name), Ok(value)) = (disposition.params.get("name"), part.get_body_raw()) {
            fields.insert(name.clone(), value);
        }
    }
    Ok(fields)
}

/// `GET /preview/{id}`.
pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let Some(preview) = console.previews.get(&session.user, &id) else {
        let body =
            html! { p #problem { "This preview is gone (the console keeps the last " (KEPT) "): run it again." } };
        return respond(StatusCode::NOT_FOUND, page("Preview", Some(&session), body));
    };
    let body = html! {
        p #replayed { (preview.events) " rows replayed, " (preview.skipped) " lines skipped, "
            (preview.actions.len()) " actions. Nothing was delivered." }
        @if preview.actions.is_empty() { p { "No module asked for anything." } }
        @for (n, action) in preview.actions.iter().enumerate() {
            section .action {
                h2 { (action.module) ": " (action.kind) }
                p .what { "To " (action.recipients.join(", ")) @if !action.subject.is_empty() { ": " span .subject { (action.subject) } } }
                @if action.fate != "sent" { p .fate { (action.fate) " by " (action.held_by) } }
                @if action.html.is_some() {
                    iframe .email sandbox="" referrerpolicy="no-referrer" title="The e-mail as it would be rendered"
                        src={ "/preview/" (id) "/" (n) "/html" } {}
                }
                @if let Some(text) = &action.text { details { summary { "Text part" } pre { (text) } } }
            }
        }
        @if !preview.log.is_empty() {
            h2 { "Warnings" }
            pre #log { @for line in &preview.log { (line) "\n" } }
        }
        p { a href="/preview" { "Another preview" } }
    };
    respond(StatusCode::OK, page("Preview", Some(&session), body))
}

/// `GET /preview/{id}/{n}/html`: the n-th action's e-mail, sandboxed.
pub(super) async fn email(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((id, n)): Path<(String, usize)>,
) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let html = console
        .previews
        .get(&session.user, &id)
        .and_then(|p| p.actions.get(n).and_then(|a| a.html.clone()));
    match html {
        Some(html) => sandboxed(html),
        None => (StatusCode::NOT_FOUND, "no such e-mail").into_response(),
    }
}
