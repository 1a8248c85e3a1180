//! The monitors only velonotify has (issue: the audit trail and the
//! health of the fleet), each through the stand-in Velociraptor server:
//! its lookups answered over the API, its alerts e-mailed by the Alerts
//! module to a real SMTP server.

use std::time::Duration;

use serde_json::json;
use velonotify_test_support::service::Running;

use velonotify::velociraptor::vql;

use super::EXE;
use super::velociraptor::{ALERTS_TO_SOC, Fixture, assert_no_event_data_in_vql, config, now_us};

/// Server.Monitor.Audit: the audited actions that matter are e-mailed once
/// each, across a SIGKILL between two of them (the cursor moves with the
/// alerts), the one written while the service was down included; a login
/// and a harmless collection raise nothing.
#[test]
fn audited_actions_that_matter_are_mailed_once_across_a_sigkill() {
    let now_s = now_us() / 1_000_000;
    let audit = |after_s: u64, operation: &str, principal: &str, details: serde_json::Value| json!({"operation": operation, "principal": principal, "details": details, "_ts": now_s + after_s});
    let mut world = json!({
        "artifacts": {
            "Server.Internal.Alerts": {"name": "Server.Internal.Alerts", "type": "SERVER_EVENT"},
            "Windows.System.PowerShell": {"name": "Windows.System.PowerShell", "type": "CLIENT",
                                          "required_permissions": ["EXECVE"]},
            "Generic.Client.Info": {"name": "Generic.Client.Info", "type": "CLIENT"},
        },
        "clients": {"C.api1": {"client_id": "C.api1", "os_info": {"hostname": "ws-api-1"}, "labels": []}},
        "audit": [
            audit(10, "CreateHunt", "alice", json!({"hunt_id": "H.1", "details": {"hunt_description": "triage"}})),
            audit(11, "Login", "alice", json!({"remote": "10.0.0.1:5555"})),
            audit(11, "ScheduleFlow", "bob", json!({"client": "C.api1", "flow_id": "F.2",
                                                   "details": {"artifacts": ["Generic.Client.Info"]}})),
            audit(12, "ScheduleFlow", "bob", json!({"client": "C.api1", "flow_id": "F.1",
                                                   "details": {"artifacts": ["Windows.System.PowerShell"]}})),
            audit(40, "user_grant", "admin", json!({"username": "carol", "acl": {"roles": ["administrator"]}})),
        ],
    });
    let fixture = Fixture::start(&world.to_string());
    let modules =
        format!("[[module]]\nname = \"audit\"\npath = \"audit.wasm\"\n[module.params]\nPeriod = 1\n\n{ALERTS_TO_SOC}");
    let config = config(fixture.dir.path(), fixture.smtp.port, &modules);
    let mut run = Running::start(EXE, &config);
    let first = fixture.smtp.wait_for(2, Duration::from_secs(60));
    assert_eq!(first.len(), 2, "{}", run.log());
    wait_until_marked_sent(&config, 2);
    run.kill();
    // Written while the service is down, more than a Period before it is
    // back: read from the stored cursor (a new one would start after it).
    let down_s = now_us() / 1_000_000;
    let mut created = audit(0, "user_create", "admin", json!({"username": "dave"}));
    created["_ts"] = json!(down_s);
    world["audit"].as_array_mut().unwrap().push(created);
    fixture.peer.set_world(&world.to_string());
    std::thread::sleep(Duration::from_secs(3));
    let run = Running::start(EXE, &config);
    let all = fixture.smtp.wait_for(4, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(3)); // room for a second e-mail of one row
    let all = fixture.smtp.wait_for(all.len() + 1, Duration::from_millis(10));
    let mut alerts: Vec<String> = all.iter().map(|m| alert_name(&fixture, m)).collect();
    alerts.sort();
    assert_eq!(
        alerts,
        [
            "Collection of an artifact that runs programs by bob: Windows.System.PowerShell on C.api1",
            "Hunt created by alice: H.1",
            "User created by admin: dave",
            "User given roles or permissions by admin: carol",
        ],
        "{}",
        run.log()
    );
    assert_no_event_data_in_vql(&fixture.peer);
}

/// A world of `clients` (id, labels, first seen and last seen in seconds).
fn world_of_clients(clients: &[(&str, &[&str], u64, u64)]) -> serde_json::Value {
    let clients: serde_json::Map<String, serde_json::Value> = clients
        .iter()
        .map(|(id, labels, first_s, last_s)| {
            let row = json!({"client_id": id, "os_info": {"hostname": format!("ws-{}", &id[2..])},
                             "labels": labels, "first_seen_at": first_s, "last_seen_at": last_s * 1_000_000});
            (id.to_string(), row)
        })
        .collect();
    json!({
        "artifacts": {"Server.Internal.Alerts": {"name": "Server.Internal.Alerts", "type": "SERVER_EVENT"}},
        "clients": clients,
    })
}

