//! Building the RFC 5322 message (docs/velociraptor.md §4, §5), with
//! decisions D9, D10 and D14 (docs/decisions.md).
//!
//! Compared with `Generic.Utils.SendEmail` + `mail()`: one of each header
//! in a fixed order, a `Message-ID`, RFC 2047 encoded words for non-ASCII
//! text, RFC 2231 attachment names, and quoted boundaries that cannot occur
//! in the (base64) parts. Everything is derived from the inputs, so the
//! same inputs always give the same bytes.

use base64::Engine as _;
use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};

use crate::render::subject_safe;

/// A file attached to an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file name shown to the reader (RFC 2231 encoded when needed).
    pub filename: String,
    /// e.g. `application/x-ndjson` or `text/csv`.
    pub content_type: String,
    pub data: Vec<u8>,
}

impl Attachment {
    /// The whole HTML report of a notification whose body was cut to fit
    /// the HTML budget (`render::MailDocument`).
    pub fn full_report(html: &str) -> Self {
        Self {
            filename: crate::render::FULL_REPORT_NAME.to_string(),
            content_type: "text/html".into(),
            data: html.as_bytes().to_vec(),
        }
    }
}

/// Everything that goes into one message.
#[derive(Debug, Clone)]
pub struct MailContent<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    /// Made safe for a header here (D14), whatever the caller did.
    pub subject: &'a str,
    /// Seconds since the epoch, for the `Date` header.
    pub date_unix: i64,
    /// A value that identifies this message among all the host sends (the
    /// event id and module name): it seeds the Message-ID and boundaries.
    pub identity: &'a str,
    pub text: &'a str,
    /// With an HTML body the message is `multipart/alternative` (text
    /// first, as the artifacts do).
    pub html: Option<&'a str>,
    pub attachments: &'a [Attachment],
}

/// Base64 line length required by RFC 2045.
const LINE: usize = 76;

/// Builds the whole message, CRLF line endings.
pub fn build_message(content: &MailContent<'_>) -> Vec<u8> {
    let seed = fnv1a(content.identity.as_bytes()) ^ fnv1a(content.subject.as_bytes()).rotate_left(17);
    let domain = content.from.rsplit_once('@').map_or("velonotify.invalid", |(_, d)| d);
    let message_id = format!("{:016x}.{}@{}", seed, content.date_unix, domain);

    let body = text_parts(content, seed);
    let body = if content.attachments.is_empty() {
        body
    } else {
        let mut parts = vec![body];
        parts.extend(content.attachments.iter().map(attachment_part));
        MimePart::new(
            ContentType::new("multipart/mixed").attribute("boundary", boundary("mixed", seed)),
            BodyPart::Multipart(parts),
        )
    };

    let to: Vec<Address<'_>> = content
        .to
        .iter()
        .map(|a| Address::new_address(None::<&str>, a.as_str()))
        .collect();
    MessageBuilder::new()
        .from(Address::new_address(None::<&str>, content.from))
        .to(Address::new_list(to))
        .header("Subject", subject_header(&subject_safe(content.subject)))
        .date(Date::new(content.date_unix))
        .message_id(message_id)
        .header("MIME-Version", Raw::new("1.0"))
        .body(body)
        .write_to_vec()
        .expect("writing to a Vec cannot fail")
}

/// The subject as mail-builder writes it (as it is, or as encoded words
/// when it must be), unless it holds `=?`: a reader takes that for the
/// start of an RFC 2047 encoded word and shows it decoded, so event data
/// could make a subject read as something it does not say. Such a subject
/// is written whole as "B" encoded words, and reads back as given.
fn subject_header(subject: &str) -> HeaderType<'static> {
    if !subject.contains("=?") {
        return Text::new(subject.to_string()).into();
    }
    // 45 octets make 60 base64 characters: 72 with the word's markers,
    // within RFC 2047's 75.
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in subject.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            words.push(encoded_word(&chunk));
            chunk.clear();
        }
        chunk.push(c);
    }
    words.push(encoded_word(&chunk));
    Raw::new(words.join(" ")).into()
}

