//! The fleet monitors' decisions, table by table: which clients are
//! quiet, when a notice says one is back, when enrolments make a spike.

use serde_json::{Value, json};

use super::enrolment::EnrolmentSpikeRule;
use super::quiet::QuietClientsRule;
use crate::rules::configure;
use crate::testing::{FakeHost, alert_context as context, tick_alerts as alerts};

/// The host's time: 2026-05-10T08:00:00Z, in seconds.
const T0: u64 = 1_778_400_000;
const MINUTE: u64 = 60;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn client(id: &str, labels: &[&str], first_seen_s: u64, last_seen_s: u64) -> (String, Value) {
    let row = json!({
        "client_id": id,
        "os_info": {"hostname": format!("host-{}", &id[2..])},
        "labels": labels,
        "first_seen_at": first_seen_s,
        "last_seen_at": last_seen_s * 1_000_000,
    });
    (id.to_string(), row)
}

fn host_at(now_s: u64, clients: Vec<(String, Value)>) -> FakeHost {
    let clients: serde_json::Map<String, Value> = clients.into_iter().collect();
    let mut host = FakeHost::new(json!({"clients": clients}));
    host.now_us = now_s * 1_000_000;
    host
}

fn names(actions: Vec<crate::action::Alert>) -> Vec<String> {
    let mut names: Vec<String> = actions.into_iter().map(|a| a.name).collect();
    names.sort();
    names
}

/// Which watched clients are quiet after 60 minutes, by label and last
/// contact.
#[test]
fn a_labelled_client_unseen_for_longer_than_the_threshold_is_quiet() {
    let cases: Vec<(&[&str], u64, bool)> = vec![
        (&["critical"], 61 * MINUTE, true),
        (&["Critical", "windows"], 3 * 24 * 60 * MINUTE, true),
        (&["critical"], 59 * MINUTE, false),
        (&["critical"], 60 * MINUTE, false),
        (&["windows"], 600 * MINUTE, false),
        (&[], 600 * MINUTE, false),
    ];
    for (labels, unseen_s, quiet) in cases {
        let host = host_at(T0, vec![client("C.1", labels, T0 - 86_400, T0 - unseen_s)]);
        let mut rule = configure::<QuietClientsRule>(&params(&[]), &host).unwrap().0;
        let raised = names(alerts(&mut rule, &host));
        let expected: Vec<String> = match quiet {
            true => vec!["Client host-1 (C.1) is quiet".into()],
            false => Vec::new(),
        };
        assert_eq!(raised, expected, "labels {labels:?}, unseen {unseen_s} s");
    }
}

/// One alert per quiet spell (not one per tick), one notice when the
/// client is back, and a second spell alerts again.
#[test]
fn a_quiet_spell_alerts_once_and_its_end_once() {
    let mut host = host_at(T0, vec![client("C.1", &["critical"], 0, T0 - 2 * 60 * MINUTE)]);
    let mut rule = configure::<QuietClientsRule>(&params(&[]), &host).unwrap().0;
    assert_eq!(names(alerts(&mut rule, &host)), ["Client host-1 (C.1) is quiet"]);
    host.now_us += 60 * 1_000_000;
    assert!(alerts(&mut rule, &host).is_empty(), "still quiet: said already");
    // A restart: the new instance knows from the state.
    let mut restarted = configure::<QuietClientsRule>(&params(&[]), &host).unwrap().0;
    assert!(alerts(&mut restarted, &host).is_empty());
    host.world["clients"]["C.1"]["last_seen_at"] = json!((T0 + 60) * 1_000_000);
    let back = alerts(&mut restarted, &host);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].name, "Client host-1 (C.1) is back online");
    assert_eq!(
        context(&back[0])["Link"],
        "https://velociraptor.example.org:8889/app/index.html?org_id=root#/host/C.1"
    );
    assert!(alerts(&mut restarted, &host).is_empty(), "back: said already");
    host.now_us = (T0 + 3 * 60 * MINUTE) * 1_000_000;
    assert_eq!(names(alerts(&mut restarted, &host)), ["Client host-1 (C.1) is quiet"]);
}

#[test]
fn the_alert_says_when_the_client_was_last_seen() {
    let host = host_at(T0, vec![client("C.1", &["critical", "finance"], 0, T0 - 90 * MINUTE)]);
    let mut rule = configure::<QuietClientsRule>(&params(&[]), &host).unwrap().0;
    let context = context(&alerts(&mut rule, &host)[0]);
    assert_eq!(context["ClientId"], "C.1");
    assert_eq!(context["Hostname"], "host-1");
    assert_eq!(context["Labels"], "critical, finance");
    assert_eq!(context["LastSeen"], "2026-05-10T06:30:00Z (1 hour ago)");
    assert_eq!(context["QuietFor"], "1 hour");
    assert_eq!(context["QuietAfter"], "60 minutes");
}

#[test]
fn without_back_online_notices_and_with_an_empty_label_every_client_is_watched() {
    let mut host = host_at(
        T0,
        vec![
            client("C.1", &[], 0, T0 - 30 * MINUTE),
            client("C.2", &["x"], 0, T0 - 30 * MINUTE),
        ],
    );
    let pairs = [("Label", ""), ("QuietMinutes", "20"), ("BackOnline", "N")];
    let mut rule = configure::<QuietClientsRule>(&params(&pairs), &host).unwrap().0;
    assert_eq!(alerts(&mut rule, &host).len(), 2);
    host.world["clients"]["C.1"]["last_seen_at"] = json!(T0 * 1_000_000);
    assert!(alerts(&mut rule, &host).is_empty(), "no notice asked for");
}

