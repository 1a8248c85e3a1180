//! The error monitors against docs/velociraptor.md §8.2 (every rule of the
//! filter model), §8.4 (the alert), §9 (the client variant's label
//! scoping), and the cursor that replaces the sliding window of §8.3.

use serde_json::{Value, json};

use super::*;
use crate::rules::configure;
use crate::testing::{FakeHost, alert_context as context, tick_alerts as alerts};

const T0: u64 = 1_778_400_000; // seconds
const MS: u64 = 1000;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn server_line(at_s: u64, level: &str, message: &str) -> Value {
    json!({"Timestamp": "2026-05-10 08:00:00 +0000 UTC", "Level": level, "Message": message, "_ts": at_s * MS})
}

fn client_line(at_s: u64, level: &str, message: &str) -> Value {
    json!({"client_time": T0, "level": level, "message": message, "_ts": at_s * MS})
}

/// A host at T0 + 60 with two server event artifacts.
fn server_host(logs: Value) -> FakeHost {
    let mut host = FakeHost::new(json!({
        "event_tables": {"server": {"specs": [{"artifact": "Custom.Server.Upload.S3"}, {"artifact": "Server.Monitor.Alerts"},
                                              {"artifact": "Server.Monitor.Health"}]}},
        "monitoring_logs": {"server": logs},
    }));
    host.now_us = (T0 + 60) * 1_000_000;
    host
}

fn server_rule(pairs: &[(&str, &str)], host: &FakeHost) -> ServerErrorsRule {
    configure::<ServerErrorsRule>(&params(pairs), host).unwrap().0
}

#[test]
fn an_error_line_raises_the_documented_alert() {
    let host = server_host(json!({"Custom.Server.Upload.S3": [
        server_line(T0 + 10, "ERROR", "upload_S3: operation error S3: PutObject, AccessDenied\n"),
    ]}));
    let got = alerts(&mut server_rule(&[], &host), &host);
    assert_eq!(got.len(), 1);
    let alert = &got[0];
    assert_eq!(alert.name, "Server event query error in Custom.Server.Upload.S3");
    assert_eq!(alert.dedup_seconds, Some(3600));
    assert_eq!(alert.client_id.as_deref(), Some("server"));
    assert_eq!(alert.artifact.as_deref(), Some("Server.Monitor.Errors.Alert"));
    assert_eq!(alert.artifact_type.as_deref(), Some("SERVER_MONITORING"));
    assert_eq!(
        context(alert),
        json!({"Severity": "medium", "Level": "ERROR", "Error": "upload_S3: operation error S3: PutObject, AccessDenied\n",
               "Log timestamp": "2026-05-10T08:00:00Z (1 minute ago)", "Artifact": "Custom.Server.Upload.S3"})
    );
    let keys: Vec<String> = context(alert).as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        ["Severity", "Level", "Error", "Log timestamp", "Artifact"],
        "the documented order"
    );
}

#[test]
fn rule_8_2_a_row_matches_when_each_cell_is_empty_or_matches() {
    let filter = "Artifact,Level,Message,Severity\nupload,,access ?denied,high\n";
    let host = server_host(json!({
        "Custom.Server.Upload.S3": [server_line(T0 + 10, "DEFAULT", "upload_S3: ACCESSDENIED by policy")],
        "Server.Monitor.Health": [server_line(T0 + 10, "ERROR", "upload failed: access denied")],
    }));
    let got = alerts(&mut server_rule(&[("IncludeFilter", filter)], &host), &host);
    let names: Vec<&str> = got.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        ["Server event query error in Custom.Server.Upload.S3"],
        "Artifact cell excludes Health"
    );
    assert_eq!(
        context(&got[0])["Severity"],
        json!("high"),
        "empty Level matched DEFAULT; case-insensitive Message"
    );
}