fn encoded_word(text: &str) -> String {
    format!("=?utf-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(text))
}

fn text_parts(content: &MailContent<'_>, seed: u64) -> MimePart<'static> {
    let plain = base64_part("text/plain", content.text.as_bytes());
    match content.html {
        None => plain,
        Some(html) => MimePart::new(
            ContentType::new("multipart/alternative").attribute("boundary", boundary("alt", seed)),
            BodyPart::Multipart(vec![plain, base64_part("text/html", html.as_bytes())]),
        ),
    }
}

fn base64_part(content_type: &str, data: &[u8]) -> MimePart<'static> {
    MimePart::new(
        ContentType::new(content_type.to_string()).attribute("charset", "utf-8"),
        BodyPart::Text(base64_lines(data).into()),
    )
    .transfer_encoding("base64")
}

fn attachment_part(attachment: &Attachment) -> MimePart<'static> {
    MimePart::new(
        ContentType::new(attachment.content_type.clone()).attribute("name", attachment.filename.clone()),
        BodyPart::Text(base64_lines(&attachment.data).into()),
    )
    .attachment(attachment.filename.clone())
    .transfer_encoding("base64")
}

/// Standard base64 in 76-column lines separated by CRLF, encoded straight
/// into one buffer of the final size.
pub fn base64_lines(data: &[u8]) -> String {
    // 57 input bytes make one full line of 76 characters.
    const LINE_INPUT: usize = LINE / 4 * 3;
    let encoded_len = data.len().div_ceil(3) * 4;
    let mut out = String::with_capacity(encoded_len + encoded_len / LINE * 2);
    for (i, chunk) in data.chunks(LINE_INPUT).enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        base64::engine::general_purpose::STANDARD.encode_string(chunk, &mut out);
    }
    out
}

/// `-` and `=` never occur in a line of base64 text the way they do here,
/// so the boundary cannot appear inside a part.
fn boundary(kind: &str, seed: u64) -> String {
    format!("=_velonotify-{kind}-{seed:016x}")
}

