//! Receivers: each vendor `Target` of the Webhook module against a
//! stand-in that checks every request against the vendor's documented
//! schema and answers in the vendor's words (tests/support/peers/http_server.py),
//! through `velonotify run` and the outbox: retried when the receiver is
//! down, dead-lettered with the receiver's reason when it refuses.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use velonotify_test_support::peers::{HttpPeer, TestCertificate, free_port};
use velonotify_test_support::rsyslog::RsyslogPeer;
use velonotify_test_support::scratch;

use super::delivery::{alerts, config, config_with_delivery, outbox_list, run, stderr};

/// A Teams Workflows webhook gets an Adaptive Card at its address as
/// given, the signature in its query not re-encoded, again after a 503;
/// the retired connectors' MessageCard (`teams-legacy`) is refused by a
/// Workflows address, not retried, and the outbox says why in Microsoft's
/// words.
#[test]
fn a_teams_workflow_gets_an_adaptive_card_at_its_signed_address() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let teams = HttpPeer::vendor_with(dir.path(), "teams-workflow", "503,200", None, &[]);
    let refusing = HttpPeer::vendor(dir.path(), "teams-workflow");
    let path = "/workflows/8f1c/triggers/manual/paths/invoke?api-version=2016-06-01\
                &sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=Xy%2B1_a-Z%3D";
    let module = |name: &str, target: &str, peer: &HttpPeer| {
        let url = format!("http://127.0.0.1:{}{path}", peer.port);
        format!(
            "[[module]]\nname = \"{name}\"\npath = \"webhook.wasm\"\nallowed_hosts = [\"127.0.0.1\"]\n\
             [module.params]\nWebhookURL = \"{url}\"\nTarget = \"{target}\"\n"
        )
    };
    let modules = module("workflow", "teams", &teams) + &module("connector", "teams-legacy", &refusing);
    let config = config(dir.path(), free_port(), &cert, &modules);
    let output = run(&config, &alerts(1, "teams"));

    let requests = teams.requests();
    let statuses: Vec<u64> = requests.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 202], "retried until taken");
    let refused: Vec<u64> = refusing
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(refused, [400], "refused, not retried");
    for request in requests.iter().chain(&refusing.requests()) {
        assert_eq!(request["path"], path, "the signed address as given");
    }
    let accepted: Vec<&Value> = requests.iter().filter(|r| r["status"] == 202).collect();
    let card: Value = serde_json::from_str(accepted[0]["body"].as_str().unwrap()).unwrap();
    let text = card["attachments"][0]["content"]["body"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Alert: Alert teams-0000 |"), "{card}");
    assert_eq!(outbox_list(&config, "sent").lines().count() - 2, 1);
    let dead = outbox_list(&config, "dead");
    assert!(dead.contains("connector") && dead.contains("HTTP 400"), "{dead}");
    let log = stderr(&output);
    assert!(log.contains("Property 'type' must be 'AdaptiveCard'"), "{log}");
    assert!(
        !dead.contains("Xy%2B1") && !log.contains("Xy%2B1"),
        "the signature stays out: {dead}\n{log}"
    );
}