#[test]
fn rule_8_2_an_exclude_row_rejects_a_line_the_include_filter_keeps() {
    let exclude = "Artifact,Level,Message\n,,throttled\n";
    let host = server_host(json!({"Custom.Server.Upload.S3": [
        server_line(T0 + 10, "ERROR", "S3 throttled, retrying"),
        server_line(T0 + 20, "ERROR", "S3 unreachable"),
    ]}));
    let got = alerts(&mut server_rule(&[("ExcludeFilter", exclude)], &host), &host);
    assert_eq!(context(&got[0])["Error"], json!("S3 unreachable"));
}

#[test]
fn rule_8_2_the_default_exclude_filter_spares_the_alert_consumers() {
    let host = server_host(json!({"Server.Monitor.Alerts": [server_line(T0 + 10, "ERROR", "mail: Send too fast")]}));
    assert!(alerts(&mut server_rule(&[], &host), &host).is_empty());
}

#[test]
fn rule_8_2_the_first_matching_row_gives_severity_and_extra_columns() {
    let filter = "Artifact,Level,Message,Severity,Explanation,Level2\n\
                  .+,ERROR,S3,high,S3 upload failed,\n\
                  .+,ERROR,.+,medium,Any error,x\n";
    let host = server_host(json!({"Custom.Server.Upload.S3": [server_line(T0 + 10, "ERROR", "S3 denied")]}));
    let got = alerts(&mut server_rule(&[("IncludeFilter", filter)], &host), &host);
    let ctx = context(&got[0]);
    assert_eq!(ctx["Severity"], json!("high"));
    assert_eq!(
        ctx["Explanation"],
        json!("S3 upload failed"),
        "extra columns of the first row"
    );
    assert!(
        ctx.get("Level2").is_none(),
        "extra cells that are exactly empty are left out"
    );
}

#[test]
fn rule_8_4_later_keys_override_extra_columns_of_the_same_name() {
    let rows =
        crate::params::parse_csv_table("Artifact,Level,Message,Severity,Count,Error\n.+,ERROR,.+,high,5,theirs\n")
            .unwrap();
    let filters = filter::LogFilters::from_params(&rows, &[]).unwrap();
    let row = filters.keep("A", "ERROR", "ours").unwrap();
    let line = LogLine {
        level: "ERROR".into(),
        message: "ours".into(),
        time: None,
        written_ms: 0,
    };
    let ctx = alert_context(row, "Severity", "A", &line, Timestamp::zero());
    assert_eq!(ctx["Count"], json!(5), "extra cells are typed like CSV cells");
    assert_eq!(
        ctx["Error"],
        json!("ours"),
        "the entry's message overrides an extra column named Error"
    );
    let keys: Vec<&str> = ctx.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["Severity", "Count", "Error", "Level", "Log timestamp", "Artifact"],
        "keeping its position"
    );
    assert_eq!(ctx["Log timestamp"], json!("(never)"));
}

#[test]
fn severity_field_names_the_context_key_or_turns_it_off() {
    let logs = || json!({"Custom.Server.Upload.S3": [server_line(T0 + 10, "ERROR", "x")]});
    let host = server_host(logs());
    let got = alerts(&mut server_rule(&[("SeverityField", "level")], &host), &host);
    assert_eq!(context(&got[0])["level"], json!("medium"));
    let host = server_host(logs());
    let got = alerts(&mut server_rule(&[("SeverityField", "")], &host), &host);
    assert!(context(&got[0]).get("Severity").is_none());
}

#[test]
fn only_event_table_artifacts_the_include_filter_names_are_read() {
    let filter = "Artifact,Level,Message\n^Custom\\.,,\n";
    let host = server_host(json!({"Server.Monitor.Health": [server_line(T0 + 10, "ERROR", "x")]}));
    let mut rule = server_rule(&[("IncludeFilter", filter)], &host);
    assert!(alerts(&mut rule, &host).is_empty());
    let debug = host.logged(LogLevel::Debug);
    assert_eq!(debug, ["Monitoring event artifact Custom.Server.Upload.S3"]);
}

