//! `/silences`: the silences (in force first), a form that makes one (its
//! matchers tried first on the notifications of the last day: "would have
//! held N"), expiry, and what else holds notifications back now: groups
//! waiting to be sent together, inhibitions, mutes.
//!
//! Silences live in the database: the pipeline of every replica picks up
//! one made here as it picks up one made by the CLI or the API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use super::auth::{Session, TokenForm, redirect};
use super::layout::{page, respond, shown_time, unavailable};
use crate::noise::{Matchers, NewSilence, SilenceState};
use crate::operator::{RECENT_LIMIT, recent_matches};
use crate::store::{OutboxFilter, Status, StoreError};

/// A new silence's length when the form does not say, and at most.
const DEFAULT_HOURS: u64 = 2;
const MAX_HOURS: u64 = 24 * 366;
/// Held or inhibited items read to show what holds them.
const HELD_READ: usize = 1_000;

/// The form: matchers, hours, comment (the query string of a count, the
/// body of a creation).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(super) struct SilenceForm {
    matchers: String,
    hours: String,
    comment: String,
    csrf: String,
    /// `count` (the form's Count button, without script): count, make
    /// nothing.
    intent: String,
}

impl SilenceForm {
    /// The silence the form asks for, or what is wrong with it.
    fn silence(&self, user: &str, now_us: u64) -> Result<NewSilence, String> {
        let matchers = Matchers::parse(self.matchers.trim()).map_err(|e| e.to_string())?;
        let hours = match self.hours.trim() {
            "" => DEFAULT_HOURS,
            hours => hours
                .parse::<u64>()
                .ok()
                .filter(|h| (1..=MAX_HOURS).contains(h))
                .ok_or_else(|| format!("hours {hours:?} is not a whole number from 1 to {MAX_HOURS}"))?,
        };
        let silence = NewSilence {
            matchers,
            starts_us: now_us,
            ends_us: now_us.saturating_add(hours * 3_600_000_000),
            created_by: user.to_string(),
            comment: self.comment.trim().to_string(),
        };
        silence.check(now_us)?;
        Ok(silence)
    }
}

/// `GET /silences`, with `?matchers=` the count of what they would have
/// held.
pub(super) async fn show(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(form): Query<SilenceForm>,
) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let counting = match form.matchers.trim().is_empty() {
        true => Counting::Nothing,
        false => Counting::Matchers,
    };
    rendered(&console, session, form, counting, StatusCode::OK).await
}

/// What the page says under the form.
enum Counting {
    Nothing,
    /// What the form's matchers would have held.
    Matchers,
    /// What is wrong with the form.
    Problem(String),
}

/// The page, made on a thread that may block (it reads a day of
/// notifications to count, and the items held).
async fn rendered(
    console: &Arc<Console>,
    session: Session,
    form: SilenceForm,
    counting: Counting,
    status: StatusCode,
) -> Response {
    console
        .off_thread(move |console| {
            let counted = match counting {
                Counting::Nothing => None,
                Counting::Matchers => Some(count(console, &form.matchers)),
                Counting::Problem(problem) => Some(Err(problem)),
            };
            render(console, &session, &form, counted, status)
        })
        .await
}

/// What the matchers of a form would have held, or why they cannot.
fn count(console: &Console, matchers: &str) -> Result<String, String> {
    let matchers = Matchers::parse(matchers.trim()).map_err(|e| e.to_string())?;
    let (n, bounded) = recent_matches(&console.store, &matchers, console.clock.now_us()).map_err(|e| e.to_string())?;
    let of = if bounded {
        format!("the last {RECENT_LIMIT}")
    } else {
        "those".into()
    };
    Ok(format!(
        "Would have held {n} of {of} notifications of the last 24 hours."
    ))
}

fn render(
    console: &Console,
    session: &Session,
    form: &SilenceForm,
    counted: Option<Result<String, String>>,
    status: StatusCode,
) -> Response {
    let now_us = console.clock.now_us();
    let (silences, held) = match (console.store.silences(), held_back(console, now_us)) {
        (Ok(silences), Ok(held)) => (silences, held),
        (Err(e), _) | (_, Err(e)) => return unavailable(session, &e.to_string()),
    };
    let operator = session.role == super::Role::Operator;
    let body = html! {
        @if operator { (create_form(session, form, counted)) }
        @else if let Some(counted) = counted { (count_line(Some(counted))) }
        h2 { "Silences" }
        @if silences.is_empty() { p { "No silence was made." } }
        @else {
            table #silences {
                tr { th { "State" } th { "Matchers" } th { "From" } th { "Until" } th { "By, why" } }
                @for silence in &silences {
                    @match silence {
                        Ok(silence) => {
                            @let state = silence.state(now_us);
                            tr .silence data-id=(silence.id) {
                                td .state { (state.as_str()) }
                                td .matchers { code { (silence.matchers.to_string()) } }
                                td { (shown_time(silence.starts_us)) }
                                td { (shown_time(silence.ends_us)) }
                                td {
                                    (silence.created_by) ": " (silence.comment)
                                    @if operator && state != SilenceState::Expired {
                                        form method="post" action={ "/silences/" (silence.id) "/expire" } {
                                            input type="hidden" name="csrf" value=(session.csrf);
                                            button .expire type="submit" { "Expire" }
                                        }
                                    }
                                }
                            }
                        }
                        Err(unreadable) => tr .silence { td colspan="5" { (unreadable.to_string()) } },
                    }
                }
            }
        }
        (held)
    };
    respond(status, page("Silences", Some(session), body))
}

