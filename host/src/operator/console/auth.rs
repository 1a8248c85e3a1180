//! Who is logged in: the users of `[[console.user]]` (argon2 hashes), the
//! sessions (in memory: a restart logs everyone out, and no session secret
//! reaches the database), the token every form carries, and the checks
//! every request passes.
//!
//! A session is a random id in a `__Host-` cookie (Secure, HttpOnly,
//! SameSite=Strict), kept here as its SHA-256 digest. A form is taken only
//! from the console's own origin (`Origin`) and with the session's token;
//! the login form with the token of its own cookie. Five wrong passwords
//! for a name within five minutes refuse that name for the rest of them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use maud::html;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::layout::{page, respond};
use super::{Console, ConsoleUser, Role};

/// The session cookie, and the login form's own.
const SESSION_COOKIE: &str = "__Host-velonotify-session";
const LOGIN_COOKIE: &str = "__Host-velonotify-login";
/// A session ends after this long without a request, and at the latest
/// this long after the login.
const IDLE_US: u64 = 30 * 60 * 1_000_000;
const LIFETIME_US: u64 = 12 * 3600 * 1_000_000;
/// Sessions kept at most (the oldest goes).
const MAX_SESSIONS: usize = 1_000;
/// Wrong passwords for one name within the window that refuse it.
const MAX_FAILURES: usize = 5;
const FAILURE_WINDOW_US: u64 = 5 * 60 * 1_000_000;
/// Names whose failures are remembered at most (the stalest goes).
const MAX_FAILING_NAMES: usize = 10_000;
/// Passwords checked at once; more logins at once are asked to wait.
const MAX_VERIFYING: usize = 2;
/// The login form's size and time.
const MAX_FORM_BYTES: usize = 4 << 10;
const FORM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The argon2 hash of `password` as a PHC string (argon2id, the crate's
/// default parameters, a random salt).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    Ok(hash.to_string())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("the system's random numbers");
    bytes
}

pub(super) fn random_token() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Whether two texts are equal, comparing their digests byte by byte
/// whatever they hold.
fn same(a: &str, b: &str) -> bool {
    digest(a).iter().zip(digest(b)).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The users who may log in.
#[derive(Debug)]
pub(super) struct Users {
    /// name → (PHC hash, role).
    by_name: HashMap<String, (String, Role)>,
    /// Checked for a name that is no user's, so that the answer's time
    /// does not tell names apart.
    decoy: String,
    failures: Mutex<HashMap<String, VecDeque<u64>>>,
    /// Passwords checked at once: each check takes ~19 MiB and tens of
    /// milliseconds, and anyone who reaches the login can ask for one.
    verifying: Arc<tokio::sync::Semaphore>,
}

impl Users {
    pub fn new(users: &[ConsoleUser]) -> anyhow::Result<Self> {
        if users.is_empty() {
            anyhow::bail!("console: add at least one [[console.user]] (name, password_hash, role)");
        }
        let mut by_name = HashMap::new();
        for (i, user) in users.iter().enumerate() {
            let at = format!("console.user[{}] ({:?})", i + 1, user.name);
            if user.name.trim().is_empty() || user.name.len() > 100 {
                anyhow::bail!("{at}: a name of 1 to 100 characters");
            }
            let parsed = PasswordHash::new(&user.password_hash)
                .map_err(|e| anyhow::anyhow!("{at}: password_hash is not a PHC string ({e})"))?;
            if !parsed.algorithm.as_str().starts_with("argon2") {
                anyhow::bail!("{at}: password_hash is {}, not argon2", parsed.algorithm);
            }
            if by_name
                .insert(user.name.clone(), (user.password_hash.clone(), user.role))
                .is_some()
            {
                anyhow::bail!("{at}: a second user of that name");
            }
        }
        Ok(Self {
            by_name,
            decoy: hash_password(&random_token())?,
            failures: Mutex::default(),
            verifying: Arc::new(tokio::sync::Semaphore::new(MAX_VERIFYING)),
        })
    }

    /// `name (role)`, sorted, for `check`; never a hash.
    pub fn shown(&self) -> String {
        let mut names: Vec<String> = self.by_name.iter().map(|(n, (_, r))| format!("{n} ({r})")).collect();
        names.sort();
        names.join(", ")
    }

    /// The role of `name` when `password` is its password. Slow on purpose
    /// (argon2), and as slow for a name that is no user's.
    fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let (hash, role) = match self.by_name.get(name) {
            Some((hash, role)) => (hash.as_str(), Some(*role)),
            None => (self.decoy.as_str(), None),
        };
        let parsed = PasswordHash::new(hash).ok()?;
        let ok = Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok();
        role.filter(|_| ok)
    }

    /// Whether `name` may try a password now.
    fn refused(&self, name: &str, now_us: u64) -> bool {
        let mut failures = self.failures.lock().expect("failures lock");
        let Some(times) = failures.get_mut(name) else {
            return false;
        };
        while times
            .front()
            .is_some_and(|t| now_us.saturating_sub(*t) > FAILURE_WINDOW_US)
        {
            times.pop_front();
        }
        times.len() >= MAX_FAILURES
    }

    /// Counts a try of `name`'s password as failed (before it is checked,
    /// so that tries at once count against the limit together).
    fn failed(&self, name: &str, now_us: u64) {
        let mut failures = self.failures.lock().expect("failures lock");
        if failures.len() >= MAX_FAILING_NAMES
            && !failures.contains_key(name)
            && let Some(stalest) = failures
                .iter()
                .min_by_key(|(_, times)| times.back().copied().unwrap_or(0))
                .map(|(n, _)| n.clone())
        {
            failures.remove(&stalest);
        }
        let times = failures.entry(name.to_string()).or_default();
        times.push_back(now_us);
        if times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

impl Users {
    /// Takes back the failure counted for a try that turned out right.
    fn forgive(&self, name: &str) {
        let mut failures = self.failures.lock().expect("failures lock");
        if let Some(times) = failures.get_mut(name) {
            times.pop_back();
        }
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub user: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
    started_us: u64,
    last_us: u64,
}

/// The sessions, by the digest of their id.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for `user`; returns its id.
    fn start(&self, user: &str, role: Role, now_us: u64) -> String {
        let id = random_token();
        let mut sessions = self.by_digest.lock().expect("sessions lock");
        sessions.retain(|_, s| alive(s, now_us));
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_us).map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        let session = Session {
            user: user.to_string(),
            role,
            csrf: random_token(),
            started_us: now_us,
            last_us: now_us,
        };
        sessions.insert(digest(&id), session);
        id
    }

    /// The live session of a request's cookie, its last use now.
    fn current(&self, headers: &HeaderMap, now_us: u64) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.by_digest.lock().expect("sessions lock");
        let key = digest(id);
        match sessions.get_mut(&key) {
            Some(session) if alive(session, now_us) => {
                session.last_us = now_us;
                Some(session.clone())
            }
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.by_digest.lock().expect("sessions lock").remove(&digest(id));
        }
    }
}

