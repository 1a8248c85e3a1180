use serde_json::{Map, Value};

/// The artifacts' `Unnest`: flattens nested dicts and lists into one level
/// with dotted keys (`Details.Connections.0.DestinationIp`), depth first in
/// source order. Empty nested dicts and lists disappear.
pub fn unnest(context: &Map<String, Value>) -> Vec<(String, Value)> {
    let mut out = Vec::with_capacity(context.len());
    for (key, value) in context {
        flatten_into(&mut out, key.clone(), value);
    }
    out
}

/// Nesting deeper than this is printed as JSON instead of flattened, so a
/// pathological event cannot make rendering recurse without bound.
const MAX_DEPTH: usize = 32;

fn flatten_into(out: &mut Vec<(String, Value)>, key: String, value: &Value) {
    flatten_at(out, key, value, 0);
}

fn flatten_at(out: &mut Vec<(String, Value)>, key: String, value: &Value, depth: usize) {
    if depth >= MAX_DEPTH {
        out.push((key, value.clone()));
        return;
    }
    match value {
        Value::Object(map) => {
            for (child, v) in map {
                flatten_at(out, format!("{key}.{child}"), v, depth + 1);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten_at(out, format!("{key}.{i}"), v, depth + 1);
            }
        }
        scalar => out.push((key, scalar.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(v: Value) -> Vec<(String, Value)> {
        unnest(v.as_object().unwrap())
    }

    #[test]
    fn the_sigma_details_example_from_the_kb_flattens_as_documented() {
        let flat = keys(json!({"Details": {
            "EventID": 1,
            "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
            "Hashes": {"SHA256": "A1B2"},
            "Parent": {"Image": "C:\\Windows\\explorer.exe", "ProcessId": 4120},
            "Connections": [{"DestinationIp": "198.51.100.42", "DestinationPort": 443}]
        }}));
        let names: Vec<&str> = flat.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "Details.EventID",
                "Details.Image",
                "Details.Hashes.SHA256",
                "Details.Parent.Image",
                "Details.Parent.ProcessId",
                "Details.Connections.0.DestinationIp",
                "Details.Connections.0.DestinationPort",
            ]
        );
        assert_eq!(flat[6].1, json!(443));
    }

    #[test]
    fn empty_nested_containers_vanish() {
        let flat = keys(json!({"a": {}, "b": [], "c": null, "d": {"e": []}}));
        assert_eq!(flat, vec![("c".to_string(), Value::Null)]);
    }

    #[test]
    fn very_deep_nesting_stops_flattening() {
        let mut v = json!("leaf");
        for _ in 0..100 {
            v = json!({ "x": v });
        }
        let flat = keys(json!({ "root": v }));
        assert_eq!(flat.len(), 1);
        assert_eq!(flat[0].0.matches('.').count(), MAX_DEPTH);
    }
}
