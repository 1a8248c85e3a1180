//! The console's login, sessions and forms, over HTTP against a console
//! served on its own port (the browser tests drive the pages themselves).

use std::sync::Arc;

use axum::http::{HeaderMap, Response};

use super::*;
use crate::store::{Changes, EmailPayload, NewItem, Payload, Status, Throttle, WebhookPayload};

const NOW_US: u64 = 1_780_000_000_000_000;
const PASSWORD: &str = "correct horse battery staple";

struct Served {
    url: String,
    clock: Clock,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
}

fn user(name: &str, role: Role) -> ConsoleUser {
    ConsoleUser {
        name: name.into(),
        password_hash: hash_password(PASSWORD).unwrap(),
        role,
    }
}

fn section(users: Vec<ConsoleUser>) -> ConsoleSection {
    ConsoleSection {
        listen: "127.0.0.1:0".into(),
        public_url: None,
        users,
    }
}

/// The one script a page loads: the console's own.
const OUR_SCRIPT: &str = "<script src=\"/static/console.js\" defer></script>";

/// What event data can put in a subject.
const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// The signed "Silence similar" link the e-mail ends with.
fn silence_link() -> String {
    use crate::noise::silence_link::{KEY_BYTES, Link, Linked, SilenceLinks};
    let link = Link {
        id: "1".into(),
        linked: Linked::Notification,
    };
    let links = SilenceLinks::new(&[7; KEY_BYTES], "https://velonotify.example");
    links.link(link, NOW_US).expect("a short link")
}

/// An e-mail with a hostile subject, as a module rendered it: an HTML
/// part that tries to run script and fetch a pixel, and a text part, both
/// ending with a silence link.
fn hostile_email() -> NewItem {
    let silence_link = silence_link();
    let body = format!(
        "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBeacon on WIN-1 {HOSTILE}\r\n{silence_link}\r\n\
         --b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p style=\"color:red\">Beacon</p>{HOSTILE}\
         <img src=\"https://tracker.example/p.gif\"><a href=\"{silence_link}\">Silence similar</a>\r\n--b--\r\n"
    );
    NewItem {
        module: "alerts".into(),
        event: Some("ingest:2".into()),
        status: Status::Dead,
        payload: Payload::Email(EmailPayload {
            secret: None,
            sender: None,
            recipients: vec!["soc@example.org".into()],
            subject: format!("Velociraptor: {HOSTILE}"),
            link: None,
            send_interval_s: 0,
        }),
        body: body.into_bytes(),
        follows: Vec::new(),
        labels: {
            let mut labels = crate::noise::Labels::default();
            labels.set("alertname", "BEACON");
            labels
        },
        held_by: None,
        release_us: None,
        link_id: None,
    }
}

/// A console over a database holding a dead webhook (item 1), two sent
/// ones (2, 3) and a dead e-mail with a hostile subject (4).
fn serve() -> Served {
    serve_with(Vec::new())
}

/// The same, reading Velociraptor `streams`.
fn serve_with(streams: Vec<(String, Vec<String>)>) -> Served {
    let store = Arc::new(Store::for_tests());
    let item = |status| NewItem {
        module: "alerts".into(),
        event: Some("ingest:1".into()),
        status,
        payload: Payload::Webhook(WebhookPayload {
            url: "https://hooks.example/x".into(),
            headers: Vec::new(),
            may_reach_private: false,
        }),
        body: b"{}".to_vec(),
        follows: Vec::new(),
        labels: Default::default(),
        held_by: None,
        release_us: None,
        link_id: None,
    };
    let items = [
        item(Status::Dead),
        item(Status::Sent),
        item(Status::Sent),
        hostile_email(),
    ];
    let changes = Changes {
        state: &[],
        items: &items,
        retries: &[],
        fences: &[],
    };
    store.commit(&changes, NOW_US, u64::MAX, &Throttle::default()).unwrap();
    let clock = Clock::virtual_at(NOW_US);
    let users = vec![user("ann", Role::Operator), user("vic", Role::Viewer)];
    let metrics = Arc::new(Metrics::new());
    let context = ConsoleContext {
        metrics: metrics.clone(),
        retry_window_us: 3_600_000_000,
        streams,
        previewer: Some(Arc::new(CountingPreviewer)),
    };
    let console = Console::new(&section(users), store.clone(), clock.clone(), context).unwrap();
    let address = super::serve("127.0.0.1:0", Arc::new(console)).unwrap();
    Served {
        url: format!("http://{address}"),
        clock,
        store,
        metrics,
    }
}

