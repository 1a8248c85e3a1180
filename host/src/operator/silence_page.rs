//! `/silence?t=TOKEN`: the page an e-mail's "Silence similar for 2 h" link
//! opens. `GET` shows what the silence would hold back (the notification,
//! its matchers, how many notifications they matched in the last day, the
//! silences already covering it) and a form for the reader's name and a
//! comment; `POST` checks the link again and creates the silence.
//!
//! The signed link is the credential (`noise::silence_link`): whoever holds
//! the e-mail may silence what it is about, for two hours, and nothing else.
//! Everything on the page comes from hostile event data: maud escapes it,
//! the page runs no script, and it is sent with a content security policy
//! that forbids any. A `POST` must come from velonotify's own page (its
//! `Origin`), with a small form that arrives quickly.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::clock::{Clock, rfc3339};
use crate::noise::silence_link::{LinkRefusal, Linked, PAGE_PATH, SILENCE_DURATION_S, SilenceLinks, similar_matchers};
use crate::noise::{Labels, Matchers, NewSilence, Silence};
use crate::store::FromLink;
use crate::store::{OutboxItem, Store};

/// Largest form read, in bytes: a token, a name and a comment.
const MAX_FORM_BYTES: usize = 16 << 10;
/// Time to send the form.
const FORM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The page's style: no external resource, nothing the policy must allow
/// but inline style.
const STYLE: &str = "body{font-family:Arial,sans-serif;background:#f6f6f6;color:#333;margin:0}\
main{max-width:750px;margin:20px auto;background:#fff;padding:20px;border-radius:8px}\
h1{font-size:22px}h2{font-size:17px;color:#555}\
code{background:#f4f4f4;padding:2px 4px;overflow-wrap:anywhere}\
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:6px;text-align:left;overflow-wrap:anywhere}\
label{display:block;margin-top:12px}input,textarea{width:100%;box-sizing:border-box;padding:6px}\
button{margin-top:16px;padding:8px 16px;background:#DF0B0B;color:#fff;border:0;border-radius:4px}";

const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone)]
struct Page {
    links: Arc<SilenceLinks>,
    store: Arc<Store>,
    clock: Clock,
    /// `scheme://host[:port]` of `velonotify_url`: the only `Origin` a
    /// confirmation may come from.
    origin: String,
}

/// The page's routes, for links made by `links` to `velonotify_url`.
pub fn routes(links: Arc<SilenceLinks>, store: Arc<Store>, clock: Clock, velonotify_url: &str) -> Router {
    let page = Page {
        links,
        store,
        clock,
        origin: super::origin_of(velonotify_url).unwrap_or_default(),
    };
    Router::new().route(PAGE_PATH, get(show).post(confirm)).with_state(page)
}

/// What a link proposes to silence.
struct Proposal {
    /// The link's id: it makes one silence at most.
    link_id: String,
    /// The notification it came with (a module's e-mail), if it names one.
    notification: Option<OutboxItem>,
    matchers: Matchers,
    /// The labels the matchers were taken from (to find covering silences).
    labels: Labels,
}

/// Why the page does not offer a silence.
struct Refusal {
    status: StatusCode,
    why: String,
}

impl From<LinkRefusal> for Refusal {
    fn from(refusal: LinkRefusal) -> Self {
        let status = match refusal {
            LinkRefusal::Expired => StatusCode::GONE,
            LinkRefusal::Malformed | LinkRefusal::Forged => StatusCode::FORBIDDEN,
        };
        Self {
            status,
            why: refusal.to_string(),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        why: format!("velonotify could not read its database ({e}); try again"),
    }
}

impl Page {
    /// What the link `token` proposes at `now_us`, checked.
    fn propose(&self, token: &str, now_us: u64) -> Result<Proposal, Refusal> {
        let link = self.links.verify(token, now_us)?;
        match link.linked {
            Linked::Notification => {
                let item = match self.store.notification_of_link(&link.id) {
                    Ok(Some(Ok(item))) => item,
                    Ok(Some(Err(unreadable))) => return Err(unavailable(unreadable)),
                    Ok(None) => {
                        return Err(Refusal {
                            status: StatusCode::NOT_FOUND,
                            why: "the notification this link was made for is no longer in the outbox \
                                  (purged by retention); silence it with `velonotify silence add`"
                                .into(),
                        });
                    }
                    Err(e) => return Err(unavailable(e)),
                };
                let labels = item.labels.clone();
                let matchers = similar_matchers(&labels).ok_or_else(|| Refusal {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    why: "this notification has no alertname: a silence made from its link would hold back \
                          everything its module sends; make a narrower one with `velonotify silence add`"
                        .into(),
                })?;
                Ok(Proposal {
                    link_id: link.id,
                    notification: Some(item),
                    matchers,
                    labels,
                })
            }
            Linked::Matchers(text) => {
                // Signed by this database: it parses, unless edited by a
                // later release.
                let matchers = Matchers::parse(&text).map_err(|e| Refusal {
                    status: StatusCode::FORBIDDEN,
                    why: format!("the link's matchers cannot be read: {e}"),
                })?;
                let mut labels = Labels::default();
                for m in matchers.iter() {
                    labels.set(m.name(), m.value());
                }
                Ok(Proposal {
                    link_id: link.id,
                    notification: None,
                    matchers,
                    labels,
                })
            }
        }
    }

