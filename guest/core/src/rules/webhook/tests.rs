//! The Webhook module: texts and escaping per target, Clients.Online's
//! watch list, Clients.Enrolled.

use serde_json::{Value, json};

use super::*;
use crate::rules::configure;
use crate::testing::FakeHost;

const T0: u64 = 1_778_400_000;
const SLACK: &str = "https://hooks.slack.com/services/T000/B000/XXXX";

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn rule(pairs: &[(&str, &str)], host: &FakeHost) -> WebhookRule {
    configure::<WebhookRule>(&params(pairs), host).expect("configures").0
}

fn event(queue: &str, row: Value) -> Event {
    Event {
        id: "e".into(),
        queue: queue.into(),
        row: row.as_object().unwrap().clone(),
        org_id: "root".into(),
    }
}

fn bodies(actions: &[Action]) -> Vec<Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Webhook(w) => Some(serde_json::from_slice(&w.body).unwrap()),
            _ => None,
        })
        .collect()
}

fn host() -> FakeHost {
    let mut host = FakeHost::new(json!({"clients": {
        "C.1": {"client_id": "C.1", "os_info": {"hostname": "ws1", "fqdn": "ws1.corp.example"}, "labels": ["Slack"],
                "first_seen_at": T0 - 30, "last_seen_at": (T0 - 20) * 1_000_000},
        "C.2": {"client_id": "C.2", "os_info": {"hostname": "ws2", "fqdn": "ws2.corp.example"}, "labels": ["Slack"],
                "first_seen_at": T0 - 86400, "last_seen_at": (T0 - 3600) * 1_000_000},
        "C.3": {"client_id": "C.3", "os_info": {"fqdn": "ws3.corp.example"}, "labels": [], "last_seen_at": T0 * 1_000_000},
    }}));
    host.now_us = T0 * 1_000_000;
    host
}

fn alert_row(name: &str, data: Value) -> Value {
    json!({"client_id": "C.1", "name": name, "timestamp": "2026-05-10T08:00:00Z", "event_data": data,
           "artifact": "Linux.Detection.Honeyfiles", "artifact_type": "CLIENT_EVENT"})
}

#[test]
fn alerts_post_the_server_alerts_notification_text_to_slack() {
    let host = host();
    let actions = rule(&[("WebhookURL", SLACK)], &host)
        .handle(
            &event(
                ALERT_QUEUE,
                alert_row("Honey file accessed", json!({"File": "/etc/shadow"})),
            ),
            &host,
        )
        .unwrap();
    let Action::Webhook(hook) = &actions[0] else { panic!() };
    assert_eq!(hook.url, SLACK);
    assert_eq!(
        hook.headers,
        [("Content-Type".to_string(), "application/json".to_string())]
    );
    assert_eq!(
        bodies(&actions)[0],
        json!({"text": "Alert: Honey file accessed | Details: {\"File\":\"/etc/shadow\"} | Artifact: Linux.Detection.Honeyfiles | ClientId: C.1 | Timestamp: 2026-05-10T08:00:00Z"})
    );
}

#[test]
fn slack_values_cannot_add_markup_or_mention_the_channel() {
    let host = host();
    let actions = rule(&[("WebhookURL", SLACK), ("Template", "{name}")], &host)
        .handle(
            &event(
                ALERT_QUEUE,
                alert_row("<!channel> <https://evil.example|click> & more", json!({})),
            ),
            &host,
        )
        .unwrap();
    assert_eq!(
        bodies(&actions)[0]["text"],
        json!("&lt;!channel&gt; &lt;https://evil.example|click&gt; &amp; more")
    );
}

