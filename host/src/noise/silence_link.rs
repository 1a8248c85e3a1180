//! The "Silence similar for 2 h" link that ends each e-mail when
//! `[server] velonotify_url` is set: a signed, expiring address of the
//! operator page (`operator::silence_page`) that shows what would be
//! silenced and creates the silence when the reader confirms.
//!
//! A module renders its e-mail before the host labels it, so a module's
//! link carries an id the host gave the call, kept in the outbox with the
//! call's notifications, and the page reads that item's labels. A digest's
//! link names the matchers of what its members share. Each link makes at
//! most one silence (its id is kept with it). Either way the token is signed with
//! HMAC-SHA-256 under a random key kept in the state database (one per
//! database, so every process serving it makes and accepts the same links),
//! and carries its expiry: a link cannot be forged, altered or used after
//! [`LINK_LIFETIME_S`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::{Labels, MatchOp, Matcher, Matchers};

/// How long a link opens the page after the e-mail was made.
pub const LINK_LIFETIME_S: u64 = 7 * 24 * 3600;
/// How long the silence the page makes lasts.
pub const SILENCE_DURATION_S: u64 = 2 * 3600;
/// The page's path under `velonotify_url`.
pub const PAGE_PATH: &str = "/silence";
/// Longest token made or read: a link stays short enough for any mail
/// client, and the page reads no more of a hostile address.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Bytes of the signing key.
pub const KEY_BYTES: usize = 32;

/// Binds a signature to this use, so a key could never sign something
/// else that reads as a link.
const CONTEXT: &[u8] = b"velonotify-silence-link-v1.";

/// What a link silences notifications like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Linked {
    /// The notifications of the call that made the link (the outbox keeps
    /// the link's id with them; the page reads their labels).
    Notification,
    /// Matchers written out (`{alertname="x"}`): a digest's members' common labels.
    Matchers(String),
}

/// A link that checked out: its id and what it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// Random, made by the host ([`fresh_link_id`]).
    pub id: String,
    pub linked: Linked,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(flatten)]
    link: Link,
    /// Unix seconds after which the link is refused.
    expires: u64,
}

/// What stands for a token taken out of an e-mail ([`without_tokens`]).
pub const HIDDEN_TOKEN: &str = "hidden";

/// `text` (an e-mail's part) with each link token taken out, for a reader
/// who may see the e-mail but not silence: a console viewer. The address
/// around it stays, so the reader sees where the link led; with
/// [`HIDDEN_TOKEN`] for its token it opens a refusal.
///
/// Tokens are found by their own shape, not by the address around them:
/// a module may write the link escaped, percent-encoded or wrapped in a
/// redirect, and none of that changes a token's characters.
pub fn without_tokens(text: &str) -> std::borrow::Cow<'_, str> {
    static TOKEN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        // Every payload starts with the claims' first field; the tag is
        // an HMAC-SHA-256 (32 bytes, 43 characters of base64url).
        let payload_start = URL_SAFE_NO_PAD.encode(br#"{"id":"#);
        let pattern = format!(r"{payload_start}[A-Za-z0-9_-]*\.[A-Za-z0-9_-]{{43}}");
        regex::Regex::new(&pattern).expect("the token pattern is valid")
    });
    TOKEN.replace_all(text, regex::NoExpand(HIDDEN_TOKEN))
}

/// A new random link id: 128 bits, in hex.
pub fn fresh_link_id() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    #[error("the link is not one velonotify made (cut short or altered)")]
    Malformed,
    #[error("the link's signature does not match: it was altered, or made for another velonotify database")]
    Forged,
    #[error("the link has expired (links open the page for 7 days)")]
    Expired,
}

/// Makes and checks the links of one state database.
pub struct SilenceLinks {
    key: hmac::Key,
    page_url: String,
}

impl std::fmt::Debug for SilenceLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SilenceLinks")
            .field("page_url", &self.page_url)
            .finish_non_exhaustive()
    }
}

