//! What operators use of a running `velonotify run` over HTTP, beside the
//! CLI: `[api]` serves the silences (`/v1/silences`, in the shape of
//! Alertmanager's API v2, so its tools and habits carry over) and, with
//! `[server] velonotify_url`, the page the e-mails' silence links open
//! (`/silence`).

pub mod console;
pub mod silence_page;
pub mod silences_api;

/// Serves the operators' routes on `listen` from a thread of their own;
/// returns the address.
pub fn serve(listen: &str, routes: axum::Router) -> anyhow::Result<std::net::SocketAddr> {
    crate::http::serve(listen, "api", routes, crate::http::Limits::default())
}

/// How far back a new silence's matchers are tried, and on how many
/// notifications at most.
pub const RECENT_S: u64 = 24 * 3600;
pub const RECENT_LIMIT: usize = 10_000;

/// How many of the notifications of the last [`RECENT_S`] `matchers`
/// select, and whether the count stopped at [`RECENT_LIMIT`]: what a
/// silence would have held back, shown before it is made.
pub fn recent_matches(
    store: &crate::store::Store,
    matchers: &crate::noise::Matchers,
    now_us: u64,
) -> Result<(usize, bool), crate::store::StoreError> {
    let since = now_us.saturating_sub(RECENT_S * 1_000_000);
    let recent = store.notification_labels_since(since, RECENT_LIMIT)?;
    let matched = recent.iter().filter(|labels| matchers.matches(labels)).count();
    Ok((matched, recent.len() == RECENT_LIMIT))
}

/// The origin browsers send for pages under `url`: `scheme://host[:port]`,
/// without the scheme's default port; None for what is not such an
/// address.
pub fn origin_of(url: &str) -> Option<String> {
    let uri = url.parse::<http::Uri>().ok()?;
    let (scheme, host) = (uri.scheme_str()?, uri.host()?);
    Some(match (scheme, uri.port_u16()) {
        (_, None) | ("http", Some(80)) | ("https", Some(443)) => format!("{scheme}://{host}"),
        (_, Some(port)) => format!("{scheme}://{host}:{port}"),
    })
}

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// `[api]`: the operators' HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address to listen on, e.g. `127.0.0.1:9466`.
    pub listen: String,
    /// The bearer token operators present (or `token_file`); at least 16
    /// characters.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl ApiSection {
    /// The token, read from the file when it is given by file.
    pub fn token(&self, base_dir: &std::path::Path) -> anyhow::Result<crate::http::BearerToken> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => token.clone(),
            (None, Some(file)) => crate::files::read_regular_text(&base_dir.join(file), 64 << 10)
                .context("api.token_file")?
                .trim()
                .to_string(),
            (None, None) => bail!("api: set token or token_file (operators present it as a bearer token)"),
        };
        crate::http::BearerToken::new(&token).map_err(|e| anyhow::anyhow!("api.token: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn the_origin_is_what_browsers_send() {
        let origin = |url: &str| origin_of(url).unwrap_or_default();
        assert_eq!(origin("https://v.example:443/"), "https://v.example");
        assert_eq!(origin("http://v.example:80"), "http://v.example");
        assert_eq!(origin("https://v.example:9466/velonotify"), "https://v.example:9466");
        assert_eq!(origin("http://127.0.0.1:9466/"), "http://127.0.0.1:9466");
        assert_eq!(origin_of("not a url"), None);
    }
}