/// The count, or why there is none; the script puts its live count here.
fn count_line(counted: Option<Result<String, String>>) -> Markup {
    match counted {
        Some(Ok(line)) => html! { p #would-hold aria-live="polite" { (line) } },
        Some(Err(problem)) => html! { p #would-hold .problem aria-live="polite" { (problem) } },
        None => html! { p #would-hold aria-live="polite" {} },
    }
}

/// `GET /silences/count?matchers=`: the count alone, as text, for the
/// form's live count.
pub(super) async fn count_text(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(form): Query<SilenceForm>,
) -> Response {
    if let Err(denied) = console.session(&headers) {
        return denied.response();
    }
    let (status, text) = match console.off_thread(move |c| count(c, &form.matchers)).await {
        Ok(line) => (StatusCode::OK, line),
        Err(problem) => (StatusCode::BAD_REQUEST, problem),
    };
    super::layout::text(status, text)
}

fn create_form(session: &Session, form: &SilenceForm, counted: Option<Result<String, String>>) -> Markup {
    html! {
        h2 { "New silence" }
        form #new-silence method="post" action="/silences" {
            input type="hidden" name="csrf" value=(session.csrf);
            label { "Matchers, as in Alertmanager: " code { "alertname=\"BEACON\", client=~\"WIN-.*\"" }
                input name="matchers" value=(form.matchers) required; }
            label { "Hours " input name="hours" value=(form.hours) placeholder=(DEFAULT_HOURS) inputmode="numeric"; }
            label { "Why " input name="comment" value=(form.comment) required; }
            (count_line(counted))
            button #count type="submit" name="intent" value="count" formnovalidate { "Count what they would hold" }
            " "
            button #create type="submit" name="intent" value="create" { "Silence" }
        }
    }
}

/// What holds notifications back besides silences: groups waiting to go
/// out together, inhibitions of the last day, mutes.
fn held_back(console: &Console, now_us: u64) -> Result<Markup, StoreError> {
    let reasons = |status: Status, since_us: Option<u64>| -> Result<BTreeMap<(String, String), usize>, StoreError> {
        let filter = OutboxFilter {
            status: Some(status),
            since_us,
            ..OutboxFilter::default()
        };
        let mut by = BTreeMap::new();
        for item in console.store.search(&filter, HELD_READ)?.items.into_iter().flatten() {
            let why = item.held_by.unwrap_or_default();
            *by.entry((item.module, why)).or_default() += 1;
        }
        Ok(by)
    };
    let held = reasons(Status::Held, None)?;
    let groups: Vec<_> = held.iter().filter(|((_, why), _)| why.starts_with("group ")).collect();
    let inhibited = reasons(Status::Inhibited, Some(now_us.saturating_sub(24 * 3_600_000_000)))?;
    let muted = console.store.muted_count()?;
    Ok(html! {
        h2 { "Groups waiting" }
        @if groups.is_empty() { p #groups { "No notification waits for its group." } }
        @else {
            table #groups {
                tr { th { "Module" } th { "Group" } th { "Waiting" } }
                @for ((module, why), n) in &groups {
                    tr { td { (module) } td { code { (why.trim_start_matches("group ")) } } td { (n) } }
                }
            }
        }
        h2 { "Inhibited in the last 24 hours" }
        @if inhibited.is_empty() { p #inhibited { "No notification was inhibited." } }
        @else {
            table #inhibited {
                tr { th { "Module" } th { "Because" } th { "Notifications" } }
                @for ((module, why), n) in &inhibited {
                    tr { td { (module) } td { (why) } td { (n) } }
                }
            }
        }
        h2 { "Muted" }
        p #muted { (muted) " notifications wait for the end of a mute time interval." }
    })
}

/// `POST /silences`: makes the silence, in the user's name.
pub(super) async fn create(State(console): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Response {
    let (session, form) = match console.operator_form::<SilenceForm>(&headers, body).await {
        Ok(sent) => sent,
        Err(answer) => return *answer,
    };
    if form.intent == "count" {
        return rendered(&console, session, form, Counting::Matchers, StatusCode::OK).await;
    }
    let now_us = console.clock.now_us();
    let silence = match form.silence(&session.user, now_us) {
        Ok(silence) => silence,
        Err(problem) => {
            return rendered(
                &console,
                session,
                form,
                Counting::Problem(problem),
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    };
    match console.store.add_silence(&silence, now_us) {
        Ok(Ok(made)) => {
            tracing::info!(user = %session.user, silence = %made.id, matchers = %made.matchers, "console: silence made");
            redirect("/silences", &[])
        }
        Ok(Err(problem)) => {
            rendered(
                &console,
                session,
                form,
                Counting::Problem(problem),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
        Err(e) => unavailable(&session, &e.to_string()),
    }
}

/// `POST /silences/{id}/expire`.
pub(super) async fn expire(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let (session, _token) = match console.operator_form::<TokenForm>(&headers, body).await {
        Ok(sent) => sent,
        Err(answer) => return *answer,
    };
    match console.store.expire_silence(&id, console.clock.now_us()) {
        Ok(_) => {
            tracing::info!(user = %session.user, silence = %id, "console: silence expired");
            redirect("/silences", &[])
        }
        Err(e) => unavailable(&session, &e.to_string()),
    }
}
