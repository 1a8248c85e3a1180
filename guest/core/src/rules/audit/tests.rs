//! Server.Monitor.Audit: which audit rows alert (the default
//! `Operations`, one row per operation of docs/velociraptor.md §2.6), what
//! the alert says and links to, and the cursor: no row examined twice or
//! missed, across ticks.

use serde_json::{Value, json};

use super::*;
use crate::rules::configure;
use crate::testing::{FakeHost, alert_context as context, tick_alerts as alerts};

/// The host's time: 2026-05-10T08:00:00Z, in seconds.
const T0: u64 = 1_778_400_000;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// An audit row written at `at_s` (seconds, as live rows carry it).
fn row(at_s: u64, operation: &str, principal: &str, details: Value) -> Value {
    json!({"operation": operation, "principal": principal, "details": details, "_ts": at_s})
}

/// A host whose audit log holds `rows`, at T0 + 60, with the definitions
/// of one artifact that runs programs and one that does not.
fn host_with(rows: Vec<Value>) -> FakeHost {
    let mut host = FakeHost::new(json!({
        "audit": rows,
        "artifacts": {
            "Windows.System.PowerShell": {"name": "Windows.System.PowerShell", "required_permissions": ["EXECVE"]},
            "Generic.Client.Info": {"name": "Generic.Client.Info", "required_permissions": []},
        },
    }));
    host.now_us = (T0 + 60) * 1_000_000;
    host
}

fn rule(pairs: &[(&str, &str)], host: &FakeHost) -> AuditRule {
    configure::<AuditRule>(&params(pairs), host).unwrap().0
}

/// Each audit row alone, through the default table: the alert's name, or
/// none.
#[test]
fn the_default_operations_alert_on_what_matters_and_nothing_else() {
    let cases: Vec<(Value, Option<&str>)> = vec![
        (
            row(
                T0 + 10,
                "CreateHunt",
                "alice",
                json!({"hunt_id": "H.1", "details": {"hunt_description": "triage"}}),
            ),
            Some("Hunt created by alice: H.1"),
        ),
        (
            row(
                T0 + 10,
                "ModifyHunt",
                "alice",
                json!({"hunt_id": "H.1", "details": {"hunt_id": "H.1", "state": "RUNNING"}}),
            ),
            Some("Hunt started by alice: H.1"),
        ),
        (
            row(
                T0 + 10,
                "ModifyHunt",
                "alice",
                json!({"hunt_id": "H.1", "details": {"state": "PAUSED"}}),
            ),
            None,
        ),
        (
            row(
                T0 + 10,
                "ScheduleFlow",
                "bob",
                json!({"client": "C.1", "flow_id": "F.1", "details": {"artifacts": ["Windows.System.PowerShell"]}}),
            ),
            Some("Collection of an artifact that runs programs by bob: Windows.System.PowerShell on C.1"),
        ),
        (
            row(
                T0 + 10,
                "ScheduleFlow",
                "bob",
                json!({"client": "C.1", "flow_id": "F.2", "details": {"artifacts": ["Generic.Client.Info"]}}),
            ),
            None,
        ),
        (
            row(
                T0 + 10,
                "user_create",
                "admin",
                json!({"username": "carol", "acl": {"roles": ["reader"]}}),
            ),
            Some("User created by admin: carol"),
        ),
        (
            row(
                T0 + 10,
                "user_grant",
                "admin",
                json!({"username": "carol", "acl": {"roles": ["administrator"]}}),
            ),
            Some("User given roles or permissions by admin: carol"),
        ),
        (
            row(
                T0 + 10,
                "SetClientMonitoringState",
                "admin",
                json!({"user": "admin", "state": {"artifacts": []}}),
            ),
            Some("Event table changed by admin: client event table"),
        ),
        (
            row(
                T0 + 10,
                "SetServerMonitoringState",
                "admin",
                json!({"user": "admin", "state": {}}),
            ),
            Some("Event table changed by admin: server event table"),
        ),
        (
            row(
                T0 + 10,
                "SetArtifactFile",
                "dave",
                json!({"artifact": "Custom.Exfil", "details": "name: Custom.Exfil"}),
            ),
            Some("Artifact created or modified by dave: Custom.Exfil"),
        ),
        (
            row(
                T0 + 10,
                "client_delete",
                "admin",
                json!({"client_id": "C.9", "org_id": "root"}),
            ),
            Some("Client deleted by admin: C.9"),
        ),
        (
            row(
                T0 + 10,
                "hunt_delete",
                "admin",
                json!({"hunt_id": "H.1", "details": {}}),
            ),
            Some("Hunt deleted by admin: H.1"),
        ),
        (
            row(
                T0 + 10,
                "user_delete",
                "admin",
                json!({"username": "carol", "org_ids": ["root"]}),
            ),
            Some("User deleted by admin: carol"),
        ),
        (
            row(
                T0 + 10,
                "delete_flow",
                "admin",
                json!({"client_id": "C.1", "flow_id": "F.1"}),
            ),
            Some("Collection deleted by admin: C.1"),
        ),
        (row(T0 + 10, "Login", "alice", json!({"remote": "10.0.0.1:5555"})), None),
        (
            row(
                T0 + 10,
                "SetClientLabel",
                "alice",
                json!({"client_id": "C.1", "label": "x"}),
            ),
            None,
        ),
    ];
    for (audit, expected) in cases {
        let host = host_with(vec![audit.clone()]);
        let mut monitor = rule(&[], &host);
        let names: Vec<String> = alerts(&mut monitor, &host).into_iter().map(|a| a.name).collect();
        let expected: Vec<String> = expected.into_iter().map(str::to_string).collect();
        assert_eq!(names, expected, "{audit}");
    }
}

