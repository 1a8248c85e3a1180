//! `/outbox`: the items, filtered by status, module, kind, time and text;
//! an item's detail, with its e-mail as it was rendered; retry and purge of
//! dead items for operators.
//!
//! Everything an item holds came from event data or a module: it is shown
//! as text (maud escapes it), and an e-mail's HTML only inside a frame
//! whose own answer forbids script, forms, navigation and any request
//! (`Content-Security-Policy: sandbox; default-src 'none'`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use super::auth::{Session, TokenForm, redirect};
use super::layout::{page, respond, shown_time, unavailable};
use crate::pipeline::files::message_part;
use crate::store::{KEPT_PER_ITEM, Kind, OutboxFilter, OutboxItem, SEARCH_SCAN, SearchPage, Status, Unreadable};

/// Items on one page of the list.
const PAGE: usize = 50;

/// The policy of an e-mail's HTML: no script, no request of any kind
/// (a tracking pixel in event data stays unloaded), inline styles only
/// (the modules' templates style inline), framed by the console alone.
const EMAIL_POLICY: &str =
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'";

/// The list's filters, as the form sends them (empty fields pass all).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Filters {
    status: String,
    module: String,
    kind: String,
    /// Created within the last this many hours.
    hours: String,
    text: String,
    before: String,
}

impl Filters {
    /// The store's filter, or what is wrong with a field.
    fn parse(&self, now_us: u64) -> Result<OutboxFilter, String> {
        let status = some(&self.status)
            .map(|s| Status::parse(s).ok_or_else(|| format!("status {s:?} is not one the outbox knows")))
            .transpose()?;
        let kind = some(&self.kind)
            .map(|k| Kind::parse(k).ok_or_else(|| format!("kind {k:?} is not one the outbox knows")))
            .transpose()?;
        let hours = some(&self.hours)
            .map(|h| {
                h.parse::<u64>()
                    .ok()
                    .filter(|h| (1..=24 * 366).contains(h))
                    .ok_or_else(|| format!("hours {h:?} is not a whole number from 1 to 8784"))
            })
            .transpose()?;
        let before_id = some(&self.before)
            .map(|b| b.parse::<i64>().map_err(|_| format!("before {b:?} is not an item id")))
            .transpose()?;
        Ok(OutboxFilter {
            status,
            module: some(&self.module).map(str::to_string),
            kind,
            since_us: hours.map(|h| now_us.saturating_sub(h * 3_600_000_000)),
            until_us: None,
            before_id,
            text: some(&self.text).map(|t| t.chars().take(200).collect()),
        })
    }

    /// The query string of the next page.
    fn next_page(&self, before: i64) -> String {
        serde_urlencoded::to_string([
            ("status", self.status.as_str()),
            ("module", self.module.as_str()),
            ("kind", self.kind.as_str()),
            ("hours", self.hours.as_str()),
            ("text", self.text.as_str()),
            ("before", &before.to_string()),
        ])
        .unwrap_or_default()
    }
}

/// A field's text, None when it is empty.
fn some(text: &str) -> Option<&str> {
    Some(text.trim()).filter(|t| !t.is_empty())
}

/// `GET /outbox`.
pub(super) async fn list(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(filters): Query<Filters>,
) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let filter = match filters.parse(console.clock.now_us()) {
        Ok(filter) => filter,
        Err(problem) => {
            let body = html! { (filter_form(&filters)) p #problem { (problem) } };
            return respond(StatusCode::BAD_REQUEST, page("Outbox", Some(&session), body));
        }
    };
    let SearchPage { items, scanned_to } = match console.off_thread(move |c| c.store.search(&filter, PAGE)).await {
        Ok(found) => found,
        Err(e) => return unavailable(&session, &e.to_string()),
    };
    let last = items.last().map(|item| match item {
        Ok(item) => item.id,
        Err(unreadable) => unreadable.id,
    });
    // A full page goes on below its last item; a text search that read
    // its bound, below the last row it read.
    let older = if items.len() == PAGE { last } else { scanned_to };
    let body = html! {
        (filter_form(&filters))
        @if scanned_to.is_some() && items.len() < PAGE {
            p .hint { "The text was looked for in the newest " (SEARCH_SCAN) " items that pass the other filters; \
                       the link below looks further." }
        }
        @if items.is_empty() { p #none { "No item passes these filters." } }
        @else {
            table #items {
                tr { th { "Item" } th { "Created" } th { "Module" } th { "Status" } th { "What" } }
                @for item in &items { (row(item)) }
            }
        }
        @if let Some(older) = older {
            p { a #older href={ "/outbox?" (filters.next_page(older)) } { "Older items" } }
        }
    };
    respond(StatusCode::OK, page("Outbox", Some(&session), body))
}

fn filter_form(filters: &Filters) -> Markup {
    html! {
        form .filters method="get" action="/outbox" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for status in Status::ALL {
                        option value=(status.as_str()) selected[filters.status == status.as_str()] { (status.as_str()) }
                    }
                }
            }
            label { "Module" input name="module" value=(filters.module) size="14"; }
            label { "Kind"
                select name="kind" {
                    option value="" { "any" }
                    @for kind in Kind::ALL {
                        option value=(kind.as_str()) selected[filters.kind == kind.as_str()] { (kind.as_str()) }
                    }
                }
            }
            label { "Last hours" input name="hours" value=(filters.hours) size="5" inputmode="numeric"; }
            label { "Text" input name="text" value=(filters.text) size="18"; }
            button #filter type="submit" { "Filter" }
        }
    }
}

