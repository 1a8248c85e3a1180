//! `[console]`: the operator console, in the browser. Server-rendered pages
//! (maud escapes everything they show: event data is hostile), no script,
//! a login for the users of the configuration (argon2 password hashes) in
//! two roles, viewer and operator, sessions in memory, and a token in every
//! form. This first part serves the login and the overview of the outbox;
//! the outbox, silences and preview pages build on it.

mod auth;
mod layout;
mod overview;

use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;

pub use self::auth::hash_password;
use self::auth::{Sessions, Users};
use crate::clock::Clock;
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

/// What the console's pages read and act on.
#[derive(Debug)]
pub struct Console {
    users: Users,
    sessions: Sessions,
    store: Arc<Store>,
    clock: Clock,
    /// `scheme://host[:port]` of `public_url`: the only `Origin` a form may
    /// come from (None: the address the browser asked, `http://<Host>`).
    origin: Option<String>,
}

impl Console {
    pub fn new(section: &ConsoleSection, store: Arc<Store>, clock: Clock) -> anyhow::Result<Self> {
        section.check()?;
        Ok(Self {
            users: section.users()?,
            sessions: Sessions::default(),
            store,
            clock,
            origin: section.public_url.as_deref().and_then(crate::operator::origin_of),
        })
    }
}

/// The console's routes.
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(overview::show))
        .route("/login", get(auth::login_page).post(auth::log_in))
        .route("/logout", post(auth::log_out))
        .route("/static/console.css", get(layout::style))
        .with_state(console)
}

/// Serves the console on `listen` from a thread of its own; returns the
/// address.
pub fn serve(listen: &str, console: Arc<Console>) -> anyhow::Result<std::net::SocketAddr> {
    crate::http::serve(listen, "console", routes(console), crate::http::Limits::default())
}

#[cfg(test)]
mod tests;
