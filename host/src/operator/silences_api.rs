//! `/v1/silences`: list, read, create and expire silences over HTTP, with a
//! bearer token, in the JSON of Alertmanager's API v2 (`gettableSilence`,
//! `postableSilence`): `GET /v1/silences[?filter={...}]`,
//! `GET /v1/silences/{id}`, `POST /v1/silences` (answers `{"silenceID"}`;
//! with the `id` of a silence in force, that one is expired and replaced,
//! as Alertmanager updates), `DELETE /v1/silences/{id}`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clock::{Clock, parse_rfc3339, rfc3339};
use crate::http::BearerToken;
use crate::noise::{MatchOp, Matcher, Matchers, NewSilence, Silence};
use crate::store::{Expired, Store};

/// Largest request body read, in bytes (a silence is small).
const MAX_BODY_BYTES: usize = 64 << 10;

/// Time to send a body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Clone)]
struct Api {
    token: BearerToken,
    /// One connection for the API's thread (reads and rare writes).
    store: Arc<Store>,
    clock: Clock,
}

/// The API's routes, behind `token`, on `store` (one connection of its own).
pub fn routes(token: BearerToken, store: Arc<Store>, clock: Clock) -> Router {
    let api = Api { token, store, clock };
    Router::new()
        .route("/v1/silences", get(list).post(create))
        .route("/v1/silences/{id}", get(one).delete(expire))
        .with_state(api)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn error(status: StatusCode, why: impl std::fmt::Display) -> Response {
    answer(status, json!({"error": why.to_string()}))
}

/// Refuses a request without the token, before anything else is read.
fn refused(api: &Api, headers: &HeaderMap) -> Option<Response> {
    match api.token.presented_in(headers) {
        true => None,
        false => Some(error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")),
    }
}

fn store_failed(e: crate::store::StoreError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    /// Matchers the silences must have among theirs (`{a="1"}`).
    filter: Option<String>,
}

async fn list(State(api): State<Api>, headers: HeaderMap, Query(params): Query<ListParams>) -> Response {
    if let Some(refusal) = refused(&api, &headers) {
        return refusal;
    }
    let filter = match params.filter.as_deref().map(Matchers::parse).transpose() {
        Ok(filter) => filter,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("filter: {e}")),
    };
    let rows = match api.store.silences() {
        Ok(rows) => rows,
        Err(e) => return store_failed(e),
    };
    let now_us = api.clock.now_us();
    let listed: Vec<Value> = rows
        .into_iter()
        .filter_map(Result::ok)
        .filter(|s| filter.as_ref().is_none_or(|f| s.matchers.includes(f)))
        .map(|s| gettable(&s, now_us))
        .collect();
    answer(StatusCode::OK, Value::Array(listed))
}

async fn one(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = refused(&api, &headers) {
        return refusal;
    }
    match api.store.silence(&id) {
        Ok(Some(Ok(silence))) => answer(StatusCode::OK, gettable(&silence, api.clock.now_us())),
        Ok(Some(Err(unreadable))) => error(StatusCode::INTERNAL_SERVER_ERROR, unreadable),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no silence with id {id}")),
        Err(e) => store_failed(e),
    }
}

async fn expire(State(api): State<Api>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(refusal) = refused(&api, &headers) {
        return refusal;
    }
    match api.store.expire_silence(&id, api.clock.now_us()) {
        Ok(Ok(Expired::Now(_) | Expired::Already(_))) => answer(StatusCode::OK, json!({})),
        Ok(Ok(Expired::Unknown)) => error(StatusCode::NOT_FOUND, format!("no silence with id {id}")),
        Ok(Err(unreadable)) => error(StatusCode::INTERNAL_SERVER_ERROR, unreadable),
        Err(e) => store_failed(e),
    }
}

/// Alertmanager's `postableSilence`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Postable {
    id: Option<String>,
    matchers: Vec<PostedMatcher>,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostedMatcher {
    name: String,
    value: String,
    is_regex: bool,
    #[serde(default = "equal_by_default")]
    is_equal: bool,
}

/// `isEqual` came later in Alertmanager's API: left out, it is true.
fn equal_by_default() -> bool {
    true
}

/// Reads a body of at most [`MAX_BODY_BYTES`] within [`BODY_TIMEOUT`].
async fn read_body(body: Body) -> Result<Bytes, Response> {
    crate::http::read_bounded(body, MAX_BODY_BYTES, BODY_TIMEOUT)
        .await
        .map_err(|refusal| error(refusal.status(), refusal))
}

async fn create(State(api): State<Api>, headers: HeaderMap, body: Body) -> Response {
    // Nothing of the body is read before the token is checked.
    if let Some(refusal) = refused(&api, &headers) {
        return refusal;
    }
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let posted: Postable = match serde_json::from_slice(&body) {
        Ok(posted) => posted,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a silence: {e}")),
    };
    let now_us = api.clock.now_us();
    let new = match new_silence(&posted) {
        Ok(new) => new,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    if let Some(id) = &posted.id {
        match api.store.silence(id) {
            Ok(Some(_)) => {}
            Ok(None) => return error(StatusCode::NOT_FOUND, format!("no silence with id {id}")),
            Err(e) => return store_failed(e),
        }
    }
    let added = match api.store.add_silence(&new, now_us) {
        Ok(Ok(added)) => added,
        Ok(Err(why)) => return error(StatusCode::BAD_REQUEST, format!("silence refused: {why}")),
        Err(e) => return store_failed(e),
    };
    // Replacing one: the old one ends as the new one is in place.
    if let Some(id) = &posted.id
        && let Err(e) = api.store.expire_silence(id, now_us)
    {
        return store_failed(e);
    }
    answer(StatusCode::OK, json!({"silenceID": added.id}))
}

fn new_silence(posted: &Postable) -> Result<NewSilence, String> {
    if posted.matchers.len() > crate::noise::matchers::MAX_MATCHERS {
        return Err(format!("at most {} matchers", crate::noise::matchers::MAX_MATCHERS));
    }
    let matchers = posted
        .matchers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            Matcher::new(&m.name, MatchOp::from_flags(m.is_regex, m.is_equal), &m.value)
                .map_err(|why| format!("matchers[{i}]: {why}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let time = |field: &str, text: &str| parse_rfc3339(text).map_err(|why| format!("{field}: {why}"));
    Ok(NewSilence {
        matchers: Matchers::new(matchers),
        starts_us: time("startsAt", &posted.starts_at)?,
        ends_us: time("endsAt", &posted.ends_at)?,
        created_by: posted.created_by.clone(),
        comment: posted.comment.clone(),
    })
}

/// Alertmanager's `gettableSilence`.
fn gettable(silence: &Silence, now_us: u64) -> Value {
    let matchers: Vec<Value> = silence
        .matchers
        .iter()
        .map(|m| {
            json!({"name": m.name(), "value": m.value(), "isRegex": m.op().is_regex(), "isEqual": m.op().is_equal()})
        })
        .collect();
    json!({
        "id": silence.id,
        "status": {"state": silence.state(now_us).as_str()},
        "updatedAt": rfc3339(silence.updated_us),
        "matchers": matchers,
        "startsAt": rfc3339(silence.starts_us),
        "endsAt": rfc3339(silence.ends_us),
        "createdBy": silence.created_by,
        "comment": silence.comment,
    })
}