#[test]
fn mattermost_and_teams_escape_markdown_and_mentions() {
    let host = host();
    let row = alert_row("@channel **urgent** [x](https://evil.example) C:\\tmp", json!({}));
    let mm = rule(
        &[
            ("WebhookURL", "https://mm.example/hooks/abc"),
            ("Target", "mattermost"),
            ("Template", "{name}"),
        ],
        &host,
    )
    .handle(&event(ALERT_QUEUE, row.clone()), &host)
    .unwrap();
    assert_eq!(
        bodies(&mm)[0]["text"],
        json!("@\u{200B}channel \\*\\*urgent\\*\\* \\[x\\]\\(https://evil.example\\) C:\\\\tmp")
    );
    let teams = |target: &str| {
        let actions = rule(
            &[
                ("WebhookURL", "https://corp.webhook.office.com/x"),
                ("Target", target),
                ("Template", "Alert: {name}"),
            ],
            &host,
        )
        .handle(&event(ALERT_QUEUE, row.clone()), &host)
        .unwrap();
        bodies(&actions).remove(0)
    };
    let legacy = teams("teams-legacy");
    assert_eq!(legacy["@type"], json!("MessageCard"));
    assert!(
        legacy["text"]
            .as_str()
            .unwrap()
            .starts_with("Alert: @\u{200B}channel \\*\\*urgent")
    );
    let card = teams("teams");
    let text = &card["attachments"][0]["content"]["body"][0]["text"];
    assert!(
        text.as_str()
            .unwrap()
            .starts_with("Alert: @\u{200B}channel \\*\\*urgent"),
        "{card}"
    );
}

/// Teams Workflows webhooks take an Adaptive Card in a message attachment
/// and refuse the connectors' MessageCard.
#[test]
fn teams_gets_an_adaptive_card_in_a_message() {
    let host = host();
    let actions = rule(
        &[
            (
                "WebhookURL",
                "https://x.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sig=a",
            ),
            ("Target", "teams"),
        ],
        &host,
    )
    .handle(&event(ALERT_QUEUE, alert_row("Honey", json!({}))), &host)
    .unwrap();
    let body = bodies(&actions).remove(0);
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    assert_eq!(attachment["content"]["version"], "1.4");
    let block = &attachment["content"]["body"][0];
    assert_eq!(
        (block["type"].as_str(), block["wrap"].as_bool()),
        (Some("TextBlock"), Some(true))
    );
    assert!(block["text"].as_str().unwrap().contains("Honey"), "{body}");
}

#[test]
fn json_targets_get_the_text_and_the_alert_row() {
    let host = host();
    let row = alert_row("Honey", json!({"File": "/etc/shadow"}));
    let actions = rule(
        &[
            ("WebhookURL", "https://soar.example/in"),
            ("Target", "json"),
            ("Template", "{name} on {hostname}: {event_data.File}"),
        ],
        &host,
    )
    .handle(&event(ALERT_QUEUE, row.clone()), &host)
    .unwrap();
    assert_eq!(
        bodies(&actions)[0],
        json!({"text": "Honey on ws1: /etc/shadow", "data": row})
    );
}

#[test]
fn templates_and_addresses_are_checked_when_configured() {
    let host = host();
    let err = configure::<WebhookRule>(&params(&[("WebhookURL", SLACK), ("Template", "{nmae}")]), &host).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("parameter Template: unknown field {nmae} (known: {name}"),
        "{err}"
    );
    let err = configure::<WebhookRule>(&params(&[]), &host).unwrap_err();
    assert!(
        err.to_string()
            .contains("parameter WebhookURL: set WebhookURL (or SlackToken)"),
        "{err}"
    );
    let err = configure::<WebhookRule>(&params(&[("SlackToken", "xoxb-123")]), &host).unwrap_err();
    assert!(
        err.to_string()
            .contains("parameter SlackToken: \"xoxb-123\" is not an http(s) address"),
        "{err}"
    );
    assert!(
        configure::<WebhookRule>(&params(&[("SlackToken", SLACK)]), &host).is_ok(),
        "the Slack artifacts' name"
    );
}

#[test]
fn each_receiver_says_which_of_its_settings_is_missing() {
    let host = host();
    let refused = |pairs: &[(&str, &str)]| {
        configure::<WebhookRule>(&params(pairs), &host)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    fn hive<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut pairs = vec![("WebhookURL", "https://hive.corp:9000"), ("Target", "thehive")];
        pairs.extend_from_slice(extra);
        pairs
    }
    assert!(refused(&hive(&[])).contains("parameter ApiKey: this Target needs the API key"));
    assert!(
        refused(&[("Target", "pagerduty"), ("RoutingKey", "k")]).contains("https://events.pagerduty.com/v2/enqueue")
    );
    assert!(
        refused(&[
            ("Target", "telegram"),
            ("WebhookURL", "https://api.telegram.org/bot1:x")
        ])
        .contains("parameter ChatId")
    );
    assert!(
        refused(&[("Target", "splunk-hec"), ("WebhookURL", "https://hec:8088")])
            .contains("HTTP Event Collector's token")
    );
    assert!(
        refused(&[
            ("Target", "iris"),
            ("WebhookURL", "https://iris"),
            ("ApiKey", "k"),
            ("CustomerId", "0")
        ])
        .contains("parameter CustomerId")
    );
    assert!(configure::<WebhookRule>(&params(&hive(&[("ApiKey", "k")])), &host).is_ok());
}

