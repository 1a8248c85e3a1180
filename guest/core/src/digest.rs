//! The digest e-mail: notifications held by a module's `SendInterval`
//! window, listed in one message when the window ends (decision D11,
//! docs/decisions.md).

use crate::mime::{Attachment, MailContent, build_message};
use crate::render::{Cell, Html, MailDocument, silence_link_line, subject_safe};
use crate::vql::Timestamp;

/// One held notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub subject: String,
    pub link: Option<String>,
    /// When it was held.
    pub at: Timestamp,
}

/// Everything a digest says.
#[derive(Debug, Clone)]
pub struct Digest<'a> {
    /// The module instance that held them.
    pub module: &'a str,
    pub sender: &'a str,
    pub recipients: &'a [String],
    pub held: &'a [Held],
    /// Why they were held.
    pub held_because: HeldBecause<'a>,
    pub now: Timestamp,
    /// Unique among the host's digests (seeds the Message-ID).
    pub identity: &'a str,
    /// The host's "Silence similar" address for what the members have in
    /// common, when it serves that page.
    pub silence_link: Option<&'a str>,
}

/// Why a digest's notifications were held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBecause<'a> {
    /// They came within the module's `SendInterval` (its seconds) or the
    /// host's mail period (None) of an e-mail already sent.
    Window(Option<u64>),
    /// They came in the module's mute time; the text names it
    /// (`mute time interval "night"`).
    Muted(&'a str),
    /// They are one group of the module's e-mails: `{alertname="x"}`.
    Group(&'a str),
}

/// Held notifications listed in one digest at most; the rest are counted.
/// (A subject is at most a few hundred bytes: the digest stays well under
/// any mail server's size limit, and under Gmail's 102 KB clipping for a
/// few hundred.)
pub const MAX_LISTED: usize = 500;

/// The digest's subject and RFC 5322 message.
pub fn build_digest(digest: &Digest<'_>) -> (String, Vec<u8>) {
    let count = digest.held.len();
    let noun = if count == 1 { "notification" } else { "notifications" };
    let subject = match digest.held_because {
        HeldBecause::Group(key) => subject_safe(&format!("{count} {noun} from {}: {key}", digest.module)),
        _ => subject_safe(&format!("{count} held {noun} from {}", digest.module)),
    };
    let summary = match digest.held_because {
        HeldBecause::Window(seconds) => {
            let window = seconds.map_or_else(
                || "the mail period".to_string(),
                |s| format!("its SendInterval ({s} s)"),
            );
            format!(
                "{count} {noun} from {} came within {window} of an e-mail already sent, and were held for this digest.",
                digest.module
            )
        }
        HeldBecause::Muted(why) => format!(
            "{count} {noun} from {} came while it was muted ({why}), and were held for this digest.",
            digest.module
        ),
        HeldBecause::Group(key) => format!(
            "{count} {noun} from {} of the group {key}, grouped into this e-mail.",
            digest.module
        ),
    };
    let mut items: Vec<Cell> = digest
        .held
        .iter()
        .take(MAX_LISTED)
        .map(|h| Cell::Link {
            text: format!("{} — {}", h.at.rfc3339(), h.subject),
            url: h.link.clone(),
        })
        .collect();
    if count > MAX_LISTED {
        items.push(Cell::Text(format!(
            "... and {} more, not listed (velonotify outbox list --status digested)",
            count - MAX_LISTED
        )));
    }
    let items_len = items.len();
    let list = Cell::List(items);
    let mut text = format!("{summary}\n{}\n", list.to_text());
    if let Some(url) = digest.silence_link {
        text.push('\n');
        text.push_str(&silence_link_line(url));
        text.push('\n');
    }
    let mut document = MailDocument::begin("Held notifications", &Html::text(&summary), false, 256 * items_len);
    document.section("Notifications", |out| list.write_html(out));
    let html = document.finish(
        &format!("Sent by velonotify for {}", digest.module),
        digest.silence_link,
    );
    let message = build_message(&MailContent {
        from: digest.sender,
        to: digest.recipients,
        subject: &subject,
        date_unix: digest.now.unix_seconds(),
        identity: digest.identity,
        text: &text,
        html: Some(&html.html),
        attachments: &html
            .full
            .as_deref()
            .map(Attachment::full_report)
            .into_iter()
            .collect::<Vec<_>>(),
    });
    (subject, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(n: usize) -> Vec<Held> {
        (0..n)
            .map(|i| Held {
                subject: format!("Alert from client ws{i}: <honey> {i}"),
                link: Some(format!("https://v.example/app/index.html?org_id=root#/host/C.{i}")),
                at: Timestamp::from_unix_seconds(1_778_400_000 + i as i64),
            })
            .collect()
    }

    fn digest_of(items: &[Held]) -> (String, Vec<u8>) {
        digest_linked(items, None)
    }

    fn digest_linked(items: &[Held], silence_link: Option<&str>) -> (String, Vec<u8>) {
        build_digest(&Digest {
            module: "Server.Monitor.Alerts",
            sender: "velonotify@example.org",
            recipients: &["soc@example.org".to_string()],
            held: items,
            held_because: HeldBecause::Window(Some(10)),
            now: Timestamp::from_unix_seconds(1_778_400_060),
            identity: "digest:1",
            silence_link,
        })
    }

    #[test]
    fn a_digest_ends_with_the_silence_link_for_its_members() {
        let url = "https://velonotify.example/silence?t=abc";
        let (_, message) = digest_linked(&held(3), Some(url));
        let mail = mailparse::parse_mail(&message).unwrap();
        let text = mail.subparts[0].get_body().unwrap();
        assert!(text.ends_with(&format!("\nSilence similar for 2 h: {url}\n")), "{text}");
        let html = mail.subparts[1].get_body().unwrap();
        assert!(
            html.contains(&format!("<a href=\"{url}\">Silence similar for 2 h</a>")),
            "{html}"
        );
        let (_, unlinked) = digest_of(&held(3));
        assert!(!String::from_utf8_lossy(&unlinked).contains("Silence similar"));
    }

    #[test]
    fn a_digest_lists_every_held_subject_with_its_link() {
        let (subject, message) = digest_of(&held(49));
        assert_eq!(subject, "49 held notifications from Server.Monitor.Alerts");
        let mail = mailparse::parse_mail(&message).unwrap();
        let text = mail.subparts[0].get_body().unwrap();
        assert!(text.starts_with("49 notifications from Server.Monitor.Alerts came within its SendInterval (10 s)"));
        assert_eq!(text.matches("\n  - 2026-05-10T08:00").count(), 49);
        assert!(
            text.contains(
                "Alert from client ws48: <honey> 48 (https://v.example/app/index.html?org_id=root#/host/C.48)"
            )
        );
        let html = mail.subparts[1].get_body().unwrap();
        assert!(html.contains("&lt;honey&gt; 48</a>"), "escaped, linked");
    }

    /// Ten thousand held notifications make a digest of a bounded size
    /// that lists the first ones and counts the rest.
    #[test]
    fn a_digest_of_countless_notifications_lists_the_first_and_counts_the_rest() {
        let (subject, message) = digest_of(&held(10_000));
        assert_eq!(subject, "10000 held notifications from Server.Monitor.Alerts");
        assert!(message.len() < 512 << 10, "{} bytes", message.len());
        let mail = mailparse::parse_mail(&message).unwrap();
        let text = mail.subparts[0].get_body().unwrap();
        assert_eq!(text.matches("\n  - 20").count(), MAX_LISTED);
        assert!(text.contains("... and 9500 more, not listed"), "{text}");
    }
}
