//! `[console]`: the operator console, in the browser. Server-rendered pages
//! (maud escapes everything they show: event data is hostile) that work
//! without script (one small script of ours adds a live count),
//! a login for the users of the configuration (argon2 password hashes) in
//! two roles, viewer and operator, sessions in memory, and a token in every
//! form. Pages: the overview (modules, sources, outbox), the outbox (items,
//! their detail and e-mails, retry and purge), silences.

mod auth;
mod layout;
mod outbox;
mod overview;
mod preview;
mod silences;

use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;

pub use self::auth::hash_password;
use self::auth::{Sessions, Users};
pub use self::preview::{Preview, PreviewAction, Previewer};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::Store;

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Address to listen on, e.g. `127.0.0.1:9465`.
    pub listen: String,
    /// The address browsers open the console at, when it is not
    /// `http://<listen>` (behind an HTTPS proxy): forms must come from it.
    /// Required to be `https://` when `listen` is not a loopback address.
    pub public_url: Option<String>,
    /// Who may log in (`[[console.user]]`).
    #[serde(default, rename = "user")]
    pub users: Vec<ConsoleUser>,
}

/// `[[console.user]]`: a user, its password's argon2 hash (PHC string, as
/// `velonotify console hash-password` prints it) and its role.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
}

/// What a user may do: a viewer reads every page; an operator also acts
/// (retry, purge, silence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

impl ConsoleSection {
    /// The users, their hashes parsed; fails naming the first user whose
    /// entry is wrong.
    fn users(&self) -> anyhow::Result<Users> {
        Users::new(&self.users)
    }

    /// Checks the section: users, and a console reachable beyond this host
    /// only behind HTTPS (its cookies and passwords must not travel in
    /// clear). Returns what `check` prints.
    pub fn check(&self) -> anyhow::Result<String> {
        let users = self.users()?;
        let loopback = self
            .listen
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip().is_loopback())
            .unwrap_or_else(|_| self.listen.starts_with("localhost:"));
        let https = self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
        if !loopback && !https {
            bail!(
                "console.listen {} is not a loopback address: serve the console behind an HTTPS proxy and set \
                 console.public_url = \"https://...\"",
                self.listen
            );
        }
        if let Some(url) = &self.public_url {
            crate::operator::origin_of(url)
                .filter(|o| !o.is_empty())
                .with_context(|| format!("console.public_url {url:?} is not an http(s) address"))?;
        }
        Ok(format!("console: {}, users {}", self.listen, users.shown()))
    }
}

/// What the service tells the console besides its section.
#[derive(Debug, Clone)]
pub struct ConsoleContext {
    /// The process's counters and its roster of modules.
    pub metrics: Arc<Metrics>,
    /// How long a retried item has to be delivered (µs): the retry
    /// policy's deadline, as `velonotify outbox retry` gives it.
    pub retry_window_us: u64,
    /// The Velociraptor event streams: each org and the queues read.
    pub streams: Vec<(String, Vec<String>)>,
    /// Replays pasted rows on a throw-away state (None: no preview).
    pub previewer: Option<Arc<dyn Previewer>>,
}

/// What the console's pages read and act on.
#[derive(Debug)]
pub struct Console {
    users: Users,
    sessions: Sessions,
    store: Arc<Store>,
    clock: Clock,
    context: ConsoleContext,
    /// Events read, sampled every few seconds: the ingest rate.
    samples: overview::Samples,
    previews: preview::Previews,
    /// `scheme://host[:port]` of `public_url`: the only `Origin` a form may
    /// come from (None: the address the browser asked, `http://<Host>`).
    origin: Option<String>,
}

impl Console {
    pub fn new(
        section: &ConsoleSection,
        store: Arc<Store>,
        clock: Clock,
        context: ConsoleContext,
    ) -> anyhow::Result<Self> {
        section.check()?;
        Ok(Self {
            users: section.users()?,
            sessions: Sessions::default(),
            store,
            clock,
            context,
            samples: overview::Samples::default(),
            previews: preview::Previews::default(),
            origin: section.public_url.as_deref().and_then(crate::operator::origin_of),
        })
    }
}

impl Console {
    /// Runs `work` on a thread that may block: a long read (a text search,
    /// a count over the last day) must not hold up the console's one
    /// thread, and with it every other user's pages.
    async fn off_thread<T: Send + 'static>(self: &Arc<Self>, work: impl FnOnce(&Console) -> T + Send + 'static) -> T {
        let console = self.clone();
        match tokio::task::spawn_blocking(move || work(&console)).await {
            Ok(done) => done,
            Err(failed) => std::panic::resume_unwind(failed.into_panic()),
        }
    }
}

/// The console's routes.
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview::show))
        .route("/outbox", get(outbox::list))
        .route("/outbox/{id}", get(outbox::detail))
        .route("/outbox/{id}/html", get(outbox::html))
        .route("/outbox/{id}/retry", post(outbox::retry))
        .route("/outbox/{id}/purge", post(outbox::purge))
        .route("/preview", get(preview::form).post(preview::run))
        .route("/preview/{id}", get(preview::show))
        .route("/preview/{id}/{n}/html", get(preview::email))
        .route("/silences", get(silences::show).post(silences::create))
        .route("/silences/count", get(silences::count_text))
        .route("/silences/{id}/expire", post(silences::expire))
        .route("/login", get(auth::login_page).post(auth::log_in))
        .route("/logout", post(auth::log_out))
        .route("/static/console.css", get(layout::style))
        .route("/static/console.js", get(layout::script))
        .with_state(console)
}

/// Serves the console on `listen` from a thread of its own; returns the
/// address.
pub fn serve(listen: &str, console: Arc<Console>) -> anyhow::Result<std::net::SocketAddr> {
    let address = crate::http::serve(
        listen,
        "console",
        routes(console.clone()),
        crate::http::Limits::default(),
    )?;
    overview::sample_events(console);
    Ok(address)
}

#[cfg(test)]
mod tests;
