//! A row read without being built: its top-level columns as borrowed
//! names and raw JSON text, found by one pass over the row's text with no
//! value made. A rule decides on the few columns it filters on before it
//! pays for the whole `Map` (the row's `Value` is most of what a filtered
//! row costs: `host/benches/notes.md`).

use std::borrow::Cow;
use std::cell::OnceCell;

use serde::de::{Deserializer as _, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

/// The top-level columns of a JSON object row, borrowed from its text.
#[derive(Debug)]
pub struct RawRow<'a> {
    columns: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// Each column's string once decoded (one with escapes): the host reads
    /// a row once for every module's interest, and many test one column.
    decoded: Vec<OnceCell<Option<String>>>,
}

impl<'a> RawRow<'a> {
    /// The row's columns, or None when the text is not a JSON object (the
    /// full parse then says what is wrong).
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let columns = deserializer.deserialize_map(ColumnsVisitor).ok()?;
        deserializer.end().ok()?;
        let decoded = columns.iter().map(|_| OnceCell::new()).collect();
        Some(Self { columns, decoded })
    }

    /// Where a column is; the last of repeated names, as in a parsed row.
    fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().rposition(|(n, _)| n == name)
    }

    /// A column's raw JSON text; the last of repeated names, as in a parsed
    /// row.
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.index(name).map(|i| self.columns[i].1)
    }

    /// A column's value, built from its text alone.
    pub fn value(&self, name: &str) -> Option<Value> {
        self.raw(name).and_then(|raw| serde_json::from_str(raw.get()).ok())
    }

    /// A column that holds a string: borrowed from the row's text when it
    /// has no escapes, else decoded once and kept.
    pub fn str(&self, name: &str) -> Option<&str> {
        let index = self.index(name)?;
        let raw = self.columns[index].1.get();
        let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
        // The pass that found the column checked the string: without a
        // backslash, its text is the string itself.
        if !inner.contains('\\') {
            return Some(inner);
        }
        self.decoded[index]
            .get_or_init(|| serde_json::from_str::<String>(raw).ok())
            .as_deref()
    }
}

struct ColumnsVisitor;

impl<'de> Visitor<'de> for ColumnsVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut columns = Vec::new();
        while let Some(name) = map.next_key::<Name<'de>>()? {
            columns.push((name.0, map.next_value::<&'de RawValue>()?));
        }
        Ok(columns)
    }
}

/// A column name, borrowed unless it holds escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a column name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_string())))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_read_without_building_the_row() {
        let text = r#"{"Image":"C:\\Tools\\x.exe","Pid":7,"Name":"plain","Image":"last","A\u00e9":{"deep":[1]},"P":"C:\\T\"q"}"#;
        let row = RawRow::parse(text).unwrap();
        assert_eq!(row.str("P"), Some("C:\\T\"q"), "escapes decoded");
        assert_eq!(row.str("P"), Some("C:\\T\"q"), "and kept");
        assert_eq!(row.str("Image"), Some("last"), "the last of repeated names");
        assert_eq!(row.str("Name"), Some("plain"));
        assert_eq!(row.str("Pid"), None, "not a string");
        assert_eq!(row.value("Pid"), Some(serde_json::json!(7)));
        assert_eq!(row.value("Aé"), Some(serde_json::json!({"deep": [1]})));
        assert!(row.raw("missing").is_none());
        assert!(RawRow::parse("[1]").is_none());
        assert!(RawRow::parse("{\"a\":1} x").is_none());
    }
}