/// Case management and SIEM receivers get their API's endpoint under the
/// server's address, and their credential in the header they take.
#[test]
fn thehive_iris_and_splunk_get_their_endpoint_and_authorization() {
    let host = host();
    let row = alert_row("Honey", json!({"Severity": "high", "OSPath": "/etc/shadow"}));
    for (target, url, endpoint, scheme) in [
        (
            "thehive",
            "https://hive.corp:9000/",
            "https://hive.corp:9000/api/v1/alert",
            "Bearer",
        ),
        ("iris", "https://iris.corp", "https://iris.corp/alerts/add", "Bearer"),
        (
            "splunk-hec",
            "https://hec.corp:8088",
            "https://hec.corp:8088/services/collector/event",
            "Splunk",
        ),
    ] {
        let actions = rule(&[("WebhookURL", url), ("Target", target), ("ApiKey", "s3cret")], &host)
            .handle(&event(ALERT_QUEUE, row.clone()), &host)
            .unwrap();
        let Action::Webhook(hook) = &actions[0] else {
            panic!("{actions:?}")
        };
        assert_eq!(hook.url, endpoint);
        assert!(
            hook.headers
                .contains(&("Authorization".into(), format!("{scheme} s3cret"))),
            "{target}: {:?}",
            hook.headers
        );
    }
}

#[test]
fn discord_cannot_be_made_to_mention_and_telegram_gets_plain_text() {
    let host = host();
    let row = alert_row("@everyone <@123> **bold** & co", json!({}));
    let template = ("Template", "{name}");
    let discord = rule(
        &[
            ("WebhookURL", "https://discord.com/api/webhooks/1/x"),
            ("Target", "discord"),
            template,
        ],
        &host,
    )
    .handle(&event(ALERT_QUEUE, row.clone()), &host)
    .unwrap();
    assert_eq!(
        bodies(&discord)[0],
        json!({"content": "@\u{200B}everyone \\<@\u{200B}123\\> \\*\\*bold\\*\\* & co", "allowed_mentions": {"parse": []}})
    );
    let telegram = rule(
        &[
            ("WebhookURL", "https://api.telegram.org/bot1:x"),
            ("Target", "telegram"),
            ("ChatId", "-100200"),
            template,
        ],
        &host,
    );
    assert_eq!(telegram.url, "https://api.telegram.org/bot1:x/sendMessage");
    let actions = telegram.clone().handle(&event(ALERT_QUEUE, row), &host).unwrap();
    assert_eq!(bodies(&actions)[0]["text"], "@everyone <@123> **bold** & co");
    assert_eq!(bodies(&actions)[0]["chat_id"], "-100200");
}

