//! `GET /`: what velonotify is doing. For now the outbox by status (what
//! is waiting, held, sent, dead); the modules and the sources follow.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::Console;
use super::layout::{page, respond};

pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let counts = match console.store.counts() {
        Ok(counts) => counts,
        Err(e) => {
            let body = html! { p #refusal { "velonotify could not read its database (" (e.to_string()) "); reload." } };
            return respond(StatusCode::SERVICE_UNAVAILABLE, page("Overview", Some(&session), body));
        }
    };
    let body = html! {
        section #outbox {
            h2 { "Outbox" }
            table {
                tr { th { "Status" } th { "Items" } }
                @for (status, count) in &counts.by_status {
                    tr .status { td { (status.to_string()) } td .count { (count) } }
                }
                @for (status, count) in &counts.unknown {
                    tr .status { td { (status) " (unknown to this release)" } td .count { (count) } }
                }
            }
            @if counts.by_status.is_empty() && counts.unknown.is_empty() {
                p { "The outbox is empty." }
            }
        }
    };
    respond(StatusCode::OK, page("Overview", Some(&session), body))
}