/// Counts the rows it is given, and answers one e-mail with a hostile
/// subject.
#[derive(Debug)]
struct CountingPreviewer;

impl Previewer for CountingPreviewer {
    fn preview(&self, rows: &[u8]) -> anyhow::Result<Preview> {
        let events = rows.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
        let email = PreviewAction {
            module: "alerts".into(),
            kind: "email".into(),
            subject: HOSTILE.into(),
            fate: "sent".into(),
            html: Some("<p>the e-mail</p>".into()),
            ..PreviewAction::default()
        };
        Ok(Preview {
            events,
            actions: vec![email],
            ..Preview::default()
        })
    }
}

/// A `multipart/form-data` body, as a browser sends a form with a file.
fn multipart(csrf: &str, pasted: &str, file: &str) -> String {
    let field = |name: &str, extra: &str, value: &str| {
        format!("--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"{extra}\r\n\r\n{value}\r\n")
    };
    format!(
        "{}{}{}--XyZ--\r\n",
        field("csrf", "", csrf),
        field("rows", "", pasted),
        field(
            "file",
            "; filename=\"rows.jsonl\"\r\nContent-Type: application/octet-stream",
            file
        )
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// The value a `Set-Cookie` gives cookie `name`, with its attributes.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }

    /// `name=value` of a `Set-Cookie`, as a browser sends it back.
    fn cookie(&self, name: &str) -> String {
        let set = self
            .set_cookie(name)
            .unwrap_or_else(|| panic!("no cookie {name}: {:?}", self.headers));
        set.split(';').next().unwrap().to_string()
    }

    /// The value of hidden field `name` in the page.
    fn field(&self, name: &str) -> String {
        let at = self.body.find(&format!("name=\"{name}\" value=\"")).expect(name);
        let rest = &self.body[at + name.len() + 15..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

fn get(served: &Served, path: &str, cookie: Option<&str>) -> Answer {
    let mut request = agent().get(format!("{}{path}", served.url));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    answer(request.call().unwrap())
}

fn post(served: &Served, path: &str, cookie: &str, origin: Option<&str>, form: &str) -> Answer {
    post_as(served, path, cookie, origin, "application/x-www-form-urlencoded", form)
}

fn post_as(served: &Served, path: &str, cookie: &str, origin: Option<&str>, content_type: &str, form: &str) -> Answer {
    let mut request = agent()
        .post(format!("{}{path}", served.url))
        .header("Content-Type", content_type)
        .header("Cookie", cookie);
    if let Some(origin) = origin {
        request = request.header("Origin", origin);
    }
    answer(request.send(form.as_bytes()).unwrap())
}

fn answer(response: Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Answer {
        status,
        headers,
        body: response.into_body().read_to_string().unwrap(),
    }
}

/// Logs in as `user` with `password`, from the console's own page.
fn log_in(served: &Served, user: &str, password: &str) -> Answer {
    let form = get(served, "/login", None);
    let cookie = form.cookie("__Host-velonotify-login");
    let body = format!(
        "login_csrf={}&user={user}&password={}",
        form.field("login_csrf"),
        password.replace(' ', "+")
    );
    post(served, "/login", &cookie, Some(&served.url), &body)
}

const COOKIE_ATTRIBUTES: &str = "; Path=/; Secure; HttpOnly; SameSite=Strict";

#[test]
fn a_page_without_a_session_sends_the_browser_to_the_login() {
    let served = serve();
    let overview = get(&served, "/", None);
    assert_eq!(overview.status, 303);
    assert_eq!(overview.headers["location"], "/login");
    let login = get(&served, "/login", None);
    assert_eq!(login.status, 200);
    assert!(
        login.body.contains("<form method=\"post\" action=\"/login\">"),
        "{}",
        login.body
    );
    assert!(
        login
            .set_cookie("__Host-velonotify-login")
            .unwrap()
            .ends_with(COOKIE_ATTRIBUTES)
    );
    assert_eq!(
        login.headers["content-security-policy"],
        layout::CONTENT_SECURITY_POLICY
    );
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert_eq!(login.headers["cache-control"], "no-store");
}

#[test]
fn the_right_password_opens_a_session_and_a_wrong_one_or_name_is_refused_alike() {
    let served = serve();
    for (user, password) in [("ann", "wrong"), ("nobody", PASSWORD)] {
        let refused = log_in(&served, user, password);
        assert_eq!(refused.status, 401, "{user}");
        assert!(
            refused.body.contains("Wrong user name or password."),
            "{}",
            refused.body
        );
        assert!(refused.set_cookie("__Host-velonotify-session").is_none());
    }
    let logged_in = log_in(&served, "ann", PASSWORD);
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    assert_eq!(logged_in.headers["location"], "/");
    let set = logged_in.set_cookie("__Host-velonotify-session").unwrap();
    assert!(set.ends_with(COOKIE_ATTRIBUTES), "{set}");
    let overview = get(&served, "/", Some(&logged_in.cookie("__Host-velonotify-session")));
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("ann (operator)"), "{}", overview.body);
    assert!(
        overview.body.contains(">dead</a></td><td class=\"count\">2</td>"),
        "{}",
        overview.body
    );
    assert!(
        overview.body.contains(">sent</a></td><td class=\"count\">2</td>"),
        "{}",
        overview.body
    );
}

#[test]
fn a_form_without_its_token_or_from_another_site_is_refused() {
    let served = serve();
    let session = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let csrf = get(&served, "/", Some(&session)).field("csrf");
    let evil = Some("http://evil.example");
    for (origin, form) in [
        (Some(served.url.as_str()), "csrf=forged".to_string()),
        (evil, format!("csrf={csrf}")),
        (None, format!("csrf={csrf}")),
    ] {
        let refused = post(&served, "/logout", &session, origin, &form);
        assert_eq!(refused.status, 403, "{origin:?} {form}");
        assert_eq!(get(&served, "/", Some(&session)).status, 200, "still logged in");
    }
    // A login posted from another site is refused before any password is tried.
    let form = get(&served, "/login", None);
    let cookie = form.cookie("__Host-velonotify-login");
    let body = format!(
        "login_csrf={}&user=ann&password={}",
        form.field("login_csrf"),
        PASSWORD.replace(' ', "+")
    );
    assert_eq!(post(&served, "/login", &cookie, evil, &body).status, 403);
    assert_eq!(
        post(&served, "/login", "", Some(&served.url), &body).status,
        403,
        "no login cookie"
    );

    let out = post(&served, "/logout", &session, Some(&served.url), &format!("csrf={csrf}"));
    assert_eq!(out.status, 303);
    assert_eq!(get(&served, "/", Some(&session)).status, 303, "the session ended");
}

#[test]
fn five_wrong_passwords_refuse_the_name_for_five_minutes_and_idle_sessions_end() {
    let served = serve();
    for _ in 0..5 {
        assert_eq!(log_in(&served, "ann", "guess").status, 401);
    }
    assert_eq!(log_in(&served, "ann", PASSWORD).status, 429, "even the right one");
    assert_eq!(
        log_in(&served, "vic", PASSWORD).status,
        303,
        "other names are not refused"
    );
    served.clock.advance_to(NOW_US + 6 * 60 * 1_000_000);
    let session = log_in(&served, "ann", PASSWORD).cookie("__Host-velonotify-session");
    assert_eq!(get(&served, "/", Some(&session)).status, 200);
    served.clock.advance_to(NOW_US + 37 * 60 * 1_000_000);
    assert_eq!(get(&served, "/", Some(&session)).status, 303, "30 minutes idle");
}

#[test]
fn check_refuses_bad_users_and_a_console_open_beyond_this_host_without_https() {
    let cases: Vec<(ConsoleSection, &str)> = vec![
        (section(vec![]), "at least one [[console.user]]"),
        (
            section(vec![ConsoleUser {
                password_hash: "plain text".into(),
                ..user("ann", Role::Viewer)
            }]),
            "console.user[1] (\"ann\"): password_hash is not a PHC string",
        ),
        (
            section(vec![user("ann", Role::Viewer), user("ann", Role::Operator)]),
            "console.user[2] (\"ann\"): a second user",
        ),
        (
            ConsoleSection {
                listen: "0.0.0.0:9465".into(),
                ..section(vec![user("ann", Role::Viewer)])
            },
            "not a loopback address",
        ),
    ];
    for (section, expected) in cases {
        let err = section.check().unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
    let behind_a_proxy = ConsoleSection {
        listen: "0.0.0.0:9465".into(),
        public_url: Some("https://velonotify.corp.example".into()),
        ..section(vec![user("vic", Role::Viewer), user("ann", Role::Operator)])
    };
    assert_eq!(
        behind_a_proxy.check().unwrap(),
        "console: 0.0.0.0:9465, users ann (operator), vic (viewer)"
    );
}

fn status_of(served: &Served, id: i64) -> Option<Status> {
    served.store.item(id).unwrap().map(|item| item.unwrap().status)
}

#[test]
fn only_an_operator_retries_or_purges_and_only_dead_items() {
    let served = serve();
    let viewer = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let viewer_csrf = get(&served, "/", Some(&viewer)).field("csrf");
    let detail = get(&served, "/outbox/1", Some(&viewer));
    assert_eq!(detail.status, 200);
    assert!(!detail.body.contains("id=\"retry\""), "a viewer is shown no Retry");
    let form = format!("csrf={viewer_csrf}");
    for action in ["retry", "purge"] {
        let refused = post(
            &served,
            &format!("/outbox/1/{action}"),
            &viewer,
            Some(&served.url),
            &form,
        );
        assert_eq!(refused.status, 403, "{action}: {}", refused.body);
        assert!(refused.body.contains("only an operator"), "{}", refused.body);
    }
    assert_eq!(status_of(&served, 1), Some(Status::Dead));

    let operator = log_in(&served, "ann", PASSWORD).cookie("__Host-velonotify-session");
    let csrf = get(&served, "/", Some(&operator)).field("csrf");
    assert!(get(&served, "/outbox/1", Some(&operator)).body.contains("id=\"retry\""));
    let form = format!("csrf={csrf}");
    assert_eq!(
        post(&served, "/outbox/1/retry", &operator, Some(&served.url), "csrf=forged").status,
        403
    );
    assert_eq!(
        status_of(&served, 1),
        Some(Status::Dead),
        "a forged token retries nothing"
    );
    let elsewhere = post(
        &served,
        "/outbox/1/retry",
        &operator,
        Some("http://evil.example"),
        &form,
    );
    assert_eq!(elsewhere.status, 403);
    assert_eq!(
        status_of(&served, 1),
        Some(Status::Dead),
        "nor a form from another site"
    );
    let retried = post(&served, "/outbox/1/retry", &operator, Some(&served.url), &form);
    assert_eq!(
        (retried.status, &retried.headers["location"]),
        (303, &"/outbox/1".parse().unwrap())
    );
    assert_eq!(status_of(&served, 1), Some(Status::Pending));
    // A sent item is not purged; a dead one is.
    assert_eq!(
        post(&served, "/outbox/2/purge", &operator, Some(&served.url), &form).status,
        303
    );
    assert_eq!(status_of(&served, 2), Some(Status::Sent));
    assert_eq!(
        post(&served, "/outbox/4/purge", &operator, Some(&served.url), &form).status,
        303
    );
    assert_eq!(status_of(&served, 4), None);
}

#[test]
fn a_hostile_subject_is_text_and_an_e_mails_html_is_served_sandboxed() {
    let served = serve();
    let session = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;";
    for path in ["/outbox", "/outbox?text=SCRIPT", "/outbox/4"] {
        let page = get(&served, path, Some(&session));
        assert_eq!(page.status, 200, "{path}");
        assert!(page.body.contains(escaped), "{path}: {}", page.body);
        assert_eq!(page.body.matches("<script").count(), 1, "{path}: {}", page.body);
        assert!(page.body.contains(OUR_SCRIPT), "{path}: {}", page.body);
        assert!(!page.body.contains("<img"), "{path}: {}", page.body);
    }
    let detail = get(&served, "/outbox/4", Some(&session));
    assert!(
        detail.body.contains("<iframe id=\"email\" sandbox=\"\""),
        "{}",
        detail.body
    );
    let html = get(&served, "/outbox/4/html", Some(&session));
    assert_eq!(html.status, 200);
    let policy = html.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.starts_with("sandbox; default-src 'none';"), "{policy}");
    assert!(html.body.contains("<p style=\"color:red\">Beacon</p>"), "{}", html.body);
    assert_eq!(
        get(&served, "/outbox/4/html", None).status,
        303,
        "not without a session"
    );
    assert_eq!(
        get(&served, "/outbox/1/html", Some(&session)).status,
        404,
        "a webhook has no e-mail"
    );
}

/// A viewer may not silence, so is not handed the e-mail's signed link
/// to do it: the token is taken out of both parts; an operator sees it.
#[test]
fn a_viewer_is_shown_an_e_mails_silence_link_without_its_token() {
    let served = serve();
    let hidden = "https://velonotify.example/silence?t=hidden";
    let viewer = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    for path in ["/outbox/4", "/outbox/4/html"] {
        let page = get(&served, path, Some(&viewer));
        assert!(page.body.contains(hidden), "{path}: {}", page.body);
        assert!(!page.body.contains(&silence_link()), "{path}: {}", page.body);
    }
    let operator = log_in(&served, "ann", PASSWORD).cookie("__Host-velonotify-session");
    for path in ["/outbox/4", "/outbox/4/html"] {
        let page = get(&served, path, Some(&operator));
        assert!(page.body.contains(&silence_link()), "{path}: {}", page.body);
    }
}

#[test]
fn the_outbox_list_filters_and_names_a_bad_filter() {
    let served = serve();
    let session = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let ids = |path: &str| -> Vec<String> {
        let page = get(&served, path, Some(&session));
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        page.body
            .match_indices("data-id=\"")
            .map(|(at, _)| page.body[at + 9..].split('"').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids("/outbox"), ["4", "3", "2", "1"]);
    assert_eq!(ids("/outbox?status=dead"), ["4", "1"]);
    assert_eq!(ids("/outbox?status=dead&kind=email"), ["4"]);
    assert_eq!(ids("/outbox?text=soc%40example"), ["4"]);
    assert_eq!(ids("/outbox?module=alerts&before=3"), ["2", "1"]);
    let bad = get(&served, "/outbox?status=lost", Some(&session));
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("status &quot;lost&quot; is not one the outbox knows"),
        "{}",
        bad.body
    );
}

#[test]
fn an_operator_counts_makes_and_expires_a_silence_and_a_viewer_only_looks() {
    let served = serve();
    let viewer = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let viewer_csrf = get(&served, "/", Some(&viewer)).field("csrf");
    let looked = get(&served, "/silences?matchers=alertname%3D%22BEACON%22", Some(&viewer));
    assert_eq!(looked.status, 200);
    assert!(looked.body.contains("Would have held 1 of those"), "{}", looked.body);
    assert!(!looked.body.contains("id=\"new-silence\""), "a viewer gets no form");
    // The form's live count asks this, as text.
    let live = get(
        &served,
        "/silences/count?matchers=alertname%3D%22BEACON%22",
        Some(&viewer),
    );
    assert_eq!(live.status, 200);
    assert_eq!(
        live.body,
        "Would have held 1 of those notifications of the last 24 hours."
    );
    assert_eq!(live.headers["content-type"], "text/plain; charset=utf-8");
    let bad = get(&served, "/silences/count?matchers=alertname%3D", Some(&viewer));
    assert_eq!(bad.status, 400);
    assert!(bad.body.starts_with("bad matcher"), "{}", bad.body);
    assert_eq!(get(&served, "/silences/count?matchers=a%3D%22b%22", None).status, 303);
    let script = get(&served, "/static/console.js", None);
    assert_eq!(script.headers["content-type"], "text/javascript; charset=utf-8");
    assert!(script.body.contains("/silences/count?"));
    let form = "matchers=alertname%3D%22BEACON%22&hours=3&comment=known+test";
    let refused = post(
        &served,
        "/silences",
        &viewer,
        Some(&served.url),
        &format!("{form}&csrf={viewer_csrf}"),
    );
    assert_eq!(refused.status, 403);
    assert!(served.store.silences().unwrap().is_empty());

    let operator = log_in(&served, "ann", PASSWORD).cookie("__Host-velonotify-session");
    let csrf = get(&served, "/", Some(&operator)).field("csrf");
    let bad = post(
        &served,
        "/silences",
        &operator,
        Some(&served.url),
        &format!("matchers=alertname%3D&comment=x&csrf={csrf}"),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("bad matcher"), "{}", bad.body);
    // Counted without script: the form posted with its Count button.
    let counted = post(
        &served,
        "/silences",
        &operator,
        Some(&served.url),
        &format!("{form}&intent=count&csrf={csrf}"),
    );
    assert_eq!(counted.status, 200);
    assert!(counted.body.contains("Would have held 1 of those"), "{}", counted.body);
    assert!(served.store.silences().unwrap().is_empty(), "a count makes nothing");
    let made = post(
        &served,
        "/silences",
        &operator,
        Some(&served.url),
        &format!("{form}&csrf={csrf}"),
    );
    assert_eq!(made.status, 303, "{}", made.body);
    let silence = served.store.silences().unwrap().remove(0).unwrap();
    assert_eq!(
        (silence.created_by.as_str(), silence.comment.as_str()),
        ("ann", "known test")
    );
    assert_eq!(silence.ends_us - silence.starts_us, 3 * 3_600_000_000);
    let listed = get(&served, "/silences", Some(&operator));
    assert!(
        listed.body.contains("<td class=\"state\">active</td>"),
        "{}",
        listed.body
    );
    let expired = post(
        &served,
        &format!("/silences/{}/expire", silence.id),
        &operator,
        Some(&served.url),
        &format!("csrf={csrf}"),
    );
    assert_eq!(expired.status, 303);
    let by_viewer = post(
        &served,
        &format!("/silences/{}/expire", silence.id),
        &viewer,
        Some(&served.url),
        &format!("csrf={viewer_csrf}"),
    );
    assert_eq!(by_viewer.status, 403, "a viewer expires nothing");
    let listed = get(&served, "/silences", Some(&operator));
    assert!(
        listed.body.contains("<td class=\"state\">expired</td>"),
        "{}",
        listed.body
    );
}

#[test]
fn a_preview_takes_an_uploaded_file_is_bounded_and_is_its_users_alone() {
    let served = serve();
    let vic = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let csrf = get(&served, "/", Some(&vic)).field("csrf");
    let form_type = "multipart/form-data; boundary=XyZ";
    let rows = "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n";
    let ran = post_as(
        &served,
        "/preview",
        &vic,
        Some(&served.url),
        form_type,
        &multipart(&csrf, "", rows),
    );
    assert_eq!(ran.status, 303, "a viewer may preview: {}", ran.body);
    let shown_at = ran.headers["location"].to_str().unwrap().to_string();
    let shown = get(&served, &shown_at, Some(&vic));
    assert!(
        shown.body.contains("3 rows replayed"),
        "the file's rows: {}",
        shown.body
    );
    assert!(
        shown.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        shown.body
    );
    assert_eq!(shown.body.matches("<script").count(), 1, "{}", shown.body);
    let email = get(&served, &format!("{shown_at}/0/html"), Some(&vic));
    assert!(
        email.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox;")
    );
    assert_eq!(email.body, "<p>the e-mail</p>");

    let ann = log_in(&served, "ann", PASSWORD).cookie("__Host-velonotify-session");
    assert_eq!(
        get(&served, &shown_at, Some(&ann)).status,
        404,
        "another user's preview"
    );
    assert_eq!(get(&served, &format!("{shown_at}/0/html"), Some(&ann)).status, 404);

    let too_many = "{}\n".repeat(1_001);
    let refused = post_as(
        &served,
        "/preview",
        &vic,
        Some(&served.url),
        form_type,
        &multipart(&csrf, &too_many, ""),
    );
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("1001 lines; a preview takes at most 1000"),
        "{}",
        refused.body
    );
    let forged = post_as(
        &served,
        "/preview",
        &vic,
        Some(&served.url),
        form_type,
        &multipart("forged", rows, ""),
    );
    assert_eq!(forged.status, 403);
}

/// Guesses sent at once neither get past the limit of five nor make the
/// console check more than a few passwords at a time.
#[test]
fn guesses_sent_at_once_count_together() {
    let served = Arc::new(serve());
    let guesses: Vec<_> = (0..12)
        .map(|_| {
            let served = served.clone();
            std::thread::spawn(move || log_in(&served, "ann", "guess").status)
        })
        .collect();
    let statuses: Vec<u16> = guesses.into_iter().map(|g| g.join().unwrap()).collect();
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(checked <= 5, "{statuses:?}");
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    for _ in checked..5 {
        assert_eq!(log_in(&served, "ann", "guess").status, 401);
    }
    assert_eq!(
        log_in(&served, "ann", PASSWORD).status,
        429,
        "five failures refuse the name"
    );
}

#[test]
fn the_overview_shows_each_module_and_each_streams_position() {
    let queues = vec![
        "Server.Internal.Alerts".to_string(),
        "Server.Internal.ClientInfo".to_string(),
    ];
    let served = serve_with(vec![("root".into(), queues)]);
    let mark = crate::sources::velociraptor::Mark {
        org_id: "root".into(),
        queue: "Server.Internal.Alerts".into(),
        cursor: crate::sources::velociraptor::Cursor {
            ts_s: NOW_US / 1_000_000 - 90,
            seen: Vec::new(),
            count: None,
        },
        fence: None,
    };
    served.store.state_put(&mark.to_state_write(), NOW_US).unwrap();
    let version = crate::metrics::ModuleVersion {
        version: "1.2.0".into(),
        digest: "ab".repeat(32),
        language: "Python".into(),
        since_us: NOW_US,
    };
    served.metrics.set_module("logon_spread", version);
    served.metrics.handled("logon_spread");
    served.metrics.trapped("logon_spread");
    let session = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let overview = get(&served, "/", Some(&session)).body;
    for shown in [
        "<div class=\"module\" data-module=\"logon_spread\">",
        "Python, version 1.2.0, build <code title=\"abab",
        "<dd class=\"handled\">1</dd>",
        "<dd class=\"trapped\">1</dd>",
        "<td>root</td><td>Server.Internal.Alerts</td><td>2026-05-28 20:25:10 UTC</td><td>90 s</td>",
        "<td>root</td><td>Server.Internal.ClientInfo</td><td>none yet</td>",
    ] {
        assert!(overview.contains(shown), "{shown} in {overview}");
    }
}

#[test]
fn the_silences_page_shows_groups_waiting_and_what_was_inhibited() {
    let served = serve();
    let held = |status, held_by: &str| NewItem {
        status,
        held_by: Some(held_by.into()),
        ..hostile_email()
    };
    let items = [
        held(Status::Held, "group {alertname=\"BEACON\"}"),
        held(Status::Held, "group {alertname=\"BEACON\"}"),
        held(Status::Inhibited, "inhibited by Server.Monitor.Health (rule 1)"),
    ];
    let changes = Changes {
        state: &[],
        items: &items,
        retries: &[],
        fences: &[],
    };
    served
        .store
        .commit(&changes, NOW_US, u64::MAX, &Throttle::default())
        .unwrap();
    let session = log_in(&served, "vic", PASSWORD).cookie("__Host-velonotify-session");
    let page = get(&served, "/silences", Some(&session)).body;
    for shown in [
        "<td>alerts</td><td><code>{alertname=&quot;BEACON&quot;}</code></td><td>2</td>",
        "<td>alerts</td><td>inhibited by Server.Monitor.Health (rule 1)</td><td>1</td>",
    ] {
        assert!(page.contains(shown), "{shown} in {page}");
    }
}
