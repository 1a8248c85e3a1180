//! The flow dictionary ("Flow dictionary" in docs/velociraptor.md §6.5).

use serde_json::Value;

use super::{str_at, strings_at, timestamp_string, u64_at};
use crate::render::{Cell, Fields, Links, elide_right};
use crate::vql::{Timestamp, humanize_bytes, render_value};

/// Argument values are shown up to this many bytes; hunt names up to 300.
const ARGUMENT_VALUE_LIMIT: usize = 100;
const HUNT_NAME_LIMIT: usize = 300;

/// What varies between the FlowCompletion and Alerts flow sections.
#[derive(Debug, Clone, Copy)]
pub struct FlowFieldsOptions {
    /// When the server saw the flow complete; the `Collection finished`
    /// row is left out without it (the Alerts e-mail).
    pub finished: Option<Timestamp>,
    pub keep_empty: bool,
    /// The clock for "(10 minutes ago)".
    pub now: Timestamp,
}

/// The hunt a flow belongs to: hunt flow ids are `F.<id>.H` and their hunt
/// is `H.<id>`.
pub fn hunt_id_of_flow(flow_id: &str) -> Option<String> {
    let middle = flow_id.strip_prefix("F.")?.strip_suffix(".H")?;
    (!middle.is_empty()).then(|| format!("H.{middle}"))
}

/// The flow rows of a notification, in the artifacts' order. `flow` is the
/// `flows()` object (may be empty when the flow is unknown); `hunt` the
/// hunt object of a hunt flow.
pub fn flow_fields(
    client_id: &str,
    flow_id: &str,
    flow: &Value,
    hunt: Option<&Value>,
    links: &Links,
    options: FlowFieldsOptions,
) -> Fields {
    let mut fields = Fields::new(options.keep_empty);
    let time = |micros: u64| timestamp_string(Timestamp::from_unix_micros(micros as i64), options.now);

    fields.push(
        "Flow",
        Cell::Link {
            text: flow_id.to_string(),
            url: links.collection(client_id, flow_id, "logs"),
        },
    );
    let created = u64_at(flow, "create_time");
    fields.push("Collection created", Cell::Text(time(created)));
    let started = u64_at(flow, "start_time");
    fields.push_if(started != 0, "Collection started", Cell::Text(time(started)));
    if let Some(finished) = options.finished {
        fields.push(
            "Collection finished",
            Cell::Text(timestamp_string(finished, options.now)),
        );
    }
    fields.push("Duration", Cell::Text(duration_text(flow).unwrap_or_default()));
    fields.push("Creator", Cell::text(str_at(flow, "request.creator")));
    fields.push(
        "Requested",
        Cell::List(
            strings_at(flow, "request.artifacts")
                .into_iter()
                .map(|name| Cell::Link {
                    url: links.artifact(&name),
                    text: name,
                })
                .collect(),
        ),
    );
    fields.push("Arguments", argument_table(flow));
    fields.push(
        "With results",
        Cell::List(
            strings_at(flow, "artifacts_with_results")
                .into_iter()
                .map(Cell::Text)
                .collect(),
        ),
    );
    fields.push("Error", Cell::text(str_at(flow, "status")));
    let urgent = crate::vql::get_path(flow, "request.urgent").and_then(Value::as_bool) == Some(true);
    fields.push_if(urgent, "Urgent", Cell::text("true"));
    if let Some(hunt_id) = hunt_id_of_flow(flow_id) {
        let description = hunt.map(|h| str_at(h, "hunt_description")).unwrap_or("");
        let name = if description.is_empty() {
            hunt_id.as_str()
        } else {
            description
        };
        fields.push(
            "Hunt",
            Cell::Link {
                text: elide_right(name, HUNT_NAME_LIMIT).into_owned(),
                url: links.hunt(&hunt_id),
            },
        );
    }
    fields.push("Collected rows", count(u64_at(flow, "total_collected_rows")));
    fields.push("Uploaded files", count(u64_at(flow, "total_uploaded_files")));
    let bytes = u64_at(flow, "total_uploaded_bytes");
    fields.push(
        "Uploaded bytes",
        Cell::Text(if bytes == 0 {
            String::new()
        } else {
            humanize_bytes(bytes)
        }),
    );
    fields
}

/// `%.1f s` of `execution_duration` (nanoseconds); None when zero.
pub(crate) fn duration_text(flow: &Value) -> Option<String> {
    let nanos = u64_at(flow, "execution_duration");
    (nanos > 0).then(|| format!("{:.1} s", nanos as f64 / 1e9))
}

/// Zero is an empty (dropped) row, like VQL's falsy 0.
fn count(n: u64) -> Cell {
    Cell::Text(if n == 0 { String::new() } else { n.to_string() })
}