/// PagerDuty's Events API v2 gets one trigger event per alert, checked
/// against PagerDuty's schema by the stand-in; its dedup_key is the same
/// for the same alert name, client and artifact, and in two replays of the
/// same rows, so PagerDuty adds a repeat to the open incident; a 503 is
/// retried. An integration key PagerDuty refuses is dead-lettered with
/// PagerDuty's reason, not retried.
#[test]
fn pagerduty_gets_trigger_events_whose_dedup_keys_are_stable() {
    const KEY: &str = "R0123456789abcdef0123456789abcde";
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let pagerduty = HttpPeer::vendor_with(dir.path(), "pagerduty", "503,200", None, &[]);
    let refusing = HttpPeer::vendor(dir.path(), "pagerduty");
    let module = |name: &str, key: &str, peer: &HttpPeer| {
        let url = format!("http://127.0.0.1:{}/v2/enqueue", peer.port);
        format!(
            "[[module]]\nname = \"{name}\"\npath = \"webhook.wasm\"\nallowed_hosts = [\"127.0.0.1\"]\n\
             [module.params]\nWebhookURL = \"{url}\"\nTarget = \"pagerduty\"\nRoutingKey = \"{key}\"\n"
        )
    };
    let modules = module("pager", KEY, &pagerduty) + &module("mistyped", "not-a-key", &refusing);
    let config = config(dir.path(), free_port(), &cert, &modules);
    // The first alert comes again, a second later.
    let again = alerts(1, "pd").replace("1778400000", "1778400001");
    let rows = alerts(2, "pd") + &again;
    let output = run(&config, &rows);

    let requests = pagerduty.requests();
    assert_eq!(requests.len(), 4, "three, the first retried after a 503: {requests:?}");
    assert_eq!(requests[0]["status"], 503);
    let refused: Vec<u64> = refusing
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(refused, [400, 400, 400], "refused, none retried");
    let events: Vec<Value> = requests
        .iter()
        .filter(|r| r["status"] == 202)
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{requests:?}");
    // Delivery workers post in parallel: the events come in any order.
    let mut keyed: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let name = e["payload"]["class"].as_str().unwrap().to_string();
            (name, e["dedup_key"].as_str().unwrap().to_string())
        })
        .collect();
    keyed.sort();
    let names: Vec<&str> = keyed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["Alert pd-0000", "Alert pd-0000", "Alert pd-0001"]);
    assert_eq!(keyed[0].1, keyed[1].1, "the same alert again: the same incident");
    assert_ne!(keyed[0].1, keyed[2].1);
    // In the rows' order: pd-0000, pd-0001, pd-0000 again.
    let keys = [keyed[0].1.clone(), keyed[2].1.clone(), keyed[1].1.clone()];
    assert!(events.iter().all(|e| e["routing_key"] == KEY));
    let events: Vec<&Value> = events
        .iter()
        .filter(|e| e["payload"]["class"] == "Alert pd-0000")
        .collect();
    assert_eq!(
        events[0]["payload"]["summary"].as_str().unwrap().split(" |").next(),
        Some("Alert: Alert pd-0000")
    );
    assert_eq!(events[0]["payload"]["source"], "velociraptor-server");
    assert_eq!(events[0]["payload"]["severity"], "error");
    assert_eq!(outbox_list(&config, "dead").lines().count() - 2, 3);
    assert!(
        stderr(&output).contains("'routing_key' must be a 32 character integration key"),
        "{}",
        stderr(&output)
    );

    // Two replays of the same rows make the same keys as the service did.
    let replayed = |name: &str| -> Vec<String> {
        let (events, out) = (dir.path().join(format!("{name}.jsonl")), dir.path().join(name));
        std::fs::write(&events, &rows).unwrap();
        super::replay(&config, &events, &out);
        velonotify_test_support::jsonl(&out.join("actions.jsonl"))
            .iter()
            .filter(|a| a["module"] == "pager")
            .map(|a| {
                let body: Value = serde_json::from_str(a["body"].as_str().unwrap()).unwrap();
                body["dedup_key"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(replayed("first"), keys);
    assert_eq!(replayed("second"), keys);
}

/// A Webhook module instance posting to `url` as `target`, with `params`.
fn receiver_module(name: &str, target: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut module = format!(
        "[[module]]\nname = \"{name}\"\npath = \"webhook.wasm\"\nallowed_hosts = [\"127.0.0.1\"]\n\
         [module.params]\nWebhookURL = \"{url}\"\nTarget = \"{target}\"\n"
    );
    for (param, value) in params {
        module.push_str(&format!("{param} = \"{value}\"\n"));
    }
    module
}

/// `n` server alerts whose context names an address, a file and a link.
fn alerts_with_context(n: usize, prefix: &str) -> String {
    (0..n)
        .map(|i| {
            json!({"_Source": "Server.Internal.Alerts", "client_id": "server", "name": format!("Alert {prefix}-{i}"),
                   "artifact": "Server.Monitor.Dropper", "timestamp": "2026-05-10T08:00:00Z",
                   "event_data": {"Severity": "high", "RemoteAddress": format!("203.0.113.{}", i + 1),
                                  "OSPath": format!("/tmp/dropper-{i}.elf"), "Via": "https://evil.example.net/x"},
                   "_ts": 1_778_400_000 + i})
            .to_string()
                + "\n"
        })
        .collect()
}

/// The bodies of the requests a stand-in accepted with `status`.
fn accepted(peer: &HttpPeer, status: u64) -> Vec<Value> {
    peer.requests()
        .iter()
        .filter(|r| r["status"] == status)
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect()
}

/// What the `module`'s webhooks were in a replay of `rows`, by `field` of
/// their bodies.
fn replayed(config: &Path, rows: &str, module: &str, field: &str, name: &str) -> Vec<String> {
    let dir = config.parent().unwrap();
    let (events, out) = (dir.join(format!("{name}.jsonl")), dir.join(name));
    std::fs::write(&events, rows).unwrap();
    super::replay(config, &events, &out);
    velonotify_test_support::jsonl(&out.join("actions.jsonl"))
        .iter()
        .filter(|a| a["module"] == module)
        .map(|a| {
            assert!(
                a["headers"].to_string().contains("(not shown)") || !a["headers"].to_string().contains("Authorization"),
                "credentials stay out of actions.jsonl: {a}"
            );
            let body: Value = serde_json::from_str(a["body"].as_str().unwrap()).unwrap();
            body[field].as_str().unwrap().to_string()
        })
        .collect()
}

/// TheHive 5 gets one alert per Velociraptor alert, over HTTPS checked
/// against the configured CA, its API key as a Bearer token, observables
/// taken from the context; a 503 is retried; a key TheHive refuses is
/// dead-lettered with TheHive's reason, not retried, and shown nowhere.
/// `sourceRef` is the same in two replays; the same rows run again on a
/// fresh store (as when TheHive's answer was lost to a crash, or another
/// host sent them) find their alerts already there: delivered, not dead,
/// and TheHive holds each alert once.
#[test]
fn thehive_gets_each_alert_once_over_verified_tls_with_stable_source_refs() {
    const KEY: &str = "hive-api-key-0123456789";
    const WRONG: &str = "stolen-or-stale-key-42";
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let hive = HttpPeer::vendor_with(dir.path(), "thehive", "503,200", Some(&cert), &["--api-key", KEY]);
    let other = HttpPeer::vendor_with(dir.path(), "thehive", "200", Some(&cert), &["--api-key", KEY]);
    let url = |peer: &HttpPeer| format!("https://127.0.0.1:{}", peer.port);
    let modules = receiver_module("hive", "thehive", &url(&hive), &[("ApiKey", KEY)])
        + &receiver_module("stale", "thehive", &url(&other), &[("ApiKey", WRONG)]);
    let trust = format!("webhook_root_ca = \"{}\"", cert.cert.display());
    let config = config_with_delivery(dir.path(), free_port(), &cert, &trust, &modules);
    let rows = alerts_with_context(2, "hive");
    let output = run(&config, &rows);

    let statuses: Vec<u64> = hive.requests().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 201, 201], "the first retried");
    let alerts = accepted(&hive, 201);
    let request = &hive.requests()[1];
    assert_eq!(request["path"], "/api/v1/alert");
    assert_eq!(request["headers"]["authorization"], format!("Bearer {KEY}"));
    let mut refs: Vec<String> = alerts
        .iter()
        .map(|a| a["sourceRef"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(refs[0], refs[1]);
    let first = alerts
        .iter()
        .find(|a| a["title"] == "Alert hive-0 on velociraptor-server")
        .unwrap();
    assert_eq!(first["severity"], 3);
    let observed: Vec<String> = first["observables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| format!("{}:{}", o["dataType"].as_str().unwrap(), o["data"].as_str().unwrap()))
        .collect();
    assert_eq!(
        observed,
        [
            "ip:203.0.113.1",
            "filename:dropper-0.elf",
            "url:https://evil.example.net/x",
            "domain:evil.example.net"
        ]
    );
    assert_eq!(outbox_list(&config, "sent").lines().count() - 2, 2);
    let stale: Vec<u64> = other.requests().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(stale, [401, 401], "refused, not retried");
    let dead = outbox_list(&config, "dead");
    assert_eq!(dead.lines().count() - 2, 2, "{dead}");
    let log = stderr(&output);
    assert!(log.contains("AuthenticationError"), "TheHive's reason: {log}");
    let check = super::velonotify(&["check", "-c", &config.display().to_string()]);
    let shown = [log, dead, String::from_utf8_lossy(&check.stdout).into_owned()].concat();
    assert!(
        !shown.contains(KEY) && !shown.contains(WRONG),
        "keys are shown nowhere: {shown}"
    );

    // Two replays make the references TheHive got.
    refs.sort();
    for name in ["first", "second"] {
        let mut replayed = replayed(&config, &rows, "hive", "sourceRef", name);
        replayed.sort();
        assert_eq!(replayed, refs, "{name} replay");
    }

    // The same rows from a fresh store: already in TheHive, so delivered.
    let again = dir.path().join("again");
    std::fs::create_dir(&again).unwrap();
    let modules = receiver_module("hive", "thehive", &url(&hive), &[("ApiKey", KEY)]);
    let config = config_with_delivery(&again, free_port(), &cert, &trust, &modules);
    run(&config, &rows);
    let statuses: Vec<u64> = hive.requests().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 201, 201, 400, 400], "TheHive refused the duplicates");
    assert_eq!(accepted(&hive, 201).len(), 2, "each alert once in TheHive");
    assert_eq!(outbox_list(&config, "sent").lines().count() - 2, 2);
    assert_eq!(outbox_list(&config, "dead").lines().count() - 2, 0);
}

/// Without the CA configured, TheHive's certificate does not verify: the
/// alert is dead-lettered as a TLS failure, never sent in the clear.
#[test]
fn thehive_behind_an_unknown_ca_is_a_tls_failure() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let hive = HttpPeer::vendor_with(dir.path(), "thehive", "200", Some(&cert), &[]);
    let url = format!("https://127.0.0.1:{}", hive.port);
    let config = config(
        dir.path(),
        free_port(),
        &cert,
        &receiver_module("hive", "thehive", &url, &[("ApiKey", "k")]),
    );
    run(&config, &alerts_with_context(1, "tls"));
    assert!(hive.requests().is_empty());
    assert!(outbox_list(&config, "dead").contains("TLS failure"));
}

/// DFIR-IRIS gets an alert per alert in the configured customer, with the
/// observables in its context; a 503 is retried, an unknown key refused
/// and dead-lettered with IRIS's reason.
#[test]
fn iris_gets_alerts_in_the_customer_with_their_observables() {
    const KEY: &str = "iris-key-abcdef";
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let iris = HttpPeer::vendor_with(dir.path(), "iris", "503,200", None, &["--api-key", KEY]);
    let refusing = HttpPeer::vendor_with(dir.path(), "iris", "200", None, &["--api-key", KEY]);
    let url = |peer: &HttpPeer| format!("http://127.0.0.1:{}/", peer.port);
    let modules = receiver_module("iris", "iris", &url(&iris), &[("ApiKey", KEY), ("CustomerId", "2")])
        + &receiver_module("stale", "iris", &url(&refusing), &[("ApiKey", "old")]);
    let config = config(dir.path(), free_port(), &cert, &modules);
    let output = run(&config, &alerts_with_context(2, "iris"));

    let statuses: Vec<u64> = iris.requests().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 200, 200]);
    assert_eq!(iris.requests()[1]["path"], "/alerts/add");
    let alerts = accepted(&iris, 200);
    let alert = alerts
        .iter()
        .find(|a| a["alert_title"] == "Alert iris-1 on velociraptor-server")
        .unwrap();
    assert_eq!(alert["alert_customer_id"], 2);
    assert_eq!(alert["alert_severity_id"], 5, "high");
    assert_eq!(alert["alert_status_id"], 2, "new");
    assert_eq!(alert["alert_context"]["observables"]["ip"], json!(["203.0.113.2"]));
    assert_ne!(alerts[0]["alert_source_ref"], alerts[1]["alert_source_ref"]);
    assert_eq!(refusing.requests().len(), 2, "not retried");
    assert_eq!(outbox_list(&config, "dead").lines().count() - 2, 2);
    assert!(
        stderr(&output).contains("Authentication required"),
        "{}",
        stderr(&output)
    );
}

