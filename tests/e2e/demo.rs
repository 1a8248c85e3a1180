//! The demo replay (`scripts/demo`): every e-mail parsed back by an
//! independent MIME parser (mailparse, not the mail-builder that wrote it),
//! compared with the same rule run natively, and pinned by snapshots.

use std::io::BufReader;
use std::sync::Arc;

use velonotify::config::Config;
use velonotify::lookups::{Lookups, NativeHost};
use velonotify::runtime::{Overrides, load_world};
use velonotify::source::JsonlSource;
use velonotify_core::action::{Action, Email};
use velonotify_core::host::Event;
use velonotify_core::rules::Rule;
use velonotify_core::rules::alerts::AlertsRule;
use velonotify_test_support::{data, emails, header, jsonl, part, scratch};

use super::replay;

fn demo_replay(out: &std::path::Path) {
    replay(&data("demo/velonotify.toml"), &data("demo/events.jsonl"), out);
}

/// The e-mails of the demo, rendered by the Alerts rule called natively
/// with the same configuration, world and events, in replay order.
fn native_demo_emails() -> Vec<(String, Email)> {
    let config = Config::load(&data("demo/velonotify.toml")).unwrap();
    let lookups: Arc<dyn Lookups> = Arc::new(load_world(&config, &Overrides::default()).unwrap());
    let events = std::fs::File::open(data("demo/events.jsonl")).unwrap();
    let source = JsonlSource::new(BufReader::new(events), "events.jsonl", "root", 1 << 20);
    let mut rules: Vec<(String, AlertsRule)> = config
        .modules
        .iter()
        .map(|m| {
            let host = NativeHost::new("setup", "root", lookups.clone(), config.host_facts());
            let (rule, _) = velonotify_core::rules::configure::<AlertsRule>(&m.param_texts().unwrap(), &host).unwrap();
            (m.name.clone().unwrap_or_else(|| AlertsRule::NAME.into()), rule)
        })
        .collect();
    let mut out = Vec::new();
    for event in source.filter_map(Result::ok) {
        let row = serde_json::from_str::<serde_json::Value>(&event.row).unwrap();
        let core_event = Event {
            id: event.id.clone(),
            queue: event.queue.clone(),
            row: row.as_object().unwrap().clone(),
            org_id: event.org_id.clone(),
        };
        for (name, rule) in &mut rules {
            let mut host = NativeHost::new(name, "root", lookups.clone(), config.host_facts());
            host.now_us = event.ts_us.unwrap();
            for action in rule.handle(&core_event, &host).unwrap() {
                let Action::Email(email) = action else {
                    panic!("the demo makes only e-mails")
                };
                out.push((name.clone(), email));
            }
        }
    }
    out
}

#[test]
fn demo_emails_parse_back_to_the_bodies_the_rule_rendered() {
    let out = scratch();
    demo_replay(out.path());
    let written = emails(out.path());
    assert!(
        written.len() >= 5,
        "the demo writes at least 5 e-mails, got {}",
        written.len()
    );
    let native = native_demo_emails();
    assert_eq!(
        written.len(),
        native.len(),
        "the component and the native rule send as many e-mails"
    );

    for ((file, bytes), (module, email)) in written.iter().zip(&native) {
        let mail = mailparse::parse_mail(bytes).unwrap_or_else(|e| panic!("{file}.eml does not parse: {e}"));
        assert_eq!(
            part(&mail, "text/plain").as_deref(),
            Some(email.text.as_str()),
            "{file}.eml text/plain ({module})"
        );
        assert_eq!(part(&mail, "text/html"), email.html, "{file}.eml text/html ({module})");
        assert_eq!(
            header(&mail, "Subject").as_deref(),
            Some(email.subject.as_str()),
            "{file}.eml subject"
        );
        assert_eq!(
            bytes, &email.message,
            "{file}.eml: the component and the native rule build the same bytes"
        );
        if let Some(html) = &email.html {
            let written_html = std::fs::read_to_string(out.path().join(format!("{file}.html"))).unwrap();
            assert_eq!(&written_html, html, "{file}.html is the HTML part");
        }
    }
}

#[test]
fn demo_emails_match_their_snapshots() {
    let out = scratch();
    demo_replay(out.path());
    for (file, bytes) in emails(out.path()) {
        let mail = mailparse::parse_mail(&bytes).unwrap();
        let snapshot = format!(
            "subject: {}\nto: {}\n\n----- text/plain -----\n{}\n----- text/html -----\n{}",
            header(&mail, "Subject").unwrap(),
            header(&mail, "To").unwrap(),
            part(&mail, "text/plain").unwrap(),
            part(&mail, "text/html").unwrap_or_else(|| "(none)".into()),
        );
        insta::assert_snapshot!(format!("demo_email_{file}"), snapshot);
    }
    let summary = std::fs::read_to_string(out.path().join("summary.jsonl")).unwrap();
    insta::assert_snapshot!("demo_summary", summary);
}

#[test]
fn replaying_the_same_inputs_twice_gives_identical_bytes() {
    let (a, b) = (scratch(), scratch());
    demo_replay(a.path());
    demo_replay(b.path());
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() > 10, "{names:?}");
    for name in names {
        let first = std::fs::read(a.path().join(&name)).unwrap();
        let second = std::fs::read(b.path().join(&name)).unwrap();
        assert!(first == second, "{name:?} differs between two replays");
    }
}

