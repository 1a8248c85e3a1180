//! `timestamp()` and how times print (docs/velociraptor.md §1.9).

use jiff::fmt::strtime;
use serde_json::Value;
use std::fmt;

/// A point in time, UTC, with nanosecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(jiff::Timestamp);

impl Timestamp {
    /// Go's zero time (`0001-01-01T00:00:00Z`): what `timestamp()` gives
    /// for `0` and `""`, and what an alert made with no time carries.
    pub fn zero() -> Self {
        Self(jiff::Timestamp::new(-62_135_596_800, 0).expect("year 1 is in range"))
    }

    /// From whole seconds since the epoch, clamped to the representable
    /// range (years -9999 to 9999).
    pub fn from_unix_seconds(seconds: i64) -> Self {
        let seconds = seconds.clamp(jiff::Timestamp::MIN.as_second(), jiff::Timestamp::MAX.as_second());
        Self(jiff::Timestamp::from_second(seconds).expect("clamped into range"))
    }

    /// From microseconds since the epoch (the host clock's unit).
    pub fn from_unix_micros(micros: i64) -> Self {
        let seconds = micros.div_euclid(1_000_000);
        let nanos = (micros.rem_euclid(1_000_000) * 1000) as i32;
        jiff::Timestamp::new(seconds, nanos)
            .map(Self)
            .unwrap_or_else(|_| Self::from_unix_seconds(seconds))
    }

    fn from_unix_nanos(nanos: i128) -> Self {
        jiff::Timestamp::from_nanosecond(nanos)
            .map(Self)
            .unwrap_or_else(|_| Self::from_unix_seconds((nanos / 1_000_000_000) as i64))
    }

    /// `.Unix`: whole seconds since the epoch (negative before 1970).
    pub fn unix_seconds(&self) -> i64 {
        self.0.as_second()
    }

    /// Microseconds since the epoch.
    pub fn unix_micros(&self) -> i64 {
        self.0.as_microsecond()
    }

    /// `.String`: RFC 3339 in UTC, whole seconds (`2026-04-22T14:42:27Z`).
    pub fn rfc3339(&self) -> String {
        self.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// RFC 3339 in UTC with the fraction of a second that is not zero, as
    /// `alert()` stores its `timestamp` (`2026-04-22T14:42:27.123456Z`).
    pub fn rfc3339_precise(&self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

/// `timestamp(epoch=value)`: integers (and strings of digits) are read in
/// the unit their size suggests (nanoseconds above 2e16, microseconds above
/// 2e13, milliseconds above 2e10, else seconds); floats are seconds with a
/// fraction; other strings are parsed as dates in the common formats; `0`
/// and `""` give the zero time; NULL, lists, dicts and unreadable strings
/// give None.
pub fn parse_timestamp(value: &Value) -> Option<Timestamp> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(from_guessed_unit(i as i128))
            } else if let Some(u) = n.as_u64() {
                Some(from_guessed_unit(u as i128))
            } else {
                n.as_f64().map(from_float_seconds)
            }
        }
        Value::String(s) => parse_timestamp_str(s),
        _ => None,
    }
}

/// [`parse_timestamp`] for text.
pub fn parse_timestamp_str(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if text.is_empty() {
        return Some(Timestamp::zero());
    }
    if let Ok(i) = text.parse::<i128>() {
        return Some(from_guessed_unit(i));
    }
    parse_date_text(text)
}

fn from_guessed_unit(value: i128) -> Timestamp {
    if value == 0 {
        Timestamp::zero()
    } else if value > 20_000_000_000_000_000 {
        Timestamp::from_unix_nanos(value)
    } else if value > 20_000_000_000_000 {
        Timestamp::from_unix_nanos(value * 1_000)
    } else if value > 20_000_000_000 {
        Timestamp::from_unix_nanos(value * 1_000_000)
    } else {
        Timestamp::from_unix_nanos(value * 1_000_000_000)
    }
}

fn from_float_seconds(seconds: f64) -> Timestamp {
    if seconds == 0.0 {
        return Timestamp::zero();
    }
    let nanos = (seconds * 1e9).round();
    Timestamp::from_unix_nanos(nanos.clamp(-9.2e27, 9.2e27) as i128)
}

