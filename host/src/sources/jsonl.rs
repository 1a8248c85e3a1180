use std::io::BufRead;

use serde_json::Value;

use super::IncomingEvent;
use crate::clock::LATEST_S;

/// A line that is not an event. The source reports it and goes on with
/// the next line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct SourceError {
    pub source_name: String,
    pub line: u64,
    pub message: String,
}

/// Reads events from JSON lines.
#[derive(Debug)]
pub struct JsonlSource<R> {
    reader: R,
    name: String,
    line: u64,
    max_line_bytes: usize,
    default_queue: Option<String>,
    org_id: String,
    buffer: Vec<u8>,
}

impl<R: BufRead> JsonlSource<R> {
    /// `name` names the input in event ids and error messages.
    pub fn new(reader: R, name: &str, org_id: &str, max_line_bytes: usize) -> Self {
        Self {
            reader,
            name: name.to_string(),
            line: 0,
            max_line_bytes,
            default_queue: None,
            org_id: org_id.to_string(),
            buffer: Vec::new(),
        }
    }

    /// The queue of rows without a `_Source` (a dump of a single queue).
    pub fn with_default_queue(mut self, queue: Option<String>) -> Self {
        self.default_queue = queue;
        self
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    /// Reads one line into the buffer; lines longer than the limit are
    /// consumed to their end but not kept. Returns false at the end.
    fn read_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buffer.clear();
        let mut too_long = false;
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return Ok(if self.buffer.is_empty() && !too_long {
                    None
                } else {
                    Some(too_long)
                });
            }
            let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
                Some(pos) => (&available[..pos], Some(pos + 1)),
                None => (available, None),
            };
            if !too_long && self.buffer.len() + chunk.len() <= self.max_line_bytes {
                self.buffer.extend_from_slice(chunk);
            } else {
                too_long = true;
                self.buffer.clear();
            }
            let consumed = done.unwrap_or(available.len());
            self.reader.consume(consumed);
            if done.is_some() {
                return Ok(Some(too_long));
            }
        }
    }

    fn parse_line(&self) -> Result<Option<IncomingEvent>, SourceError> {
        let text = std::str::from_utf8(&self.buffer).map_err(|_| self.error("not UTF-8 text"))?;
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            return Ok(None);
        }
        let envelope = read_envelope(text, self.default_queue.as_deref()).map_err(|e| self.error(e))?;
        if envelope.is_own_alert() {
            tracing::debug!(line = self.line, "an alert velonotify pushed itself: not handled again");
            return Ok(None);
        }
        Ok(Some(IncomingEvent {
            id: format!("{}:{}", self.name, self.line),
            queue: envelope.queue,
            row: text.to_string(),
            org_id: self.org_id.clone(),
            ts_us: envelope.ts_us,
        }))
    }
}

/// What the sources read of a row before any module parses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowEnvelope {
    /// Its `_Source`, else the default queue.
    pub queue: String,
    /// Its `_ts` (epoch seconds) in microseconds.
    pub ts_us: Option<u64>,
    /// An alert velonotify wrote into the server's queue itself (the
    /// module named by its `velonotify_module` column): not to be handled
    /// a second time when it comes back.
    pub pushed_by: Option<String>,
}

impl RowEnvelope {
    /// Whether the row is one of velonotify's own alerts coming back.
    pub fn is_own_alert(&self) -> bool {
        self.queue == crate::velociraptor::ALERTS_QUEUE && self.pushed_by.is_some()
    }
}

/// A row's queue, time and mark; the error says what is wrong with it.
pub fn read_envelope(text: &str, default_queue: Option<&str>) -> Result<RowEnvelope, String> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "expected a JSON object (one row per line)".to_string(),
        _ => format!("malformed JSON: {e}"),
    })?;
    let queue = match envelope
        .source
        .as_ref()
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(q) => q.to_string(),
        None => default_queue
            .map(str::to_string)
            .ok_or("row has no _Source naming its queue (use --queue for a dump of one queue)")?,
    };
    let ts_us = match &envelope.ts {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f > LATEST_S as f64 => {
                return Err(format!("_ts {n} is not epoch seconds (it is after the year 9999)"));
            }
            Some(f) if f >= 0.0 => Some((f * 1e6).round() as u64),
            _ => None,
        },
        Some(other) => return Err(format!("_ts should be epoch seconds, got {other}")),
    };
    let pushed_by = envelope
        .mark
        .as_ref()
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    Ok(RowEnvelope {
        queue,
        ts_us,
        pushed_by,
    })
}

