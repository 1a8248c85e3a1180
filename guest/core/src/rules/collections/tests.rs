//! The collection monitors' decisions, table by table: when a hunt is
//! failing or has stalled, when a collection is stuck, and that each is
//! reported once.

use serde_json::{Value, json};

use super::hunts::HuntsRule;
use super::stuck::StuckFlowsRule;
use crate::rules::configure;
use crate::testing::{FakeHost, alert_context as context, tick_alerts as alerts};

/// The host's time: 2026-05-10T08:00:00Z, in seconds.
const T0: u64 = 1_778_400_000;
const MINUTE: u64 = 60;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn names(raised: Vec<crate::action::Alert>) -> Vec<String> {
    let mut names: Vec<String> = raised.into_iter().map(|a| a.name).collect();
    names.sort();
    names
}

/// A running hunt started at `started_s`, with its counts.
fn hunt(id: &str, started_s: u64, scheduled: u64, finished: u64, failed: u64) -> Value {
    json!({
        "hunt_id": id,
        "hunt_description": format!("Triage {id}"),
        "creator": "carol",
        "state": "RUNNING",
        "create_time": started_s * 1_000_000,
        "start_time": started_s * 1_000_000,
        "artifacts": ["Windows.KapeFiles.Targets"],
        "stats": {
            "total_clients_scheduled": scheduled,
            "total_finished_clients": finished,
            "total_clients_with_errors": failed,
        },
    })
}

fn hunts_host(now_s: u64, hunts: Vec<Value>) -> FakeHost {
    let hunts: serde_json::Map<String, Value> = hunts
        .into_iter()
        .map(|h| (h["hunt_id"].as_str().unwrap_or("").to_string(), h))
        .collect();
    let mut host = FakeHost::new(json!({"hunts": hunts}));
    host.now_us = now_s * 1_000_000;
    host
}

fn set_hunts(host: &mut FakeHost, now_s: u64, hunts: Vec<Value>) {
    host.now_us = now_s * 1_000_000;
    host.world = hunts_host(now_s, hunts).world;
}

fn hunts_rule(host: &FakeHost, given: &[(&str, &str)]) -> HuntsRule {
    configure::<HuntsRule>(&params(given), host).unwrap().0
}