/// The artifacts' `ArgumentTable`: `param → value` for a single artifact,
/// `Artifact/param → value` when the flow collected several.
fn argument_table(flow: &Value) -> Cell {
    let specs = crate::vql::get_path(flow, "request.specs")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let grouped = specs.len() > 1;
    let mut pairs = Vec::new();
    for spec in specs {
        let artifact = str_at(spec, "artifact");
        let env = crate::vql::get_path(spec, "parameters.env")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for entry in env {
            let key = str_at(entry, "key");
            let value = entry.get("value").map(render_value).unwrap_or_default();
            let name = if grouped {
                format!("{artifact}/{key}")
            } else {
                key.to_string()
            };
            pairs.push((name, Cell::Text(elide_right(&value, ARGUMENT_VALUE_LIMIT).into_owned())));
        }
    }
    Cell::Pairs(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn links() -> Links {
        Links::new(Some("https://v.example/app/index.html"), "root")
    }

    fn options() -> FlowFieldsOptions {
        FlowFieldsOptions {
            finished: None,
            keep_empty: false,
            now: Timestamp::from_unix_seconds(1_767_003_600),
        }
    }

    #[test]
    fn hunt_flows_name_their_hunt() {
        assert_eq!(hunt_id_of_flow("F.CR3NHK4RL7C7G.H").as_deref(), Some("H.CR3NHK4RL7C7G"));
        assert_eq!(hunt_id_of_flow("F.CR3NHK4RL7C7G"), None);
        assert_eq!(hunt_id_of_flow("F.XH"), None, "ends in H but not in .H");
    }

    #[test]
    fn a_finished_flow_shows_its_rows_in_order() {
        let flow = json!({
            "session_id": "F.D7KDSKSILR3TG",
            "request": {
                "creator": "ann",
                "artifacts": ["Linux.Sys.BashShell"],
                "specs": [{"artifact": "Linux.Sys.BashShell", "parameters": {"env": [{"key": "Command", "value": "id; uname -a"}]}}],
                "urgent": true
            },
            "create_time": 1_767_000_000_000_000_u64,
            "start_time": 1_767_000_060_000_000_u64,
            "execution_duration": 2_500_000_000_u64,
            "state": "FINISHED",
            "artifacts_with_results": ["Linux.Sys.BashShell"],
            "total_collected_rows": 1,
            "total_uploaded_bytes": 0
        });
        let f = flow_fields("C.1", "F.D7KDSKSILR3TG", &flow, None, &links(), options());
        assert_eq!(
            f.to_text(),
            "Flow: F.D7KDSKSILR3TG (https://v.example/app/index.html?org_id=root#/collected/C.1/F.D7KDSKSILR3TG/logs)\n\
             Collection created: 2025-12-29T09:20:00Z (1 hour ago)\n\
             Collection started: 2025-12-29T09:21:00Z (59 minutes ago)\n\
             Duration: 2.5 s\n\
             Creator: ann\n\
             Requested: \n  - Linux.Sys.BashShell (https://v.example/app/index.html?org_id=root#/artifacts/Linux.Sys.BashShell)\n\
             Arguments: \n  - Command: id; uname -a\n\
             With results: \n  - Linux.Sys.BashShell\n\
             Urgent: true\n\
             Collected rows: 1"
        );
    }

    #[test]
    fn several_specs_prefix_their_arguments() {
        let flow = json!({"request": {"specs": [
            {"artifact": "A", "parameters": {"env": [{"key": "x", "value": "1"}]}},
            {"artifact": "B", "parameters": {"env": [{"key": "y", "value": "2"}]}}
        ]}});
        let f = flow_fields("C.1", "F.1", &flow, None, &Links::new(None, "root"), options());
        assert!(
            f.to_text().contains("Arguments: \n  - A/x: 1\n  - B/y: 2"),
            "{}",
            f.to_text()
        );
    }

    #[test]
    fn a_hunt_flow_links_its_hunt_by_description() {
        let hunt = json!({"hunt_id": "H.X1", "hunt_description": "Weekly sweep"});
        let f = flow_fields("C.1", "F.X1.H", &json!({}), Some(&hunt), &links(), options());
        let html = f.to_html().unwrap();
        assert!(html.as_str().contains(">Weekly sweep</a>"), "{html}");
        assert!(html.as_str().contains("#/hunts/H.X1/overview"));
    }

    #[test]
    fn the_fixture_error_flow_shows_its_status() {
        let text = include_str!("../../../../tests/data/velociraptor/System.Flow.Completion.Flow.json");
        let flows: Value = serde_json::from_str(text).unwrap();
        let f = flow_fields("server", "F.1234", &flows[0], None, &links(), options());
        assert!(f.to_text().contains("Error: Oops\n"), "{}", f.to_text());
        assert!(f.to_text().contains("Creator: admin"));
    }
}