#[test]
fn alert_names_are_filtered() {
    let host = host();
    let mut r = rule(&[("WebhookURL", SLACK), ("AlertMsgExclude", "^test")], &host);
    assert!(
        r.handle(&event(ALERT_QUEUE, alert_row("TEST alert", json!({}))), &host)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn clients_online_announces_once_removes_the_label_and_waits_for_it() {
    let mut host = host();
    let mut r = rule(&[("Mode", "ClientsOnline"), ("SlackToken", SLACK)], &host);
    let first = r.tick(&host).unwrap();
    assert_eq!(
        bodies(&first),
        [json!({"text": "Client ws1.corp.example (C.1) has appeared online 20 seconds ago"})],
        "C.2 was seen an hour ago"
    );
    assert_eq!(
        first[1],
        Action::Label(LabelChange {
            client_id: "C.1".into(),
            op: LabelOp::Remove,
            labels: vec!["Slack".into()]
        })
    );
    assert!(
        r.tick(&host).unwrap().is_empty(),
        "not announced again while the removal is pending"
    );

    // The server removed the label; later an analyst watches C.1 again.
    host.world["clients"]["C.1"]["labels"] = json!([]);
    assert!(r.tick(&host).unwrap().is_empty());
    host.world["clients"]["C.1"]["labels"] = json!(["slack"]);
    host.now_us += 600 * 1_000_000;
    host.world["clients"]["C.1"]["last_seen_at"] = json!(host.now_us - 5_000_000);
    assert_eq!(
        bodies(&r.tick(&host).unwrap()).len(),
        1,
        "announced again after it came back on the watch list"
    );
}

#[test]
fn clients_online_ticks_every_period() {
    let host = host();
    let (_, setup) = configure::<WebhookRule>(
        &params(&[("Mode", "ClientsOnline"), ("SlackToken", SLACK), ("Period", "30")]),
        &host,
    )
    .unwrap();
    assert_eq!(setup.tick_seconds, Some(30));
    assert!(setup.queues.is_empty());
}

#[test]
fn clients_enrolled_announces_new_clients_after_their_interrogation() {
    let host = host();
    let mut r = rule(&[("Mode", "ClientsEnrolled"), ("SlackToken", SLACK)], &host);
    let completion = |client: &str, with_results: Value| {
        event(
            FLOW_COMPLETION_QUEUE,
            json!({"ClientId": client, "FlowId": "F.1", "Timestamp": T0,
                                            "Flow": {"artifacts_with_results": with_results}}),
        )
    };
    let info = json!(["Generic.Client.Info/BasicInformation", "Generic.Client.Info/Users"]);
    assert_eq!(
        bodies(&r.handle(&completion("C.1", info.clone()), &host).unwrap()),
        [json!({"text": "Enrollment FROM ws1.corp.example with ClientID C.1!"})]
    );
    assert!(
        r.handle(&completion("C.2", info), &host).unwrap().is_empty(),
        "first seen a day ago"
    );
    assert!(
        r.handle(&completion("C.1", json!(["Windows.Sys.Users"])), &host)
            .unwrap()
            .is_empty()
    );
}

fn flow_completion(flow_id: &str, state: &str, artifacts: &[&str]) -> Event {
    event(
        FLOW_COMPLETION_QUEUE,
        json!({"ClientId": "C.1", "FlowId": flow_id, "Timestamp": T0,
               "Flow": {"state": state, "status": if state == "ERROR" { "Query timed out" } else { "" },
                        "request": {"artifacts": artifacts, "creator": "ann"}, "total_collected_rows": 12}}),
    )
}

/// FlowCompletion mode posts each finished or failed collection, filtered
/// as the FlowCompletion e-mails are; a failure pages as an error, a
/// finished collection as information, with its collection as the link.
#[test]
fn flow_completion_mode_posts_collections_as_the_e_mails_would_be_sent() {
    let host = host();
    let mut slack = rule(&[("Mode", "FlowCompletion"), ("SlackToken", SLACK)], &host);
    assert_eq!(
        bodies(
            &slack
                .handle(&flow_completion("F.1", "FINISHED", &["Windows.Sys.Users"]), &host)
                .unwrap()
        ),
        [json!({"text": "Collection FINISHED on ws1 (C.1): Windows.Sys.Users | Flow: F.1 | "})]
    );
    for skipped in [
        flow_completion("F.2", "FINISHED", &["Generic.Client.Info"]),
        flow_completion("F.3.H", "FINISHED", &["Windows.Sys.Users"]),
    ] {
        assert!(slack.handle(&skipped, &host).unwrap().is_empty(), "{skipped:?}");
    }
    let mut pager = rule(
        &[
            ("Mode", "FlowCompletion"),
            ("Target", "pagerduty"),
            ("WebhookURL", "https://events.pagerduty.com/v2/enqueue"),
            ("RoutingKey", "R0123456789abcdef0123456789abcdef"),
        ],
        &host,
    );
    let failed = bodies(
        &pager
            .handle(&flow_completion("F.4", "ERROR", &["Windows.Sys.Users"]), &host)
            .unwrap(),
    );
    assert_eq!(failed[0]["payload"]["severity"], "error");
    assert_eq!(failed[0]["payload"]["class"], "Collection failed: Windows.Sys.Users");
    assert!(
        failed[0]["links"][0]["href"].as_str().unwrap().contains("F.4"),
        "the collection in the GUI: {}",
        failed[0]
    );
    let finished = bodies(
        &pager
            .handle(&flow_completion("F.5", "FINISHED", &["Windows.Sys.Users"]), &host)
            .unwrap(),
    );
    assert_eq!(finished[0]["payload"]["severity"], "info");
}