/// What the source reads of a row: `_Source` and `_ts`. The rest is
/// checked as a module's full parse would check it ([`Checked`]) without
/// building it, so a row no module could read is refused here, naming its
/// line, rather than accepted and failed later.
#[derive(Default)]
struct Envelope {
    source: Option<Value>,
    ts: Option<Value>,
    mark: Option<Value>,
}

impl<'de> serde::Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> serde::de::Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut envelope = Envelope::default();
        // As in a parsed object, the last of repeated keys counts.
        while let Some(member) = map.next_key::<EnvelopeMember>()? {
            match member {
                EnvelopeMember::Source => envelope.source = Some(map.next_value()?),
                EnvelopeMember::Ts => envelope.ts = Some(map.next_value()?),
                EnvelopeMember::Mark => envelope.mark = Some(map.next_value()?),
                EnvelopeMember::Other => {
                    map.next_value::<Checked>()?;
                }
            }
        }
        Ok(envelope)
    }
}

/// A JSON value read the way a module's parser reads it, and kept nowhere:
/// nested at most 128 deep (serde_json's limit), strings decoded (a lone
/// surrogate is an error), numbers in range (`1e999` is an error).
/// `IgnoredAny` would skip over all three.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckedVisitor)
    }
}

struct CheckedVisitor;

impl<'de> serde::de::Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

/// A row's member name, told apart without copying it.
#[derive(serde::Deserialize)]
#[serde(field_identifier)]
enum EnvelopeMember {
    #[serde(rename = "_Source")]
    Source,
    #[serde(rename = "_ts")]
    Ts,
    #[serde(rename = "velonotify_module")]
    Mark,
    #[serde(other)]
    Other,
}

