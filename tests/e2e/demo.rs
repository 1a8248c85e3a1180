//! The demo replay (`scripts/demo`): every e-mail parsed back by an
//! independent MIME parser (mailparse, not the mail-builder that wrote it),
//! compared with the same rule run natively, and pinned by snapshots.

use std::io::BufReader;
use std::sync::Arc;

use velonotify::capabilities::lookups::LookupSource;
use velonotify::capabilities::{CallContext, Grants};
use velonotify::cli::config::Config;
use velonotify::cli::runtime::{Overrides, load_world};
use velonotify::clock::CallTime;
use velonotify::sources::JsonlSource;
use velonotify_core::action::{Action, Email, Failure};
use velonotify_core::host::{Event, Host};
use velonotify_core::rules::alerts::AlertsRule;
use velonotify_core::rules::flow_completion::FlowCompletionRule;
use velonotify_core::rules::{Rule, Setup};
use velonotify_test_support::{data, emails, header, jsonl, part, scratch, stderr, velonotify_in_address_space};

use super::replay;

fn demo_replay(out: &std::path::Path) {
    replay(&data("demo/velonotify.toml"), &data("demo/events.jsonl"), out);
}

/// A demo module's rule, called natively.
enum NativeRule {
    Alerts(Box<AlertsRule>),
    FlowCompletion(Box<FlowCompletionRule>),
}

impl NativeRule {
    fn configure(component: &str, params: &[(String, String)], host: &dyn Host) -> (Self, Setup) {
        use velonotify_core::rules::configure;
        match component {
            "alerts.wasm" => {
                let (rule, setup) = configure::<AlertsRule>(params, host).unwrap();
                (Self::Alerts(Box::new(rule)), setup)
            }
            "flow_completion.wasm" => {
                let (rule, setup) = configure::<FlowCompletionRule>(params, host).unwrap();
                (Self::FlowCompletion(Box::new(rule)), setup)
            }
            other => panic!("no native rule for {other}"),
        }
    }

    /// The rules whose e-mails are compared (the others make no e-mails).
    fn mails(component: &str) -> bool {
        matches!(component, "alerts.wasm" | "flow_completion.wasm")
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        match self {
            Self::Alerts(rule) => rule.handle(event, host),
            Self::FlowCompletion(rule) => rule.handle(event, host),
        }
    }
}