/// Failing by count (20) or by share (10% once 10 are scheduled), with
/// the defaults and with each check off.
#[test]
fn a_hunt_is_failing_past_a_count_or_a_share() {
    type Case = (&'static [(&'static str, &'static str)], u64, u64, bool);
    let cases: Vec<Case> = vec![
        (&[], 100, 9, false),
        (&[], 100, 10, true),
        (&[], 9, 9, false),
        (&[], 10, 1, true),
        (&[], 1_000, 19, false),
        (&[], 1_000, 20, true),
        (&[("FailedPercent", "0")], 100, 19, false),
        (&[("FailedPercent", "0")], 100, 20, true),
        (&[("FailedCount", "0")], 1_000, 99, false),
        (&[("FailedCount", "0"), ("FailedPercent", "0")], 1_000, 1_000, false),
        (&[("MinScheduled", "1"), ("FailedPercent", "50")], 2, 1, true),
    ];
    for (given, scheduled, failed, failing) in cases {
        let host = hunts_host(T0, vec![hunt("H.1", T0 - MINUTE, scheduled, scheduled, failed)]);
        let raised = names(alerts(&mut hunts_rule(&host, given), &host));
        let expected: Vec<String> = match failing {
            true => vec!["Hunt Triage H.1 (H.1) is failing".into()],
            false => vec![],
        };
        assert_eq!(raised, expected, "{given:?}: {failed} of {scheduled} failed");
    }
}

#[test]
fn a_failing_hunt_is_reported_once_with_its_counts_and_link() {
    let mut host = hunts_host(T0, vec![hunt("H.1", T0 - 10 * MINUTE, 200, 150, 30)]);
    let raised = alerts(&mut hunts_rule(&host, &[]), &host);
    assert_eq!(raised.len(), 1);
    let c = context(&raised[0]);
    assert_eq!(c["HuntId"], "H.1");
    assert_eq!(c["Creator"], "carol");
    assert_eq!(c["Note"], "30 of 200 scheduled clients failed (15%)");
    assert_eq!(
        c["Link"],
        "https://velociraptor.example.org:8889/app/index.html?org_id=root#/hunts/H.1/overview"
    );
    assert_eq!(raised[0].client_id.as_deref(), Some("server"));
    // More failures, later ticks, a module restarted on the same state.
    set_hunts(
        &mut host,
        T0 + MINUTE,
        vec![hunt("H.1", T0 - 10 * MINUTE, 300, 290, 80)],
    );
    assert!(alerts(&mut hunts_rule(&host, &[]), &host).is_empty());
    let mut rule = hunts_rule(&host, &[]);
    assert!(alerts(&mut rule, &host).is_empty());
}

/// A hunt that scheduled no client stalls `StallMinutes` after it started,
/// even when the monitor first sees it then.
#[test]
fn a_hunt_that_schedules_no_client_has_stalled_since_it_started() {
    for (started_ago, stalled) in [(59 * MINUTE, false), (61 * MINUTE, true), (30 * 24 * 60 * MINUTE, true)] {
        let host = hunts_host(T0, vec![hunt("H.1", T0 - started_ago, 0, 0, 0)]);
        let raised = alerts(&mut hunts_rule(&host, &[]), &host);
        assert_eq!(raised.len(), usize::from(stalled), "started {started_ago} s ago");
        if stalled {
            assert_eq!(raised[0].name, "Hunt Triage H.1 (H.1) has stalled");
            assert_eq!(context(&raised[0])["Note"], "no client scheduled in 60 minutes");
        }
    }
    let host = hunts_host(T0, vec![hunt("H.1", T0 - 600 * MINUTE, 0, 0, 0)]);
    assert!(alerts(&mut hunts_rule(&host, &[("StallMinutes", "0")]), &host).is_empty());
}

/// Runs `steps` (minutes after T0, then H.1's scheduled and finished
/// counts; None: H.1 not running) on one rule, asserting the alerts of
/// each. H.2, whose clients partly finished, runs throughout and never
/// stalls: a client gone offline mid-collection is not the hunt's trouble.
/// Minutes after T0, H.1's counts (scheduled, finished), the alerts.
type HuntStep<'a> = (u64, Option<(u64, u64)>, &'a [&'a str]);

fn run_hunt_steps(steps: &[HuntStep]) {
    let started = T0 - 600 * MINUTE;
    let mut host = hunts_host(T0, vec![]);
    let mut rule = hunts_rule(&host, &[]);
    for (minutes, counts, expected) in steps {
        let mut hunts = vec![hunt("H.2", started, 8, 5, 0)];
        if let Some((scheduled, finished)) = counts {
            hunts.push(hunt("H.1", started, *scheduled, *finished, 0));
        }
        set_hunts(&mut host, T0 + minutes * MINUTE, hunts);
        let raised = alerts(&mut rule, &host);
        assert_eq!(
            names(raised.clone()),
            *expected,
            "{minutes} minutes after the first look"
        );
        if let Some(alert) = raised.first() {
            let note = context(alert)["Note"].as_str().unwrap().to_string();
            assert!(note.starts_with("none of the "), "{note}");
        }
    }
}

const STALLED: &[&str] = &["Hunt Triage H.1 (H.1) has stalled"];

/// None of the scheduled clients finished and none scheduled for an hour:
/// one alert per spell; new clients scheduled start a new spell.
#[test]
fn a_hunt_none_of_whose_clients_finish_stalls_once_per_spell() {
    run_hunt_steps(&[
        (0, Some((10, 0)), &[]),
        (59, Some((10, 0)), &[]),
        (61, Some((10, 0)), STALLED),
        (62, Some((10, 0)), &[]),
        (70, Some((11, 0)), &[]),
        (129, Some((11, 0)), &[]),
        (131, Some((11, 0)), STALLED),
        (600, Some((11, 11)), &[]),
    ]);
}

/// A hunt paused for a day (not in the answer) and resumed starts a new
/// spell: it is not stalled the moment it is back.
#[test]
fn a_hunt_back_from_a_pause_starts_a_new_spell() {
    run_hunt_steps(&[
        (0, Some((10, 0)), &[]),
        (30, None, &[]),
        (24 * 60, None, &[]),
        (24 * 60 + 1, Some((10, 0)), &[]),
        (24 * 60 + 60, Some((10, 0)), &[]),
        (24 * 60 + 62, Some((10, 0)), STALLED),
    ]);
}

/// A count that goes back (a lagging or forged answer) and up again is
/// not progress.
#[test]
fn counts_that_go_back_and_up_again_are_not_progress() {
    run_hunt_steps(&[
        (0, Some((10, 0)), &[]),
        (20, Some((9, 0)), &[]),
        (40, Some((10, 0)), &[]),
        (61, Some((10, 0)), STALLED),
    ]);
}

/// An expired hunt (the server stops it) and one marked stopped are not
/// judged, whatever their counts.
#[test]
fn expired_and_stopped_hunts_are_not_judged() {
    let mut expired = hunt("H.1", T0 - 600 * MINUTE, 100, 100, 100);
    expired["expires"] = json!((T0 - MINUTE) * 1_000_000);
    let mut stopped = hunt("H.2", T0 - 600 * MINUTE, 0, 0, 0);
    stopped["stats"]["stopped"] = json!(true);
    let mut later = hunt("H.3", T0 - 600 * MINUTE, 100, 100, 100);
    later["expires"] = json!((T0 + MINUTE) * 1_000_000);
    let host = hunts_host(T0, vec![expired, stopped, later]);
    assert_eq!(
        names(alerts(&mut hunts_rule(&host, &[]), &host)),
        ["Hunt Triage H.3 (H.3) is failing"]
    );
}

/// Counts at the top of the range neither overflow nor wrap; a hunt id too
/// long or not an id is skipped, and the log says so.
#[test]
fn huge_counts_and_unusable_ids() {
    let huge = hunt("H.1", T0 - MINUTE, u64::MAX, u64::MAX, u64::MAX);
    let long = hunt(&format!("H.{}", "x".repeat(300)), T0 - MINUTE, 10, 10, 10);
    let slash = hunt("H.1/../x", T0 - MINUTE, 10, 10, 10);
    let host = hunts_host(T0, vec![huge, long, slash]);
    let raised = alerts(&mut hunts_rule(&host, &[("FailedCount", "0")]), &host);
    assert_eq!(names(raised.clone()), ["Hunt Triage H.1 (H.1) is failing"]);
    assert_eq!(
        context(&raised[0])["Note"],
        format!("{0} of {0} scheduled clients failed (100%)", u64::MAX)
    );
    assert_eq!(
        host.logged(crate::host::LogLevel::Warn),
        ["2 hunts without a usable hunt id were skipped"]
    );
}

#[test]
fn many_hunts_in_trouble_at_once_make_twenty_alerts_and_one_that_counts_the_rest() {
    let hunts = (0..30)
        .map(|i| hunt(&format!("H.{i:02}"), T0 - 10 * MINUTE, 100, 100, 50))
        .collect();
    let host = hunts_host(T0, hunts);
    let raised = alerts(&mut hunts_rule(&host, &[]), &host);
    assert_eq!(raised.len(), 21);
    let summary = raised.last().unwrap();
    assert_eq!(summary.name, "10 more hunts in trouble");
    assert_eq!(context(summary)["Kinds"], "failing ×10");
    assert_eq!(
        context(summary)["Link"],
        "https://velociraptor.example.org:8889/app/index.html?org_id=root#/hunts"
    );
}

/// Rows the server may send: counts as text, counts missing, an older
/// server's counts by outcome, no id, a long hostile description.
#[test]
fn odd_hunt_rows_are_read_leniently() {
    let mut older = hunt("H.2", T0 - 600 * MINUTE, 0, 0, 0);
    older["stats"] = json!({"total_clients_scheduled": "40", "total_clients_with_results": 20,
                            "total_clients_without_results": 5, "total_clients_with_errors": "15"});
    let mut long = hunt("H.3", T0 - MINUTE, 10, 10, 10);
    long["hunt_description"] = json!(format!("<script>{}</script>", "x".repeat(5_000)));
    let mut no_stats = hunt("H.4", T0 - MINUTE, 0, 0, 0);
    no_stats.as_object_mut().unwrap().remove("stats");
    let nameless = json!({"state": "RUNNING", "stats": {"total_clients_with_errors": 99}});
    let host = hunts_host(T0, vec![older, long, no_stats, nameless]);
    let raised = alerts(&mut hunts_rule(&host, &[]), &host);
    let names = names(raised.clone());
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[1], "Hunt Triage H.2 (H.2) is failing");
    assert!(names[0].starts_with("Hunt <script>xxx"), "{}", names[0]);
    assert!(
        names[0].len() < 300 && names[0].ends_with("… (H.3) is failing"),
        "{}",
        names[0]
    );
    let h2 = raised.iter().find(|a| a.name.contains("H.2")).unwrap();
    assert_eq!(context(h2)["Finished"], "40");
    assert_eq!(context(h2)["Failed"], "15");
}

// --- Collections stuck ---

/// An unfinished collection of `artifacts`, created and started at
/// `created_s`.
fn flow(artifacts: &[&str], created_s: u64, state: &str) -> Value {
    json!({
        "state": state,
        "create_time": created_s * 1_000_000,
        "start_time": created_s * 1_000_000,
        "request": {"artifacts": artifacts, "creator": "bob"},
    })
}

fn flows_host(now_s: u64, flows: Value) -> FakeHost {
    let mut host = FakeHost::new(json!({"flows": flows}));
    host.now_us = now_s * 1_000_000;
    host
}

fn stuck_rule(host: &FakeHost, given: &[(&str, &str)]) -> StuckFlowsRule {
    configure::<StuckFlowsRule>(&params(given), host).unwrap().0
}

/// Thresholds by artifact: the first row matching one of the
/// collection's artifacts; 0 minutes and no row: never stuck.
#[test]
fn a_collection_is_stuck_past_its_artifacts_threshold() {
    let custom = "Artifact,Minutes\n^Custom\\.Slow$,0\n^Custom\\.,30\n";
    let cases: Vec<(&str, &[&str], u64, &str, bool)> = vec![
        ("", &["Generic.Client.Info"], 61, "IN_PROGRESS", true),
        ("", &["Generic.Client.Info"], 59, "IN_PROGRESS", false),
        ("", &["Generic.Client.Info"], 61, "FINISHED", false),
        ("", &["Generic.Client.Info"], 61, "UNRESPONSIVE", true),
        ("", &["Windows.KapeFiles.Targets"], 61, "RUNNING", false),
        ("", &["Windows.KapeFiles.Targets"], 241, "WAITING", true),
        (
            "",
            &["Generic.Client.Info", "Windows.KapeFiles.Targets"],
            61,
            "RUNNING",
            false,
        ),
        (custom, &["Custom.Slow"], 6_000, "RUNNING", false),
        (custom, &["Custom.Fast"], 31, "RUNNING", true),
        (custom, &["Generic.Client.Info"], 6_000, "RUNNING", false),
    ];
    for (table, artifacts, age_minutes, state, stuck) in cases {
        let host = flows_host(
            T0,
            json!({"C.1": {"F.1": flow(artifacts, T0 - age_minutes * MINUTE, state)}}),
        );
        let given: Vec<(&str, &str)> = match table {
            "" => vec![],
            table => vec![("Thresholds", table)],
        };
        let raised = alerts(&mut stuck_rule(&host, &given), &host);
        assert_eq!(
            raised.len(),
            usize::from(stuck),
            "{artifacts:?} {state} for {age_minutes} minutes ({table:?})"
        );
    }
}

#[test]
fn a_stuck_collection_is_reported_once_with_its_client_and_link() {
    let mut host = flows_host(
        T0,
        json!({"C.1": {"F.1": flow(&["Generic.Client.Info"], T0 - 90 * MINUTE, "IN_PROGRESS")},
               "C.2": {"F.2": flow(&["Windows.Sys.Users"], T0 - 5 * MINUTE, "RUNNING")}}),
    );
    let raised = alerts(&mut stuck_rule(&host, &[]), &host);
    assert_eq!(raised.len(), 1);
    assert_eq!(
        raised[0].name,
        "Collection F.1 (Generic.Client.Info) on C.1 has run for more than 60 minutes"
    );
    let c = context(&raised[0]);
    assert_eq!(c["ClientId"], "C.1");
    assert_eq!(c["State"], "IN_PROGRESS");
    assert_eq!(c["Creator"], "bob");
    assert_eq!(c["RunningFor"], "1 hour");
    assert_eq!(
        c["Link"],
        "https://velociraptor.example.org:8889/app/index.html?org_id=root#/collected/C.1/F.1/overview"
    );
    // Later ticks and a restart: the same collection is not reported again;
    // the other is, once it is past its hour.
    host.now_us = (T0 + 60 * MINUTE) * 1_000_000;
    let again = names(alerts(&mut stuck_rule(&host, &[]), &host));
    assert_eq!(
        again,
        vec!["Collection F.2 (Windows.Sys.Users) on C.2 has run for more than 60 minutes"]
    );
    assert!(alerts(&mut stuck_rule(&host, &[]), &host).is_empty());
}

#[test]
fn many_stuck_collections_make_twenty_alerts_and_one_that_counts_the_rest() {
    let flows: serde_json::Map<String, Value> = (0..25)
        .map(|i| {
            let artifacts = ["A.1", "A.2", "A.3", "A.4", "A.5"];
            (
                format!("C.{i:02}"),
                json!({"F.1": flow(&artifacts, T0 - 2 * 60 * MINUTE, "RUNNING")}),
            )
        })
        .collect();
    let host = flows_host(T0, Value::Object(flows));
    let raised = alerts(&mut stuck_rule(&host, &[]), &host);
    assert_eq!(raised.len(), 21);
    assert_eq!(
        raised[0].name,
        "Collection F.1 (A.1, A.2, A.3, 2 more) on C.00 has run for more than 60 minutes"
    );
    assert_eq!(raised[20].name, "5 more stuck collections");
}

/// A collection scheduled three days ago for a laptop that was offline
/// runs from when the laptop starts it, or, not started yet, from when it
/// was first seen in the laptop's hands: not from when it was scheduled.
#[test]
fn a_collection_queued_for_an_offline_client_runs_from_when_it_was_handed_over() {
    let scheduled = T0 - 3 * 24 * 60 * MINUTE;
    let mut waiting = flow(&["Generic.Client.Info"], scheduled, "WAITING");
    waiting["start_time"] = json!(0);
    let mut started = flow(&["Generic.Client.Info"], scheduled, "IN_PROGRESS");
    started["start_time"] = json!((T0 - 5 * MINUTE) * 1_000_000);
    let mut host = flows_host(T0, json!({"C.1": {"F.1": waiting}, "C.2": {"F.2": started}}));
    let mut rule = stuck_rule(&host, &[]);
    for (minutes, expected) in [
        (0, vec![]),
        (
            56,
            vec!["Collection F.2 (Generic.Client.Info) on C.2 has run for more than 60 minutes"],
        ),
        (59, vec![]),
        (
            61,
            vec!["Collection F.1 (Generic.Client.Info) on C.1 has run for more than 60 minutes"],
        ),
        (62, vec![]),
    ] {
        host.now_us = (T0 + minutes * MINUTE) * 1_000_000;
        assert_eq!(names(alerts(&mut rule, &host)), expected, "{minutes} minutes later");
    }
}

/// More unfinished collections than one answer holds: read a page a tick,
/// each reported once; a new one stuck behind 1,000 already reported is
/// reported within two ticks.
#[test]
fn pages_reach_every_collection_however_many_run() {
    let oldest = T0 - 3 * 24 * 60 * MINUTE;
    let mut flows: serde_json::Map<String, Value> = (0..1_200u64)
        .map(|i| {
            (
                format!("C.{i:04}"),
                json!({"F.1": flow(&["A.1"], oldest + i, "IN_PROGRESS")}),
            )
        })
        .collect();
    let mut host = flows_host(T0, Value::Object(flows.clone()));
    let mut rule = stuck_rule(&host, &[("MaxAlertsPerTick", "1000")]);
    let counts: Vec<usize> = (0..3).map(|_| alerts(&mut rule, &host).len()).collect();
    assert_eq!(counts, [1_000, 200, 0]);
    flows.insert(
        "C.new".into(),
        json!({"F.9": flow(&["A.1"], T0 - 2 * 60 * MINUTE, "RUNNING")}),
    );
    host.world = json!({"flows": flows});
    let next: Vec<Vec<String>> = (0..3).map(|_| names(alerts(&mut rule, &host))).collect();
    assert_eq!(
        next.concat(),
        ["Collection F.9 (A.1) on C.new has run for more than 60 minutes"]
    );
}

/// Ids that cannot be Velociraptor's are neither state keys nor names.
#[test]
fn collections_without_usable_ids_are_skipped_and_logged() {
    let long = format!("F.{}", "x".repeat(300));
    let host = flows_host(
        T0,
        json!({"C.1": {long: flow(&["A"], T0 - 600 * MINUTE, "RUNNING"),
                       "F.a/b": flow(&["A"], T0 - 600 * MINUTE, "RUNNING"),
                       "F.ok": flow(&["A"], T0 - 600 * MINUTE, "RUNNING")}}),
    );
    let raised = names(alerts(&mut stuck_rule(&host, &[]), &host));
    assert_eq!(raised, ["Collection F.ok (A) on C.1 has run for more than 60 minutes"]);
    assert_eq!(
        host.logged(crate::host::LogLevel::Warn),
        ["2 collections without a usable client or flow id were skipped"]
    );
}

#[test]
fn a_bad_thresholds_table_is_refused_naming_its_row_and_column() {
    let host = flows_host(T0, json!({}));
    let cases = [
        ("Artifact,Minutes\n.,60\n(,5\n", "row 2 Artifact"),
        (
            "Artifact,Minutes\n.,an hour\n",
            "row 1 Minutes: expected minutes from 0 to 525600, got \"an hour\"",
        ),
        ("Artifact,Minutes\n.,-5\n", "row 1 Minutes"),
    ];
    for (table, expected) in cases {
        let err = configure::<StuckFlowsRule>(&params(&[("Thresholds", table)]), &host).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Thresholds") && text.contains(expected),
            "{table:?}: {text}"
        );
    }
}
