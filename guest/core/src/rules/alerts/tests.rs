//! The Server.Monitor.Alerts rules of docs/velociraptor.md §7 and the
//! decisions of docs/decisions.md that concern it, checked on the rule
//! itself (natively).

use serde_json::{Value, json};

use super::*;
use crate::rules::configure;
use crate::testing::FakeHost;

fn world() -> Value {
    json!({
        "clients": {"C.1a2b": {"client_id": "C.1a2b", "os_info": {"hostname": "ws1", "fqdn": "ws1.corp.example", "system": "linux"},
                               "labels": ["finance"]}},
        "flows": {"C.1a2b": {"F.ABC": {"session_id": "F.ABC", "request": {"creator": "ann", "artifacts": ["Linux.Sys.BashShell"]},
                                       "create_time": 1_767_000_000_000_000_u64, "state": "FINISHED"}}},
    })
}

fn host() -> FakeHost {
    let mut host = FakeHost::new(world());
    host.now_us = 1_767_000_100_000_000;
    host
}

const SOC: &str = "Address\nsoc@example.org\n";

fn rule(params: &[(&str, &str)], host: &FakeHost) -> AlertsRule {
    let given: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    configure::<AlertsRule>(&given, host).expect("configures").0
}

fn event(row: Value) -> Event {
    Event {
        id: "test:1".into(),
        queue: ALERT_QUEUE.into(),
        row: row.as_object().unwrap().clone(),
        org_id: "root".into(),
    }
}

fn server_alert(name: &str, event_data: Value) -> Value {
    json!({"client_id": "server", "name": name, "timestamp": "2025-12-29T09:21:30.123456789Z",
           "event_data": event_data, "artifact": "Custom.Server.Upload", "artifact_type": "SERVER_MONITORING",
           "_ts": 1_767_000_090})
}

fn client_alert(name: &str, event_data: Value) -> Value {
    json!({"client_id": "C.1a2b", "name": name, "timestamp": "2025-12-29T09:21:30Z", "event_data": event_data,
           "artifact": "Linux.Detection.Honeyfiles", "artifact_type": "CLIENT_EVENT", "_ts": 1_767_000_090})
}

fn emails(params: &[(&str, &str)], host: &FakeHost, row: Value) -> Vec<Email> {
    rule(params, host)
        .handle(&event(row), host)
        .expect("handles")
        .into_iter()
        .map(|a| match a {
            Action::Email(e) => e,
            other => panic!("expected an e-mail, got {other:?}"),
        })
        .collect()
}

fn one_email(params: &[(&str, &str)], host: &FakeHost, row: Value) -> Email {
    let mut all = emails(params, host, row);
    assert_eq!(all.len(), 1, "one e-mail");
    all.remove(0)
}

#[test]
fn server_alert_subject_shows_severity_and_the_first_30_bytes_of_the_name() {
    let host = host();
    let e = one_email(
        &[("Recipients", SOC)],
        &host,
        server_alert(
            "Server event query error in TEST.ErrorMessage",
            json!({"Level": "ERROR"}),
        ),
    );
    assert_eq!(e.subject, "Server alert (high): Server event query error in TE…");
    assert_eq!(e.recipients, ["soc@example.org"]);
}

#[test]
fn client_alert_subject_uses_the_hostname_or_the_client_id() {
    let host = host();
    let e = one_email(
        &[("Recipients", SOC)],
        &host,
        client_alert("Honey file accessed", json!({})),
    );
    assert_eq!(e.subject, "Alert from client ws1: Honey file accessed");
    let mut unknown = client_alert("x", json!({}));
    unknown["client_id"] = json!("C.unknown");
    let e = one_email(&[("Recipients", SOC)], &host, unknown);
    assert_eq!(e.subject, "Alert from client C.unknown: x");
}