fn row(item: &Result<OutboxItem, Unreadable>) -> Markup {
    match item {
        Ok(item) => html! {
            tr .item data-id=(item.id) {
                td { a href={ "/outbox/" (item.id) } { (item.id) } }
                td { (shown_time(item.created_us)) }
                td { (item.module) }
                td .status { (item.status.as_str()) }
                td .what { (what(item)) }
            }
        },
        Err(unreadable) => html! {
            tr .item .unreadable data-id=(unreadable.id) {
                td { a href={ "/outbox/" (unreadable.id) } { (unreadable.id) } }
                td colspan="4" { "Cannot be read: " (unreadable.reason) }
            }
        },
    }
}

/// "e-mail to a@b: Subject", as text (a webhook's address without its
/// secrets, as `recipients` gives it).
fn what(item: &OutboxItem) -> String {
    let to = item.payload.recipients().join(", ");
    match item.payload.subject() {
        Some(subject) => format!("{} to {to}: {subject}", item.kind()),
        None => format!("{} to {to}", item.kind()),
    }
}

/// The item of a path, or the answer that says why there is none.
fn find(console: &Console, session: &Session, id: i64) -> Result<OutboxItem, Box<Response>> {
    match console.store.item(id) {
        Ok(Some(Ok(item))) => Ok(item),
        Ok(Some(Err(unreadable))) => Err(Box::new(respond(
            StatusCode::OK,
            page(
                &format!("Item {id}"),
                Some(session),
                html! { p #problem { (unreadable.to_string()) } },
            ),
        ))),
        Ok(None) => Err(Box::new(respond(
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                Some(session),
                html! { p #problem { "There is no item " (id) " (purged, or never made)." } },
            ),
        ))),
        Err(e) => Err(Box::new(unavailable(session, &e.to_string()))),
    }
}

/// `GET /outbox/{id}`.
pub(super) async fn detail(State(console): State<Arc<Console>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let item = match find(&console, &session, id) {
        Ok(item) => item,
        Err(answer) => return *answer,
    };
    let text = (item.kind() == Kind::Email)
        .then(|| message_part(&item.body, "text/plain"))
        .flatten()
        .map(|text| as_seen_by(&session, text));
    let has_html = item.kind() == Kind::Email && message_part(&item.body, "text/html").is_some();
    let attempts = match console.store.attempts(item.id) {
        Ok(attempts) => attempts,
        Err(e) => return unavailable(&session, &e.to_string()),
    };
    let body = html! {
        table #item {
            tr { th { "What" } td .what { (what(&item)) } }
            tr { th { "Module" } td { (item.module) } }
            tr { th { "Status" } td .status { (item.status.as_str()) } }
            @if let Some(held_by) = &item.held_by { tr { th { "Held by" } td .held-by { (held_by) } } }
            tr { th { "Created" } td { (shown_time(item.created_us)) } }
            tr { th { "Last change" } td { (shown_time(item.updated_us)) } }
            tr { th { "Attempts" } td .attempts { (item.attempts) } }
            @if let Some(error) = &item.last_error { tr { th { "Last error" } td .last-error { (error) } } }
            @if Status::OPEN.contains(&item.status) { tr { th { "Next attempt" } td { (shown_time(item.next_attempt_us)) } } }
            tr { th { "Gives up at" } td { (shown_time(item.deadline_us)) } }
            @if let Some(event) = &item.event { tr { th { "Caused by" } td { code { (event) } } } }
            @if !item.labels.is_empty() {
                tr { th { "Labels" } td .labels { @for (name, value) in item.labels.iter() { code { (name) "=" (value) } " " } } }
            }
        }
        h2 { "Delivery attempts" }
        @if attempts.is_empty() { p #no-attempts { "None recorded." } }
        @else {
            table #attempts {
                tr { th { "When" } th { "Outcome" } th { "Error" } }
                @for attempt in &attempts {
                    tr .attempt {
                        td { (shown_time(attempt.at_us)) }
                        td .outcome { (attempt.outcome.as_str()) }
                        td .error { (attempt.error.as_deref().unwrap_or("")) }
                    }
                }
            }
            @if attempts.len() as i64 == KEPT_PER_ITEM { p .hint { "The latest " (KEPT_PER_ITEM) " are kept." } }
        }
        @if item.status == Status::Dead && session.role == super::Role::Operator {
            div .actions {
                form method="post" action={ "/outbox/" (item.id) "/retry" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button #retry type="submit" { "Retry" }
                }
                form method="post" action={ "/outbox/" (item.id) "/purge" } {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button #purge type="submit" { "Purge" }
                }
            }
        }
        @if has_html {
            h2 { "The e-mail" }
            iframe #email sandbox="" referrerpolicy="no-referrer" title="The e-mail as it was rendered"
                src={ "/outbox/" (item.id) "/html" } {}
        }
        @if let Some(text) = text {
            h2 { "Its text part" }
            pre #text { (text) }
        }
    };
    respond(StatusCode::OK, page(&format!("Item {}", item.id), Some(&session), body))
}