    /// How many notifications of the last day the matchers match, and
    /// whether there were more than were read.
    fn recent_matches(&self, matchers: &Matchers, now_us: u64) -> Result<(usize, bool), Refusal> {
        super::recent_matches(&self.store, matchers, now_us).map_err(unavailable)
    }

    /// The silence the link made already, if it made one.
    fn made_by_link(&self, link_id: &str) -> Result<Option<Silence>, Refusal> {
        match self.store.silence_from_link(link_id) {
            Ok(Some(Ok(silence))) => Ok(Some(silence)),
            Ok(Some(Err(unreadable))) => Err(unavailable(unreadable)),
            Ok(None) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The silences in force that already hold back what the link is about.
    fn covering(&self, labels: &Labels, now_us: u64) -> Result<Vec<Silence>, Refusal> {
        let silences = self.store.silences_in_force(now_us).map_err(unavailable)?;
        Ok(silences
            .into_iter()
            .filter_map(Result::ok)
            .filter(|s| s.silences(labels, now_us))
            .collect())
    }
}

#[derive(Debug, Deserialize)]
struct LinkQuery {
    t: Option<String>,
}

async fn show(State(page): State<Page>, Query(query): Query<LinkQuery>) -> Response {
    let now_us = page.clock.now_us();
    let token = query.t.unwrap_or_default();
    let shown = page.propose(&token, now_us).and_then(|proposal| {
        if let Some(made) = page.made_by_link(&proposal.link_id)? {
            return Ok(created(&made, true));
        }
        let recent = page.recent_matches(&proposal.matchers, now_us)?;
        let covering = page.covering(&proposal.labels, now_us)?;
        Ok(offer(&token, &proposal, recent, &covering, now_us))
    });
    match shown {
        Ok(markup) => respond(StatusCode::OK, markup),
        Err(refusal) => refused(&refusal),
    }
}

#[derive(Debug, Deserialize)]
struct Confirmation {
    t: String,
    author: String,
    #[serde(default)]
    comment: String,
}

async fn confirm(State(page): State<Page>, headers: HeaderMap, body: Body) -> Response {
    if !page.posted_from_own_page(&headers) {
        return refused(&Refusal {
            status: StatusCode::FORBIDDEN,
            why: "a silence is confirmed on velonotify's own page, not from another site".into(),
        });
    }
    let form = match crate::http::read_bounded(body, MAX_FORM_BYTES, FORM_TIMEOUT).await {
        Ok(form) => form,
        Err(refusal) => {
            return refused(&Refusal {
                status: refusal.status(),
                why: refusal.to_string(),
            });
        }
    };
    let form: Confirmation = match serde_urlencoded::from_bytes(&form) {
        Ok(form) => form,
        Err(e) => {
            return refused(&Refusal {
                status: StatusCode::BAD_REQUEST,
                why: format!("the form could not be read: {e}"),
            });
        }
    };
    let now_us = page.clock.now_us();
    let proposal = match page.propose(&form.t, now_us) {
        Ok(proposal) => proposal,
        Err(refusal) => return refused(&refusal),
    };
    let comment = match form.comment.trim() {
        "" => "Silenced from an e-mail's link".to_string(),
        comment => comment.to_string(),
    };
    let new = NewSilence {
        matchers: proposal.matchers,
        starts_us: now_us,
        ends_us: now_us + SILENCE_DURATION_S * 1_000_000,
        created_by: form.author.trim().to_string(),
        comment,
    };
    match page.store.add_silence_from_link(&new, &proposal.link_id, now_us) {
        Ok(Ok(FromLink::Created(silence))) => {
            tracing::info!(id = %silence.id, matchers = %silence.matchers, author = %silence.created_by,
                "silence created from an e-mail's link");
            respond(StatusCode::OK, created(&silence, false))
        }
        Ok(Ok(FromLink::Already(silence))) => respond(StatusCode::OK, created(&silence, true)),
        Ok(Err(why)) => refused(&Refusal {
            status: StatusCode::BAD_REQUEST,
            why: format!("the silence was refused: {why}"),
        }),
        Err(e) => refused(&unavailable(e)),
    }
}

impl Page {
    /// Whether a form post comes from this page: browsers send the
    /// `Origin` of the page that posted it.
    fn posted_from_own_page(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|origin| !self.origin.is_empty() && origin.eq_ignore_ascii_case(&self.origin))
    }
}

/// The page offering the silence.
fn offer(token: &str, proposal: &Proposal, recent: (usize, bool), covering: &[Silence], now_us: u64) -> Markup {
    let ends_us = now_us + SILENCE_DURATION_S * 1_000_000;
    let (matched, more) = recent;
    document(
        "Silence similar notifications for 2 h",
        html! {
            @if let Some(item) = &proposal.notification {
                section #notification {
                    h2 { "The notification" }
                    p #subject { (item.payload.subject().unwrap_or("(no subject)")) }
                    table #labels {
                        @for (name, value) in item.labels.iter() {
                            tr { th { (name) } td { (value) } }
                        }
                    }
                }
            }
            section {
                h2 { "What will be silenced" }
                p { "Notifications whose labels match " code #matchers { (proposal.matchers.to_string()) } }
                p #ends { "From now until " (rfc3339(ends_us)) " (2 hours). They are kept in the outbox as silenced, not lost." }
                p { "In the last 24 hours they matched "
                    span #recent-count { @if more { "at least " } (matched) }
                    " notification(s)." }
                @if !covering.is_empty() {
                    div #covering {
                        p { "Already silenced by:" }
                        ul {
                            @for silence in covering {
                                li { code { (silence.id) } " by " (silence.created_by) " until " (rfc3339(silence.ends_us)) }
                            }
                        }
                    }
                }
            }
            form method="post" action="silence" {
                input type="hidden" name="t" value=(token);
                label for="author" { "Your name" }
                input #author type="text" name="author" required maxlength="128" autocomplete="name";
                label for="comment" { "Why (optional)" }
                textarea #comment name="comment" maxlength="1024" rows="3" {}
                button #silence type="submit" { "Silence for 2 hours" }
            }
        },
    )
}

