//! The frame of every console page, its style sheet and the headers every
//! answer carries: no script may run, nothing is framed or cached, no
//! resource comes from elsewhere.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use maud::{DOCTYPE, Markup, html};

use super::auth::Session;

/// Every page's policy: its own style sheet, forms to itself, nothing else.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
     style-src 'self'; img-src 'self' data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The console's one script: the live count of what a new silence would
/// hold. Every page works without it.
const SCRIPT: &str = include_str!("console.js");

/// Phone first: one column that never scrolls sideways, tables that wrap.
const STYLE: &str = "*{box-sizing:border-box}\
body{font-family:Arial,sans-serif;background:#f6f6f6;color:#333;margin:0}\
header{background:#222;color:#fff;padding:10px 16px;display:flex;flex-wrap:wrap;gap:12px;align-items:center}\
header a{color:#fff}header form{margin:0 0 0 auto}header .who{overflow-wrap:anywhere}\
main{max-width:1100px;margin:16px auto;background:#fff;padding:16px;border-radius:8px}\
h1{font-size:22px}h2{font-size:17px;color:#555}h3{font-size:15px;margin:12px 0 4px}\
nav a{margin-right:8px}.hint{color:#777;font-size:13px}\
dl.figures{display:flex;flex-wrap:wrap;gap:8px;margin:4px 0}dl.figures div{background:#f0f0f0;padding:4px 8px;border-radius:4px}\
dt{font-size:12px;color:#666}dd{margin:0;font-weight:bold}\
.module{border-top:1px solid #eee;padding:4px 0}code{overflow-wrap:anywhere}\
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end}form.filters label{margin:0}\
form.filters input,form.filters select{width:auto;max-width:100%}select{padding:6px;display:block}\
iframe{width:100%;height:600px;border:1px solid #ddd;background:#fff}\
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f8f8f8;padding:8px}\
textarea{width:100%;min-height:80px}.actions form{display:inline-block;margin-right:8px}\
#items th:nth-child(1){width:4em}#items th:nth-child(2){width:11em}#items th:nth-child(3){width:10em}\
#items th:nth-child(4){width:6em}\
@media (max-width:600px){#items,#items tbody,#items tr,#items td{display:block;width:auto}\
#items tr:first-child{display:none}#items tr{border:1px solid #ddd;margin-bottom:8px}#items td{border:0;padding:2px 6px}}\
table{border-collapse:collapse;width:100%;table-layout:fixed}\
td,th{border:1px solid #ddd;padding:6px;text-align:left;overflow-wrap:anywhere;word-break:break-word}\
label{display:block;margin-top:12px}input{width:100%;padding:6px;max-width:400px;display:block}\
button{margin-top:12px;padding:8px 16px;background:#DF0B0B;color:#fff;border:0;border-radius:4px}\
#problem,#refusal,.problem{color:#a00}";

/// `GET /static/console.css`.
pub(super) async fn style() -> Response {
    asset(STYLE, "text/css; charset=utf-8")
}

/// `GET /static/console.js`.
pub(super) async fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    secure(&mut response);
    response
}

/// A plain-text answer with the console's headers.
pub(super) fn text(status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    secure(&mut response);
    response
}

/// A page: the header (who is logged in, the log-out form) and `body`.
pub(super) fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · velonotify" }
                link rel="stylesheet" href="/static/console.css";
                script src="/static/console.js" defer {}
            }
            body {
                header {
                    strong { "velonotify" }
                    @if let Some(session) = session {
                        nav {
                            a href="/" { "Overview" } " "
                            a href="/outbox" { "Outbox" } " "
                            a href="/silences" { "Silences" } " "
                            a href="/preview" { "Preview" }
                        }
                        span .who { (session.user) " (" (session.role.to_string()) ")" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button #logout type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A time for people: `2026-12-01 19:22:23 UTC`.
pub(super) fn shown_time(us: u64) -> String {
    i64::try_from(us)
        .ok()
        .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
        .map_or_else(|| "?".into(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
}

/// The answer when the database cannot be read: say so, and that a reload
/// tries again.
pub(super) fn unavailable(session: &Session, error: &str) -> Response {
    let body = html! { p #refusal { "velonotify could not read its database (" (error) "); reload." } };
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        page("Unavailable", Some(session), body),
    )
}

/// An HTML answer with the console's headers.
pub(super) fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure(&mut response);
    response
}

fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}