#[test]
fn the_vql_error_catalogue_works_unchanged_as_include_filter() {
    let catalogue = include_str!("../../../../../tests/data/velociraptor/vql_error_catalogue.IncludeFilter.csv");
    let host = server_host(json!({"Custom.Server.Upload.S3": [
        server_line(T0 + 10, "DEFAULT", "vql: Starting query execution.\n"),
        server_line(T0 + 20, "DEFAULT", "execve: fork/exec /usr/bin/aws: no such file or directory\n"),
    ]}));
    let got = alerts(&mut server_rule(&[("IncludeFilter", catalogue)], &host), &host);
    assert_eq!(got.len(), 1);
    let ctx = context(&got[0]);
    assert_eq!(ctx["Severity"], json!("high"));
    assert_eq!(ctx["Explanation"], json!("Executable not found."));
    assert_eq!(
        ctx["Error"],
        json!("execve: fork/exec /usr/bin/aws: no such file or directory\n")
    );
}

#[test]
fn each_line_is_examined_once_across_ticks_and_restarts() {
    let mut host = server_host(json!({"Custom.Server.Upload.S3": [
        server_line(T0 - 120, "ERROR", "before the first window"),
        server_line(T0 + 10, "ERROR", "first"),
    ]}));
    let mut rule = server_rule(&[], &host);
    let first = alerts(&mut rule, &host);
    assert_eq!(
        context(&first[0])["Error"],
        json!("first"),
        "the first tick looks back one Period, not further"
    );
    assert!(
        alerts(&mut rule, &host).is_empty(),
        "the same line is not examined twice"
    );

    // A restart: a new instance, the same host state.
    host.world["monitoring_logs"]["server"]["Custom.Server.Upload.S3"]
        .as_array_mut()
        .unwrap()
        .push(server_line(T0 + 70, "ERROR", "second"));
    host.now_us = (T0 + 600) * 1_000_000;
    let mut restarted = server_rule(&[], &host);
    let again = alerts(&mut restarted, &host);
    assert_eq!(again.len(), 1);
    assert_eq!(
        context(&again[0])["Error"],
        json!("second"),
        "a line written while down is not skipped"
    );
}

#[test]
fn one_alert_per_artifact_per_tick() {
    let lines: Vec<Value> = (1..=50)
        .map(|i| server_line(T0 + i, "ERROR", &format!("error {i}")))
        .collect();
    let host = server_host(json!({"Custom.Server.Upload.S3": lines}));
    assert_eq!(alerts(&mut server_rule(&[], &host), &host).len(), 1);
}

#[test]
fn period_must_be_positive() {
    let host = FakeHost::new(json!({}));
    let err = configure::<ServerErrorsRule>(&params(&[("Period", "0")]), &host).unwrap_err();
    assert!(
        err.to_string().contains("parameter Period: must be at least 1 second"),
        "{err}"
    );
}

// ---- the client variant ------------------------------------------------

fn client_host() -> FakeHost {
    let mut host = FakeHost::new(json!({
        "event_tables": {"client": {
            "artifacts": {"specs": [{"artifact": "Generic.Client.Stats"}, {"artifact": "Windows.Detection.Registry"}]},
            "label_events": [{"label": "linux", "artifacts": {"specs": [{"artifact": "Linux.Detection.Honeyfiles"}]}}],
        }},
        "clients": {
            "C.1": {"client_id": "C.1", "labels": ["linux"]},
            "C.2": {"client_id": "C.2", "labels": ["windows"]},
        },
        "monitoring_logs": {
            "C.1": {"Linux.Detection.Honeyfiles": [client_line(T0 + 5, "ERROR", "inotify: too many watches\n")],
                    "Generic.Client.Stats": [client_line(T0 + 5, "ERROR", "stats failed\n")]},
            "C.2": {"Linux.Detection.Honeyfiles": [client_line(T0 + 5, "ERROR", "not labelled linux\n")],
                    "Windows.Detection.Registry": [client_line(T0 + 6, "DEFAULT", "vql: ok\n"),
                                                   client_line(T0 + 7, "ERROR", "registry: access denied\n")]},
        },
    }));
    host.now_us = (T0 + 60) * 1_000_000;
    host
}