/// A network outage: 300 watched clients go quiet at once. MaxAlertsPerTick
/// alerts, and one more naming the rest; none is alerted twice.
#[test]
fn many_clients_quiet_at_once_are_counted_in_one_more_alert() {
    let clients = (0..300)
        .map(|i| client(&format!("C.{i:03}"), &["critical"], 0, T0 - 2 * 60 * MINUTE))
        .collect();
    let host = host_at(T0, clients);
    let mut rule = configure::<QuietClientsRule>(&params(&[("MaxAlertsPerTick", "5")]), &host)
        .unwrap()
        .0;
    let raised = alerts(&mut rule, &host);
    assert_eq!(raised.len(), 6);
    let last = raised.last().unwrap();
    assert_eq!(last.name, "295 more clients quiet or back online");
    assert_eq!(context(last)["Kinds"], "quiet ×295");
    assert!(
        alerts(&mut rule, &host).is_empty(),
        "every one of them is known quiet now"
    );
}

/// Clients whose rows lack columns or hold other types are read as
/// empty: never seen is quiet, no id is skipped.
#[test]
fn odd_client_rows_do_not_break_the_watch() {
    let mut host = host_at(T0, Vec::new());
    host.world["clients"] = json!({
        "C.1": {"client_id": "C.1", "labels": ["critical"]},
        "C.2": {"client_id": "C.2", "labels": ["critical"], "last_seen_at": "not a number"},
        "x": {"labels": ["critical"], "last_seen_at": 0},
        "C.3": {"client_id": "C.3", "labels": "critical"},
    });
    let mut rule = configure::<QuietClientsRule>(&params(&[]), &host).unwrap().0;
    assert_eq!(
        names(alerts(&mut rule, &host)),
        ["Client C.1 is quiet", "Client C.2 is quiet"]
    );
}

/// More than `Threshold` first seen within the window: a spike, once per
/// `Dedup` (the host's dedup, by the alert's one name).
#[test]
fn enrolments_past_the_threshold_within_the_window_are_a_spike() {
    let cases: Vec<(usize, u64, bool)> = vec![
        (21, 5 * MINUTE, true),
        (20, 5 * MINUTE, false),
        (50, 11 * MINUTE, false),
        (30, 9 * MINUTE, true),
    ];
    for (count, ago_s, spike) in cases {
        let clients = (0..count)
            .map(|i| client(&format!("C.{i:03}"), &[], T0 - ago_s, T0))
            .chain((0..100).map(|i| client(&format!("C.old{i:03}"), &[], T0 - 86_400, T0)))
            .collect();
        let host = host_at(T0, clients);
        let mut rule = configure::<EnrolmentSpikeRule>(&params(&[]), &host).unwrap().0;
        let raised = alerts(&mut rule, &host);
        assert_eq!(raised.len(), usize::from(spike), "{count} clients {ago_s} s ago");
        if spike {
            let context = context(&raised[0]);
            assert_eq!(raised[0].name, "Enrolment spike");
            assert_eq!(raised[0].dedup_seconds, Some(3600));
            assert_eq!(context["Count"], count);
            assert_eq!(context["Newest"].as_str().unwrap().lines().count(), 20);
        }
    }
}

#[test]
fn a_zero_threshold_alerts_on_any_enrolment_and_clients_from_the_future_do_not_count() {
    let host = host_at(
        T0,
        vec![
            client("C.new", &[], T0 - 10, T0),
            client("C.future", &[], T0 + 3600, T0),
        ],
    );
    let mut rule = configure::<EnrolmentSpikeRule>(&params(&[("Threshold", "0")]), &host)
        .unwrap()
        .0;
    let raised = alerts(&mut rule, &host);
    assert_eq!(context(&raised[0])["Count"], 1);
    assert_eq!(context(&raised[0])["Newest"], "host-new (C.new)");
}

/// 1,500 clients going quiet at once are found over two ticks (the state
/// one tick may write is bounded), each alerted once.
#[test]
fn more_clients_quiet_than_one_tick_may_mark_are_found_on_the_next() {
    let clients = (0..1_500)
        .map(|i| client(&format!("C.{i:04}"), &["critical"], 0, T0 - 2 * 60 * MINUTE))
        .collect();
    let host = host_at(T0, clients);
    let mut rule = configure::<QuietClientsRule>(&params(&[]), &host).unwrap().0;
    let first = alerts(&mut rule, &host);
    assert_eq!(first.last().unwrap().name, "980 more clients quiet or back online");
    let second = alerts(&mut rule, &host);
    assert_eq!(second.last().unwrap().name, "480 more clients quiet or back online");
    assert!(alerts(&mut rule, &host).is_empty());
}

/// A client quiet for months is not alerted again when its entry would
/// expire: the entry is written again while the client stays quiet.
#[test]
fn a_client_quiet_for_months_is_not_alerted_again() {
    let mut host = host_at(T0, vec![client("C.1", &["critical"], 0, T0 - 2 * 60 * MINUTE)]);
    let mut rule = configure::<QuietClientsRule>(&params(&[]), &host).unwrap().0;
    assert_eq!(alerts(&mut rule, &host).len(), 1);
    host.now_us = (T0 + 31 * 86_400) * 1_000_000;
    assert!(alerts(&mut rule, &host).is_empty());
    let rewritten = crate::host::State::state_get(&host, "quiet/C.1").unwrap();
    assert_eq!(String::from_utf8(rewritten).unwrap(), (T0 + 31 * 86_400).to_string());
}
