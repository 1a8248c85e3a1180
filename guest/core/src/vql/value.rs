//! How VQL judges and prints values (docs/velociraptor.md §1.2, §1.10,
//! §1.12).

use serde_json::{Map, Value};

/// VQL truthiness: NULL is false; numbers are true when greater than zero
/// (so negative numbers are false); strings, lists and dicts when
/// non-empty.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f > 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `format('%v', value)`: strings as they are, NULL as `Null`, lists in Go
/// style (`[a b c]`), dicts as compact JSON, floats as Go prints them.
pub fn render_value(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Like [`render_value`], but NULL prints as nothing: how table cells show
/// a missing value.
/// A string is borrowed, not copied.
pub fn render_value_or_empty(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::Null => "".into(),
        Value::String(s) => s.as_str().into(),
        other => render_value(other).into(),
    }
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("Null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else if let Some(f) = n.as_f64() {
                out.push_str(&go_float(f));
            }
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(_) => out.push_str(&value.to_string()),
    }
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): the
/// shortest digits that read back the same, in exponent form when the
/// exponent is below -4 or at least 6 (`1.234567e+06`).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: "-1.2345e6".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}{rest}e{esign}{:02}", exp.abs())
    } else if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}", "0".repeat(int_len - digits.len()))
        } else {
            let (int, frac) = digits.split_at(int_len);
            format!("{sign}{int}.{frac}")
        }
    }
}

/// `get(item=value, member="a.b.c")`: walks a dotted path through dicts
/// (case-sensitive keys) and lists (numeric segments). A key that itself
/// contains dots is found too, so `get(Context, "Process.Name")` finds
/// both `{"Process": {"Name": ..}}` and `{"Process.Name": ..}`.
pub fn get_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(value);
    }
    if let Some(found) = value.as_object().and_then(|o| o.get(path)) {
        return Some(found);
    }
    let (head, rest) = path.split_once('.')?;
    let child = match value {
        Value::Object(o) => o.get(head)?,
        Value::Array(a) => a.get(head.parse::<usize>().ok()?)?,
        _ => return None,
    };
    get_path(child, rest)
}

/// [`get_path`] into the members of an object, without making a `Value`
/// of it (which would copy it). Unlike `get_path`, an empty path cannot
/// mean the object itself: it finds only a member named "".
pub fn get_member_path<'a>(members: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(found) = members.get(path) {
        return Some(found);
    }
    let (head, rest) = path.split_once('.')?;
    get_path(members.get(head)?, rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn negative_numbers_and_empty_things_are_false() {
        for v in [
            json!(null),
            json!(-1),
            json!(0),
            json!(""),
            json!([]),
            json!({}),
            json!(false),
        ] {
            assert!(!is_truthy(&v), "{v}");
        }
        for v in [
            json!(1),
            json!(0.5),
            json!("x"),
            json!([0]),
            json!({"a": null}),
            json!(true),
        ] {
            assert!(is_truthy(&v), "{v}");
        }
    }

    #[test]
    fn values_print_as_vql_prints_them() {
        assert_eq!(render_value(&json!(null)), "Null");
        assert_eq!(render_value(&json!(["a", 1, true])), "[a 1 true]");
        assert_eq!(render_value(&json!({"b": 1, "a": [1]})), r#"{"b":1,"a":[1]}"#);
        assert_eq!(render_value(&json!(-17)), "-17");
        assert_eq!(render_value(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(render_value_or_empty(&json!(null)), "");
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(-2.25), "-2.25");
        assert_eq!(go_float(3.0), "3");
    }

    #[test]
    fn get_path_walks_dicts_and_lists() {
        let v = json!({"Details": {"Connections": [{"Ip": "198.51.100.42"}]}, "a.b": 1});
        assert_eq!(get_path(&v, "Details.Connections.0.Ip"), Some(&json!("198.51.100.42")));
        assert_eq!(get_path(&v, "a.b"), Some(&json!(1)));
        assert_eq!(get_path(&v, "Details.Missing"), None);
        assert_eq!(get_path(&v, "details"), None, "keys are case-sensitive");
    }

    #[test]
    fn get_member_path_finds_what_get_path_finds_below_an_object() {
        let v = json!({"Details": {"Connections": [{"Ip": "198.51.100.42"}]}, "a.b": 1, "a": {"b": 2}});
        let members = v.as_object().unwrap();
        for path in [
            "Details.Connections.0.Ip",
            "a.b",
            "a",
            "Details.Missing",
            "details",
            "Details",
        ] {
            assert_eq!(get_member_path(members, path), get_path(&v, path), "{path}");
        }
        assert_eq!(get_member_path(members, ""), None, "an empty path is not the object");
    }
}