#[test]
fn the_client_variant_reads_label_groups_only_for_labelled_clients() {
    let host = client_host();
    let mut rule = configure::<ClientErrorsRule>(&[], &host).unwrap().0;
    let got = alerts(&mut rule, &host);
    let summary: Vec<(String, Value, Value)> = got
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                context(a)["ClientId"].clone(),
                context(a)["Error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "Client event query error in Linux.Detection.Honeyfiles".into(),
                json!("C.1"),
                json!("inotify: too many watches\n")
            ),
            (
                "Client event query error in Windows.Detection.Registry".into(),
                json!("C.2"),
                json!("registry: access denied\n")
            ),
        ],
        "C.2 is not labelled linux; Generic.Client.Stats is excluded by default"
    );
    assert_eq!(got[0].artifact.as_deref(), Some("Server.Monitor.Client.Errors.Alert"));
    assert_eq!(
        host.logged(LogLevel::Debug),
        [
            "Monitoring event artifact Generic.Client.Stats",
            "Monitoring event artifact Windows.Detection.Registry",
            "Monitoring event artifact Linux.Detection.Honeyfiles for label \"linux\"",
        ]
    );
    assert!(alerts(&mut rule, &host).is_empty(), "cursors per client and artifact");
}

#[test]
fn the_client_variant_names_the_artifact_not_the_client() {
    let mut host = client_host();
    host.world["clients"]["C.3"] = json!({"client_id": "C.3", "labels": ["linux"]});
    host.world["monitoring_logs"]["C.3"] =
        json!({"Linux.Detection.Honeyfiles": [client_line(T0 + 8, "ERROR", "also\n")]});
    let mut rule = configure::<ClientErrorsRule>(&[], &host).unwrap().0;
    let names: Vec<String> = alerts(&mut rule, &host).into_iter().map(|a| a.name).collect();
    assert_eq!(
        names.iter().filter(|n| n.contains("Honeyfiles")).count(),
        1,
        "dedup is per artifact across clients"
    );
}

/// Log rows as Velociraptor writes them (server and client logs) read to
/// the same lines whether the lookup's row text is read column by column
/// or first built whole; a row that is not an object reads as an empty line.
#[test]
fn log_rows_of_the_fixtures_read_their_level_message_time_and_position() {
    let server: Vec<Value> = serde_json::from_str(include_str!(
        "../../../../../tests/data/velociraptor/monitoring_logs.server.Server.Clock.json"
    ))
    .unwrap();
    let client: Vec<Value> = serde_json::from_str(include_str!(
        "../../../../../tests/data/velociraptor/monitoring_logs.client.Generic.Client.Stats.json"
    ))
    .unwrap();
    let read = |row: &Value| LogLine::read(&Answer::from_value(row)).unwrap();
    let first = read(&server[0]);
    assert_eq!(first.level, "DEFAULT");
    assert_eq!(first.message, "server_monitoring: Collecting <green>Server.Clock</>\n");
    assert_eq!(first.time.unwrap().rfc3339(), "2020-10-07T20:43:08Z");
    let old = read(&client[0]);
    assert_eq!(old.level, "DEFAULT", "the integer level 0 of old client rows");
    assert_eq!(old.message, "vql: Starting query execution.\n");
    assert_eq!(old.written_ms, 1_638_919_340);
    assert!(old.time.is_some());
    assert_eq!(read(&json!([1, 2])), LogLine::default());
    let broken = Answer::from_text("{\"Level\": ".into());
    assert!(LogLine::read(&broken).unwrap_err().to_string().contains("invalid JSON"));
}