/// The e-mails of the demo, rendered by the same rules called natively
/// with the same configuration, world and events, in replay order.
fn native_demo_emails() -> Vec<(String, Email)> {
    let config = Config::load(&data("demo/velonotify.toml")).unwrap();
    let lookups: Arc<dyn LookupSource> = Arc::new(load_world(&config, &Overrides::default()).unwrap());
    let grants = Grants::native(lookups, "root", config.host_facts());
    let time = CallTime::default();
    let events = std::fs::File::open(data("demo/events.jsonl")).unwrap();
    let source = JsonlSource::new(BufReader::new(events), "events.jsonl", "root", 1 << 20);
    let mut rules: Vec<(String, NativeRule, Setup)> = config
        .modules
        .iter()
        .filter(|m| NativeRule::mails(&m.path.display().to_string()))
        .map(|m| {
            let host = CallContext::new("setup", &grants, time.clone());
            let component = m.path.display().to_string();
            let (rule, setup) = NativeRule::configure(&component, &m.param_texts(&config.base_dir).unwrap(), &host);
            let name = m.name.clone().unwrap_or_else(|| AlertsRule::NAME.into());
            (name, rule, setup)
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
        for (name, rule, setup) in &mut rules {
            if !setup.queues.contains(&event.queue) {
                continue;
            }
            let mut host = CallContext::new(name, &grants, time.clone());
            time.set_us(event.ts_us.unwrap());
            // Bad rows fail natively too; the replay reports them.
            for action in rule.handle(&core_event, &host).unwrap_or_default() {
                let Action::Email(email) = action else {
                    panic!("the demo makes only e-mails")
                };
                out.push((name.clone(), email));
            }
            host.end_call(true);
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
    let summary: Vec<serde_json::Value> = jsonl(&out.path().join("summary.jsonl"))
        .into_iter()
        .filter(|s| s["kind"] == "email")
        .collect();
    assert_eq!(written.len(), summary.len(), "one summary line per e-mail");

    // Every e-mail parses, and says what its summary line says.
    for ((file, bytes), line) in written.iter().zip(&summary) {
        let mail = mailparse::parse_mail(bytes).unwrap_or_else(|e| panic!("{file}.eml does not parse: {e}"));
        assert_eq!(
            header(&mail, "Subject").as_deref(),
            line["subject"].as_str(),
            "{file}.eml subject"
        );
        let text = part(&mail, "text/plain").unwrap_or_else(|| panic!("{file}.eml has no text/plain part"));
        assert!(!text.trim().is_empty());
        if let Some(html) = part(&mail, "text/html") {
            let written_html = std::fs::read_to_string(out.path().join(format!("{file}.html"))).unwrap();
            assert_eq!(written_html, html, "{file}.html is the HTML part");
        }
    }

    // Those made straight from an event line match the rule run natively:
    // the bodies it rendered, and the very bytes.
    let direct: Vec<&(String, Vec<u8>)> = written
        .iter()
        .zip(&summary)
        .filter(|(_, line)| is_line(line))
        .map(|(mail, _)| mail)
        .collect();
    let native = native_demo_emails();
    assert_eq!(
        direct.len(),
        native.len(),
        "the component and the native rule send as many e-mails"
    );
    assert!(direct.len() >= 5);
    for ((file, bytes), (module, email)) in direct.into_iter().zip(&native) {
        let mail = mailparse::parse_mail(bytes).unwrap();
        assert_eq!(
            part(&mail, "text/plain").as_deref(),
            Some(email.text.as_str()),
            "{file}.eml text/plain ({module})"
        );
        assert_eq!(part(&mail, "text/html"), email.html, "{file}.eml text/html ({module})");
        assert_eq!(
            bytes, &email.message,
            "{file}.eml: the component and the native rule build the same bytes"
        );
    }
}

/// A summary line for an event read from the events file (not an alert it
/// raised, not a tick).
fn is_line(line: &serde_json::Value) -> bool {
    let event = line["event"].as_str().unwrap();
    event.starts_with("events.jsonl:") && !event.contains('#')
}

#[test]
fn demo_emails_match_their_snapshots() {
    let out = scratch();
    demo_replay(out.path());
    for (file, bytes) in emails(out.path()) {
        let mail = mailparse::parse_mail(&bytes).unwrap();
        let snapshot = format!(
            "subject: {}\nto: {}\n\n----- text/plain -----\n{}\n----- text/html -----\n{}\n----- attachments -----\n{}",
            header(&mail, "Subject").unwrap(),
            header(&mail, "To").unwrap(),
            part(&mail, "text/plain").unwrap(),
            part(&mail, "text/html").unwrap_or_else(|| "(none)".into()),
            attachments_of(&mail),
        );
        insta::assert_snapshot!(format!("demo_email_{file}"), snapshot);
    }
    let summary = std::fs::read_to_string(out.path().join("summary.jsonl")).unwrap();
    insta::assert_snapshot!("demo_summary", summary);
}

/// Each attachment's name, type and size, and its content when short.
fn attachments_of(mail: &mailparse::ParsedMail<'_>) -> String {
    if mail.ctype.mimetype != "multipart/mixed" {
        return "(none)".into();
    }
    let mut out = String::new();
    for sub in mail.subparts.iter().skip(1) {
        let name = sub
            .get_content_disposition()
            .params
            .get("filename")
            .cloned()
            .unwrap_or_default();
        let body = sub.get_body_raw().unwrap();
        out.push_str(&format!("{name} ({}, {} bytes)\n", sub.ctype.mimetype, body.len()));
        if body.len() <= 2048 {
            out.push_str(&String::from_utf8_lossy(&body));
        }
    }
    if out.is_empty() { "(none)".into() } else { out }
}

/// 8 GB of address space: room for on-demand instances, not for the pool.
const SCARCE_ADDRESS_SPACE_KIB: u64 = 8_000_000;

#[test]
fn replaying_twice_gives_identical_bytes_with_the_pool_and_without_room_for_it() {
    let (a, b) = (scratch(), scratch());
    demo_replay(a.path());
    let args = [
        "replay",
        "-c",
        &data("demo/velonotify.toml").display().to_string(),
        "--events",
        &data("demo/events.jsonl").display().to_string(),
        "--out",
        &b.path().display().to_string(),
    ]
    .map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let scarce = velonotify_in_address_space(super::EXE, &args, SCARCE_ADDRESS_SPACE_KIB);
    let log = stderr(&scarce);
    assert!(scarce.status.success(), "{log}");
    assert!(
        log.contains("pooling allocator unavailable; instances are allocated on demand"),
        "{log}"
    );
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
fn d14_an_alert_name_cannot_add_a_header() {
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
fn d13_event_data_is_escaped_in_html() {
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
fn d10_one_of_each_header_with_a_message_id_and_encoded_words() {
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
fn d9_boundaries_are_quoted_and_never_occur_inside_a_part() {
    fn check(file: &str, text: &str, part: &mailparse::ParsedMail<'_>) {
        match part.ctype.params.get("boundary") {
            Some(boundary) => {
                assert!(
                    text.contains(&format!("boundary=\"{boundary}\"")),
                    "{file}.eml: quoted boundary"
                );
                let delimiters = text.matches(&format!("--{boundary}")).count();
                assert_eq!(
                    delimiters,
                    part.subparts.len() + 1,
                    "{file}.eml: one delimiter per part and the end"
                );
                for sub in &part.subparts {
                    let raw = String::from_utf8_lossy(sub.raw_bytes);
                    assert!(!raw.contains(boundary.as_str()), "{file}.eml: boundary inside a part");
                    check(file, text, sub);
                }
            }
            None => {
                let encoding = part
                    .headers
                    .iter()
                    .find(|h| h.get_key() == "Content-Transfer-Encoding")
                    .unwrap();
                assert_eq!(encoding.get_value(), "base64", "{file}.eml");
                let raw = std::str::from_utf8(part.raw_bytes).unwrap();
                assert!(
                    raw.split("\r\n").all(|line| line.len() <= 78),
                    "{file}.eml: lines of at most 76 columns"
                );
            }
        }
    }
    let out = scratch();
    demo_replay(out.path());
    let mut multipart = 0;
    for (file, bytes) in emails(out.path()) {
        let text = String::from_utf8(bytes.clone()).unwrap();
        let mail = mailparse::parse_mail(&bytes).unwrap();
        multipart += usize::from(!mail.subparts.is_empty());
        check(&file, &text, &mail);
    }
    assert!(multipart > 5);
}

#[test]
fn severity_transforms_make_warning_medium_and_the_threshold_drops_low() {
    // Decision D5 (docs/decisions.md) with the demo's SeverityThreshold of medium and above.
    let out = scratch();
    demo_replay(out.path());
    let summary = jsonl(&out.path().join("summary.jsonl"));
    let subjects: Vec<&str> = summary.iter().filter_map(|s| s["subject"].as_str()).collect();
    assert!(
        subjects.contains(&"Alert from client WIN-FIN-01 (medium): Run key persistence: Updater"),
        "{subjects:?}"
    );
    assert!(
        !subjects.iter().any(|s| s.contains("USB storage")),
        "low is below the threshold"
    );
    let log = jsonl(&out.path().join("log.jsonl"));
    let usb = velonotify_test_support::event_id(&data("demo/events.jsonl"), "USB storage device connected");
    assert!(log.iter().any(|l| {
        l["event"] == usb.as_str()
            && l["message"]
                .as_str()
                .unwrap()
                .contains("severity \"low\" is not in SeverityThreshold")
    }));
}

/// The demo's e-mails as mail clients show them, in a real browser
/// (headless Chromium, installed by scripts/setup): laid out 375 px wide
/// (a phone) and 800 px wide (a desktop client), no element reaches past
/// the window's right edge, so nothing needs scrolling sideways or is cut
/// off; each HTML part is within the budget Gmail shows whole. The
/// screenshots are kept in `target/screenshots/` for a person to look at.
#[test]
fn demo_emails_fit_a_phone_and_a_desktop_in_a_real_browser() {
    let out = scratch();
    demo_replay(out.path());
    let shots = velonotify_test_support::workspace().join("target/screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = velonotify_test_support::browser::Browser::start();
    let mut looked_at = 0;
    for (file, _) in emails(out.path()) {
        let html = out.path().join(format!("{file}.html"));
        let Ok(bytes) = std::fs::metadata(&html).map(|m| m.len()) else {
            continue;
        };
        assert!(
            bytes <= velonotify_core::render::HTML_BUDGET_BYTES as u64,
            "{file}.html: {bytes} bytes"
        );
        for width in [375, 800] {
            assert_eq!(
                browser.lay_out_at(width),
                width,
                "the window is laid out {width} px wide"
            );
            browser.goto(&format!("file://{}", html.display()));
            let widest = browser.execute(
                "const right = [...document.querySelectorAll('body *')]
                     .map(e => Math.ceil(e.getBoundingClientRect().right));
                 return Math.max(document.documentElement.scrollWidth, ...right);",
            );
            let widest = widest.as_u64().unwrap();
            std::fs::write(shots.join(format!("demo-{file}-{width}px.png")), browser.screenshot()).unwrap();
            assert!(
                widest <= u64::from(width),
                "{file}.html at {width} px: content reaches {widest} px (screenshot in {})",
                shots.display()
            );
        }
        looked_at += 1;
    }
    assert!(looked_at >= 5, "the demo's HTML e-mails: {looked_at}");
}