#[test]
fn event_data_overrides_client_flow_and_artifact() {
    let host = host();
    let row = server_alert(
        "Honeyfile accessed",
        json!({"ClientId": "C.1a2b", "FlowId": "F.ABC", "Artifact": "Linux.Detection.Honeyfiles", "ArtifactType": "CLIENT_EVENT", "PID": 42}),
    );
    let e = one_email(&[("Recipients", SOC)], &host, row);
    assert_eq!(e.subject, "Alert from client ws1: Honeyfile accessed");
    assert!(e.text.contains("Artifact: Linux.Detection.Honeyfiles ("), "{}", e.text);
    assert!(e.text.contains("Artifact type: CLIENT_EVENT"));
    assert!(
        e.text.contains("Flow: F.ABC ("),
        "flow details of the overridden flow:\n{}",
        e.text
    );
    assert!(e.text.contains("PID: 42"));
    assert!(
        !e.text.contains("ClientId:"),
        "override members are not shown as context"
    );
}

#[test]
fn alert_names_are_filtered_case_insensitively() {
    // D1: regexes are case-insensitive and unanchored.
    let host = host();
    let params = [
        ("Recipients", SOC),
        ("AlertMsgInclude", "honey"),
        ("AlertMsgExclude", "TEST"),
    ];
    assert_eq!(
        emails(&params, &host, client_alert("HONEY file accessed", json!({}))).len(),
        1
    );
    assert_eq!(
        emails(&params, &host, client_alert("Honey test file", json!({}))).len(),
        0
    );
    assert_eq!(emails(&params, &host, client_alert("Sigma hit", json!({}))).len(), 0);
}

