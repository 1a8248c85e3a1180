//! The `actions` interface: what a module asks the host to do, checked
//! before it may leave. A module is not trusted to produce well-formed
//! addresses, URLs or bounded sizes.
//!
//! Policy, per module: the hosts its webhooks may post to
//! (`allowed_hosts`; unset: the hosts named in its own parameters), the
//! most actions one call may produce (`max_actions`, a call producing more
//! keeps none) and the largest action (`max_action_bytes`), under the
//! host's limits per kind (`[host] max_email_mib`, [`MAX_WEBHOOK_BYTES`],
//! [`MAX_MESSAGE_BYTES`]).

use velonotify_core::recipients::is_address;

use crate::contract::Action;

/// Largest webhook body and message a module may produce.
pub const MAX_WEBHOOK_BYTES: usize = 1 << 20;
pub const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// The largest e-mail, unless `[host] max_email_mib` says.
pub const DEFAULT_MAX_EMAIL_MIB: u64 = 25;
/// Most actions one call may produce, unless the module's `max_actions` says.
pub const DEFAULT_MAX_ACTIONS: usize = 100;

/// What one module may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Hosts its webhooks may post to (`hooks.slack.com`, `*.webhook.office.com`).
    pub allowed_hosts: Vec<String>,
    pub max_actions: usize,
    pub max_action_bytes: Option<u64>,
    pub max_email_bytes: u64,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_actions: DEFAULT_MAX_ACTIONS,
            max_action_bytes: None,
            max_email_bytes: DEFAULT_MAX_EMAIL_MIB << 20,
        }
    }
}

impl OutboundPolicy {
    /// A module's policy from its configuration; without `allowed_hosts`,
    /// the hosts of the URLs in its own `params` (its `WebhookURL`,
    /// `SlackToken`): a module posts where its operator said and nowhere
    /// else.
    pub fn from_config(
        allowed_hosts: Option<&[String]>,
        params: &[(String, String)],
        max_actions: Option<usize>,
        max_action_bytes: Option<u64>,
        max_email_bytes: u64,
    ) -> Self {
        Self {
            allowed_hosts: allowed_hosts
                .map(<[String]>::to_vec)
                .unwrap_or_else(|| hosts_named_in(params.iter().map(|(_, v)| v.as_str()))),
            max_actions: max_actions.unwrap_or(DEFAULT_MAX_ACTIONS),
            max_action_bytes,
            max_email_bytes,
        }
    }

    /// Whether one call may produce `count` actions.
    pub fn check_count(&self, count: usize) -> Result<(), String> {
        if count > self.max_actions {
            return Err(format!(
                "{count} actions from one call, more than its max_actions ({}): none kept",
                self.max_actions
            ));
        }
        Ok(())
    }

    /// Whether a webhook to `url` may reach a loopback, link-local or
    /// private address: only when its host is named as such (not through
    /// a `*.domain` entry) in `allowed_hosts` or, unset, in the module's
    /// parameters. Delivery refuses other private destinations whatever
    /// the name resolves to.
    pub fn names_host_of(&self, url: &str) -> bool {
        let host = url_host(url);
        !host.is_empty() && self.allowed_hosts.iter().any(|a| a.trim().eq_ignore_ascii_case(&host))
    }

    /// Whether a stored webhook to `url` may still go to its host, by this
    /// policy (today's configuration, not the one it was stored under):
    /// `outbox retry` of an old item, or an item left by a module whose
    /// `allowed_hosts` has changed since.
    pub fn check_destination(&self, url: &str) -> Result<(), String> {
        check_destination(url, &self.allowed_hosts)
    }