/// Formats Velociraptor and its users write: RFC 3339 (what `alert()`
/// stores), Go's `time.String()` (server monitoring logs), and plain dates.
fn parse_date_text(text: &str) -> Option<Timestamp> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(Timestamp(ts));
    }
    // Go's time.Time.String(): "2020-10-07 20:43:08.123 +0000 UTC"; the zone
    // name after the numeric offset adds nothing.
    let go_style = text
        .rsplit_once(' ')
        .filter(|(_, zone)| zone.chars().all(|c| c.is_ascii_alphabetic()))
        .map_or(text, |(rest, _)| rest);
    const WITH_OFFSET: [&str; 3] = [
        "%Y-%m-%d %H:%M:%S%.f %z",
        "%a, %d %b %Y %H:%M:%S %z",
        "%d %b %Y %H:%M:%S %z",
    ];
    for format in WITH_OFFSET {
        if let Ok(ts) = strtime::parse(format, go_style).and_then(|tm| tm.to_timestamp()) {
            return Some(Timestamp(ts));
        }
    }
    const UTC_IMPLIED: [&str; 3] = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d"];
    for format in UTC_IMPLIED {
        if let Ok(tm) = strtime::parse(format, text) {
            let date = tm.to_date().ok()?;
            let time = tm.to_time().unwrap_or_default();
            let ts = date.to_datetime(time).to_zoned(jiff::tz::TimeZone::UTC).ok()?;
            return Some(Timestamp(ts.timestamp()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rfc(v: Value) -> String {
        parse_timestamp(&v).unwrap().rfc3339()
    }

    #[test]
    fn integer_units_are_guessed_from_their_size() {
        assert_eq!(rfc(json!(1767000000)), "2025-12-29T09:20:00Z");
        assert_eq!(rfc(json!(1767000000123_i64)), "2025-12-29T09:20:00Z");
        assert_eq!(rfc(json!(1767000000123456_i64)), "2025-12-29T09:20:00Z");
        assert_eq!(rfc(json!(1767000000123456789_i64)), "2025-12-29T09:20:00Z");
        assert_eq!(rfc(json!("1767000000")), "2025-12-29T09:20:00Z");
    }

    #[test]
    fn zero_and_empty_give_the_zero_time_not_the_epoch() {
        assert_eq!(rfc(json!(0)), "0001-01-01T00:00:00Z");
        assert_eq!(rfc(json!("")), "0001-01-01T00:00:00Z");
        assert!(parse_timestamp(&json!(null)).is_none());
    }

    #[test]
    fn alert_timestamps_with_nanoseconds_parse() {
        assert_eq!(rfc(json!("2026-04-19T10:03:26.123456789Z")), "2026-04-19T10:03:26Z");
        assert_eq!(rfc(json!("0001-01-01T00:00:00Z")), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn go_time_strings_from_server_logs_parse() {
        assert_eq!(rfc(json!("2020-10-07 20:43:08 +0000 UTC")), "2020-10-07T20:43:08Z");
        assert_eq!(rfc(json!("2020-10-07 20:43:08.5 +0200 CEST")), "2020-10-07T18:43:08Z");
    }

    #[test]
    fn floats_are_seconds_with_a_fraction() {
        let ts = parse_timestamp(&json!(1767000000.75)).unwrap();
        assert_eq!(ts.unix_micros(), 1_767_000_000_750_000);
    }

    #[test]
    fn precise_rfc3339_keeps_the_fraction_that_is_not_zero() {
        assert_eq!(
            Timestamp::from_unix_micros(1_778_400_000_123_456).rfc3339_precise(),
            "2026-05-10T08:00:00.123456Z"
        );
        assert_eq!(
            Timestamp::from_unix_seconds(1_778_400_000).rfc3339_precise(),
            "2026-05-10T08:00:00Z"
        );
    }

    #[test]
    fn unreadable_text_is_none() {
        assert!(parse_timestamp(&json!("yesterday-ish")).is_none());
    }
}