/// FNV-1a: a stable hash, the same on every platform and release.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content<'a>(to: &'a [String], html: Option<&'a str>) -> MailContent<'a> {
        MailContent {
            from: "velonotify@example.org",
            to,
            subject: "Server alert (high): Honey file accessed",
            date_unix: 1_767_000_000,
            identity: "events.jsonl:3/Server.Monitor.Alerts",
            text: "plain body\nline 2",
            html,
            attachments: &[],
        }
    }

    fn parse(bytes: &[u8]) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(bytes).unwrap()
    }

    /// Event data that looks like an RFC 2047 encoded word is not shown
    /// decoded: the subject reads as written, not as "Urgent: wire $10k".
    #[test]
    fn a_subject_that_looks_like_an_encoded_word_reads_as_written() {
        let to = vec!["soc@example.org".to_string()];
        let spoof = "Alert =?utf-8?B?VXJnZW50OiB3aXJlICQxMGs=?= from C.1";
        let message = build_message(&MailContent {
            subject: spoof,
            ..content(&to, None)
        });
        let mail = parse(&message);
        let subject = mail.headers.iter().find(|h| h.get_key() == "Subject").unwrap();
        assert_eq!(subject.get_value(), spoof);
    }

    #[test]
    fn alternative_message_has_text_then_html_in_base64() {
        let to = vec!["soc@example.org".to_string(), "ann@example.org".to_string()];
        let bytes = build_message(&content(&to, Some("<p>html body</p>")));
        let mail = parse(&bytes);
        assert_eq!(mail.ctype.mimetype, "multipart/alternative");
        assert_eq!(mail.subparts.len(), 2);
        assert_eq!(mail.subparts[0].ctype.mimetype, "text/plain");
        assert_eq!(mail.subparts[0].get_body().unwrap(), "plain body\nline 2");
        assert_eq!(mail.subparts[1].ctype.mimetype, "text/html");
        assert_eq!(mail.subparts[1].get_body().unwrap(), "<p>html body</p>");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("Content-Transfer-Encoding: base64"));
        assert!(
            text.contains("boundary=\"=_velonotify-alt-"),
            "boundary is quoted: {text}"
        );
    }

    #[test]
    fn each_header_appears_once_in_a_fixed_order() {
        let to = vec!["soc@example.org".to_string()];
        let bytes = build_message(&content(&to, Some("<p>x</p>")));
        let text = String::from_utf8(bytes).unwrap();
        let head = text.split("\r\n\r\n").next().unwrap();
        let names: Vec<&str> = head
            .split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "From",
                "To",
                "Subject",
                "Date",
                "Message-ID",
                "MIME-Version",
                "Content-Type"
            ]
        );
    }

    #[test]
    fn base64_lines_are_at_most_76_columns() {
        let long = "x".repeat(1000);
        let encoded = base64_lines(long.as_bytes());
        assert!(encoded.split("\r\n").all(|l| l.len() <= 76));
        assert_eq!(encoded.split("\r\n").next().unwrap().len(), 76);
    }

    proptest::proptest! {
        /// Lines of 76 characters but the last, which read back as the data.
        #[test]
        fn base64_lines_are_the_data_in_full_lines(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let encoded = base64_lines(&data);
            let lines: Vec<&str> = encoded.split("\r\n").collect();
            let (last, full) = lines.split_last().unwrap();
            proptest::prop_assert!(full.iter().all(|l| l.len() == LINE));
            proptest::prop_assert!(last.len() <= LINE && (lines.len() == 1 || !last.is_empty()));
            let decoded = base64::engine::general_purpose::STANDARD.decode(lines.concat()).unwrap();
            proptest::prop_assert_eq!(decoded, data);
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        let to = vec!["soc@example.org".to_string()];
        assert_eq!(
            build_message(&content(&to, Some("h"))),
            build_message(&content(&to, Some("h")))
        );
    }

    #[test]
    fn a_subject_cannot_add_a_header() {
        let to = vec!["soc@example.org".to_string()];
        let mut c = content(&to, None);
        c.subject = "x\r\nBcc: attacker@evil.example";
        let bytes = build_message(&c);
        let mail = parse(&bytes);
        assert!(mail.headers.iter().all(|h| !h.get_key().eq_ignore_ascii_case("bcc")));
        let subject = mail
            .headers
            .iter()
            .find(|h| h.get_key() == "Subject")
            .unwrap()
            .get_value();
        assert_eq!(subject, "x  Bcc: attacker@evil.example");
    }

    #[test]
    fn non_ascii_subjects_use_encoded_words() {
        let to = vec!["soc@example.org".to_string()];
        let mut c = content(&to, None);
        c.subject = "Alarm: Zugriff auf Köder-Datei “Gehälter.xlsx”…";
        let bytes = build_message(&c);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("=?utf-8?"), "{text}");
        let mail = parse(&bytes);
        let subject = mail
            .headers
            .iter()
            .find(|h| h.get_key() == "Subject")
            .unwrap()
            .get_value();
        assert_eq!(subject, c.subject);
    }

    #[test]
    fn attachments_make_a_mixed_message_with_rfc2231_names() {
        let to = vec!["soc@example.org".to_string()];
        let attachments = [Attachment {
            filename: "Résultats Windows.Netstat.jsonl".into(),
            content_type: "application/x-ndjson".into(),
            data: b"{\"a\":1}\n".to_vec(),
        }];
        let mut c = content(&to, Some("<p>h</p>"));
        c.attachments = &attachments;
        let bytes = build_message(&c);
        let mail = parse(&bytes);
        assert_eq!(mail.ctype.mimetype, "multipart/mixed");
        assert_eq!(mail.subparts[0].ctype.mimetype, "multipart/alternative");
        let att = &mail.subparts[1];
        assert_eq!(att.get_body_raw().unwrap(), b"{\"a\":1}\n");
        let disposition = att.get_content_disposition();
        assert_eq!(
            disposition.params.get("filename").map(String::as_str),
            Some("Résultats Windows.Netstat.jsonl")
        );
    }
}
