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
use axum::response::Response;
use maud::{Markup, html};

use super::Console;
use super::auth::{Denied, Session, redirect};
use super::layout::{page, respond};
use super::outbox::sandboxed;

/// Rows a preview takes at most, and bytes.
const MAX_LINES: usize = 1_000;
const MAX_BYTES: usize = 1 << 20;
/// Previews kept to be looked at (the oldest goes), in all and per user.
const KEPT: usize = 8;
const KEPT_PER_USER: usize = 2;
/// Octets of e-mails a kept preview holds at most; the e-mails past it are
/// listed without their text.
const KEPT_BYTES: usize = 8 << 20;

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

/// A preview kept for the user who made it.
#[derive(Debug)]
struct Kept {
    id: String,
    user: String,
    preview: Arc<Preview>,
    /// E-mails left out past [`KEPT_BYTES`].
    trimmed: usize,
}

/// The previews made, and the one running.
#[derive(Debug)]
pub(super) struct Previews {
    kept: Mutex<VecDeque<Kept>>,
    /// One preview at a time: each starts every module.
    running: Arc<tokio::sync::Semaphore>,
}

impl Default for Previews {
    fn default() -> Self {
        Self {
            kept: Mutex::default(),
            running: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

impl Previews {
    fn keep(&self, user: &str, mut preview: Preview) -> String {
        let trimmed = trim(&mut preview);
        let id = super::auth::random_token();
        let mut kept = self.kept.lock().expect("previews lock");
        let users = kept.iter().filter(|k| k.user == user).count();
        if users >= KEPT_PER_USER
            && let Some(oldest) = kept.iter().position(|k| k.user == user)
        {
            kept.remove(oldest);
        } else if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(Kept {
            id: id.clone(),
            user: user.to_string(),
            preview: Arc::new(preview),
            trimmed,
        });
        id
    }

    fn get(&self, user: &str, id: &str) -> Option<(Arc<Preview>, usize)> {
        let kept = self.kept.lock().expect("previews lock");
        kept.iter()
            .find(|k| k.id == id && k.user == user)
            .map(|k| (k.preview.clone(), k.trimmed))
    }
}

/// Leaves out the e-mails past [`KEPT_BYTES`]; returns how many.
fn trim(preview: &mut Preview) -> usize {
    let mut bytes = 0;
    let mut trimmed = 0;
    for action in &mut preview.actions {
        bytes += action.html.as_ref().map_or(0, String::len) + action.text.as_ref().map_or(0, String::len);
        if bytes > KEPT_BYTES && (action.html.is_some() || action.text.is_some()) {
            (action.html, action.text) = (None, None);
            trimmed += 1;
        }
    }
    trimmed
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
        return super::layout::text(StatusCode::NOT_FOUND, "This process makes no previews.".into());
    };
    // Who asks, and from where, before a megabyte is read.
    if let Err(denied) = console.session(&headers) {
        return denied.response();
    }
    if !console.posted_from_console(&headers) {
        return Denied::ForeignForm.response();
    }
    let Ok(permit) = console.previews.running.clone().try_acquire_owned() else {
        return refused(
            StatusCode::TOO_MANY_REQUESTS,
            "A preview is running: try again in a moment.",
        );
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = match crate::http::read_bounded(body, MAX_BYTES + (16 << 10), std::time::Duration::from_secs(30)).await
    {
        Ok(bytes) => bytes,
        Err(refusal) => return refused(refusal.status(), &refusal.to_string()),
    };
    let fields = match form_fields(&content_type, &bytes) {
        Ok(fields) => fields,
        Err(problem) => return refused(StatusCode::BAD_REQUEST, &problem),
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
    // The permit goes with the replay, which runs on if the browser leaves.
    let replayed = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        previewer.preview(&rows)
    })
    .await;
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

fn refused(status: StatusCode, why: &str) -> Response {
    respond(status, page("Refused", None, html! { p #refusal { (why) } }))
}

/// `GET /preview/{id}`.
pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let Some((preview, trimmed)) = console.previews.get(&session.user, &id) else {
        let body = html! { p #problem { "This preview is gone (the console keeps the last " (KEPT_PER_USER) " of each user): run it again." } };
        return respond(StatusCode::NOT_FOUND, page("Preview", Some(&session), body));
    };
    let body = html! {
        p #replayed { (preview.events) " rows replayed, " (preview.skipped) " lines skipped, "
            (preview.actions.len()) " actions. Nothing was delivered." }
        @if trimmed > 0 { p .hint { (trimmed) " e-mails are listed without their text: a preview keeps at most " (KEPT_BYTES >> 20) " MiB of them." } }
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
        .and_then(|(p, _)| p.actions.get(n).and_then(|a| a.html.clone()));
    match html {
        Some(html) => sandboxed(html),
        None => super::layout::text(StatusCode::NOT_FOUND, "There is no such e-mail in this preview.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A preview of a thousand large e-mails keeps the first few megabytes
    /// of them and lists the rest.
    #[test]
    fn a_kept_preview_holds_a_bounded_size_of_e_mails() {
        let email = |n: usize| PreviewAction {
            html: Some("x".repeat(n)),
            text: Some(String::new()),
            ..PreviewAction::default()
        };
        let mut preview = Preview {
            actions: vec![email(5 << 20), email(5 << 20), PreviewAction::default(), email(1)],
            ..Preview::default()
        };
        assert_eq!(trim(&mut preview), 2);
        let kept: Vec<bool> = preview.actions.iter().map(|a| a.html.is_some()).collect();
        assert_eq!(kept, [true, false, false, false]);
        assert_eq!(preview.actions.len(), 4, "every action is still listed");
    }

    #[test]
    fn each_user_keeps_their_latest_previews() {
        let previews = Previews::default();
        let first = previews.keep("ann", Preview::default());
        let second = previews.keep("ann", Preview::default());
        let vics = previews.keep("vic", Preview::default());
        let third = previews.keep("ann", Preview::default());
        assert!(previews.get("ann", &first).is_none(), "ann's oldest went");
        assert!(previews.get("ann", &second).is_some() && previews.get("ann", &third).is_some());
        assert!(previews.get("vic", &vics).is_some(), "vic's stays");
        assert!(previews.get("vic", &third).is_none(), "ann's are ann's");
    }
}
