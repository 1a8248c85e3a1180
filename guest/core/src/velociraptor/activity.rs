//! What runs on a Velociraptor server: its running hunts and the
//! collections not yet finished, as the `running-hunts` and `active-flows`
//! lookups answer them (docs/velociraptor.md §2.7). The host and the test
//! hosts shape and bound the answers with these functions, so every source
//! of an answer agrees.

use serde_json::{Map, Value};

/// Hunts one `running-hunts` answer holds at most.
pub const MAX_RUNNING_HUNTS: usize = 1_000;
/// Collections one `active-flows` answer holds at most.
pub const MAX_ACTIVE_FLOWS: usize = 1_000;

/// Whether a hunt runs: `state` RUNNING and not stopped (the GUI shows a
/// hunt whose `stats.stopped` is set as stopped, whatever its state).
pub fn hunt_is_running(hunt: &Value) -> bool {
    hunt["state"].as_str() == Some("RUNNING") && hunt["stats"]["stopped"].as_bool() != Some(true)
}

/// Whether a collection's `state` says it has not finished: scheduled
/// (RUNNING), waiting for a slot on the client, in progress, or silent
/// for more than five minutes (UNRESPONSIVE).
pub fn flow_is_active(flow: &Value) -> bool {
    matches!(
        flow["state"].as_str(),
        Some("RUNNING" | "WAITING" | "IN_PROGRESS" | "UNRESPONSIVE")
    )
}

/// A count or time of a hunt or flow row, 0 when missing: a number, or
/// text (the REST gateway sends 64-bit numbers as text).
pub fn number(value: &Value) -> u64 {
    match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)).unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// A row's `create_time` (microseconds).
pub fn create_time(row: &Value) -> u64 {
    number(&row["create_time"])
}

/// The running hunts among `hunts`, newest created first, at most
/// [`MAX_RUNNING_HUNTS`].
pub fn newest_hunts(mut hunts: Vec<Value>) -> Vec<Value> {
    hunts.retain(hunt_is_running);
    hunts.sort_by_key(|h| std::cmp::Reverse(create_time(h)));
    hunts.truncate(MAX_RUNNING_HUNTS);
    hunts
}

/// The unfinished collections among `flows` created after `after_us` and
/// up to `before_us`, oldest first, at most [`MAX_ACTIVE_FLOWS`]: the page
/// a reader moving a cursor over `create_time` asks for.
pub fn oldest_flows(mut flows: Vec<Value>, after_us: u64, before_us: u64) -> Vec<Value> {
    flows.retain(|f| flow_is_active(f) && (after_us + 1..=before_us).contains(&create_time(f)));
    flows.sort_by_key(create_time);
    flows.truncate(MAX_ACTIVE_FLOWS);
    flows
}

/// A flow object (`flows()`'s row) in the columns the active-flows query
/// selects: `client_id`, `session_id`, `state`, `status`, the times,
/// `artifacts` and `creator` from its request.
pub fn active_flow_row(client_id: &str, flow_id: &str, flow: &Value) -> Value {
    let mut row = Map::new();
    row.insert("client_id".into(), Value::from(client_id));
    row.insert("session_id".into(), Value::from(flow_id));
    for key in ["state", "status", "create_time", "start_time", "active_time"] {
        if let Some(value) = flow.get(key) {
            row.insert(key.into(), value.clone());
        }
    }
    row.insert("artifacts".into(), flow["request"]["artifacts"].clone());
    row.insert("creator".into(), flow["request"]["creator"].clone());
    Value::Object(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_keep_the_newest_hunts_and_the_oldest_flows() {
        let hunts = (0..1_500u64)
            .map(|t| json!({"hunt_id": format!("H.{t}"), "state": "RUNNING", "create_time": t}))
            .chain([json!({"state": "RUNNING", "stats": {"stopped": true}, "create_time": 9_999})])
            .chain([json!({"state": "PAUSED", "create_time": 9_998})])
            .collect();
        let hunts = newest_hunts(hunts);
        assert_eq!(hunts.len(), MAX_RUNNING_HUNTS);
        assert_eq!(hunts[0]["hunt_id"], "H.1499", "stopped and paused hunts are left out");
        assert_eq!(hunts[999]["hunt_id"], "H.500");

        let flows = (0..1_500u64)
            .rev()
            .map(|t| json!({"session_id": format!("F.{t}"), "state": "IN_PROGRESS", "create_time": t}))
            .chain([json!({"state": "FINISHED", "create_time": 7})])
            .chain([json!({"session_id": "F.text", "state": "RUNNING", "create_time": "5"})])
            .collect::<Vec<_>>();
        let page = oldest_flows(flows.clone(), 0, u64::MAX);
        assert_eq!(page.len(), MAX_ACTIVE_FLOWS);
        assert_eq!(page[0]["session_id"], "F.1", "created after the cursor");
        assert_eq!(page[4]["session_id"], "F.5");
        assert_eq!(page[5]["session_id"], "F.text", "a time as text");
        assert_eq!(page[999]["session_id"], "F.999");
        let window: Vec<Value> = oldest_flows(flows, 1_200, 1_202)
            .into_iter()
            .map(|f| f["session_id"].clone())
            .collect();
        assert_eq!(window, [json!("F.1201"), json!("F.1202")]);
    }
}