#[test]
fn severity_threshold_keeps_listed_severities_and_alerts_without_one() {
    let host = host();
    let params = [("Recipients", SOC), ("SeverityThreshold", r#"["medium","high"]"#)];
    assert_eq!(
        emails(&params, &host, client_alert("a", json!({"level": "error"}))).len(),
        1
    );
    assert_eq!(
        emails(&params, &host, client_alert("b", json!({"level": "warning"}))).len(),
        1,
        "D5: warning → medium"
    );
    assert_eq!(
        emails(&params, &host, client_alert("c", json!({"Severity": "low"}))).len(),
        0
    );
    assert_eq!(
        emails(&params, &host, client_alert("d", json!({"other": 1}))).len(),
        1,
        "no severity: never filtered"
    );
}

#[test]
fn severity_members_and_override_keys_are_removed_from_the_context() {
    let host = host();
    let e = one_email(
        &[("Recipients", SOC)],
        &host,
        client_alert(
            "x",
            json!({"level": "error", "Severity": "critical", "Artifact": "A", "File": "/etc/shadow"}),
        ),
    );
    assert!(
        e.subject.contains("(critical)"),
        "last applying row wins: {}",
        e.subject
    );
    let details = e.text.split("\n\n").nth(2).unwrap();
    assert_eq!(details, "File: /etc/shadow");
}

#[test]
fn no_recipients_sends_nothing_and_logs_one_error() {
    // D7.
    let host = host();
    let actions = rule(&[], &host)
        .handle(&event(client_alert("x", json!({}))), &host)
        .unwrap();
    assert!(actions.is_empty());
    let errors = host.logged(LogLevel::Error);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("No recipients resolved: set Recipients or enable NotifyExecutor."));
}

#[test]
fn notify_executor_mails_the_creator_of_the_flow() {
    let host = host();
    let row = client_alert("x", json!({"FlowId": "F.ABC"}));
    let params = [
        ("NotifyExecutor", "Y"),
        ("NotifyExecutorDomains", "UsernameRegex,Domain\n.+,corp.example\n"),
    ];
    let e = one_email(&params, &host, row.clone());
    assert_eq!(e.recipients, ["ann@corp.example"]);
    // D4: the mapping is only consulted when NotifyExecutor is on.
    let off = [("NotifyExecutorDomains", "UsernameRegex,Domain\n.+,corp.example\n")];
    assert!(emails(&off, &host, row).is_empty());
}

#[test]
fn sender_parameter_wins_over_the_default() {
    // D8.
    let host = host();
    let e = one_email(&[("Recipients", SOC)], &host, client_alert("x", json!({})));
    assert_eq!(e.sender, "velonotify@example.org");
    let e = one_email(
        &[("Recipients", SOC), ("Sender", "alerts@example.org")],
        &host,
        client_alert("x", json!({})),
    );
    assert_eq!(e.sender, "alerts@example.org");
    assert!(String::from_utf8_lossy(&e.message).contains("From: <alerts@example.org>"));
}

#[test]
fn header_injection_in_the_alert_name_adds_no_header() {
    // D14.
    let host = host();
    let e = one_email(
        &[("Recipients", SOC)],
        &host,
        client_alert("x\r\nBcc: attacker@evil.example", json!({})),
    );
    let mail = mailparse::parse_mail(&e.message).unwrap();
    assert!(mail.headers.iter().all(|h| !h.get_key().eq_ignore_ascii_case("bcc")));
    assert!(
        e.subject.starts_with("Alert from client ws1: x  Bcc: attacker@evil.ex"),
        "{}",
        e.subject
    );
}

#[test]
fn event_data_is_escaped_in_html() {
    // D13.
    let mut host = host();
    host.world["clients"]["C.1a2b"]["os_info"]["hostname"] = json!("<img src=x onerror=alert(1)>");
    let e = one_email(
        &[("Recipients", SOC)],
        &host,
        client_alert("<b>bold</b>", json!({"cmd": "<script>alert(1)</script>"})),
    );
    let html = e.html.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script>"));
    assert!(!html.contains("<img"));
    assert!(
        html.contains("<b>&lt;b&gt;bold&lt;/b&gt;</b>"),
        "the name is bold but escaped"
    );
}

#[test]
fn text_body_is_the_summary_then_the_sections_without_headings() {
    let host = host();
    let e = one_email(
        &[("Recipients", SOC)],
        &host,
        client_alert("Honey file accessed", json!({"File": "/home/a/.ssh/id_rsa"})),
    );
    let blocks: Vec<&str> = e.text.trim_end().split("\n\n").collect();
    assert_eq!(
        blocks[0],
        "An alert was sent from ws1 at 2025-12-29T09:21:30Z: Honey file accessed"
    );
    assert!(
        blocks[1].starts_with("Server time: 2025-12-29T09:21:40Z\nAlert time: 2025-12-29T09:21:30Z (10 seconds ago)"),
        "{}",
        blocks[1]
    );
    assert_eq!(blocks[2], "File: /home/a/.ssh/id_rsa");
    assert!(blocks[3].starts_with("ID: C.1a2b ("), "{}", blocks[3]);
    assert!(!e.text.contains("Alert details"));
}

#[test]
fn an_email_ends_with_the_hosts_silence_link_when_the_host_makes_one() {
    let url = "https://velonotify.example/silence?t=e30.c2ln";
    let mut host = host();
    host.silence_link = Some(url.into());
    let e = one_email(
        &[("Recipients", SOC)],
        &host,
        client_alert("Honey file accessed", json!({})),
    );
    assert!(
        e.text.ends_with(&format!("\n\nSilence similar for 2 h: {url}\n")),
        "{}",
        e.text
    );
    let html = e.html.unwrap();
    assert!(
        html.contains(&format!("<a href=\"{url}\">Silence similar for 2 h</a>")),
        "{html}"
    );

    let unlinked = one_email(
        &[("Recipients", SOC)],
        &self::host(),
        client_alert("Honey file accessed", json!({})),
    );
    assert!(!unlinked.text.contains("Silence similar"));
    assert!(!unlinked.html.unwrap().contains("Silence similar"));
}

#[test]
fn html_false_sends_plain_text_only() {
    let host = host();
    let e = one_email(
        &[("Recipients", SOC), ("HTML", "N")],
        &host,
        client_alert("x", json!({})),
    );
    assert!(e.html.is_none());
    let mail = mailparse::parse_mail(&e.message).unwrap();
    assert_eq!(mail.ctype.mimetype, "text/plain");
    assert_eq!(mail.get_body().unwrap(), e.text);
}

#[test]
fn context_rows_are_capped_in_html_but_all_shown_in_text() {
    let host = host();
    let data: Map<String, Value> = (0..40).map(|i| (format!("k{i:02}"), json!(i + 1))).collect();
    let e = one_email(&[("Recipients", SOC)], &host, client_alert("x", Value::Object(data)));
    assert!(e.html.unwrap().contains("(Showing 30 of 40 rows)"));
    assert!(e.text.contains("k39: 40"));
}

#[test]
fn flattening_can_be_turned_off() {
    let host = host();
    let row = client_alert("x", json!({"Details": {"EventID": 1}}));
    let flat = one_email(&[("Recipients", SOC)], &host, row.clone());
    assert!(flat.text.contains("Details.EventID: 1"));
    let nested = one_email(&[("Recipients", SOC), ("FlattenContext", "N")], &host, row);
    assert!(nested.text.contains("Details: {\"EventID\":1}"));
}

#[test]
fn sections_can_be_turned_off() {
    let host = host();
    let params = [
        ("Recipients", SOC),
        ("IncludeClientDetails", "N"),
        ("IncludeFlowDetails", "N"),
    ];
    let e = one_email(&params, &host, client_alert("x", json!({"FlowId": "F.ABC"})));
    let html = e.html.unwrap();
    assert!(!html.contains(">Client details</h2>"));
    assert!(!html.contains(">Flow details</h2>"));
    assert!(html.contains(">Alert summary</h2>"));
}

#[test]
fn artifact_details_show_definition_and_event_table_entry() {
    let mut host = host();
    host.world["artifacts"] = json!({"Custom.Server.Upload":
        {"name": "Custom.Server.Upload", "type": "server_event", "author": "ann", "required_permissions": ["EXECVE"]}});
    host.world["event_tables"] = json!({"server": {"specs": [{"artifact": "Custom.Server.Upload", "parameters": {"env": [{"key": "Bucket", "value": "evidence"}]}}]}});
    host.world["audit"] =
        json!([{"operation": "SetServerMonitoringState", "principal": "admin", "_ts": 1_767_000_000}]);
    let e = one_email(
        &[("Recipients", SOC), ("IncludeArtifactDetails", "Y")],
        &host,
        server_alert("x", json!({})),
    );
    let text = &e.text;
    assert!(text.contains("Definition.name: Custom.Server.Upload"), "{text}");
    assert!(text.contains("Definition.required_permissions.0: EXECVE"));
    assert!(text.contains("Execution.Artifact: Custom.Server.Upload"));
    assert!(text.contains("Execution.Params.Bucket: evidence"));
    assert!(text.contains("Execution.EventTableModifiedBy: admin"));
    assert!(e.html.unwrap().contains(">Artifact details</h2>"));
}

#[test]
fn rows_without_a_name_or_client_are_bad_events() {
    let host = host();
    let mut r = rule(&[("Recipients", SOC)], &host);
    let err = r.handle(&event(json!({"client_id": "server"})), &host).unwrap_err();
    assert!(matches!(&err, Failure::BadEvent(m) if m.contains("name")), "{err}");
    let err = r
        .handle(
            &event(json!({"name": "x", "event_data": "oops", "client_id": "server"})),
            &host,
        )
        .unwrap_err();
    assert!(
        matches!(&err, Failure::BadEvent(m) if m.contains("event_data")),
        "{err}"
    );
}

#[test]
fn the_empty_client_alert_of_the_fixture_is_filtered_by_name() {
    let host = host();
    let rows: Value = serde_json::from_str(include_str!(
        "../../../../../tests/data/velociraptor/Server.Internal.Alerts.json"
    ))
    .unwrap();
    let mut r = rule(&[("Recipients", SOC)], &host);
    assert_eq!(r.handle(&event(rows[0].clone()), &host).unwrap().len(), 1);
    assert!(
        r.handle(&event(rows[1].clone()), &host).unwrap().is_empty(),
        "empty name does not match .+"
    );
}

#[test]
fn lookup_failures_fail_the_event() {
    let mut host = host();
    let mut r = rule(&[("Recipients", SOC)], &host);
    host.outage = Some("API timeout".into());
    let err = r.handle(&event(client_alert("x", json!({}))), &host).unwrap_err();
    assert!(matches!(&err, Failure::Lookup(m) if m.contains("API timeout")), "{err}");
}

#[test]
fn every_parameter_of_the_artifact_is_declared_with_its_default() {
    let names: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "Recipients",
            "NotifyExecutor",
            "NotifyExecutorDomains",
            "Sender",
            "HTML",
            "AlertMsgInclude",
            "AlertMsgExclude",
            "ServerSecret",
            "SendInterval",
            "IncludeClientDetails",
            "ClientMetadata",
            "IncludeFlowDetails",
            "IncludeArtifactDetails",
            "KeepEmptyRows",
            "SeverityTransforms",
            "SeverityThreshold",
            "FlattenContext",
            "ContextInclude",
            "ContextExclude",
            "ContextFieldLimit",
            "ContextValueLimit",
            "ContextRowLimit",
        ]
    );
    let default = |n: &str| PARAMS.iter().find(|p| p.name == n).unwrap().default;
    assert_eq!(default("ServerSecret"), "notify_mail_secret");
    assert_eq!(default("SendInterval"), "10");
    assert_eq!(default("ContextRowLimit"), "30");
    assert_eq!(default("ContextValueLimit"), "1000");
    assert_eq!(default("ContextFieldLimit"), "100");
}