/// The alerts e-mailed so far, sorted, once `count` have come (or the
/// time is up), and after a moment for more.
/// Waits (30 s at most) until the outbox records `count` e-mails sent.
/// The SMTP server holds a message before velonotify has its answer: a
/// SIGKILL in between sends it again after the restart (delivery is at
/// least once), which is not what these tests are about.
fn wait_until_marked_sent(config: &std::path::Path, count: u64) {
    let store = velonotify_test_support::open_store(config.parent().unwrap());
    velonotify_test_support::wait_until_sent(&store, count);
}

fn mailed_alerts(fixture: &Fixture, count: usize, within: Duration) -> Vec<String> {
    fixture.smtp.wait_for(count, within);
    std::thread::sleep(Duration::from_secs(3)); // room for one too many
    let all = fixture.smtp.wait_for(usize::MAX, Duration::from_millis(10));
    let mut alerts: Vec<String> = all.iter().map(|m| alert_name(fixture, m)).collect();
    alerts.sort();
    alerts
}

/// Server.Monitor.Clients.Quiet: a critical client not seen for two
/// hours is e-mailed once, a critical client seen now and an unlabelled
/// quiet one are not; when the quiet one checks in, one notice.
#[test]
fn a_critical_client_gone_quiet_and_back_is_mailed_once_each_way() {
    let now_s = now_us() / 1_000_000;
    let clients: [(&str, &[&str], u64, u64); 3] = [
        ("C.crit1", &["critical"], now_s - 86_400, now_s - 7_200),
        ("C.crit2", &["Critical"], now_s - 86_400, now_s),
        ("C.other", &[], now_s - 86_400, now_s - 18_000),
    ];
    let fixture = Fixture::start(&world_of_clients(&clients).to_string());
    let modules = format!(
        "[[module]]\nname = \"quiet\"\npath = \"quiet_clients.wasm\"\n[module.params]\nPeriod = 1\n\n{ALERTS_TO_SOC}"
    );
    let run = Running::start(EXE, &config(fixture.dir.path(), fixture.smtp.port, &modules));
    assert_eq!(
        mailed_alerts(&fixture, 1, Duration::from_secs(60)),
        ["Client ws-crit1 (C.crit1) is quiet"],
        "{}",
        run.log()
    );
    let back = [
        ("C.crit1", &["critical"][..], now_s - 86_400, now_us() / 1_000_000),
        clients[1],
        clients[2],
    ];
    fixture.peer.set_world(&world_of_clients(&back).to_string());
    assert_eq!(
        mailed_alerts(&fixture, 2, Duration::from_secs(60)),
        [
            "Client ws-crit1 (C.crit1) is back online",
            "Client ws-crit1 (C.crit1) is quiet"
        ],
        "{}",
        run.log()
    );
    assert_no_event_data_in_vql(&fixture.peer);
}

/// Server.Monitor.Clients.Enrolment: 25 clients enrolled in the last
/// minutes (more than 20 in 10 minutes) are one spike, e-mailed once
/// however many ticks see it.
#[test]
fn an_enrolment_spike_is_mailed_once() {
    let now_s = now_us() / 1_000_000;
    let ids: Vec<String> = (0..30).map(|i| format!("C.n{i:02}")).collect();
    let clients: Vec<(&str, &[&str], u64, u64)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let first_s = if i < 25 { now_s - 60 - i as u64 } else { now_s - 86_400 };
            (id.as_str(), &[][..], first_s, now_s)
        })
        .collect();
    let fixture = Fixture::start(&world_of_clients(&clients).to_string());
    let modules = format!(
        "[[module]]\nname = \"enrolment\"\npath = \"enrolment_spike.wasm\"\n[module.params]\nPeriod = 1\n\n{ALERTS_TO_SOC}"
    );
    let run = Running::start(EXE, &config(fixture.dir.path(), fixture.smtp.port, &modules));
    fixture.smtp.wait_for(1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3)); // three more ticks see the spike
    assert_eq!(
        mailed_alerts(&fixture, 1, Duration::from_secs(1)),
        ["Enrolment spike"],
        "{}",
        run.log()
    );
    assert_no_event_data_in_vql(&fixture.peer);
}

/// The alert an e-mail of the Alerts module is about (its text names it
/// on the line `Message: <name>`; the subject is cut).
fn alert_name(fixture: &Fixture, message: &serde_json::Value) -> String {
    let bytes = fixture.smtp.message(message["file"].as_str().unwrap());
    let mail = mailparse::parse_mail(&bytes).unwrap();
    let text = velonotify_test_support::part(&mail, "text/plain").unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("Message: "))
        .unwrap_or_else(|| panic!("no alert name in {text}"))
        .trim()
        .to_string()
}