/// Splunk's HTTP Event Collector gets one event per alert in the
/// configured index with its token; a 503 is retried; an index the token
/// may not write is refused ("Incorrect index") and dead-lettered.
#[test]
fn splunk_hec_gets_events_in_the_configured_index() {
    const TOKEN: &str = "12345678-1234-1234-1234-1234567890ab";
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let options = ["--api-key", TOKEN, "--indexes", "dfir"];
    let hec = HttpPeer::vendor_with(dir.path(), "splunk-hec", "503,200", None, &options);
    let misplaced = HttpPeer::vendor_with(dir.path(), "splunk-hec", "200", None, &options);
    let url = |peer: &HttpPeer| format!("http://127.0.0.1:{}", peer.port);
    let modules = receiver_module(
        "siem",
        "splunk-hec",
        &url(&hec),
        &[("ApiKey", TOKEN), ("Index", "dfir")],
    ) + &receiver_module(
        "misplaced",
        "splunk-hec",
        &url(&misplaced),
        &[("ApiKey", TOKEN), ("Index", "main")],
    );
    let config = config(dir.path(), free_port(), &cert, &modules);
    let output = run(&config, &alerts_with_context(2, "hec"));

    let statuses: Vec<u64> = hec.requests().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 200, 200]);
    let request = &hec.requests()[1];
    assert_eq!(request["path"], "/services/collector/event");
    assert_eq!(request["headers"]["authorization"], format!("Splunk {TOKEN}"));
    let events = accepted(&hec, 200);
    let event = events.iter().find(|e| e["event"]["name"] == "Alert hec-0").unwrap();
    assert_eq!(event["index"], "dfir");
    assert_eq!(event["sourcetype"], "velociraptor:alert");
    assert_eq!(event["source"], "velociraptor:Server.Monitor.Dropper");
    assert_eq!(event["host"], "velociraptor-server");
    assert_eq!(event["time"], 1_778_400_000.0);
    assert!(
        event["event"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Alert: Alert hec-0 |")
    );
    assert_eq!(misplaced.requests().len(), 2, "not retried");
    assert!(stderr(&output).contains("Incorrect index"), "{}", stderr(&output));
    assert!(!stderr(&output).contains(TOKEN));
}