mod deciding_in_place {
    use proptest::prelude::*;

    use super::*;

    fn value() -> impl Strategy<Value = Option<Value>> {
        let texts = vec!["warn", "WARNING", "error", "high", "low", "", "\"", "é"];
        prop::option::of(crate::testing::json_value(texts, "Level"))
    }

    proptest! {
        /// Deciding on the row read in place never drops an alert that
        /// would have been e-mailed: whenever `may_act` says no, `handle`
        /// on the built row sends nothing, whatever the context's members
        /// hold (the severity transforms read plain, dotted and missing
        /// members).
        #[test]
        fn an_alert_may_act_refuses_would_not_have_been_emailed(
            level in value(),
            severity in value(),
            details in value(),
            name in prop::sample::select(vec!["Honey file", "test", "x"]),
            include in prop::sample::select(vec!["", "honey"]),
            transforms in prop::sample::select(vec![
                DEFAULT_SEVERITY_TRANSFORMS,
                "Member,Regex,Replace\nLevel,(?i)warn,medium\nDetails.Level,(?i)err,high\nseverity,,\n",
                "Member,Regex,Replace\nMissing.Level,.,high\n",
            ]),
            threshold in prop::sample::select(vec![r#"["high"]"#, "[]", r#"["medium", "high"]"#, r#"["low"]"#]),
        ) {
            let mut data = Map::new();
            for (member, value) in [("Level", level), ("severity", severity), ("Details", details)] {
                if let Some(value) = value {
                    data.insert(member.into(), value);
                }
            }
            let row = server_alert(name, Value::Object(data));
            let host = host();
            let params = [
                ("Recipients", SOC),
                ("AlertMsgInclude", include),
                ("SeverityTransforms", transforms),
                ("SeverityThreshold", threshold),
            ];
            let mut rule = rule(&params, &host);
            if !rule.may_act(&row.to_string()) {
                let actions = rule.handle(&event(row.clone()), &host).expect("handles");
                prop_assert!(actions.is_empty(), "{} refused in place, e-mailed", row);
            }
        }
    }
}
