//! The SendEmail module: rows become messages, the module's parameters
//! fill what a row leaves out, and every refusal names what is wrong.

use serde_json::{Value, json};

use super::*;
use crate::rules::configure;
use crate::testing::FakeHost;

fn rule(pairs: &[(&str, &str)], host: &FakeHost) -> SendEmailRule {
    let params: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    configure::<SendEmailRule>(&params, host).expect("configures").0
}

fn event(row: Value) -> Event {
    Event {
        id: "7".into(),
        queue: SEND_EMAIL_QUEUE.into(),
        row: row.as_object().unwrap().clone(),
        org_id: "root".into(),
    }
}

fn host() -> FakeHost {
    FakeHost::new(
        json!({"files": {"/downloads/report.csv": base64::engine::general_purpose::STANDARD.encode("a,b\n1,2\n")}}),
    )
}

fn sent(actions: &[Action]) -> &Email {
    match actions {
        [Action::Email(email)] => email,
        other => panic!("{other:?}"),
    }
}

fn parts(email: &Email) -> mailparse::ParsedMail<'_> {
    mailparse::parse_mail(&email.message).unwrap()
}

#[test]
fn a_row_with_the_artifacts_parameters_becomes_that_message() {
    let host = host();
    let actions = rule(&[("Period", "0")], &host)
        .handle(
            &event(
                json!({"Recipients": ["ir@example.org", "soc@example.org"], "Subject": "Triage done",
                          "PlainTextMessage": "See attached.", "HTMLMessage": "<p>See <b>attached</b>.</p>",
                          "FilesToUpload": [{"Path": "/downloads/report.csv", "Filename": "triage.csv"},
                                            {"Content": base64::engine::general_purpose::STANDARD.encode("inline!"),
                                             "Filename": "/tmp/notes.txt"}]}),
            ),
            &host,
        )
        .unwrap();
    let email = sent(&actions);
    assert_eq!(email.recipients, ["ir@example.org", "soc@example.org"]);
    assert_eq!(email.subject, "Triage done");
    assert_eq!(email.sender, "velonotify@example.org", "the server's sender");
    assert_eq!(email.send_interval_seconds, 0);
    let parsed = parts(email);
    let leaves: Vec<(String, Option<String>, Vec<u8>)> = parsed
        .parts()
        .filter(|p| p.subparts.is_empty())
        .map(|p| {
            let name = p.get_content_disposition().params.get("filename").cloned();
            (p.ctype.mimetype.clone(), name, p.get_body_raw().unwrap())
        })
        .collect();
    assert_eq!(
        leaves,
        [
            ("text/plain".to_string(), None, b"See attached.".to_vec()),
            ("text/html".into(), None, b"<p>See <b>attached</b>.</p>".to_vec()),
            ("text/csv".into(), Some("triage.csv".into()), b"a,b\n1,2\n".to_vec()),
            ("text/plain".into(), Some("notes.txt".into()), b"inline!".to_vec()),
        ]
    );
}

#[test]
fn what_a_row_leaves_out_comes_from_the_modules_parameters() {
    let host = host();
    let mut rule = rule(
        &[
            ("Recipients", r#"["dfir@example.org"]"#),
            ("Subject", "Nightly"),
            ("PlainTextMessage", "default text"),
            ("Sender", "robot@example.org"),
            ("Secret", "mailer"),
        ],
        &host,
    );
    let actions = rule
        .handle(&event(json!({"PlainTextMessage": "tonight's"})), &host)
        .unwrap();
    let email = sent(&actions);
    assert_eq!(email.recipients, ["dfir@example.org"]);
    assert_eq!(email.subject, "Nightly");
    assert_eq!(email.sender, "robot@example.org");
    assert_eq!(email.secret.as_deref(), Some("mailer"));
    assert_eq!(email.text, "tonight's");
    assert_eq!(email.send_interval_seconds, 10, "Period's default");
    let defaults = rule.handle(&event(json!({})), &host).unwrap();
    assert_eq!(sent(&defaults).text, "default text");
}

#[test]
fn recipients_may_be_written_as_a_notebook_writes_them_and_must_be_allowed() {
    let host = host();
    let mut rule = rule(&[("RecipientsAllowed", "@example\\.org$")], &host);
    for given in [
        json!("a@example.org, b@example.org"),
        json!(r#"["a@example.org","b@example.org"]"#),
    ] {
        let actions = rule
            .handle(&event(json!({"Recipients": given, "PlainTextMessage": "x"})), &host)
            .unwrap();
        assert_eq!(sent(&actions).recipients, ["a@example.org", "b@example.org"]);
    }
    let refused = |row: Value| rule.clone().handle(&event(row), &host).unwrap_err().to_string();
    assert_eq!(
        refused(json!({"Recipients": ["boss@elsewhere.com"], "PlainTextMessage": "x"})),
        "bad event: Recipients: \"boss@elsewhere.com\" is not allowed by RecipientsAllowed"
    );
    assert_eq!(
        refused(json!({"Recipients": ["not an address"], "PlainTextMessage": "x"})),
        "bad event: Recipients: \"not an address\" is not an e-mail address"
    );
    assert_eq!(
        refused(json!({"Recipients": []})),
        "bad event: Recipients: no recipient"
    );
}

#[test]
fn a_file_that_cannot_be_attached_refuses_the_message_naming_it() {
    let mut host = host();
    host.max_email_bytes = 4096;
    let mut rule = rule(&[], &host);
    let refused = |row: Value| rule.clone().handle(&event(row), &host).unwrap_err().to_string();
    assert_eq!(
        refused(json!({"FilesToUpload": [{"Path": "/downloads/gone.zip"}]})),
        "bad event: FilesToUpload: \"/downloads/gone.zip\" is not in the file store"
    );
    let big = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 5000]);
    assert!(
        refused(json!({"FilesToUpload": [{"Content": big, "Filename": "big.bin"}]}))
            .contains("\"big.bin\" does not fit the e-mail"),
    );
    assert!(refused(json!({"FilesToUpload": [{"Content": "%%%", "Filename": "x"}]})).contains("is not base64"),);
    assert_eq!(
        refused(json!({"Recipients": ["a@example.org"]})),
        "bad event: nothing to send: PlainTextMessage, HTMLMessage and FilesToUpload are all empty"
    );
    // An unreachable file store is not the row's fault: handed again later.
    host.outage = Some("the API is down".into());
    let failure = rule
        .handle(
            &event(json!({"FilesToUpload": [{"Path": "/downloads/report.csv"}]})),
            &host,
        )
        .unwrap_err();
    assert!(matches!(failure, Failure::Lookup(_)), "{failure:?}");
}

/// Ingest numbers each post's rows from 1, so every single-row post is row
/// 1: two messages must still get different Message-IDs (mail servers drop
/// a second message with the same one).
#[test]
fn messages_of_posts_numbered_alike_get_their_own_message_ids() {
    let mut host = host();
    let mut rule = rule(&[], &host);
    let message_id = |rule: &mut SendEmailRule, host: &FakeHost, text: &str| {
        let actions = rule.handle(&event(json!({"PlainTextMessage": text})), host).unwrap();
        use mailparse::MailHeaderMap as _;
        parts(sent(&actions)).headers.get_first_value("Message-ID").unwrap()
    };
    let first = message_id(&mut rule, &host, "one");
    assert_ne!(first, message_id(&mut rule, &host, "two"));
    host.now_us += 1;
    assert_ne!(first, message_id(&mut rule, &host, "one"), "the same text later");
}
