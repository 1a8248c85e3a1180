//! Reading only some members of a JSON object: a lookup answer (a
//! collection record of a few kilobytes) is read for the members a decision
//! uses; the rest is checked to be JSON and skipped, never built.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The members of the object in `text` named by `paths` (dotted, as
/// [`get_path`](super::get_path) reads them): an object holding just those,
/// at the same places, so the same getters read them as from the whole
/// value. A member named by a path is taken whole; repeated names keep the
/// last, as a full parse does. Text that is not an object is read whole.
pub fn read_members(text: &str, paths: &[&str]) -> serde_json::Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Pick { paths }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// Reads a value, keeping of an object only the members `paths` name.
struct Pick<'p> {
    paths: &'p [&'p str],
}

impl<'de> DeserializeSeed<'de> for Pick<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let deeper: Vec<&str> = self
                .paths
                .iter()
                .filter_map(|path| path.strip_prefix(key.as_str()).and_then(|rest| rest.strip_prefix('.')))
                .collect();
            if self.paths.contains(&key.as_str()) {
                kept.insert(key, map.next_value::<Value>()?);
            } else if !deeper.is_empty() {
                let value = map.next_value_seed(Pick { paths: &deeper })?;
                kept.insert(key, value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Nested objects with names the paths use, and other values.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-z\\\\\"é]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::vec(("[a-d]", inner), 0..4)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// What `read_members` should give: the whole value, cut to the paths.
    fn pruned(value: &Value, paths: &[&str]) -> Value {
        let Value::Object(object) = value else {
            return value.clone();
        };
        let mut kept = Map::new();
        for (key, member) in object {
            let deeper: Vec<&str> = paths
                .iter()
                .filter_map(|p| p.strip_prefix(key.as_str()).and_then(|r| r.strip_prefix('.')))
                .collect();
            if paths.contains(&key.as_str()) {
                kept.insert(key.clone(), member.clone());
            } else if !deeper.is_empty() {
                kept.insert(key.clone(), pruned(member, &deeper));
            }
        }
        Value::Object(kept)
    }

    #[test]
    fn only_the_named_members_are_kept_at_their_places() {
        let text = r#"{"request": {"artifacts": ["A"], "specs": [{"big": 1}]}, "state": "FINISHED",
                      "results": [1, 2, 3], "create_time": 5}"#;
        let read = read_members(text, &["request.artifacts", "state", "create_time", "absent.x"]).unwrap();
        assert_eq!(
            read,
            json!({"request": {"artifacts": ["A"]}, "state": "FINISHED", "create_time": 5})
        );
    }

    #[test]
    fn skipped_text_must_still_be_json() {
        let err = read_members(r#"{"a": 1, "skipped": [1, }"#, &["a"]).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(read_members(r#"{"a": 1} trailing"#, &["a"]).is_err());
    }

    #[test]
    fn a_repeated_name_keeps_the_last_as_a_full_parse_does() {
        let text = r#"{"a": {"x": 1, "y": 2}, "a": {"x": 3}}"#;
        assert_eq!(read_members(text, &["a.x"]).unwrap(), json!({"a": {"x": 3}}));
    }

    proptest! {
        #[test]
        fn reads_as_the_whole_value_cut_to_the_paths(
            value in json_value(),
            paths in proptest::collection::vec("[a-c](\\.[a-c]){0,2}", 0..4),
        ) {
            let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
            let text = value.to_string();
            prop_assert_eq!(read_members(&text, &paths).unwrap(), pruned(&value, &paths));
        }
    }
}