impl SilenceLinks {
    /// Links to the page under `velonotify_url` (checked by the
    /// configuration: http(s), no query or fragment), signed with `key`.
    pub fn new(key: &[u8], velonotify_url: &str) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            page_url: format!("{}{PAGE_PATH}", velonotify_url.trim_end_matches('/')),
        }
    }

    /// A fresh random signing key (stored once per database).
    pub fn fresh_key() -> [u8; KEY_BYTES] {
        let mut key = [0; KEY_BYTES];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .expect("the system's random source failed");
        key
    }

    /// The address of the page for `link`, valid for [`LINK_LIFETIME_S`]
    /// from `now_us`; none when its token would be longer than
    /// [`MAX_TOKEN_BYTES`] (a digest's matchers of hostile length).
    pub fn link(&self, link: Link, now_us: u64) -> Option<String> {
        let token = self.sign(link, now_us / 1_000_000 + LINK_LIFETIME_S);
        (token.len() <= MAX_TOKEN_BYTES).then(|| format!("{}?t={token}", self.page_url))
    }

    fn sign(&self, link: Link, expires: u64) -> String {
        let claims = serde_json::to_vec(&Claims { link, expires }).expect("claims serialise");
        let payload = URL_SAFE_NO_PAD.encode(claims);
        let tag = hmac::sign(&self.key, &signed_text(&payload));
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// What a token links to, if this database signed it and it has not
    /// expired at `now_us`. The signature is checked (in constant time)
    /// before anything of the payload is read.
    pub fn verify(&self, token: &str, now_us: u64) -> Result<Link, LinkRefusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(LinkRefusal::Malformed);
        }
        let (payload, tag) = token.split_once('.').ok_or(LinkRefusal::Malformed)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| LinkRefusal::Malformed)?;
        hmac::verify(&self.key, &signed_text(payload), &tag).map_err(|_| LinkRefusal::Forged)?;
        let claims = URL_SAFE_NO_PAD.decode(payload).map_err(|_| LinkRefusal::Malformed)?;
        let claims: Claims = serde_json::from_slice(&claims).map_err(|_| LinkRefusal::Malformed)?;
        if now_us / 1_000_000 >= claims.expires {
            return Err(LinkRefusal::Expired);
        }
        Ok(claims.link)
    }
}

fn signed_text(payload: &str) -> Vec<u8> {
    [CONTEXT, payload.as_bytes()].concat()
}

/// What a "similar" silence matches for one notification: its
/// `alertname`, `client_id` and `module`, each equal, an empty `client_id`
/// included (a server alert's link silences server alerts, not the clients'
/// of the same name). Narrow on purpose: the reader silences this alert on
/// this host, not the rule everywhere (the CLI and the API make wider
/// silences). None for a notification without an alertname: its link would
/// silence the whole module.
pub fn similar_matchers(labels: &Labels) -> Option<Matchers> {
    equal_matchers(labels, &["alertname", "client_id", "module"])
}

/// What a "similar" silence matches for a digest, from what its members
/// have in common: the `alertname` they share, and their `client_id` and
/// `module` when they share them (a label they do not share is not in
/// `common`, and must not read as empty). `serverless`: no member has a
/// client, so `client_id=""` is shared too. None without a shared alertname.
pub fn common_matchers(common: &Labels, serverless: bool) -> Option<Matchers> {
    let shared: Vec<&str> = ["alertname", "client_id", "module"]
        .into_iter()
        .filter(|name| !common.get(name).is_empty() || (*name == "client_id" && serverless))
        .collect();
    equal_matchers(common, &shared)
}