/// The page that says the silence exists (`before`: the link had made it
/// already, and makes no other).
fn created(silence: &Silence, before: bool) -> Markup {
    document(
        "Silence created",
        html! {
            section #done {
                @if before {
                    p #already { "This link has made its silence already; a link makes one." }
                }
                p { "Silence " code #silence-id { (silence.id) } " holds back notifications matching "
                    code { (silence.matchers.to_string()) } " until " (rfc3339(silence.ends_us)) "." }
                p { "To end it early: " code { "velonotify silence expire " (silence.id) } }
            }
        },
    )
}

fn refused(refusal: &Refusal) -> Response {
    let markup = document("Link refused", html! { p #refusal { (refusal.why) } });
    respond(refusal.status, markup)
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · velonotify" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body { main { h1 { (title) } (body) } }
        }
    }
}

/// The page with the headers that keep it to itself: no script, no
/// framing, no caching, and no referrer outside velonotify (the address
/// holds the link). Not `no-referrer`: with it, browsers send the form's
/// `Origin` as `null`, and the confirmation could not be told from a
/// forged one.
fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::silence_link::Link;
    use crate::store::{Changes, NewItem, Payload, Status, Throttle, WebhookPayload};

    const NOW_US: u64 = 1_780_000_000_000_000;
    const HOSTILE: &str = "Honey <script>alert(1)</script> \"quoted\"";
    const LINK_ID: &str = "00112233445566778899aabbccddeeff";
    const ORIGIN: &str = "http://127.0.0.1:1";

    /// A page served on its own port over a database holding a notification
    /// of module `alerts` whose call made links with [`LINK_ID`] (after an
    /// earlier one with the same event id, from another post), and the link.
    struct Served {
        url: String,
        link: String,
        store: Arc<Store>,
        links: Arc<SilenceLinks>,
    }

    fn notification(pairs: &[(&str, &str)], link_id: Option<&str>) -> NewItem {
        let mut labels = Labels::default();
        for (name, value) in pairs {
            labels.set(name, value);
        }
        NewItem {
            module: "alerts".into(),
            event: Some("ingest:1".into()),
            status: Status::Pending,
            payload: Payload::Webhook(WebhookPayload {
                url: "https://hooks.example/x".into(),
                headers: Vec::new(),
                may_reach_private: false,
            }),
            body: b"{}".to_vec(),
            follows: Vec::new(),
            labels,
            held_by: None,
            release_us: None,
            link_id: link_id.map(str::to_string),
        }
    }

    fn serve() -> Served {
        serve_labelled(&[
            ("alertname", HOSTILE),
            ("client_id", "C.1"),
            ("module", "alerts"),
            ("hostname", "ws1"),
        ])
    }

    fn serve_labelled(pairs: &[(&str, &str)]) -> Served {
        let store = Arc::new(Store::for_tests());
        let earlier = notification(&[("alertname", "Earlier"), ("module", "alerts")], None);
        let items = [earlier, notification(pairs, Some(LINK_ID))];
        let changes = Changes {
            state: &[],
            items: &items,
            retries: &[],
            fences: &[],
        };
        store.commit(&changes, NOW_US, u64::MAX, &Throttle::default()).unwrap();
        let links = Arc::new(SilenceLinks::new(&[3; 32], ORIGIN));
        let clock = Clock::virtual_at(NOW_US);
        let address =
            crate::operator::serve("127.0.0.1:0", routes(links.clone(), store.clone(), clock, ORIGIN)).unwrap();
        let url = format!("http://{address}");
        let link = links.link(link(LINK_ID), NOW_US).unwrap().replace(ORIGIN, &url);
        Served {
            url,
            link,
            store,
            links,
        }
    }

    fn link(id: &str) -> Link {
        Link {
            id: id.into(),
            linked: Linked::Notification,
        }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
    }

    fn get(url: &str) -> (u16, HeaderMap, String) {
        let response = agent().get(url).call().unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.into_body().read_to_string().unwrap())
    }

    fn post(served: &Served, origin: Option<&str>, form: &str) -> (u16, String) {
        let mut request = agent()
            .post(format!("{}{PAGE_PATH}", served.url))
            .header("Content-Type", "application/x-www-form-urlencoded");
        if let Some(origin) = origin {
            request = request.header("Origin", origin);
        }
        let response = request.send(form.as_bytes()).unwrap();
        (
            response.status().as_u16(),
            response.into_body().read_to_string().unwrap(),
        )
    }

    fn token(served: &Served) -> String {
        served.link.split_once("?t=").unwrap().1.to_string()
    }

    fn silences(store: &Store) -> Vec<Silence> {
        store.silences().unwrap().into_iter().map(Result::unwrap).collect()
    }

    #[test]
    fn the_page_shows_what_the_link_silences_as_text_under_a_strict_policy() {
        let served = serve();
        let (status, headers, page) = get(&served.link);
        assert_eq!(status, 200, "{page}");
        assert!(!page.contains("<script>"), "hostile text is escaped: {page}");
        assert!(page.contains("Honey &lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
        assert!(
            page.contains(r#"alertname=&quot;Honey &lt;script&gt;alert(1)&lt;/script&gt; \&quot;quoted\&quot;&quot;"#),
            "{page}"
        );
        assert!(
            page.contains("client_id=&quot;C.1&quot;, module=&quot;alerts&quot;}"),
            "{page}"
        );
        assert!(
            !page.contains("Earlier"),
            "the notification of the link's call, not the event id's first: {page}"
        );
        assert!(page.contains("<span id=\"recent-count\">1</span>"), "{page}");
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert!(
            CONTENT_SECURITY_POLICY.contains("default-src 'none'"),
            "no script may run"
        );
        assert_eq!(headers["referrer-policy"], "same-origin");
        assert_eq!(headers["cache-control"], "no-store");
    }

    #[test]
    fn a_confirmation_creates_one_silence_of_two_hours_for_the_notification() {
        let served = serve();
        let form = format!("t={}&author=ann&comment=IR-7", token(&served));
        let (status, page) = post(&served, Some(ORIGIN), &form);
        assert_eq!(status, 200, "{page}");
        let made = silences(&served.store);
        assert_eq!(made.len(), 1);
        let silence = &made[0];
        assert!(
            page.contains(&format!("<code id=\"silence-id\">{}</code>", silence.id)),
            "{page}"
        );
        assert_eq!((silence.created_by.as_str(), silence.comment.as_str()), ("ann", "IR-7"));
        assert_eq!(
            (silence.starts_us, silence.ends_us),
            (NOW_US, NOW_US + 2 * 3600 * 1_000_000)
        );
        assert_eq!(silence.matchers.len(), 3);

        // A link makes one silence: confirmed again, or opened again, it
        // shows the one it made.
        let (status, page) = post(&served, Some(ORIGIN), &form);
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("id=\"already\""), "{page}");
        assert_eq!(silences(&served.store).len(), 1);
        let (_, _, page) = get(&served.link);
        assert!(
            page.contains(&format!("<code id=\"silence-id\">{}</code>", silence.id)),
            "{page}"
        );
        assert!(!page.contains("<form"), "{page}");
    }

    #[test]
    fn a_confirmation_from_another_site_or_without_a_name_creates_nothing() {
        let served = serve();
        let form = format!("t={}&author=ann", token(&served));
        for origin in [
            None,
            Some("https://evil.example"),
            Some("http://127.0.0.1:2"),
            Some("null"),
        ] {
            let (status, page) = post(&served, origin, &form);
            assert_eq!(status, 403, "{origin:?}: {page}");
        }
        let (status, page) = post(&served, Some(ORIGIN), &format!("t={}&author=+", token(&served)));
        assert_eq!(status, 400, "{page}");
        assert!(page.contains("needs an author"), "{page}");
        let (status, _) = post(&served, Some(ORIGIN), &"x".repeat(MAX_FORM_BYTES + 1));
        assert_eq!(status, 413);
        assert!(served.store.silences().unwrap().is_empty());
    }

    #[test]
    fn an_altered_expired_or_unknown_link_is_refused_with_its_reason() {
        let served = serve();
        let altered = served.link.replace("?t=", "?t=A");
        let (status, _, page) = get(&altered);
        assert_eq!(status, 403, "{page}");
        assert!(page.contains("Link refused"), "{page}");
        let (status, _, _) = get(&format!("{}{PAGE_PATH}", served.url));
        assert_eq!(status, 403, "no token");

        let old = served.links.link(link(LINK_ID), NOW_US - 8 * 24 * 3600 * 1_000_000);
        let (status, _, page) = get(&old.unwrap().replace(ORIGIN, &served.url));
        assert_eq!(status, 410, "{page}");
        assert!(page.contains("expired"), "{page}");

        let unknown = served.links.link(link("ffffffffffffffffffffffffffffffff"), NOW_US);
        assert_eq!(get(&unknown.unwrap().replace(ORIGIN, &served.url)).0, 404);
    }

    #[test]
    fn a_notification_without_an_alertname_offers_no_silence_of_its_whole_module() {
        let served = serve_labelled(&[("client_id", "C.1"), ("module", "alerts")]);
        let (status, _, page) = get(&served.link);
        assert_eq!(status, 422, "{page}");
        assert!(page.contains("no alertname"), "{page}");
        let (status, _) = post(&served, Some(ORIGIN), &format!("t={}&author=ann", token(&served)));
        assert_eq!(status, 422);
        assert!(served.store.silences().unwrap().is_empty());
    }

    #[test]
    fn a_digest_link_silences_its_matchers() {
        let served = serve();
        let digest = Link {
            id: "d1".into(),
            linked: Linked::Matchers(r#"{alertname="Honey", module="alerts"}"#.into()),
        };
        let link = served.links.link(digest, NOW_US).unwrap().replace(ORIGIN, &served.url);
        let (status, _, page) = get(&link);
        assert_eq!(status, 200, "{page}");
        assert!(!page.contains("id=\"notification\""), "{page}");
        assert!(page.contains("<span id=\"recent-count\">0</span>"), "{page}");
    }
}