/// Discord gets the text with mentions turned off and Markdown escaped,
/// 204 as Discord answers; a 503 is retried; a webhook whose token
/// Discord does not know is refused and dead-lettered.
#[test]
fn discord_gets_inert_text_and_its_refusals_are_dead_lettered() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let discord = HttpPeer::vendor_with(dir.path(), "discord", "503,200", None, &["--api-key", "hook-token"]);
    let url = |token: &str| format!("http://127.0.0.1:{}/api/webhooks/1234/{token}", discord.port);
    let template = ("Template", "{name} {event_data.Via}");
    let modules = receiver_module("discord", "discord", &url("hook-token"), &[template])
        + &receiver_module("revoked", "discord", &url("revoked-token"), &[template]);
    let config = config(dir.path(), free_port(), &cert, &modules);
    let rows = alerts(1, "@everyone").replace("\"event_data\":{\"n\":0}", "\"event_data\":{\"Via\":\"**bold**\"}");
    let output = run(&config, &rows);

    let requests = discord.requests();
    let ours: Vec<u64> = requests
        .iter()
        .filter(|r| r["path"].as_str().unwrap().ends_with("/hook-token"))
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    let revoked = requests.len() - ours.len();
    assert!(ours == [204] || ours == [503, 204], "retried until taken: {requests:?}");
    assert!(
        revoked == 1 || (revoked == 2 && ours == [204]),
        "refused once: {requests:?}"
    );
    let message = accepted(&discord, 204).remove(0);
    assert_eq!(message["allowed_mentions"], json!({"parse": []}));
    assert_eq!(message["content"], "Alert @\u{200B}everyone-0000 \\*\\*bold\\*\\*");
    assert_eq!(outbox_list(&config, "dead").lines().count() - 2, 1);
    assert!(stderr(&output).contains("401"), "{}", stderr(&output));
}