/// `GET /outbox/{id}/html`: the e-mail's HTML part, for the detail's
/// frame. Its own policy holds even when the address is opened outside the
/// frame.
pub(super) async fn html(State(console): State<Arc<Console>>, headers: HeaderMap, Path(id): Path<i64>) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let item = match find(&console, &session, id) {
        Ok(item) => item,
        Err(answer) => return *answer,
    };
    let Some(html) = (item.kind() == Kind::Email)
        .then(|| message_part(&item.body, "text/html"))
        .flatten()
    else {
        return super::layout::text(StatusCode::NOT_FOUND, "This item has no HTML part.".into());
    };
    sandboxed(as_seen_by(&session, html))
}

/// An e-mail's part as `session` may see it. Its "Silence similar" link
/// would let whoever holds it silence: a viewer, who may not, is shown the
/// link without its token.
fn as_seen_by(session: &Session, part: String) -> String {
    match session.role {
        super::Role::Operator => part,
        super::Role::Viewer => crate::noise::silence_link::without_tokens(&part).into_owned(),
    }
}

/// An e-mail's HTML, under a policy that holds even when its address is
/// opened outside the console's frame.
pub(super) fn sandboxed(html: String) -> Response {
    let mut response = html.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, EMAIL_POLICY),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "SAMEORIGIN"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `POST /outbox/{id}/retry`: a dead item (and the dead items it follows)
/// back in line, with the retry policy's whole window.
pub(super) async fn retry(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let (session, _token) = match console.operator_form::<TokenForm>(&headers, body).await {
        Ok(sent) => sent,
        Err(answer) => return *answer,
    };
    let now_us = console.clock.now_us();
    match console
        .store
        .retry(&[id], now_us, now_us.saturating_add(console.context.retry_window_us))
    {
        Ok(n) => {
            tracing::info!(user = %session.user, item = id, retried = n, "console: retry");
            redirect(&format!("/outbox/{id}"), &[])
        }
        Err(e) => unavailable(&session, &e.to_string()),
    }
}

/// `POST /outbox/{id}/purge`: deletes a dead item; any other is left.
pub(super) async fn purge(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Body,
) -> Response {
    let (session, _token) = match console.operator_form::<TokenForm>(&headers, body).await {
        Ok(sent) => sent,
        Err(answer) => return *answer,
    };
    match console.store.purge_dead(&[id]) {
        Ok(n) => {
            tracing::info!(user = %session.user, item = id, purged = n, "console: purge");
            redirect("/outbox?status=dead", &[])
        }
        Err(e) => unavailable(&session, &e.to_string()),
    }
}