fn alive(session: &Session, now_us: u64) -> bool {
    now_us.saturating_sub(session.last_us) < IDLE_US && now_us.saturating_sub(session.started_us) < LIFETIME_US
}

/// The value of cookie `name` in a request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: only over HTTPS (browsers count loopback as
/// secure), never to scripts, never on another site's requests.
fn set_cookie(name: &str, value: &str) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict")
}

fn clear_cookie(name: &str) -> String {
    format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

pub(super) fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response();
    for value in cookies {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Why a request is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Denied {
    /// No live session: the browser is sent to the login.
    NoSession,
    /// A form without its token, or from another origin.
    ForeignForm,
}

impl Denied {
    pub(super) fn response(self) -> Response {
        match self {
            Denied::NoSession => redirect("/login", &[]),
            Denied::ForeignForm => forbidden("the form did not come from this console's page; reload it and try again"),
        }
    }
}

impl Console {
    /// The session of a request.
    pub(super) fn session(&self, headers: &HeaderMap) -> Result<Session, Denied> {
        let now_us = self.clock.now_us();
        self.sessions.current(headers, now_us).ok_or(Denied::NoSession)
    }

    /// Whether a form comes from the console's own pages: the `Origin` of
    /// `public_url`, or, without one, of the address the browser asked
    /// (`Host`). A page of another site cannot post here: the browser
    /// sends its origin, and the session cookie is not sent with it.
    pub(super) fn posted_from_console(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        match &self.origin {
            Some(own) => origin.eq_ignore_ascii_case(own),
            None => headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|host| origin.eq_ignore_ascii_case(&format!("http://{host}"))),
        }
    }

    /// The session of a form post that carries its token (`csrf`), from
    /// the console's own origin.
    pub(super) fn form_session(&self, headers: &HeaderMap, csrf: &str) -> Result<Session, Denied> {
        let session = self.session(headers)?;
        if !self.posted_from_console(headers) || !same(csrf, &session.csrf) {
            return Err(Denied::ForeignForm);
        }
        Ok(session)
    }
}

impl Console {
    /// A form that acts (retry, purge, silence) and the session that sent
    /// it: read whole (16 KiB at most), from the console's page, with its
    /// token, and of an operator. A viewer is refused whatever the page
    /// showed.
    pub(super) async fn operator_form<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Session, T), Box<Response>> {
        let bytes = crate::http::read_bounded(body, 16 << 10, FORM_TIMEOUT)
            .await
            .map_err(|refusal| {
                Box::new(respond(
                    refusal.status(),
                    page("Refused", None, html! { p #refusal { (refusal.to_string()) } }),
                ))
            })?;
        let token = serde_urlencoded::from_bytes::<TokenForm>(&bytes).unwrap_or(TokenForm { csrf: String::new() });
        let session = self
            .form_session(headers, &token.csrf)
            .map_err(|denied| Box::new(denied.response()))?;
        if session.role != Role::Operator {
            tracing::warn!(user = %session.user, "console: a viewer's form that acts, refused");
            return Err(Box::new(forbidden(
                "only an operator may do this; you are logged in as a viewer",
            )));
        }
        let form = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            Box::new(respond(
                StatusCode::BAD_REQUEST,
                page(
                    "Refused",
                    Some(&session),
                    html! { p #refusal { "The form could not be read: " (e.to_string()) } },
                ),
            ))
        })?;
        Ok((session, form))
    }
}

pub(super) fn forbidden(why: &str) -> Response {
    respond(
        StatusCode::FORBIDDEN,
        page("Refused", None, html! { p #refusal { (why) } }),
    )
}

/// `GET /login`: the form, with a token of its own cookie.
pub(super) async fn login_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if console.sessions.current(&headers, console.clock.now_us()).is_some() {
        return redirect("/", &[]);
    }
    login_form(StatusCode::OK, None)
}

fn login_form(status: StatusCode, problem: Option<&str>) -> Response {
    let token = random_token();
    let mut response = respond(
        status,
        page(
            "Log in",
            None,
            html! {
                @if let Some(problem) = problem { p #problem { (problem) } }
                form method="post" action="/login" {
                    input type="hidden" name="login_csrf" value=(token);
                    label { "User " input name="user" autocomplete="username" required; }
                    label { "Password " input name="password" type="password" autocomplete="current-password" required; }
                    button type="submit" { "Log in" }
                }
            },
        ),
    );
    if let Ok(value) = set_cookie(LOGIN_COOKIE, &token).parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    login_csrf: String,
    user: String,
    password: String,
}

/// `POST /login`.
pub(super) async fn log_in(State(console): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Response {
    let cookie_token = cookie(&headers, LOGIN_COOKIE).unwrap_or_default().to_string();
    let form = match crate::http::read_bounded(body, MAX_FORM_BYTES, FORM_TIMEOUT).await {
        Ok(bytes) => serde_urlencoded::from_bytes::<LoginForm>(&bytes).ok(),
        Err(refusal) => {
            return respond(
                refusal.status(),
                page("Refused", None, html! { p { (refusal.to_string()) } }),
            );
        }
    };
    let Some(form) = form else {
        return login_form(StatusCode::BAD_REQUEST, Some("The form could not be read."));
    };
    if !console.posted_from_console(&headers) || cookie_token.is_empty() || !same(&form.login_csrf, &cookie_token) {
        return forbidden("the login did not come from this console's page; reload it and try again");
    }
    let now_us = console.clock.now_us();
    if console.users.refused(&form.user, now_us) {
        return login_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many wrong passwords for this user: wait five minutes."),
        );
    }
    let Ok(permit) = console.users.verifying.clone().try_acquire_owned() else {
        return login_form(
            StatusCode::TOO_MANY_REQUESTS,
            Some("The console is checking other logins: try again in a moment."),
        );
    };
    console.users.failed(&form.user, now_us);
    // argon2 takes tens of milliseconds: off the thread that serves pages.
    // The permit goes with the check, which runs on if the browser leaves.
    let (users_console, name, password) = (console.clone(), form.user.clone(), form.password);
    let role = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        users_console.users.verify(&name, &password)
    })
    .await
    .ok()
    .flatten();
    match role {
        Some(role) => {
            console.users.forgive(&form.user);
            let id = console.sessions.start(&form.user, role, now_us);
            tracing::info!(user = ?form.user, %role, "console: logged in");
            redirect("/", &[set_cookie(SESSION_COOKIE, &id), clear_cookie(LOGIN_COOKIE)])
        }
        None => {
            tracing::warn!(user = ?form.user, "console: a wrong user name or password");
            login_form(StatusCode::UNAUTHORIZED, Some("Wrong user name or password."))
        }
    }
}

/// A form that carries nothing but its token.
#[derive(Deserialize)]
pub(super) struct TokenForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`.
pub(super) async fn log_out(State(console): State<Arc<Console>>, headers: HeaderMap, body: Body) -> Response {
    let form = match crate::http::read_bounded(body, MAX_FORM_BYTES, FORM_TIMEOUT).await {
        Ok(bytes) => serde_urlencoded::from_bytes::<TokenForm>(&bytes).unwrap_or(TokenForm { csrf: String::new() }),
        Err(refusal) => return forbidden(&refusal.to_string()),
    };
    if let Err(denied) = console.form_session(&headers, &form.csrf) {
        return denied.response();
    }
    console.sessions.end(&headers);
    redirect("/login", &[clear_cookie(SESSION_COOKIE)])
}