    /// Whether `action` may leave.
    pub fn check(&self, action: &Action) -> Result<(), String> {
        validate(action, self.max_email_bytes, &self.allowed_hosts)?;
        match self.max_action_bytes {
            Some(cap) if action_bytes(action) > cap => Err(format!(
                "an action of {} bytes (max_action_bytes {cap})",
                action_bytes(action)
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `url`'s host is among `allowed_hosts`.
fn check_destination(url: &str, allowed_hosts: &[String]) -> Result<(), String> {
    let host = url_host(url);
    if host_allowed(&host, allowed_hosts) {
        return Ok(());
    }
    Err(format!(
        "webhook to {host} refused: not in the module's allowed_hosts ({})",
        if allowed_hosts.is_empty() {
            "none".to_string()
        } else {
            allowed_hosts.join(", ")
        }
    ))
}

/// The size of what an action carries, for `max_action_bytes`.
fn action_bytes(action: &Action) -> u64 {
    let bytes = match action {
        Action::Email(email) => email.message.len(),
        Action::Webhook(hook) => hook.body.len() + hook.url.len(),
        Action::UserMessage(message) => message.message.len(),
        Action::Label(change) => change.labels.iter().map(String::len).sum(),
        Action::Alert(alert) => alert.event_data.len() + alert.name.len(),
    };
    bytes as u64
}

/// Checks an action against the host's limits and `allowed_hosts`.
fn validate(action: &Action, max_email_bytes: u64, allowed_hosts: &[String]) -> Result<(), String> {
    match action {
        Action::Email(email) => {
            if email.recipients.is_empty() {
                return Err("an e-mail without recipients".into());
            }
            if let Some(bad) = email.recipients.iter().find(|r| !is_address(r)) {
                return Err(format!("recipient {bad:?} is not an e-mail address"));
            }
            if !is_address(&email.sender) {
                return Err(format!("sender {:?} is not an e-mail address", email.sender));
            }
            if email.subject.chars().any(char::is_control) {
                return Err("the subject contains control characters".into());
            }
            if email.message.len() as u64 > max_email_bytes {
                return Err(format!(
                    "an e-mail of {} bytes (limit {max_email_bytes})",
                    email.message.len()
                ));
            }
        }
        Action::Webhook(hook) => {
            let lower = hook.url.to_ascii_lowercase();
            if !(lower.starts_with("https://") || lower.starts_with("http://")) {
                // Not repeated: a URL may hold its secret.
                return Err("a webhook URL that is not http(s)".into());
            }
            if hook.url.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err("the webhook URL contains spaces or control characters".into());
            }
            // Parsed as delivery will parse it, so the host checked is the
            // host posted to.
            if let Err(e) = hook.url.parse::<http::Uri>() {
                return Err(format!("a webhook URL that cannot be parsed: {e}"));
            }
            check_destination(&hook.url, allowed_hosts)?;
            if hook.body.len() > MAX_WEBHOOK_BYTES {
                return Err(format!(
                    "a webhook body of {} bytes (limit {MAX_WEBHOOK_BYTES})",
                    hook.body.len()
                ));
            }
            for (name, value) in &hook.headers {
                let token = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token || value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                    return Err(format!("webhook header {name:?} is not a valid header"));
                }
            }
        }
        Action::UserMessage(message) => {
            if message.user.is_empty() {
                return Err("a user message without a user".into());
            }
            if message.message.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "a user message of {} bytes (limit {MAX_MESSAGE_BYTES})",
                    message.message.len()
                ));
            }
            if !matches!(
                serde_json::from_str::<serde_json::Value>(&message.message),
                Ok(serde_json::Value::Object(_))
            ) {
                return Err("a user message that is not a JSON object".into());
            }
        }
        Action::Label(change) => {
            if change.client_id.is_empty() || change.labels.is_empty() || change.labels.iter().any(String::is_empty) {
                return Err("a label change without a client or labels".into());
            }
        }
        Action::Alert(alert) => {
            if alert.name.is_empty() {
                return Err("an alert without a name".into());
            }
            if alert.event_data.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "alert context of {} bytes (limit {MAX_MESSAGE_BYTES})",
                    alert.event_data.len()
                ));
            }
            if !matches!(
                serde_json::from_str::<serde_json::Value>(&alert.event_data),
                Ok(serde_json::Value::Object(_))
            ) {
                return Err("alert context that is not a JSON object".into());
            }
        }
    }
    Ok(())
}

/// The host of a URL, lower-case, without user info, port or IPv6
/// brackets, as the HTTP client reads it (`http::Uri`); empty if it does
/// not parse.
fn url_host(url: &str) -> String {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|uri| {
            uri.host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase())
        })
        .unwrap_or_default()
}

/// The hosts of the http(s) URLs found in `texts` (a module's parameter
/// values): where a module may post when its `allowed_hosts` is unset.
pub fn hosts_named_in<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut hosts = Vec::new();
    for text in texts {
        let lower = text.to_ascii_lowercase();
        for (start, _) in lower.match_indices("http") {
            let rest = &lower[start..];
            if !(rest.starts_with("https://") || rest.starts_with("http://")) {
                continue;
            }
            let url = rest
                .split(|c: char| c.is_whitespace() || "\"',<>".contains(c))
                .next()
                .unwrap_or("");
            let host = url_host(url);
            if !host.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
    }
    hosts
}

/// `allowed` entries are host names, or `*.domain` for any host under it.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    !host.is_empty()
        && allowed.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            match a.strip_prefix("*.") {
                Some(domain) => host.ends_with(&format!(".{domain}")),
                None => host == a,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a host named as such may resolve to a private address; one
    /// that matched a `*.domain` entry may not.
    #[test]
    fn a_host_is_named_only_by_an_entry_of_its_own() {
        let policy = OutboundPolicy {
            allowed_hosts: vec!["hooks.internal.corp".into(), "*.slack.com".into()],
            ..OutboundPolicy::default()
        };
        assert!(policy.names_host_of("https://HOOKS.internal.corp:8443/x"));
        assert!(!policy.names_host_of("https://hooks.slack.com/services/T/B/X"));
        assert!(!policy.names_host_of("https://user@hooks.internal.corp.evil.org/"));
        assert!(!policy.names_host_of("not a url"));
    }

    #[test]
    fn webhook_hosts_are_checked_against_the_allowed_list() {
        let allowed = vec!["hooks.slack.com".to_string(), "*.webhook.office.com".to_string()];
        assert!(host_allowed(
            &url_host("https://hooks.slack.com/services/T/B/X"),
            &allowed
        ));
        assert!(host_allowed(
            &url_host("https://corp.webhook.office.com:443/x"),
            &allowed
        ));
        assert!(!host_allowed(&url_host("https://webhook.office.com/x"), &allowed));
        assert!(
            !host_allowed(&url_host("https://hooks.slack.com@evil.example/x"), &allowed),
            "user info is not the host"
        );
        assert!(!host_allowed(
            &url_host("https://hooks.slack.com.evil.example/"),
            &allowed
        ));
        assert!(
            !host_allowed(&url_host("https://hooks.slack.com/"), &[]),
            "nothing is allowed by default"
        );
        assert_eq!(url_host("http://[::1]:8080/x"), "::1");
    }

    #[test]
    fn without_allowed_hosts_a_module_may_post_to_the_hosts_of_its_own_parameters() {
        let params = [
            "https://hooks.slack.com/services/T0/B0/X",
            "Y",
            "see HTTPS://Corp.Webhook.Office.com:443/webhookb2/x and http://10.0.0.5/hook",
            "[\"https://hooks.slack.com/other\"]",
        ];
        assert_eq!(
            hosts_named_in(params),
            ["hooks.slack.com", "corp.webhook.office.com", "10.0.0.5"]
        );
        assert!(hosts_named_in(["no url here", "httpx://a.b"]).is_empty());
    }
}