/// Server.Monitor.Hunts: a running hunt failing on 30 of 100 clients and
/// one that scheduled no client in the two hours since it started are
/// e-mailed once each, across a SIGKILL; a healthy hunt and a stopped one
/// full of errors raise nothing.
#[test]
fn hunts_in_trouble_are_mailed_once_across_a_sigkill() {
    let now_s = now_us() / 1_000_000;
    let hunt = |id: &str, state: &str, started_s: u64, scheduled: u64, failed: u64| {
        json!({"hunt_id": id, "hunt_description": format!("Hunt {id}"), "creator": "carol", "state": state,
               "create_time": started_s * 1_000_000, "start_time": started_s * 1_000_000,
               "artifacts": ["Windows.KapeFiles.Targets"],
               "stats": {"total_clients_scheduled": scheduled, "total_finished_clients": scheduled,
                         "total_clients_with_errors": failed}})
    };
    let world = json!({
        "artifacts": {"Server.Internal.Alerts": {"name": "Server.Internal.Alerts", "type": "SERVER_EVENT"}},
        "hunts": {
            "H.fail": hunt("H.fail", "RUNNING", now_s - 600, 100, 30),
            "H.idle": hunt("H.idle", "RUNNING", now_s - 7_200, 0, 0),
            "H.ok": hunt("H.ok", "RUNNING", now_s - 600, 100, 1),
            "H.stopped": hunt("H.stopped", "STOPPED", now_s - 600, 100, 90),
        },
    });
    let fixture = Fixture::start(&world.to_string());
    let modules =
        format!("[[module]]\nname = \"hunts\"\npath = \"hunts.wasm\"\n[module.params]\nPeriod = 1\n\n{ALERTS_TO_SOC}");
    let config = config(fixture.dir.path(), fixture.smtp.port, &modules);
    let mut run = Running::start(EXE, &config);
    assert_eq!(
        fixture.smtp.wait_for(2, Duration::from_secs(60)).len(),
        2,
        "{}",
        run.log()
    );
    wait_until_marked_sent(&config, 2);
    run.kill();
    let mut run = Running::start(EXE, &config);
    wait_for_ticks(&fixture, &mut run, vql::RUNNING_HUNTS, 3);
    assert_eq!(
        mailed_alerts(&fixture, 3, Duration::from_secs(1)),
        [
            "Hunt Hunt H.fail (H.fail) is failing",
            "Hunt Hunt H.idle (H.idle) has stalled"
        ],
        "{}",
        run.log()
    );
    assert_no_event_data_in_vql(&fixture.peer);
}

/// Server.Monitor.Flows.Stuck: a collection in progress for two hours is
/// e-mailed once, across a SIGKILL; a finished one, one scheduled five
/// minutes ago, and one queued three days ago for a client that has not
/// been handed it (not in its `in_flight_flows`) are not.
#[test]
fn a_stuck_collection_is_mailed_once_across_a_sigkill() {
    let now_s = now_us() / 1_000_000;
    let flow = |state: &str, created_s: u64, started_s: u64| {
        json!({"state": state, "create_time": created_s * 1_000_000, "start_time": started_s * 1_000_000,
               "request": {"artifacts": ["Generic.Client.Info"], "creator": "bob"}})
    };
    let mut world = world_of_clients(&[
        ("C.slow", &[], now_s - 86_400, now_s),
        ("C.away", &[], now_s - 86_400, now_s - 4 * 86_400),
    ]);
    world["clients"]["C.away"]["in_flight_flows"] = json!({});
    world["flows"] = json!({
        "C.slow": {
            "F.stuck": flow("IN_PROGRESS", now_s - 7_200, now_s - 7_190),
            "F.done": flow("FINISHED", now_s - 7_200, now_s - 7_190),
            "F.young": flow("RUNNING", now_s - 300, 0),
        },
        "C.away": {"F.queued": flow("RUNNING", now_s - 3 * 86_400, 0)},
    });
    let fixture = Fixture::start(&world.to_string());
    let modules = format!(
        "[[module]]\nname = \"stuck\"\npath = \"stuck_flows.wasm\"\n[module.params]\nPeriod = 1\n\n{ALERTS_TO_SOC}"
    );
    let config = config(fixture.dir.path(), fixture.smtp.port, &modules);
    let mut run = Running::start(EXE, &config);
    assert_eq!(
        fixture.smtp.wait_for(1, Duration::from_secs(60)).len(),
        1,
        "{}",
        run.log()
    );
    wait_until_marked_sent(&config, 1);
    run.kill();
    let mut run = Running::start(EXE, &config);
    wait_for_ticks(&fixture, &mut run, vql::ACTIVE_FLOWS, 3);
    assert_eq!(
        mailed_alerts(&fixture, 2, Duration::from_secs(1)),
        ["Collection F.stuck (Generic.Client.Info) on C.slow has run for more than 60 minutes"],
        "{}",
        run.log()
    );
    assert_no_event_data_in_vql(&fixture.peer);
}

/// Waits until the stand-in has answered `ticks` more `lookup` queries
/// (a monitor's ticks, of a service just started).
fn wait_for_ticks(fixture: &Fixture, run: &mut Running, lookup: &str, ticks: usize) {
    let asked = || fixture.peer.requests().iter().filter(|r| r["vql"] == lookup).count();
    let before = asked();
    run.wait("the restarted service's ticks", Duration::from_secs(60), |_| {
        asked() >= before + ticks
    });
}