impl<R: BufRead> Iterator for JsonlSource<R> {
    type Item = Result<IncomingEvent, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line += 1;
            let too_long = match self.read_line() {
                Ok(None) => return None,
                Ok(Some(too_long)) => too_long,
                Err(e) => return Some(Err(self.error(format!("read error: {e}")))),
            };
            if too_long {
                return Some(Err(
                    self.error(format!("line is longer than {} bytes", self.max_line_bytes))
                ));
            }
            match self.parse_line() {
                Ok(None) => continue,
                Ok(Some(event)) => return Some(Ok(event)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, max: usize) -> Vec<Result<IncomingEvent, SourceError>> {
        JsonlSource::new(text.as_bytes(), "events.jsonl", "root", max).collect()
    }

    #[test]
    fn rows_carry_their_queue_time_and_line() {
        let got = read(
            "{\"_Source\":\"Server.Internal.Alerts\",\"_ts\":1767000000,\"name\":\"x\"}\n",
            1000,
        );
        let event = got[0].as_ref().unwrap();
        assert_eq!(event.id, "events.jsonl:1");
        assert_eq!(event.queue, "Server.Internal.Alerts");
        assert_eq!(event.ts_us, Some(1_767_000_000_000_000));
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number_and_skipped() {
        let got = read(
            "{\"_Source\":\"Q\"}\n{not json\n\n[1]\n{\"name\":\"no queue\"}\n{\"_Source\":\"Q\"}\n",
            1000,
        );
        assert_eq!(got.len(), 5);
        let errors: Vec<String> = got
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| e.to_string())
            .collect();
        assert!(errors[0].starts_with("events.jsonl:2: malformed JSON"), "{errors:?}");
        assert!(
            errors[1].starts_with("events.jsonl:4: expected a JSON object"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("events.jsonl:5: row has no _Source"),
            "{errors:?}"
        );
        assert_eq!(got[4].as_ref().unwrap().id, "events.jsonl:6");
    }

    #[test]
    fn only_the_rows_own_source_counts_and_the_last_of_repeated_keys_wins() {
        let got = read(
            "{\"Details\":{\"_Source\":\"Inner\",\"_ts\":\"x\"},\"_Source\":\"Q\"}\n\
             {\"_Source\":\"A\",\"_ts\":1,\"_Source\":\"B\",\"_ts\":2}\n",
            1000,
        );
        let first = got[0].as_ref().unwrap();
        assert_eq!((first.queue.as_str(), first.ts_us), ("Q", None));
        let second = got[1].as_ref().unwrap();
        assert_eq!((second.queue.as_str(), second.ts_us), ("B", Some(2_000_000)));
    }

    #[test]
    fn overlong_lines_are_skipped_whole() {
        let long = format!("{{\"_Source\":\"Q\",\"x\":\"{}\"}}", "a".repeat(100));
        let got = read(&format!("{long}\n{{\"_Source\":\"Q\"}}\n"), 50);
        assert!(got[0].as_ref().unwrap_err().message.contains("longer than 50 bytes"));
        assert_eq!(got[1].as_ref().unwrap().id, "events.jsonl:2");
    }

    #[test]
    fn a_default_queue_serves_rows_without_source() {
        let got: Vec<_> = JsonlSource::new("{\"name\":\"x\",\"_Source\":\"\"}\n".as_bytes(), "f", "root", 100)
            .with_default_queue(Some("Server.Internal.Alerts".into()))
            .collect();
        assert_eq!(got[0].as_ref().unwrap().queue, "Server.Internal.Alerts");
    }

    #[test]
    fn the_last_line_needs_no_newline() {
        assert_eq!(read("{\"_Source\":\"Q\"}", 100).len(), 1);
    }

    /// JSON text with more of what breaks parsers than chance would give.
    fn json_ish() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let pieces = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\"_Source\"",
            "\"_ts\"",
            "\"velonotify_module\"",
            "\"Q\"",
            "1",
            "-0",
            "1e999",
            "1.5e300",
            "-1",
            "null",
            "true",
            "\\ud800",
            "\\u00e9",
            "\\n",
            "\\",
            "é",
            " ",
            "\n",
        ]);
        prop_oneof![
            any::<String>(),
            prop::collection::vec(pieces, 0..30).prop_map(|p| p.concat()),
            (any::<String>(), -1e12f64..1e12, any::<String>()).prop_map(|(queue, ts, other)| {
                serde_json::json!({"_Source": queue, "_ts": ts, "other": other}).to_string()
            }),
            // A row whose envelope is fine and one member is what only a
            // full parse refuses, or accepts.
            (
                prop::sample::select(vec![
                    "1e999".to_string(),
                    "-1e999".to_string(),
                    "\"\\ud800\"".to_string(),
                    "\"\\udc00x\"".to_string(),
                    "[".repeat(200) + &"]".repeat(200),
                    "[".repeat(100) + &"]".repeat(100),
                    "1e308".to_string(),
                    "\"\\ud83d\\ude00\"".to_string(),
                    "{\"\\ud800\":1}".to_string(),
                ]),
                0..3usize
            )
                .prop_map(|(value, at)| {
                    let members = ["\"_Source\":\"Q\"", "\"_ts\":1", "\"x\":VALUE"];
                    let mut members = members.map(|m| m.replace("VALUE", &value)).to_vec();
                    members.rotate_left(at);
                    format!("{{{}}}", members.join(","))
                }),
        ]
    }

    proptest::proptest! {
        /// A row is taken only when a module's full parse takes it (a JSON
        /// object), whatever the text; never a panic. A taken row's queue
        /// and time are its `_Source` and `_ts` (`scripts/test` runs a
        /// fixed number of cases; PROPTEST_CASES for more).
        #[test]
        fn the_envelope_takes_only_what_a_module_can_read(text in json_ish()) {
            let envelope = read_envelope(&text, Some("Default"));
            let parsed = serde_json::from_str::<Value>(&text);
            if let Ok(envelope) = envelope {
                let Ok(Value::Object(row)) = parsed else {
                    return Err(proptest::test_runner::TestCaseError::fail(format!("took {text:?}")));
                };
                let queue = row.get("_Source").and_then(Value::as_str).filter(|q| !q.is_empty()).unwrap_or("Default");
                proptest::prop_assert_eq!(envelope.queue.as_str(), queue);
                let ts = row.get("_ts").and_then(Value::as_f64).filter(|t| *t >= 0.0);
                proptest::prop_assert_eq!(envelope.ts_us, ts.map(|t| (t * 1e6).round() as u64));
            } else if let Ok(Value::Object(row)) = parsed {
                // Refused though a module could read it: only for a time
                // that is not epoch seconds.
                proptest::prop_assert!(matches!(row.get("_ts"), Some(t) if !t.is_null()), "refused {text:?}");
            }
        }
    }
}