/// The alert names the principal and target, says when, carries the
/// details (cut), and links to the page of what was done.
#[test]
fn the_alert_says_who_did_what_to_what_with_a_link() {
    let links = [
        (
            row(T0 + 10, "CreateHunt", "alice", json!({"hunt_id": "H.1"})),
            "https://velociraptor.example.org:8889/app/index.html?org_id=root#/hunts/H.1/overview",
        ),
        (
            row(
                T0 + 10,
                "ScheduleFlow",
                "bob",
                json!({"client": "C.1", "flow_id": "F.7", "details": {"artifacts": ["Windows.System.PowerShell"]}}),
            ),
            "https://velociraptor.example.org:8889/app/index.html?org_id=root#/collected/C.1/F.7/overview",
        ),
        (
            row(T0 + 10, "user_grant", "admin", json!({"username": "carol"})),
            "https://velociraptor.example.org:8889/app/index.html?org_id=root#/users/carol",
        ),
        (
            row(T0 + 10, "SetArtifactFile", "dave", json!({"artifact": "Custom.Exfil"})),
            "https://velociraptor.example.org:8889/app/index.html?org_id=root#/artifacts/Custom.Exfil",
        ),
        (
            row(T0 + 10, "client_delete", "admin", json!({"client_id": "C.9"})),
            "https://velociraptor.example.org:8889/app/index.html?org_id=root#/events/server/Server.Audit.Logs",
        ),
    ];
    for (audit, link) in links {
        let host = host_with(vec![audit.clone()]);
        let raised = alerts(&mut rule(&[], &host), &host);
        let context = context(&raised[0]);
        assert_eq!(context["Link"], link, "{audit}");
        assert_eq!(context["Principal"], audit["principal"]);
        assert_eq!(context["Operation"], audit["operation"]);
        assert!(
            context["Time"].as_str().unwrap().starts_with("2026-05-10T08:00:10Z"),
            "{context}"
        );
        assert_eq!(raised[0].client_id.as_deref(), Some("server"));
        assert_eq!(raised[0].artifact.as_deref(), Some("Server.Monitor.Audit"));
        assert_eq!(
            raised[0].dedup_seconds,
            Some(-1),
            "every audit row alerts once, by its cursor"
        );
    }
    let huge = "x".repeat(50_000);
    let host = host_with(vec![row(
        T0 + 10,
        "SetArtifactFile",
        "dave",
        json!({"artifact": "A", "details": huge}),
    )]);
    let details = context(&alerts(&mut rule(&[], &host), &host)[0])["Details"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        details.len() < 2_100 && details.ends_with("bytes cut)"),
        "{}",
        details.len()
    );
}

#[test]
fn ignored_principals_and_a_custom_table_are_obeyed() {
    let rows = vec![
        row(T0 + 10, "CreateHunt", "svc-automation", json!({"hunt_id": "H.1"})),
        row(T0 + 10, "CreateHunt", "alice", json!({"hunt_id": "H.2"})),
        row(T0 + 10, "Login", "mallory", json!({"remote": "203.0.113.9:4444"})),
    ];
    let host = host_with(rows);
    let table = "Operation,Details,Permission,Description,Severity\n^Login$,203\\.0\\.113\\.,,Login from a listed network,high\n\
                 ^CreateHunt$,,,Hunt created,high\n";
    let mut monitor = rule(&[("IgnorePrincipals", "^svc-"), ("Operations", table)], &host);
    let mut names: Vec<String> = alerts(&mut monitor, &host).into_iter().map(|a| a.name).collect();
    names.sort();
    assert_eq!(
        names,
        ["Hunt created by alice: H.2", "Login from a listed network by mallory"]
    );
}