/// Telegram's Bot API gets the text as plain text in the configured chat,
/// at the bot's address; a 503 is retried; a revoked bot token is refused
/// ("Unauthorized") and dead-lettered, the token not shown.
#[test]
fn telegram_gets_plain_text_in_the_chat() {
    const TOKEN: &str = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let telegram = HttpPeer::vendor_with(dir.path(), "telegram", "503,200", None, &["--api-key", TOKEN]);
    let revoked = HttpPeer::vendor_with(dir.path(), "telegram", "200", None, &["--api-key", TOKEN]);
    let url = |peer: &HttpPeer, token: &str| format!("http://127.0.0.1:{}/bot{token}", peer.port);
    let modules = receiver_module(
        "telegram",
        "telegram",
        &url(&telegram, TOKEN),
        &[("ChatId", "-1001234567890")],
    ) + &receiver_module(
        "revoked",
        "telegram",
        &url(&revoked, "654321:revokedrevokedrevokedrevokedrevoked"),
        &[("ChatId", "@soc")],
    );
    let config = config(dir.path(), free_port(), &cert, &modules);
    let output = run(&config, &alerts(1, "<b>tg</b> & co"));

    let statuses: Vec<u64> = telegram
        .requests()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [503, 200]);
    assert_eq!(telegram.requests()[1]["path"], format!("/bot{TOKEN}/sendMessage"));
    let message = accepted(&telegram, 200).remove(0);
    assert_eq!(message["chat_id"], "-1001234567890");
    assert!(message.get("parse_mode").is_none());
    assert!(
        message["text"]
            .as_str()
            .unwrap()
            .starts_with("Alert: Alert <b>tg</b> & co-0000 |"),
        "as written: {message}"
    );
    assert_eq!(revoked.requests().len(), 1);
    let log = stderr(&output);
    assert!(log.contains("Unauthorized"), "{log}");
    assert!(
        !log.contains(TOKEN) && !outbox_list(&config, "dead").contains("revokedrevoked"),
        "{log}"
    );
}