#[test]
fn part_a_14_an_alert_name_cannot_add_a_header() {
    let out = scratch();
    demo_replay(out.path());
    let mut seen = 0;
    for (file, bytes) in emails(out.path()) {
        let mail = mailparse::parse_mail(&bytes).unwrap();
        assert!(header(&mail, "Bcc").is_none(), "{file}.eml has a Bcc header");
        let subject = header(&mail, "Subject").unwrap();
        assert!(
            !subject.chars().any(char::is_control),
            "{file}.eml subject has control characters"
        );
        if subject.contains("/tmp/x") {
            seen += 1;
            assert!(subject.contains("Honey file \"/tmp/x  Bcc: attac…"), "{subject}");
            let to = header(&mail, "To").unwrap();
            assert!(!to.contains("evil.example"), "{to}");
        }
    }
    assert_eq!(seen, 2, "both modules mailed the hostile alert");
}

#[test]
fn part_a_13_event_data_is_escaped_in_html() {
    let out = scratch();
    demo_replay(out.path());
    let hostile = emails(out.path())
        .into_iter()
        .filter_map(|(_, bytes)| mailparse::parse_mail(&bytes).ok().and_then(|m| part(&m, "text/html")))
        .find(|html| html.contains("alert(1)"))
        .expect("the SOC e-mail of the hostile honey file alert");
    assert!(
        hostile.contains("/tmp/&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{hostile}"
    );
    assert!(!hostile.contains("<script>"));
}

#[test]
fn part_a_10_one_of_each_header_with_a_message_id_and_encoded_words() {
    let out = scratch();
    demo_replay(out.path());
    let mut message_ids = std::collections::HashSet::new();
    for (file, bytes) in emails(out.path()) {
        let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = std::str::from_utf8(&bytes[..head_end]).expect("headers are ASCII: non-ASCII is RFC 2047 encoded");
        let names: Vec<&str> = head
            .split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .map(|l| l.split(':').next().unwrap())
            .collect();
        let mail = mailparse::parse_mail(&bytes).unwrap();
        let mut expected = vec![
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Content-Type",
        ];
        if mail.subparts.is_empty() {
            // A text-only message is its own single part.
            expected.push("Content-Transfer-Encoding");
        }
        assert_eq!(names, expected, "{file}.eml");
        let id = header(&mail, "Message-ID").unwrap();
        assert!(id.starts_with('<') && id.ends_with('>') && id.contains('@'), "{id}");
        assert!(message_ids.insert(id), "{file}.eml reuses a Message-ID");
        if header(&mail, "Subject").unwrap().contains("Verdächtiger") {
            assert!(
                head.contains("Subject: =?utf-8?"),
                "non-ASCII subject as encoded words:\n{head}"
            );
        }
    }
}

#[test]
fn part_a_9_boundaries_are_quoted_and_never_occur_inside_a_part() {
    let out = scratch();
    demo_replay(out.path());
    for (file, bytes) in emails(out.path()) {
        let text = String::from_utf8(bytes.clone()).unwrap();
        let mail = mailparse::parse_mail(&bytes).unwrap();
        let Some(boundary) = mail.ctype.params.get("boundary") else {
            continue;
        };
        assert!(
            text.contains(&format!("boundary=\"{boundary}\"")),
            "{file}.eml: quoted boundary"
        );
        let delimiter = format!("--{boundary}");
        assert_eq!(
            text.matches(&delimiter).count(),
            3,
            "{file}.eml: two parts and the end, nothing else"
        );
        for sub in &mail.subparts {
            assert!(
                !sub.get_body().unwrap().contains(boundary.as_str()),
                "{file}.eml: boundary inside a part"
            );
            let encoding = sub
                .headers
                .iter()
                .find(|h| h.get_key() == "Content-Transfer-Encoding")
                .unwrap();
            assert_eq!(encoding.get_value(), "base64", "{file}.eml");
            let raw = std::str::from_utf8(sub.raw_bytes).unwrap();
            assert!(
                raw.split("\r\n").all(|line| line.len() <= 76),
                "{file}.eml: base64 lines of 76 columns"
            );
        }
    }
}

#[test]
fn severity_transforms_make_warning_medium_and_the_threshold_drops_low() {
    // Part A #5 with the demo's SeverityThreshold of medium and above.
    let out = scratch();
    demo_replay(out.path());
    let summary = jsonl(&out.path().join("summary.jsonl"));
    let subjects: Vec<&str> = summary.iter().map(|s| s["subject"].as_str().unwrap()).collect();
    assert!(
        subjects.contains(&"Alert from client WIN-FIN-01 (medium): Run key persistence: Updater"),
        "{subjects:?}"
    );
    assert!(
        !subjects.iter().any(|s| s.contains("USB storage")),
        "low is below the threshold"
    );
    let log = jsonl(&out.path().join("log.jsonl"));
    assert!(log.iter().any(|l| {
        l["event"] == "events.jsonl:11"
            && l["message"]
                .as_str()
                .unwrap()
                .contains("severity \"low\" is not in SeverityThreshold")
    }));
}
