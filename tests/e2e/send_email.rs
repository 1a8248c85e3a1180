//! SendEmail: rows posted to the ingest endpoint on the SendEmail module's
//! queue, as `Server.Velonotify.SendEmail` posts them, become the messages
//! they describe at a real SMTP server (parsed back here); files come
//! inline or from the server's file store through the API stand-in
//! (`VFSGetBuffer`); the ingest answer says, per row, what became of it.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use velonotify_test_support::peers::{SmtpOptions, SmtpPeer, free_port};
use velonotify_test_support::scratch;
use velonotify_test_support::service::{Running, post_events};
use velonotify_test_support::velociraptor_peer::{ClientCert, TestPki, VelociraptorPeer};

use super::{EXE, write_config};

const TOKEN: &str = "send-email-token-0123456789";
const REPORT_CSV: &str = "Hostname,Finding\nws1,dropper\n";

fn base64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A running velonotify with the SendEmail module (`mailer`, queue mode,
/// one message per `Period` second), the API stand-in holding
/// `/downloads/hunt/report.csv`, and an SMTP server.
struct Mailer {
    _dir: tempfile::TempDir,
    peer: VelociraptorPeer,
    smtp: SmtpPeer,
    run: Running,
    ingest: u16,
}

impl Mailer {
    fn start() -> Self {
        let dir = scratch();
        let world = json!({"files": {"/downloads/hunt/report.csv": base64(REPORT_CSV)}}).to_string();
        let pki = TestPki::generate();
        let peer = VelociraptorPeer::start(&pki, &world);
        pki.api_client_file(&dir.path().join("api.yaml"), peer.port, ClientCert::Good);
        let smtp = SmtpPeer::started(&dir.path().join("smtp"), SmtpOptions::default());
        let ingest = free_port();
        let config = write_config(
            dir.path(),
            &format!(
                r#"
[smtp]
server = "127.0.0.1"
server_port = {smtp}
from = "velonotify@example.org"

[delivery]
retry_base_ms = 100
retry_cap_s = 1

[host]
state = "state.db"

[velociraptor]
api_config = "api.yaml"

[ingest]
listen = "127.0.0.1:{ingest}"
token = "{TOKEN}"

[[module]]
name = "mailer"
path = "send_email.wasm"
lookups = ["server_file"]
[module.params]
Period = 1
RecipientsAllowed = '@example\.org$'
"#,
                smtp = smtp.port
            ),
        );
        let mut run = Running::start(EXE, &config);
        run.wait("the endpoint", Duration::from_secs(60), |r| {
            r.log().contains("HTTP ingest at")
        });
        Self {
            _dir: dir,
            peer,
            smtp,
            run,
            ingest,
        }
    }

    /// Posts `rows` as the artifact does (a JSON array); the answer's rows.
    fn post(&self, rows: &[Value]) -> Vec<Value> {
        let body = serde_json::to_vec_pretty(&json!(rows)).unwrap();
        let (status, answer) = post_events(
            self.ingest,
            Some(TOKEN),
            "outcomes=true&queue=Generic.Utils.SendEmail",
            &body,
        );
        assert_eq!(status, 200, "{answer}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        answer["rows"].as_array().unwrap().clone()
    }

    /// The messages the SMTP server took, parsed, by subject.
    fn received(&self, count: usize) -> Vec<(String, Vec<u8>)> {
        let received = self.smtp.wait_for(count, Duration::from_secs(60));
        assert_eq!(received.len(), count, "{received:?}\n{}", self.run.log());
        let mut messages: Vec<(String, Vec<u8>)> = received
            .iter()
            .map(|r| {
                let raw = self.smtp.message(r["file"].as_str().unwrap());
                (r["subject"].as_str().unwrap().to_string(), raw)
            })
            .collect();
        messages.sort();
        messages
    }
}

/// The leaf parts of a message: media type, file name, decoded body.
fn leaves(raw: &[u8]) -> Vec<(String, Option<String>, String)> {
    let parsed = mailparse::parse_mail(raw).unwrap();
    parsed
        .parts()
        .filter(|p| p.subparts.is_empty())
        .map(|p| {
            let name = p.get_content_disposition().params.get("filename").cloned();
            (p.ctype.mimetype.clone(), name, p.get_body().unwrap())
        })
        .collect()
}

fn status_of(rows: &[Value]) -> Vec<String> {
    rows.iter().map(|r| r["status"].as_str().unwrap().to_string()).collect()
}

/// Text, HTML, both with attachments inline and from the file store: each
/// row arrives as its own message with the parts it asked for, although
/// all came within one Period (queued, none folded, none lost). Rows the
/// module refuses are answered with the reason, as ErrorStatus carries it.
#[test]
fn send_email_rows_become_the_messages_they_describe() {
    let mailer = Mailer::start();
    let to = |a: &str| json!([a]);
    let answered = mailer.post(&[
        json!({"Recipients": to("ir@example.org"), "Subject": "Text only", "PlainTextMessage": "plain body"}),
        json!({"Recipients": to("ir@example.org"), "Subject": "HTML only", "HTMLMessage": "<h1>Report</h1>"}),
        json!({"Recipients": to("soc@example.org"), "Subject": "With files", "PlainTextMessage": "see files",
               "HTMLMessage": "<p>see files</p>",
               "FilesToUpload": [{"Path": "/downloads/hunt/report.csv", "Filename": "report.csv"},
                                 {"Path": "/tmp/velo/notes.txt", "Filename": "notes.txt", "Content": base64("local notes")}]}),
        json!({"Recipients": to("ceo@elsewhere.com"), "Subject": "Leak", "PlainTextMessage": "x"}),
        json!({"Recipients": to("ir@example.org"), "Subject": "Missing", "FilesToUpload": [{"Path": "/downloads/nope.zip"}]}),
    ]);
    let statuses = status_of(&answered);
    assert_eq!(&statuses[..3], ["queued", "queued", "queued"], "{answered:?}");
    assert_eq!(
        statuses[3],
        "refused: mailer: bad event: Recipients: \"ceo@elsewhere.com\" is not allowed by RecipientsAllowed"
    );
    assert_eq!(
        statuses[4],
        "refused: mailer: bad event: FilesToUpload: \"/downloads/nope.zip\" is not in the file store"
    );

    let messages = mailer.received(3);
    let subjects: Vec<&str> = messages.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, ["HTML only", "Text only", "With files"]);
    assert_eq!(
        leaves(&messages[1].1),
        [("text/plain".to_string(), None, "plain body".to_string())]
    );
    let html = leaves(&messages[0].1);
    assert_eq!(
        html.last().unwrap(),
        &("text/html".to_string(), None, "<h1>Report</h1>".to_string())
    );
    assert_eq!(
        leaves(&messages[2].1),
        [
            ("text/plain".to_string(), None, "see files".to_string()),
            ("text/html".into(), None, "<p>see files</p>".into()),
            ("text/csv".into(), Some("report.csv".into()), REPORT_CSV.into()),
            ("text/plain".into(), Some("notes.txt".into()), "local notes".into()),
        ]
    );
    let reads: Vec<Value> = mailer
        .peer
        .requests()
        .into_iter()
        .filter(|r| r["rpc"] == "VFSGetBuffer")
        .collect();
    assert!(
        reads
            .iter()
            .all(|r| r["components"] == json!(["downloads", "hunt", "report.csv"])
                || r["components"] == json!(["downloads", "nope.zip"])),
        "{reads:?}"
    );
    assert!(!reads.is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        mailer.smtp.received().len(),
        3,
        "nothing more: the refused rows are not sent"
    );
}

/// A file store the API user may not read yet: the row is answered
/// `retrying`, and its message goes once the server allows the read: not
/// lost, not sent without its file.
#[test]
fn a_message_whose_file_cannot_be_read_yet_waits_and_goes_once_it_can() {
    let mut mailer = Mailer::start();
    mailer.peer.deny("vfs_get_buffer");
    let answered = mailer.post(&[json!({"Recipients": ["ir@example.org"], "Subject": "Later",
                                        "PlainTextMessage": "with the report",
                                        "FilesToUpload": [{"Path": "/downloads/hunt/report.csv"}]})]);
    let status = answered[0]["status"].as_str().unwrap();
    assert!(
        status.starts_with("retrying: mailer: lookup failed: lookup denied"),
        "{status}"
    );
    mailer.run.wait("a second refusal", Duration::from_secs(60), |r| {
        r.log().contains("(attempt 2 failed)")
    });
    assert!(mailer.smtp.received().is_empty(), "not sent without its file");
    mailer.peer.allow_all();
    let messages = mailer.received(1);
    assert_eq!(messages[0].0, "Later");
    assert_eq!(leaves(&messages[0].1)[1].2, REPORT_CSV);
}

/// `Server.Velonotify.SendEmail` takes Generic.Utils.SendEmail's
/// parameters with their names and defaults (those of the module, which
/// ports them), so a notebook swaps one artifact name for the other; it
/// posts one row as the ingest endpoint takes it and reads the row's
/// status back as `ErrorStatus`.
#[test]
fn the_send_email_artifact_takes_generic_utils_send_emails_parameters() {
    use velonotify_core::rules::Rule;
    use velonotify_core::rules::send_email::SendEmailRule;
    let artifact: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            velonotify_test_support::workspace().join("host/velociraptor-artifacts/Server.Velonotify.SendEmail.yaml"),
        )
        .unwrap(),
    )
    .unwrap();
    let parameters = artifact["parameters"].as_array().unwrap();
    let velonotify_only = ["Queue", "RecipientsAllowed"];
    for spec in SendEmailRule::PARAMS
        .iter()
        .filter(|p| !velonotify_only.contains(&p.name))
    {
        let parameter = parameters
            .iter()
            .find(|p| p["name"] == spec.name)
            .unwrap_or_else(|| panic!("the artifact lacks {}", spec.name));
        let default = match &parameter["default"] {
            Value::Null if spec.default == "N" => "N".to_string(),
            Value::Null => String::new(),
            Value::Bool(b) => if *b { "Y" } else { "N" }.to_string(),
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim_end().to_string(),
            other => other.to_string(),
        };
        assert_eq!(default, spec.default, "{}", spec.name);
    }
    let query = artifact["sources"][0]["query"].as_str().unwrap();
    assert!(
        query.contains(r#"data=serialize(item=[Message,], format="json")"#),
        "{query}"
    );
    assert!(query.contains("Answer.rows[0].status"), "{query}");
}