/// Rows come in over four ticks, some late in their second: each is
/// examined once. Rows in the newest two seconds wait for a tick that
/// has newer rows, or until they are ten seconds old.
#[test]
fn no_audit_row_is_examined_twice_or_missed_across_ticks() {
    let hunt = |at_s: u64, id: &str| row(at_s, "CreateHunt", "alice", json!({"hunt_id": id}));
    let mut host = host_with(vec![hunt(T0 + 10, "H.a"), hunt(T0 + 59, "H.b")]);
    let mut monitor = rule(&[], &host);
    let mut raised: Vec<String> = Vec::new();
    let mut tick = |host: &FakeHost, monitor: &mut AuditRule| {
        let names: Vec<String> = alerts(monitor, host).into_iter().map(|a| a.name).collect();
        raised.extend(names.clone());
        names
    };
    // T0+60: H.b is within two seconds of the newest row: it waits.
    assert_eq!(tick(&host, &mut monitor), ["Hunt created by alice: H.a"]);
    // A row of the same second as H.b, written after the first read.
    host.world["audit"].as_array_mut().unwrap().push(hunt(T0 + 59, "H.c"));
    host.world["audit"].as_array_mut().unwrap().push(hunt(T0 + 70, "H.d"));
    host.now_us = (T0 + 71) * 1_000_000;
    let mut second = tick(&host, &mut monitor);
    second.sort();
    assert_eq!(second, ["Hunt created by alice: H.b", "Hunt created by alice: H.c"]);
    // Nothing newer comes: H.d goes once it is ten seconds old.
    host.now_us = (T0 + 75) * 1_000_000;
    assert!(tick(&host, &mut monitor).is_empty());
    host.now_us = (T0 + 81) * 1_000_000;
    assert_eq!(tick(&host, &mut monitor), ["Hunt created by alice: H.d"]);
    // Down from T0+81 to T0+300: a row written meanwhile is read from the
    // stored cursor (a new cursor would start one period back, at T0+240).
    host.world["audit"].as_array_mut().unwrap().push(hunt(T0 + 150, "H.e"));
    let mut restarted = rule(&[], &host);
    host.now_us = (T0 + 300) * 1_000_000;
    assert_eq!(tick(&host, &mut restarted), ["Hunt created by alice: H.e"]);
    assert_eq!(raised.len(), 5);
}

/// The first tick of a new monitor reads one period back, not the whole
/// log; its cursor is stored even when nothing was read.
#[test]
fn a_new_monitor_starts_one_period_back() {
    let mut host = host_with(vec![row(T0 - 3600, "CreateHunt", "alice", json!({"hunt_id": "H.old"}))]);
    let mut monitor = rule(&[("Period", "30")], &host);
    assert!(
        alerts(&mut monitor, &host).is_empty(),
        "an hour old: before the monitor"
    );
    host.world["audit"]
        .as_array_mut()
        .unwrap()
        .push(row(T0 + 40, "CreateHunt", "alice", json!({"hunt_id": "H.new"})));
    host.now_us = (T0 + 200) * 1_000_000;
    let names: Vec<String> = alerts(&mut monitor, &host).into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["Hunt created by alice: H.new"]);
}

/// A script that creates a hundred users in a minute: MaxAlertsPerTick
/// alerts, and one more counting the rest (nothing dropped silently).
#[test]
fn a_burst_past_the_bound_is_counted_in_one_more_alert() {
    let rows: Vec<Value> = (0..100)
        .map(|i| row(T0 + 10, "user_create", "admin", json!({"username": format!("u{i}")})))
        .chain((0..5).map(|i| row(T0 + 11, "user_grant", "admin", json!({"username": format!("u{i}")}))))
        .collect();
    let host = host_with(rows);
    let raised = alerts(&mut rule(&[("MaxAlertsPerTick", "10")], &host), &host);
    assert_eq!(raised.len(), 11);
    let last = raised.last().unwrap();
    assert_eq!(last.name, "95 more audited actions");
    assert_eq!(context(last)["Kinds"], "user_create ×90, user_grant ×5");
    assert!(
        context(last)["First"]
            .as_str()
            .unwrap()
            .starts_with("User created by admin: u10\n")
    );
}