// ---- syslog ------------------------------------------------------------------

/// A real rsyslogd receives a record of every notification: RFC 5424 over
/// TCP with the labels as structured data, CEF over TLS verified against
/// the configured CA, each octet-counted, so a name holding a line break,
/// quotes and brackets stays one record and parses. A TLS receiver whose
/// certificate does not verify gets nothing, and its records are
/// dead-lettered as TLS failures.
#[test]
fn rsyslog_receives_rfc5424_and_cef_records_over_tcp_and_tls() {
    let dir = scratch();
    let cert = TestCertificate::generate(dir.path());
    let rsyslog = RsyslogPeer::started(&dir.path().join("rsyslog"), &cert);
    let http = HttpPeer::started(dir.path(), "200", None);
    let hook = format!("http://127.0.0.1:{}/hook", http.port);
    let modules = receiver_module("hook", "json", &hook, &[]);
    let receivers = format!(
        "[[syslog]]\nname = \"siem\"\naddress = \"127.0.0.1:{tcp}\"\n\
         [[syslog]]\nname = \"arcsight\"\naddress = \"127.0.0.1:{tls}\"\ntransport = \"tls\"\nformat = \"cef\"\n\
         root_ca = \"{ca}\"\nfacility = \"local4\"\n\
         [[syslog]]\nname = \"siem-tls\"\naddress = \"127.0.0.1:{tls}\"\ntransport = \"tls\"\nroot_ca = \"{ca}\"\n\
         [[syslog]]\nname = \"arcsight-tcp\"\naddress = \"127.0.0.1:{tcp}\"\nformat = \"cef\"\n\
         [[syslog]]\nname = \"unverified\"\naddress = \"127.0.0.1:{tls}\"\ntransport = \"tls\"\n",
        tcp = rsyslog.tcp_port,
        tls = rsyslog.tls_port,
        ca = cert.cert.display()
    );
    let config = config(dir.path(), free_port(), &cert, &(modules + &receivers));
    let hostile = json!({"_Source": "Server.Internal.Alerts", "client_id": "C.1", "name": "Bad \"name\"]\nx|y=z",
                         "artifact": "Custom.Evil", "timestamp": "2026-05-10T08:00:00Z",
                         "event_data": {"Severity": "critical"}, "_ts": 1_778_400_009});
    let rows = alerts(2, "sys") + &hostile.to_string() + "\n";
    run(&config, &rows);

    let records = rsyslog.received(12, Duration::from_secs(20));
    assert_eq!(records.len(), 12, "{records:?}\n{}", rsyslog.internal_log());
    let of = |input: &str, cef: bool| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["input"] == input && r["msg"].as_str().unwrap().starts_with("CEF:") == cef)
            .collect()
    };
    for (input, cef) in [("tcp", false), ("tcp", true), ("tls", false), ("tls", true)] {
        assert_eq!(of(input, cef).len(), 3, "{input}, CEF {cef}: {records:?}");
    }
    let (plain, tls) = (of("tcp", false), of("tls", true));
    assert_eq!(
        of("tls", false)[0]["sd"].as_str().unwrap().get(..17),
        Some("[velonotify@32473")
    );
    for record in &records {
        assert_eq!(record["ver"], "1", "parsed as RFC 5424: {record}");
        assert_eq!(record["app"], "velonotify");
        assert_eq!(record["msgid"], "hook");
    }
    let first = plain
        .iter()
        .find(|r| r["msg"].as_str().unwrap().contains("sys-0000"))
        .unwrap();
    assert_eq!(first["pri"], "132", "local0.warning: {first}");
    let sd = first["sd"].as_str().unwrap();
    assert!(
        sd.starts_with("[velonotify@32473 ") && sd.contains("alertname=\"Alert sys-0000\""),
        "{sd}"
    );
    let bad = plain
        .iter()
        .find(|r| r["sd"].as_str().unwrap().contains("Custom.Evil"))
        .unwrap();
    assert_eq!(bad["pri"], "130", "local0.crit: {bad}");
    assert!(
        bad["sd"]
            .as_str()
            .unwrap()
            .contains(r#"alertname="Bad \"name\"\] x|y=z""#),
        "escaped, one line: {bad}"
    );
    let cef = tls
        .iter()
        .find(|r| r["msg"].as_str().unwrap().contains("Custom.Evil"))
        .unwrap();
    let msg = cef["msg"].as_str().unwrap();
    assert!(msg.starts_with("CEF:0|Velocidex|Velociraptor|velonotify "), "{msg}");
    assert!(msg.contains("|Custom.Evil|Bad \"name\"] x\\|y=z|10|"), "{msg}");
    assert!(msg.contains("cs1Label=client_id cs1=C.1"), "{msg}");
    assert_eq!(cef["pri"], "162", "local4.crit");
    assert_eq!(http.requests().len(), 3, "the notifications went too");

    let dead = outbox_list(&config, "dead");
    assert_eq!(dead.lines().count() - 2, 3, "{dead}");
    assert!(
        dead.contains("TLS failure") && dead.contains("syslog unverified"),
        "{dead}"
    );
    let sent = outbox_list(&config, "sent");
    assert_eq!(sent.lines().filter(|l| l.contains("syslog ")).count(), 12, "{sent}");
}
