//! Server.Monitor.FlowCompletion against docs/velociraptor.md §6.3 (every
//! filter, every ErrorHandling choice, every override), §6.4 (every
//! recipient source) and §6.5, and the decisions of docs/decisions.md that
//! concern it (D2, D3, D4, D6, D7).

use serde_json::{Value, json};

use super::decision::{FlowFacts, Verdict};
use super::*;
use crate::host::Answer;
use crate::rules::configure;
use crate::testing::FakeHost;

const T0: u64 = 1_778_400_000; // 2026-05-10T08:00:00Z

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn rule(pairs: &[(&str, &str)]) -> FlowCompletionRule {
    configure::<FlowCompletionRule>(&params(pairs), &FakeHost::new(json!({})))
        .expect("configures")
        .0
}

/// A flow that passes every default filter: finished, one artifact,
/// completed 60 s after it was scheduled, no labels, not a hunt.
fn facts() -> FlowFacts {
    FlowFacts {
        flow_id: "F.D7KDSKSILR3TG".into(),
        artifacts: vec!["Windows.Sys.Users".into()],
        delay_seconds: 60,
        ..FlowFacts::default()
    }
}

/// One row of the decision table.
struct Case {
    name: &'static str,
    params: &'static [(&'static str, &'static str)],
    facts: fn() -> FlowFacts,
    notify: bool,
    /// Part of the reason the verdict gives.
    because: &'static str,
}

fn failed(mut f: FlowFacts) -> FlowFacts {
    f.failed = true;
    f
}