/// Anyone allowed to publish to the queue can write any row: rows without
/// the columns, of other types, or not objects read as empty and alert
/// on nothing they do not match.
#[test]
fn malformed_audit_rows_are_read_leniently() {
    let rows = vec![
        json!({"_ts": T0 + 10, "foo": "bar"}),
        json!({"_ts": T0 + 10, "operation": 42, "principal": ["x"], "details": "not an object"}),
        json!({"_ts": format!("{}", (T0 + 10) * 1000), "operation": "CreateHunt", "principal": null}),
        json!("just a string"),
    ];
    let host = host_with(rows);
    let names: Vec<String> = alerts(&mut rule(&[], &host), &host)
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["Hunt created by (nobody)"]);
}

#[test]
fn a_bad_operations_table_names_the_row_and_column() {
    let host = host_with(Vec::new());
    let table =
        "Operation,Details,Permission,Description,Severity\n^CreateHunt$,,,Hunt created,high\n(unclosed,,,x,high\n";
    let error = configure::<AuditRule>(&params(&[("Operations", table)]), &host).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("Operations") && text.contains("row 2 Operation"),
        "{text}"
    );
    let no_description = "Operation,Details,Permission,Description,Severity\n^X$,,,,high\n";
    let error = configure::<AuditRule>(&params(&[("Operations", no_description)]), &host).unwrap_err();
    assert!(error.to_string().contains("row 1: Description is empty"), "{error}");
}

/// A row dated in the year 3000 (anyone allowed to publish to the queue
/// can write one) is not examined and does not move the cursor: the real
/// rows after it still alert, and the monitor says it saw such rows.
#[test]
fn a_row_dated_in_the_future_does_not_blind_the_monitor() {
    let year_3000_s = 32_503_680_000;
    let mut host = host_with(vec![row(
        year_3000_s,
        "CreateHunt",
        "mallory",
        json!({"hunt_id": "H.far"}),
    )]);
    let mut monitor = rule(&[], &host);
    let first: Vec<String> = alerts(&mut monitor, &host).into_iter().map(|a| a.name).collect();
    assert_eq!(first, ["Audit rows dated in the future"]);
    host.world["audit"]
        .as_array_mut()
        .unwrap()
        .push(row(T0 + 70, "CreateHunt", "alice", json!({"hunt_id": "H.2"})));
    host.now_us = (T0 + 90) * 1_000_000;
    let names: Vec<String> = alerts(&mut monitor, &host).into_iter().map(|a| a.name).collect();
    assert!(names.contains(&"Hunt created by alice: H.2".to_string()), "{names:?}");
}

/// A permission check the server does not answer (the definition's
/// lookup refused) alerts anyway, and says the check was not made.
#[test]
fn a_permission_that_cannot_be_checked_alerts_and_says_so() {
    let mut host = host_with(vec![row(
        T0 + 10,
        "ScheduleFlow",
        "bob",
        json!({"client": "C.1", "flow_id": "F.1", "details": {"artifacts": ["Windows.System.PowerShell"]}}),
    )]);
    host.artifacts_refused = Some("PermissionDenied".into());
    let raised = alerts(&mut rule(&[], &host), &host);
    assert_eq!(raised.len(), 1);
    let permission = context(&raised[0])["Permission"].as_str().unwrap().to_string();
    assert!(
        permission.starts_with("not checked: the definition of Windows.System.PowerShell"),
        "{permission}"
    );
}

/// Names come from the row: a principal of 100 kB and fifty artifacts
/// make a name of at most 500 bytes that still says what happened.
#[test]
fn an_alert_name_is_bounded_whatever_the_row_holds() {
    let artifacts: Vec<String> = (0..50).map(|i| format!("Custom.A{i}")).collect();
    let host = host_with(vec![row(
        T0 + 10,
        "CreateHunt",
        &"m".repeat(100_000),
        json!({"details": {"start_request": {"artifacts": artifacts}}}),
    )]);
    let name = alerts(&mut rule(&[], &host), &host)[0].name.clone();
    assert!(
        name.len() < 530 && name.starts_with("Hunt created by mmm"),
        "{}",
        name.len()
    );
    let host = host_with(vec![row(
        T0 + 10,
        "CreateHunt",
        "alice",
        json!({"details": {"start_request": {"artifacts": artifacts}}}),
    )]);
    let name = alerts(&mut rule(&[], &host), &host)[0].name.clone();
    assert_eq!(
        name,
        "Hunt created by alice: Custom.A0, Custom.A1, Custom.A2 (+47 more)"
    );
}