fn equal_matchers(labels: &Labels, names: &[&str]) -> Option<Matchers> {
    if labels.get("alertname").is_empty() {
        return None;
    }
    let matchers = names
        .iter()
        .map(|name| Matcher::new(name, MatchOp::Equal, labels.get(name)).ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Matchers::new(matchers))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_US: u64 = 1_780_000_000_000_000;

    fn links() -> SilenceLinks {
        SilenceLinks::new(&[7; KEY_BYTES], "https://velonotify.example:9466/")
    }

    #[test]
    fn a_links_token_is_taken_out_and_the_text_around_it_kept() {
        let links = links();
        let id = fresh_link_id();
        let url = links
            .link(
                Link {
                    id,
                    linked: Linked::Notification,
                },
                NOW_US,
            )
            .unwrap();
        let text = format!("<p>Beacon</p><a href=\"{url}\">Silence similar for 2 h</a>\n{url}\nend");
        let shown = without_tokens(&text);
        let hidden = format!("https://velonotify.example:9466{PAGE_PATH}?t={HIDDEN_TOKEN}");
        assert_eq!(
            shown,
            format!("<p>Beacon</p><a href=\"{hidden}\">Silence similar for 2 h</a>\n{hidden}\nend")
        );
        // Written as a module might: percent-encoded behind a redirect.
        let token = url.rsplit("?t=").next().unwrap();
        let wrapped = format!("https://redirect.example/?u=https%3A%2F%2Fv.example%2Fsilence%3Ft%3D{token}&x=1");
        assert_eq!(
            without_tokens(&wrapped),
            format!("https://redirect.example/?u=https%3A%2F%2Fv.example%2Fsilence%3Ft%3D{HIDDEN_TOKEN}&x=1")
        );
        assert_eq!(links.verify(HIDDEN_TOKEN, NOW_US), Err(LinkRefusal::Malformed));
        assert_eq!(without_tokens("no link here"), "no link here");
    }

    fn notification() -> Link {
        Link {
            id: "0123456789abcdef0123456789abcdef".into(),
            linked: Linked::Notification,
        }
    }

    fn token_of(url: &str) -> &str {
        url.strip_prefix("https://velonotify.example:9466/silence?t=")
            .expect(url)
    }

    #[test]
    fn a_link_reads_back_what_it_names_until_it_expires() {
        let url = links().link(notification(), NOW_US).unwrap();
        let token = token_of(&url);
        assert_eq!(links().verify(token, NOW_US), Ok(notification()));
        let last_second = NOW_US + (LINK_LIFETIME_S - 1) * 1_000_000;
        assert_eq!(links().verify(token, last_second), Ok(notification()));
        let expired = NOW_US + LINK_LIFETIME_S * 1_000_000;
        assert_eq!(links().verify(token, expired), Err(LinkRefusal::Expired));
    }

    #[test]
    fn an_altered_or_foreign_link_is_refused() {
        let url = links().link(notification(), NOW_US).unwrap();
        let token = token_of(&url);
        // Other claims under the old signature.
        let (_, tag) = token.split_once('.').unwrap();
        let other = serde_json::to_vec(&Claims {
            link: Link {
                id: "x".into(),
                linked: Linked::Matchers("{alertname=~\".*\"}".into()),
            },
            expires: u64::MAX,
        })
        .unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(other));
        assert_eq!(links().verify(&forged, NOW_US), Err(LinkRefusal::Forged));
        let foreign = SilenceLinks::new(&[8; KEY_BYTES], "https://velonotify.example:9466");
        assert_eq!(foreign.verify(token, NOW_US), Err(LinkRefusal::Forged));
        for malformed in ["", "abc", "a.b.c", "!!.!!", &"A".repeat(MAX_TOKEN_BYTES + 1)] {
            assert!(links().verify(malformed, NOW_US).is_err(), "{malformed}");
        }
        // One character of the signature changed.
        let mut altered = token.to_string().into_bytes();
        let at = altered.len() - 5;
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(links().verify(&altered, NOW_US), Err(LinkRefusal::Forged));
    }

    #[test]
    fn a_token_too_long_for_a_link_makes_no_link() {
        let huge = Link {
            id: fresh_link_id(),
            linked: Linked::Matchers("x".repeat(MAX_TOKEN_BYTES)),
        };
        assert_eq!(links().link(huge, NOW_US), None);
    }

    #[test]
    fn link_ids_are_random() {
        let (a, b) = (fresh_link_id(), fresh_link_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        let mut labels = Labels::default();
        for (name, value) in pairs {
            labels.set(name, value);
        }
        labels
    }

    #[test]
    fn similar_means_the_same_alert_on_the_same_client_from_the_same_module() {
        let client_alert = labels(&[
            ("alertname", "Honeyfile \"accessed\""),
            ("client_id", "C.1"),
            ("module", "alerts"),
            ("hostname", "ws1"),
        ]);
        assert_eq!(
            similar_matchers(&client_alert).unwrap().to_string(),
            r#"{alertname="Honeyfile \"accessed\"", client_id="C.1", module="alerts"}"#
        );
        let server_alert = labels(&[("alertname", "Server error"), ("module", "alerts")]);
        assert_eq!(
            similar_matchers(&server_alert).unwrap().to_string(),
            r#"{alertname="Server error", client_id="", module="alerts"}"#,
            "a server alert's silence leaves the clients' alerts of that name alone"
        );
        assert_eq!(
            similar_matchers(&labels(&[("module", "alerts")])),
            None,
            "never the whole module"
        );
    }

    #[test]
    fn a_digests_link_matches_only_what_its_members_share() {
        let common = labels(&[("alertname", "Honeyfile"), ("module", "alerts")]);
        assert_eq!(
            common_matchers(&common, false).unwrap().to_string(),
            r#"{alertname="Honeyfile", module="alerts"}"#,
            "the members' clients differ: no client_id matcher"
        );
        assert_eq!(
            common_matchers(&common, true).unwrap().to_string(),
            r#"{alertname="Honeyfile", client_id="", module="alerts"}"#,
            "server alerts only: the clients' alerts of that name are left alone"
        );
        assert_eq!(common_matchers(&labels(&[("module", "alerts")]), false), None);
    }
}
