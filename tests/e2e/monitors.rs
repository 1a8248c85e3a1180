//! The monitors only velonotify has (issue: the audit trail and the
//! health of the fleet), each through the stand-in Velociraptor server:
//! its lookups answered over the API, its alerts e-mailed by the Alerts
//! module to a real SMTP server.

use std::time::Duration;

use serde_json::json;
use velonotify_test_support::service::Running;

use super::EXE;
use super::velociraptor::{ALERTS_TO_SOC, Fixture, assert_no_event_data_in_vql, config, now_us};

/// Server.Monitor.Audit: the audited actions that matter are e-mailed once
/// each, across a SIGKILL between two of them (the cursor moves with the
/// alerts); a login and a harmless collection raise nothing.
#[test]
fn audited_actions_that_matter_are_mailed_once_across_a_sigkill() {
    let now_s = now_us() / 1_000_000;
    let audit = |after_s: u64, operation: &str, principal: &str, details: serde_json::Value| json!({"operation": operation, "principal": principal, "details": details, "_ts": now_s + after_s});
    let world = json!({
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
    run.kill();
    let run = Running::start(EXE, &config);
    let all = fixture.smtp.wait_for(3, Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(3)); // room for a second e-mail of one row
    let all = fixture.smtp.wait_for(all.len() + 1, Duration::from_millis(10));
    let mut alerts: Vec<String> = all.iter().map(|m| alert_name(&fixture, m)).collect();
    alerts.sort();
    assert_eq!(
        alerts,
        [
            "Collection of an artifact that runs programs by bob: Windows.System.PowerShell on C.api1",
            "Hunt created by alice: H.1",
            "User given roles or permissions by admin: carol",
        ],
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