const CASES: &[Case] = &[
    // F_art: Include
    Case {
        name: "default filters pass an ordinary flow",
        params: &[],
        facts,
        notify: true,
        because: "passed every filter",
    },
    Case {
        name: "ArtifactsToAlertOn matches case-insensitively",
        params: &[("ArtifactsToAlertOn", "windows\\.sys")],
        facts,
        notify: true,
        because: "passed",
    },
    Case {
        name: "ArtifactsToAlertOn stops other artifacts",
        params: &[("ArtifactsToAlertOn", "^Linux\\.")],
        facts,
        notify: false,
        because: "no collected artifact matches ArtifactsToAlertOn",
    },
    Case {
        name: "empty ArtifactsToAlertOn includes a flow without artifacts",
        params: &[("ArtifactsToAlertOn", "")],
        facts: || FlowFacts {
            artifacts: vec![],
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: ".+ does not match a flow without artifacts",
        params: &[],
        facts: || FlowFacts {
            artifacts: vec![],
            ..facts()
        },
        notify: false,
        because: "ArtifactsToAlertOn",
    },
    // F_art: Exclude
    Case {
        name: "ArtifactsToIgnore stops a single Generic.Client.Info",
        params: &[],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into()],
            ..facts()
        },
        notify: false,
        because: "ArtifactsToIgnore matches Generic.Client.Info",
    },
    Case {
        name: "ArtifactsToIgnore stops Custom.Generic.Client.Info",
        params: &[],
        facts: || FlowFacts {
            artifacts: vec!["Custom.Generic.Client.Info".into()],
            ..facts()
        },
        notify: false,
        because: "ArtifactsToIgnore",
    },
    Case {
        name: "multi-artifact flows are never excluded",
        params: &[],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into(), "Custom.Generic.Client.Info".into()],
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "empty ArtifactsToIgnore excludes nothing",
        params: &[("ArtifactsToIgnore", "")],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into()],
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    // F_delay
    Case {
        name: "a flow done before DelayThreshold is stopped",
        params: &[],
        facts: || FlowFacts {
            delay_seconds: 9,
            ..facts()
        },
        notify: false,
        because: "completed 9 s after it was scheduled, less than DelayThreshold (10 s)",
    },
    Case {
        name: "DelayThreshold compares with >=",
        params: &[],
        facts: || FlowFacts {
            delay_seconds: 10,
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "DelayThreshold 0 lets instant flows through",
        params: &[("DelayThreshold", "0")],
        facts: || FlowFacts {
            delay_seconds: 0,
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "an offline client finishing 6 hours later passes DelayThreshold 300",
        params: &[("DelayThreshold", "300")],
        facts: || FlowFacts {
            delay_seconds: 6 * 3600,
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    // F_hunt
    Case {
        name: "hunt flows are stopped by default",
        params: &[],
        facts: || FlowFacts {
            flow_id: "F.CR3NHK4RL7C7G.H".into(),
            ..facts()
        },
        notify: false,
        because: "part of a hunt (NotifyHunts is off)",
    },
    Case {
        name: "NotifyHunts lets hunt flows through",
        params: &[("NotifyHunts", "Y")],
        facts: || FlowFacts {
            flow_id: "F.CR3NHK4RL7C7G.H".into(),
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "D3: a flow id ending in H without the dot is not a hunt flow",
        params: &[],
        facts: || FlowFacts {
            flow_id: "F.CR3NHK4RL7C7H".into(),
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    // F_cancel
    Case {
        name: "IgnoreCancelled (the default) stops cancelled flows",
        params: &[],
        facts: || FlowFacts {
            cancelled: true,
            ..failed(facts())
        },
        notify: false,
        because: "cancelled (ErrorHandling has IgnoreCancelled)",
    },
    Case {
        name: "without IgnoreCancelled a cancelled flow notifies",
        params: &[("ErrorHandling", "[]")],
        facts: || FlowFacts {
            cancelled: true,
            ..failed(facts())
        },
        notify: true,
        because: "passed",
    },
    // F_labels
    Case {
        name: "ClientLabelsToAlertOn lets a matching label through",
        params: &[("ClientLabelsToAlertOn", "^finance$")],
        facts: || FlowFacts {
            labels: vec!["FINANCE".into()],
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "ClientLabelsToAlertOn stops other labels",
        params: &[("ClientLabelsToAlertOn", "^finance$")],
        facts: || FlowFacts {
            labels: vec!["ops".into()],
            ..facts()
        },
        notify: false,
        because: "no client label matches ClientLabelsToAlertOn",
    },
    Case {
        name: "a client without labels always passes ClientLabelsToAlertOn",
        params: &[("ClientLabelsToAlertOn", "^finance$")],
        facts,
        notify: true,
        because: "passed",
    },
    Case {
        name: "ClientLabelsToIgnore stops a matching label",
        params: &[("ClientLabelsToIgnore", "^test")],
        facts: || FlowFacts {
            labels: vec!["ops".into(), "testlab".into()],
            ..facts()
        },
        notify: false,
        because: "a client label matches ClientLabelsToIgnore",
    },
    Case {
        name: "ClientLabelsToIgnore passes a client without labels",
        params: &[("ClientLabelsToIgnore", "^test")],
        facts,
        notify: true,
        because: "passed",
    },
    // F_perm
    Case {
        name: "ArtifactPermToAlertOn lets EXECVE artifacts through",
        params: &[("ArtifactPermToAlertOn", "^EXECVE$")],
        facts: || FlowFacts {
            permissions: vec!["EXECVE".into()],
            ..facts()
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "ArtifactPermToAlertOn stops artifacts without it",
        params: &[("ArtifactPermToAlertOn", "^EXECVE$")],
        facts: || FlowFacts {
            permissions: vec!["FILESYSTEM_READ".into()],
            ..facts()
        },
        notify: false,
        because: "ArtifactPermToAlertOn",
    },
    // ErrorHandling: each choice lets a failed flow through one filter only
    Case {
        name: "IncludeHunts lets a failed hunt flow through",
        params: &[("ErrorHandling", "[\"IncludeHunts\"]")],
        facts: || {
            failed(FlowFacts {
                flow_id: "F.X.H".into(),
                ..facts()
            })
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "IncludeHunts does not let a finished hunt flow through",
        params: &[("ErrorHandling", "[\"IncludeHunts\"]")],
        facts: || FlowFacts {
            flow_id: "F.X.H".into(),
            ..facts()
        },
        notify: false,
        because: "part of a hunt",
    },
    Case {
        name: "IgnoreArtifactFilters lets a failed ignored artifact through",
        params: &[("ErrorHandling", "[\"IgnoreArtifactFilters\"]")],
        facts: || {
            failed(FlowFacts {
                artifacts: vec!["Generic.Client.Info".into()],
                ..facts()
            })
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "IgnoreArtifactFilters does not help a finished flow",
        params: &[("ErrorHandling", "[\"IgnoreArtifactFilters\"]")],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into()],
            ..facts()
        },
        notify: false,
        because: "ArtifactsToIgnore",
    },
    Case {
        name: "IgnoreDelay lets a failed instant flow through",
        params: &[("ErrorHandling", "[\"IgnoreDelay\"]")],
        facts: || {
            failed(FlowFacts {
                delay_seconds: 0,
                ..facts()
            })
        },
        notify: true,
        because: "passed",
    },
    Case {
        name: "IgnoreDelay does not help a finished flow",
        params: &[("ErrorHandling", "[\"IgnoreDelay\"]")],
        facts: || FlowFacts {
            delay_seconds: 0,
            ..facts()
        },
        notify: false,
        because: "DelayThreshold",
    },
    Case {
        name: "ErrorHandling never bypasses the label filter",
        params: &[
            (
                "ErrorHandling",
                "[\"IncludeHunts\",\"IgnoreArtifactFilters\",\"IgnoreDelay\"]",
            ),
            ("ClientLabelsToIgnore", "test"),
        ],
        facts: || {
            failed(FlowFacts {
                labels: vec!["test".into()],
                ..facts()
            })
        },
        notify: false,
        because: "ClientLabelsToIgnore",
    },
    Case {
        name: "ErrorHandling never bypasses the permission filter",
        params: &[
            (
                "ErrorHandling",
                "[\"IncludeHunts\",\"IgnoreArtifactFilters\",\"IgnoreDelay\"]",
            ),
            ("ArtifactPermToAlertOn", "EXECVE"),
        ],
        facts: || failed(facts()),
        notify: false,
        because: "ArtifactPermToAlertOn",
    },
    // O_new
    Case {
        name: "a new client collecting a NewClientArtifacts artifact notifies despite every filter",
        params: &[("NewClientArtifacts", "Generic\\.Client\\.Info")],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into()],
            since_first_seen: Some(12),
            delay_seconds: 0,
            ..facts()
        },
        notify: true,
        because: "a new client collected an artifact matching NewClientArtifacts",
    },
    Case {
        name: "D2: empty NewClientArtifacts turns the new-client override off",
        params: &[],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into()],
            since_first_seen: Some(12),
            ..facts()
        },
        notify: false,
        because: "ArtifactsToIgnore",
    },
    Case {
        name: "a client first seen before NewClientThreshold is not new",
        params: &[("NewClientArtifacts", "Generic\\.Client\\.Info")],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into()],
            since_first_seen: Some(300),
            ..facts()
        },
        notify: false,
        because: "ArtifactsToIgnore",
    },
    Case {
        name: "a client never seen is not new",
        params: &[("NewClientArtifacts", "Generic\\.Client\\.Info")],
        facts: || FlowFacts {
            artifacts: vec!["Generic.Client.Info".into()],
            since_first_seen: None,
            ..facts()
        },
        notify: false,
        because: "ArtifactsToIgnore",
    },
    // O_results
    Case {
        name: "a notify_results client that returned rows notifies despite the filters",
        params: &[("ClientLabelsToIgnore", "notify")],
        facts: || FlowFacts {
            labels: vec!["notify_results".into()],
            returned_rows: true,
            delay_seconds: 0,
            ..facts()
        },
        notify: true,
        because: "NotifyIfResultsLabels and the collection returned rows",
    },
    Case {
        name: "a hunt tagged notify_results notifies for flows with rows",
        params: &[],
        facts: || FlowFacts {
            flow_id: "F.X.H".into(),
            hunt_tags: vec!["notify_results".into()],
            returned_rows: true,
            ..facts()
        },
        notify: true,
        because: "NotifyIfResultsLabels",
    },
    Case {
        name: "notify_results without rows does not override",
        params: &[],
        facts: || FlowFacts {
            flow_id: "F.X.H".into(),
            labels: vec!["notify_results".into()],
            ..facts()
        },
        notify: false,
        because: "part of a hunt",
    },
    Case {
        name: "the overrides bypass cancellation",
        params: &[],
        facts: || FlowFacts {
            labels: vec!["notify_results".into()],
            returned_rows: true,
            cancelled: true,
            ..failed(facts())
        },
        notify: true,
        because: "NotifyIfResultsLabels",
    },
    Case {
        name: "empty NotifyIfResultsLabels never overrides",
        params: &[("NotifyIfResultsLabels", "")],
        facts: || FlowFacts {
            flow_id: "F.X.H".into(),
            labels: vec!["notify_results".into()],
            returned_rows: true,
            ..facts()
        },
        notify: false,
        because: "part of a hunt",
    },
    // O_uploads
    Case {
        name: "a notify_uploads client that uploaded files notifies despite the filters",
        params: &[],
        facts: || FlowFacts {
            labels: vec!["notify_uploads".into()],
            uploaded_files: true,
            delay_seconds: 0,
            ..facts()
        },
        notify: true,
        because: "NotifyIfUploadsLabels and the collection uploaded files",
    },
    Case {
        name: "notify_uploads without uploads does not override",
        params: &[],
        facts: || FlowFacts {
            labels: vec!["notify_uploads".into()],
            returned_rows: true,
            delay_seconds: 0,
            ..facts()
        },
        notify: false,
        because: "DelayThreshold",
    },
];

#[test]
fn decision_table_of_section_6_3() {
    let mut failures = Vec::new();
    for case in CASES {
        let verdict = rule(case.params).filters.decide(&(case.facts)());
        let (notified, reason) = match &verdict {
            Verdict::Notify(r) => (true, r.to_string()),
            Verdict::Skip(r) => (false, r.to_string()),
        };
        if notified != case.notify || !reason.contains(case.because) {
            failures.push(format!(
                "{}: expected {} because {:?}, got {verdict:?}",
                case.name,
                if case.notify { "notify" } else { "skip" },
                case.because
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

// ---- the rule on whole events ----------------------------------------

fn world() -> Value {
    json!({
        "clients": {
            "C.1": {"client_id": "C.1", "os_info": {"hostname": "ws1", "fqdn": "ws1.corp.example", "system": "windows",
                    "release": "Windows 11", "machine": "amd64"}, "labels": ["finance"], "first_seen_at": 1_770_000_000,
                    "metadata": {"Owner": "ann@corp.example", "Broken": "not an address"}},
        },
        "flows": {"C.1": {
            "F.OK": flow("F.OK", "FINISHED", "bob", &["Windows.Sys.Users"]),
            "F.SVC": flow("F.SVC", "FINISHED", "InterrogationService", &["Windows.Sys.Users"]),
            "F.MAIL": flow("F.MAIL", "FINISHED", "carol@corp.example", &["Windows.Sys.Users"]),
        }},
    })
}

fn flow(id: &str, state: &str, creator: &str, artifacts: &[&str]) -> Value {
    json!({
        "session_id": id,
        "request": {"creator": creator, "artifacts": artifacts},
        "create_time": (T0 - 600) * 1_000_000,
        "start_time": (T0 - 590) * 1_000_000,
        "execution_duration": 12_300_000_000_u64,
        "state": state,
        "total_collected_rows": 4,
        "artifacts_with_results": artifacts,
        "query_stats": [{"result_rows": 4}],
    })
}

fn completion(client: &str, flow: &str) -> Event {
    let row = json!({"Timestamp": T0, "ClientId": client, "FlowId": flow, "Flow": {"session_id": flow}, "_ts": T0});
    Event {
        id: "test:1".into(),
        queue: FLOW_COMPLETION_QUEUE.into(),
        row: row.as_object().unwrap().clone(),
        org_id: "root".into(),
    }
}

fn run(pairs: &[(&str, &str)], host: &FakeHost, event: Event) -> Result<Vec<Email>, Failure> {
    let (mut rule, _) = configure::<FlowCompletionRule>(&params(pairs), host).expect("configures");
    Ok(rule
        .handle(&event, host)?
        .into_iter()
        .map(|a| match a {
            Action::Email(e) => e,
            other => panic!("expected an e-mail, got {other:?}"),
        })
        .collect())
}

fn recipients(pairs: &[(&str, &str)], flow_id: &str) -> Vec<String> {
    let host = FakeHost::new(world());
    let emails = run(pairs, &host, completion("C.1", flow_id)).unwrap();
    emails.into_iter().flat_map(|e| e.recipients).collect()
}

const SOC: (&str, &str) = ("Recipients", "Address\nsoc@corp.example\n");
const DOMAINS: (&str, &str) = (
    "NotifyExecutorDomains",
    "UsernameRegex,Domain\n^adm-,admins.example\n.+,corp.example\n",
);

#[test]
fn recipients_come_from_each_source_of_section_6_4() {
    assert_eq!(recipients(&[SOC], "F.OK"), ["soc@corp.example"], "Recipients");
    assert_eq!(
        recipients(&[("NotifyExecutor", "Y"), DOMAINS], "F.OK"),
        ["bob@corp.example"],
        "creator mapped by the first matching row"
    );
    assert_eq!(
        recipients(&[("NotifyExecutor", "Y")], "F.MAIL"),
        ["carol@corp.example"],
        "a creator that is an address, as-is"
    );
    assert_eq!(
        recipients(&[("NotifyMetadataEMail", "Owner")], "F.OK"),
        ["ann@corp.example"],
        "metadata field"
    );
    assert_eq!(
        recipients(
            &[SOC, ("NotifyExecutor", "Y"), DOMAINS, ("NotifyMetadataEMail", "Owner")],
            "F.OK"
        ),
        ["soc@corp.example", "bob@corp.example", "ann@corp.example"],
        "all three, in that order"
    );
    assert_eq!(
        recipients(
            &[
                ("Recipients", "Address\nbob@corp.example\n"),
                ("NotifyExecutor", "Y"),
                DOMAINS
            ],
            "F.OK"
        ),
        ["bob@corp.example"],
        "duplicates are sent once"
    );
}

#[test]
fn d4_the_executor_mapping_needs_notify_executor() {
    assert!(recipients(&[DOMAINS], "F.OK").is_empty());
}

#[test]
fn d4_service_principals_are_never_recipients() {
    assert!(
        recipients(
            &[
                ("NotifyExecutor", "Y"),
                ("NotifyExecutorDomains", "UsernameRegex,Domain\n.*,corp.example\n")
            ],
            "F.SVC"
        )
        .is_empty()
    );
}

#[test]
fn a_metadata_value_that_is_not_an_address_is_logged_and_skipped() {
    let host = FakeHost::new(world());
    let emails = run(
        &[SOC, ("NotifyMetadataEMail", "Broken")],
        &host,
        completion("C.1", "F.OK"),
    )
    .unwrap();
    assert_eq!(emails[0].recipients, ["soc@corp.example"]);
    assert!(host.logged(LogLevel::Warn)[0].contains("client metadata Broken is not an e-mail address"));
}

#[test]
fn without_recipients_nothing_is_sent_and_the_log_says_why() {
    let host = FakeHost::new(world());
    assert!(run(&[], &host, completion("C.1", "F.OK")).unwrap().is_empty());
    assert!(
        host.logged(LogLevel::Info)
            .iter()
            .any(|l| l.contains("not notified: no recipients"))
    );
}

#[test]
fn a_skipped_flow_says_which_filter_stopped_it() {
    let host = FakeHost::new(world());
    assert!(
        run(&[SOC, ("DelayThreshold", "3600")], &host, completion("C.1", "F.OK"))
            .unwrap()
            .is_empty()
    );
    let debug = host.logged(LogLevel::Debug);
    assert!(
        debug[0].contains(
            "flow F.OK: not notified: completed 600 s after it was scheduled, less than DelayThreshold (3600 s)"
        ),
        "{debug:?}"
    );
}

#[test]
fn server_flows_are_ignored() {
    let host = FakeHost::new(world());
    assert!(run(&[SOC], &host, completion("server", "F.1234")).unwrap().is_empty());
}

#[test]
fn subject_summary_and_text_body_follow_section_6_5() {
    let host = FakeHost::new(world());
    let e = run(&[SOC], &host, completion("C.1", "F.OK")).unwrap().remove(0);
    assert_eq!(e.subject, "ws1.corp.example finished collecting Windows.Sys.Users");
    let text = &e.text;
    assert!(
        text.starts_with(
            "Client collection finished\n\nClient C.1 (ws1.corp.example) has finished collecting Windows.Sys.Users. \
         It took 12.3 s and returned 4 row(s). 0 file(s) were uploaded, totalling 0 B.\n\nID: C.1 ("
        ),
        "{text}"
    );
    assert!(
        text.contains("\nCollection finished: 2026-05-10T08:00:00Z (now)\n"),
        "{text}"
    );
    assert!(text.contains("\nCreator: bob\n"));
    let html = e.html.unwrap();
    assert!(
        html.contains("Status: OK") && html.contains(">Client details</h2>") && html.contains(">Flow details</h2>")
    );
}

#[test]
fn a_collection_email_ends_with_the_hosts_silence_link() {
    let url = "https://velonotify.example/silence?t=e30.c2ln";
    let mut host = FakeHost::new(world());
    host.silence_link = Some(url.into());
    let e = run(&[SOC], &host, completion("C.1", "F.OK")).unwrap().remove(0);
    assert!(
        e.text.ends_with(&format!("\n\nSilence similar for 2 h: {url}\n")),
        "{}",
        e.text
    );
    assert!(
        e.html
            .unwrap()
            .contains(&format!("<a href=\"{url}\">Silence similar for 2 h</a></td>"))
    );
}

#[test]
fn a_failed_flow_has_a_red_header_and_says_failed() {
    let mut world = world();
    world["flows"]["C.1"]["F.OK"]["state"] = json!("ERROR");
    world["flows"]["C.1"]["F.OK"]["status"] = json!("Cancelled by admin");
    world["flows"]["C.1"]["F.OK"]["execution_duration"] = json!(0);
    world["flows"]["C.1"]["F.OK"]["request"]["artifacts"] = json!(["A.One", "B.Two", "C.Three"]);
    let host = FakeHost::new(world);
    let e = run(&[SOC, ("ErrorHandling", "[]")], &host, completion("C.1", "F.OK"))
        .unwrap()
        .remove(0);
    assert_eq!(e.subject, "ws1.corp.example FAILED to collect A.One (+ 2 more)");
    assert!(
        e.text
            .contains("has FAILED to collect A.One, B.Two, C.Three. It took Null and returned"),
        "{}",
        e.text
    );
    assert!(e.text.contains("\nError: Cancelled by admin\n"));
    assert!(e.html.unwrap().contains("Status: needs attention"));
}

#[test]
fn an_unknown_client_is_called_client_in_the_subject() {
    let mut world = world();
    world["flows"]["C.9"] = json!({"F.OK": flow("F.OK", "FINISHED", "bob", &["Windows.Sys.Users"])});
    let host = FakeHost::new(world);
    let e = run(&[SOC], &host, completion("C.9", "F.OK")).unwrap().remove(0);
    assert_eq!(e.subject, "Client finished collecting Windows.Sys.Users");
}

#[test]
fn result_tables_are_cut_by_rows_columns_and_cell_length() {
    let mut world = world();
    let rows: Vec<Value> = (0..150)
        .map(|i| json!({"Name": format!("user{i}"), "Uid": i, "Gid": i, "Home": format!("/home/user{i}"), "Shell": "/bin/bash",
                        "Description": "x".repeat(50)}))
        .collect();
    world["flows"]["C.1"]["F.OK"]["results"] = json!({"Windows.Sys.Users": rows});
    let host = FakeHost::new(world);
    let e = run(
        &[
            SOC,
            (
                "IncludeResultTableFrom",
                "Source,Columns,MaxRows,CellLimit\nSys\\.Users,,20,10\n",
            ),
        ],
        &host,
        completion("C.1", "F.OK"),
    )
    .unwrap()
    .remove(0);
    let html = crate::testing::bare(&e.html.unwrap());
    assert!(
        html.contains(">Windows.Sys.Users results</h2>"),
        "section named after the source"
    );
    assert!(
        html.contains("<th>Name</th><th>Uid</th><th>Gid</th><th>Home</th><th></th></tr>"),
        "4 columns then a cut"
    );
    assert!(html.contains("<td rowspan=\"20\">…</td>"));
    assert!(html.contains("<td>/home/user…</td>"), "cells cut at 10 bytes");
    assert!(html.contains("(Showing 20 of 150 rows)"));
    assert!(!e.text.contains("user1"), "the text body has no result tables");
}

#[test]
fn d6_a_blank_max_rows_means_the_hard_cap_of_100() {
    let mut world = world();
    let rows: Vec<Value> = (0..150).map(|i| json!({"N": i})).collect();
    world["flows"]["C.1"]["F.OK"]["results"] = json!({"Windows.Sys.Users": rows});
    let host = FakeHost::new(world);
    let table = "Source,Columns,MaxRows,CellLimit\nUsers,,,\n";
    let e = run(
        &[SOC, ("IncludeResultTableFrom", table)],
        &host,
        completion("C.1", "F.OK"),
    )
    .unwrap()
    .remove(0);
    assert!(e.html.unwrap().contains("(Showing 100 of 150 rows)"));
}

#[test]
fn attachments_are_jsonl_or_csv_named_after_the_source() {
    let mut world = world();
    world["flows"]["C.1"]["F.OK"]["artifacts_with_results"] = json!(["Windows.KapeFiles.Targets/All File Metadata"]);
    world["flows"]["C.1"]["F.OK"]["results"] = json!({"Windows.KapeFiles.Targets/All File Metadata": [{"Path": "C:\\a.txt", "Size": 3}, {"Path": "C:\\b.txt", "Size": 5}]});
    let host = FakeHost::new(world);
    for (format, name, body) in [
        (
            "jsonl",
            "Windows.KapeFiles.Targets.All File Metadata.jsonl",
            "{\"Path\":\"C:\\\\a.txt\"}\n{\"Path\":\"C:\\\\b.txt\"}\n",
        ),
        (
            "csv",
            "Windows.KapeFiles.Targets.All File Metadata.csv",
            "Path\nC:\\a.txt\nC:\\b.txt\n",
        ),
    ] {
        let e = run(
            &[
                SOC,
                (
                    "IncludeResultAttachmentFrom",
                    "Source,Columns,MaxRows\nKapeFiles,^Path$,\n",
                ),
                ("AttachmentFormat", format),
            ],
            &host,
            completion("C.1", "F.OK"),
        )
        .unwrap()
        .remove(0);
        let mail = mailparse::parse_mail(&e.message).unwrap();
        assert_eq!(mail.ctype.mimetype, "multipart/mixed");
        let attachment = &mail.subparts[1];
        assert_eq!(
            attachment
                .get_content_disposition()
                .params
                .get("filename")
                .map(String::as_str),
            Some(name)
        );
        assert_eq!(String::from_utf8(attachment.get_body_raw().unwrap()).unwrap(), body);
    }
}

#[test]
fn attachments_over_attachments_max_mib_are_all_left_out_with_a_log_line() {
    let mut world = world();
    let big: Vec<Value> = (0..3000).map(|i| json!({"Line": format!("{i:0>400}")})).collect();
    world["flows"]["C.1"]["F.OK"]["artifacts_with_results"] = json!(["Small", "Big"]);
    world["flows"]["C.1"]["F.OK"]["results"] = json!({"Small": [{"x": 1}], "Big": big});
    let host = FakeHost::new(world);
    let e = run(
        &[
            SOC,
            (
                "IncludeResultAttachmentFrom",
                "Source,Columns,MaxRows\nSmall,,\nBig,,\n",
            ),
            ("AttachmentsMaxMiB", "1"),
        ],
        &host,
        completion("C.1", "F.OK"),
    )
    .unwrap()
    .remove(0);
    let mail = mailparse::parse_mail(&e.message).unwrap();
    assert_eq!(
        mail.ctype.mimetype, "multipart/alternative",
        "all or nothing: not even the small file"
    );
    let warnings = host.logged(LogLevel::Warn);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("exceed AttachmentsMaxMiB (1 MiB); sent without attachments")),
        "{warnings:?}"
    );
}

#[test]
fn attachments_never_make_an_email_the_host_would_refuse() {
    let mut world = world();
    let rows: Vec<Value> = (0..2000).map(|i| json!({"Line": format!("{i:0>400}")})).collect();
    world["flows"]["C.1"]["F.OK"]["results"] = json!({"Windows.Sys.Users": rows});
    let mut host = FakeHost::new(world);
    host.max_email_bytes = 256 * 1024;
    let e = run(
        &[SOC, ("IncludeResultAttachmentFrom", "Source,Columns,MaxRows\n.,,\n")],
        &host,
        completion("C.1", "F.OK"),
    )
    .unwrap()
    .remove(0);
    assert!((e.message.len() as u64) < host.max_email_bytes);
    assert!(
        host.logged(LogLevel::Warn)
            .iter()
            .any(|w| w.contains("the largest e-mail this host sends"))
    );
}

#[test]
fn uploads_are_listed_with_download_links() {
    let mut world = world();
    world["flows"]["C.1"]["F.OK"]["total_uploaded_files"] = json!(2);
    world["flows"]["C.1"]["F.OK"]["uploads"] = json!([
        {"vfs_path": "/clients/C.1/collections/F.OK/uploads/auto/C%3A/Users/ann/secret plan.docx", "client_path": "C:\\Users\\ann\\secret plan.docx",
         "uploaded_size": 48213, "_Components": ["clients", "C.1", "collections", "F.OK", "uploads", "auto", "C:", "Users", "ann", "secret plan.docx"]},
        {"vfs_path": "/x", "client_path": "<img src=x>", "uploaded_size": 5, "_Components": ["x"]},
    ]);
    let host = FakeHost::new(world);
    let e = run(
        &[SOC, ("IncludeUploadsTableRows", "1")],
        &host,
        completion("C.1", "F.OK"),
    )
    .unwrap()
    .remove(0);
    let html = crate::testing::bare(&e.html.unwrap());
    assert!(html.contains(">Uploads</h2>"));
    assert!(html.contains("<th>File name</th><th>Size</th><th>URL</th>"));
    assert!(
        html.contains("<td>C:&#92;Users&#92;ann&#92;secret plan.docx</td><td>48 kB</td>"),
        "{html}"
    );
    assert!(
        html.contains("href=\"https://velociraptor.example.org:8889/api/v1/DownloadVFSFile?fs_components=clients&amp;")
    );
    assert!(html.contains("(Showing 1 of 2 rows)"));
    assert!(!html.contains("<img"));
}

#[test]
fn bad_rows_and_unknown_flows_are_named_in_one_message() {
    let host = FakeHost::new(world());
    let mut r = configure::<FlowCompletionRule>(&params(&[SOC]), &host).unwrap().0;
    let mut handle = |row: Value| {
        let mut event = completion("C.1", "F.OK");
        event.row = row.as_object().unwrap().clone();
        r.handle(&event, &host).unwrap_err().to_string()
    };
    let base = json!({"Timestamp": T0, "ClientId": "C.1", "FlowId": "F.OK", "Flow": {}});
    let with = |key: &str, value: Value| {
        let mut row = base.clone();
        row[key] = value;
        row
    };
    let without = |key: &str| {
        let mut row = base.clone();
        row.as_object_mut().unwrap().remove(key);
        row
    };
    assert_eq!(
        handle(without("FlowId")),
        "bad event: System.Flow.Completion row: the row has no FlowId column"
    );
    assert_eq!(
        handle(with("FlowId", json!(7))),
        "bad event: System.Flow.Completion row: column FlowId should be a flow id, got 7"
    );
    assert_eq!(
        handle(without("ClientId")),
        "bad event: flow F.OK: the row has no ClientId column"
    );
    assert_eq!(
        handle(with("Flow", json!("F.OK"))),
        "bad event: flow F.OK: column Flow should be the flow object, got \"F.OK\""
    );
    assert_eq!(
        handle(without("Flow")),
        "bad event: flow F.OK: the row has no Flow column"
    );
    assert_eq!(
        handle(with("FlowId", json!("F.GONE"))),
        "bad event: flow F.GONE of client C.1: the lookups do not know this flow"
    );
}

#[test]
fn every_parameter_of_the_artifact_is_declared_with_its_default() {
    let names: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "Secret",
            "Recipients",
            "NotifyExecutor",
            "NotifyExecutorDomains",
            "NotifyMetadataEMail",
            "Sender",
            "HTML",
            "ArtifactsToAlertOn",
            "ArtifactsToIgnore",
            "ClientLabelsToAlertOn",
            "ClientLabelsToIgnore",
            "NotifyHunts",
            "NewClientArtifacts",
            "ArtifactPermToAlertOn",
            "NewClientThreshold",
            "ErrorHandling",
            "DelayThreshold",
            "SendInterval",
            "KeepEmptyRows",
            "ClientMetadata",
            "IncludeUploadsTableRows",
            "IncludeResultTableFrom",
            "ResultTableMaxColumns",
            "IncludeResultAttachmentFrom",
            "AttachmentFormat",
            "AttachmentsMaxMiB",
            "NotifyIfResultsLabels",
            "NotifyIfUploadsLabels",
        ]
    );
    let default = |n: &str| PARAMS.iter().find(|p| p.name == n).unwrap().default;
    assert_eq!(default("ArtifactsToIgnore"), "^(Custom\\.)?Generic\\.Client\\.Info$");
    assert_eq!(default("ErrorHandling"), "[\"IgnoreCancelled\"]");
    assert_eq!(default("DelayThreshold"), "10");
    assert_eq!(default("NewClientThreshold"), "300");
    assert_eq!(default("IncludeUploadsTableRows"), "10");
    assert_eq!(default("ResultTableMaxColumns"), "4");
    assert_eq!(default("AttachmentsMaxMiB"), "100");
    assert_eq!(default("NotifyIfResultsLabels"), "^notify_results$");
}

/// A decision reads only `FlowFacts::FLOW_MEMBERS` of the collection record:
/// on every flow of the fixtures and the demo's world, it sees what it would
/// have seen in the whole record.
#[test]
fn a_flow_is_decided_on_the_members_it_reads_as_on_the_whole_record() {
    let fixture: Value = serde_json::from_str(include_str!(
        "../../../../../tests/data/velociraptor/System.Flow.Completion.Flow.json"
    ))
    .unwrap();
    let world: Value = serde_json::from_str(include_str!("../../../../../tests/data/demo/world.json")).unwrap();
    let mut flows: Vec<Value> = fixture.as_array().unwrap().clone();
    for per_client in world["flows"].as_object().unwrap().values() {
        flows.extend(per_client.as_object().unwrap().values().cloned());
    }
    assert!(flows.len() >= 5, "{} flows", flows.len());
    let host = FakeHost::new(json!({}));
    let client = json!({"labels": ["critical"], "first_seen_at": 1});
    for flow in &flows {
        let event = completion("C.1", "F.1");
        let completion = Completion::parse(&event.row).unwrap();
        let answer = Answer::from_value(flow);
        let read = answer.members(FlowFacts::FLOW_MEMBERS).unwrap();
        assert!(read.to_string().len() < flow.to_string().len() || flow.to_string().len() < 200);
        let on_members = FlowFacts::gather(&completion, &read, &client, None, false, &host).unwrap();
        let on_whole = FlowFacts::gather(&completion, flow, &client, None, false, &host).unwrap();
        assert_eq!(on_members, on_whole, "{flow}");
    }
}
