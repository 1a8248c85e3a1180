//! Time intervals, as Alertmanager's `time_intervals` (Grafana's mute
//! timings): named sets of times of day, weekdays, days of the month,
//! months and years, in an IANA location. A module may be muted during some
//! (`mute_time_intervals`) or active only during others
//! (`active_time_intervals`): "no e-mails at night for medium".
//!
//! In the configuration, each `[[time_interval]]` is one such set; several
//! with the same name are alternatives (any of them makes the time fall in
//! the interval). Within one set, every field given must hold; a field left
//! out holds always.

use std::collections::BTreeMap;

use jiff::Zoned;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

/// How far ahead the end of a mute is looked for (a mute that never ends
/// is released after this long, and said).
pub const MAX_MUTE_US: u64 = 31 * 24 * 3600 * 1_000_000;

/// `[[time_interval]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeIntervalSection {
    pub name: String,
    /// Times of day, `{start_time = "22:00", end_time = "24:00"}` (start
    /// included, end not).
    #[serde(default)]
    pub times: Vec<TimeRangeSection>,
    /// `monday`, or a range `monday:friday`.
    #[serde(default)]
    pub weekdays: Vec<String>,
    /// `1`, `1:7`, or from the end of the month: `-1` (the last day), `-3:-1`.
    #[serde(default)]
    pub days_of_month: Vec<String>,
    /// `december`, `11:12`, `may:august`.
    #[serde(default)]
    pub months: Vec<String>,
    /// `2026`, `2026:2027`.
    #[serde(default)]
    pub years: Vec<String>,
    /// An IANA time zone (`Europe/Berlin`); default UTC.
    pub location: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeSection {
    pub start_time: String,
    pub end_time: String,
}

/// One set, read: minutes of the day, ranges of weekdays (Monday = 1),
/// days of the month, months and years.
#[derive(Debug, Clone)]
struct Window {
    minutes: Vec<(u16, u16)>,
    weekdays: Vec<(i8, i8)>,
    days_of_month: Vec<(i8, i8)>,
    months: Vec<(i8, i8)>,
    years: Vec<(i16, i16)>,
    zone: TimeZone,
}

/// The named intervals of a configuration.
#[derive(Debug, Clone, Default)]
pub struct TimeIntervals {
    by_name: BTreeMap<String, Vec<Window>>,
}

impl TimeIntervals {
    /// Reads and checks every `[[time_interval]]`, naming the one that is
    /// wrong.
    pub fn read(sections: &[TimeIntervalSection]) -> Result<Self, String> {
        let mut by_name: BTreeMap<String, Vec<Window>> = BTreeMap::new();
        for (i, section) in sections.iter().enumerate() {
            let at = format!("time_interval {} ({:?})", i + 1, section.name);
            if section.name.trim().is_empty() {
                return Err(format!("time_interval {}: a name is needed", i + 1));
            }
            let window = Window::read(section).map_err(|e| format!("{at}: {e}"))?;
            by_name.entry(section.name.clone()).or_default().push(window);
        }
        Ok(Self { by_name })
    }

    /// Checks that every name in `names` is an interval; `what` says where
    /// they come from.
    pub fn check_names(&self, names: &[String], what: &str) -> Result<(), String> {
        for name in names {
            if !self.by_name.contains_key(name) {
                let known: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
                return Err(format!(
                    "{what}: no time_interval named {name:?} (known: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
        }
        Ok(())
    }

    /// The first of `names` that `at_us` falls in.
    pub fn containing<'a>(&self, names: &'a [String], at_us: u64) -> Option<&'a str> {
        let at = timestamp(at_us)?;
        names
            .iter()
            .find(|name| {
                self.by_name
                    .get(*name)
                    .is_some_and(|w| w.iter().any(|w| w.contains(at)))
            })
            .map(String::as_str)
    }
}

/// When a module's notifications are muted, from its configuration.
#[derive(Debug, Clone, Default)]
pub struct MuteTiming {
    pub mute: Vec<String>,
    /// Empty: active always.
    pub active: Vec<String>,
}

impl MuteTiming {
    /// Why a notification at `at_us` is muted: the interval it falls in,
    /// or that it is outside every active one.
    pub fn muted_by(&self, intervals: &TimeIntervals, at_us: u64) -> Option<String> {
        if let Some(name) = intervals.containing(&self.mute, at_us) {
            return Some(format!("mute time interval {name:?}"));
        }
        if !self.active.is_empty() && intervals.containing(&self.active, at_us).is_none() {
            return Some(format!("outside the active time intervals {:?}", self.active));
        }
        None
    }

    /// When a mute in force at `at_us` ends: the first minute after it
    /// that is not muted (at most [`MAX_MUTE_US`] ahead).
    pub fn mute_ends(&self, intervals: &TimeIntervals, at_us: u64) -> u64 {
        const MINUTE: u64 = 60_000_000;
        let mut t = (at_us / MINUTE + 1) * MINUTE;
        while t - at_us < MAX_MUTE_US {
            if self.muted_by(intervals, t).is_none() {
                return t;
            }
            t += MINUTE;
        }
        t
    }

    pub fn is_empty(&self) -> bool {
        self.mute.is_empty() && self.active.is_empty()
    }
}

fn timestamp(at_us: u64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_microsecond(i64::try_from(at_us).ok()?).ok()
}

impl Window {
    fn read(section: &TimeIntervalSection) -> Result<Self, String> {
        let zone = match &section.location {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name)
                .map_err(|e| format!("location {name:?} is not an IANA time zone known here ({e})"))?,
        };
        let minutes = section
            .times
            .iter()
            .map(|t| {
                let (start, end) = (minute_of_day(&t.start_time)?, minute_of_day(&t.end_time)?);
                if start >= end {
                    return Err(format!(
                        "times: {:?} to {:?}: the end must come after the start (split a range over midnight in two)",
                        t.start_time, t.end_time
                    ));
                }
                Ok((start, end))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            minutes,
            weekdays: ranges(&section.weekdays, "weekdays", weekday)?,
            days_of_month: ranges(&section.days_of_month, "days_of_month", day_of_month)?,
            months: ranges(&section.months, "months", month)?,
            years: ranges(&section.years, "years", |t| {
                t.parse::<i16>().ok().filter(|y| (1970..=9999).contains(y))
            })?,
            zone,
        })
    }

    fn contains(&self, at: jiff::Timestamp) -> bool {
        let local: Zoned = at.to_zoned(self.zone.clone());
        let date = local.date();
        let minute = u16::try_from(local.hour()).unwrap_or(0) * 60 + u16::try_from(local.minute()).unwrap_or(0);
        let within = |ranges: &[(i8, i8)], value: i8| {
            ranges.is_empty() || ranges.iter().any(|(a, b)| (*a..=*b).contains(&value))
        };
        (self.minutes.is_empty() || self.minutes.iter().any(|(a, b)| (*a..*b).contains(&minute)))
            && within(&self.weekdays, date.weekday().to_monday_one_offset())
            && self.in_days_of_month(date)
            && within(&self.months, date.month())
            && (self.years.is_empty() || self.years.iter().any(|(a, b)| (*a..=*b).contains(&date.year())))
    }

    /// Days counted from the end (`-1` the last) are read against the
    /// month's length.
    fn in_days_of_month(&self, date: Date) -> bool {
        let length = date.days_in_month();
        let resolve = |d: i8| if d < 0 { length + 1 + d } else { d };
        self.days_of_month.is_empty()
            || self
                .days_of_month
                .iter()
                .any(|(a, b)| (resolve(*a)..=resolve(*b)).contains(&date.day()))
    }
}

/// `HH:MM` as minutes of the day; `24:00` is the end of the day.
fn minute_of_day(text: &str) -> Result<u16, String> {
    if text == "24:00" {
        return Ok(24 * 60);
    }
    let time: Time = text
        .parse()
        .map_err(|_| format!("times: {text:?} is not a time of day such as 22:00"))?;
    if time.second() != 0 || time.subsec_nanosecond() != 0 {
        return Err(format!("times: {text:?}: whole minutes only"));
    }
    Ok(u16::try_from(time.hour()).unwrap_or(0) * 60 + u16::try_from(time.minute()).unwrap_or(0))
}

/// Items such as `monday` or `monday:friday`, each read by `one`.
fn ranges<T: PartialOrd + Copy>(
    items: &[String],
    what: &str,
    one: impl Fn(&str) -> Option<T>,
) -> Result<Vec<(T, T)>, String> {
    items
        .iter()
        .map(|item| {
            let (a, b) = item.split_once(':').unwrap_or((item, item));
            let read = |t: &str| one(t.trim()).ok_or_else(|| format!("{what}: {item:?} is not one ({t:?})"));
            let (a, b) = (read(a)?, read(b)?);
            // Days counted from the end may follow days from the start
            // (`1:-1`); any other range must not run backwards.
            let days_from_both_ends =
                what == "days_of_month" && item.contains('-') && !item.trim_start().starts_with('-');
            if a > b && !days_from_both_ends {
                return Err(format!("{what}: {item:?} runs backwards (write it as two ranges)"));
            }
            Ok((a, b))
        })
        .collect()
}

fn weekday(text: &str) -> Option<i8> {
    let days = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    let names = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let at = names.iter().position(|n| n.eq_ignore_ascii_case(text))?;
    Some(days[at].to_monday_one_offset())
}

fn day_of_month(text: &str) -> Option<i8> {
    let day: i8 = text.parse().ok()?;
    ((1..=31).contains(&day) || (-31..=-1).contains(&day)).then_some(day)
}

fn month(text: &str) -> Option<i8> {
    let names = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    match names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        Some(i) => i8::try_from(i + 1).ok(),
        None => text.parse::<i8>().ok().filter(|m| (1..=12).contains(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(rfc3339: &str) -> u64 {
        crate::clock::parse_rfc3339(rfc3339).unwrap()
    }

    fn intervals(toml_text: &str) -> TimeIntervals {
        #[derive(Deserialize)]
        struct Doc {
            time_interval: Vec<TimeIntervalSection>,
        }
        let doc: Doc = toml::from_str(toml_text).unwrap();
        TimeIntervals::read(&doc.time_interval).unwrap()
    }

    const NIGHTS: &str = r#"
[[time_interval]]
name = "night"
times = [{start_time = "22:00", end_time = "24:00"}, {start_time = "00:00", end_time = "06:00"}]
weekdays = ["monday:friday"]
location = "Europe/Berlin"

[[time_interval]]
name = "night"
weekdays = ["saturday", "sunday"]
location = "Europe/Berlin"
"#;

    /// Weeknights in Berlin and whole weekends: 2026-11-30 is a Monday,
    /// and Berlin is UTC+1 in winter.
    #[test]
    fn a_time_falls_in_an_interval_in_its_location() {
        let nights = intervals(NIGHTS);
        let night = ["night".to_string()];
        let inside = |at: &str| nights.containing(&night, us(at)).is_some();
        assert!(inside("2026-11-30T21:30:00Z"), "22:30 in Berlin");
        assert!(!inside("2026-11-30T20:59:00Z"), "21:59 in Berlin");
        assert!(inside("2026-12-01T04:59:00Z"), "05:59 in Berlin");
        assert!(!inside("2026-12-01T05:00:00Z"), "06:00: the end is not in");
        assert!(inside("2026-12-05T12:00:00Z"), "Saturday noon");
    }

    #[test]
    fn days_of_the_month_count_from_its_end_too_and_months_and_years_hold() {
        let last_days = intervals(
            "[[time_interval]]\nname = \"close\"\ndays_of_month = [\"-2:-1\"]\nmonths = [\"february\", \"11:12\"]\nyears = [\"2026:2027\"]\n",
        );
        let close = ["close".to_string()];
        let inside = |at: &str| last_days.containing(&close, us(at)).is_some();
        assert!(inside("2026-11-29T10:00:00Z") && inside("2026-11-30T10:00:00Z"));
        assert!(!inside("2026-11-28T10:00:00Z"));
        assert!(inside("2027-02-27T10:00:00Z"), "February has 28 days in 2027");
        assert!(!inside("2026-10-31T10:00:00Z"), "not in October");
        assert!(!inside("2028-11-30T10:00:00Z"), "not in 2028");
    }

    /// A mute ends at the first minute outside it; a module active only in
    /// office hours is muted outside them.
    #[test]
    fn a_mute_ends_at_the_first_minute_outside_it() {
        let nights = intervals(NIGHTS);
        let timing = MuteTiming {
            mute: vec!["night".into()],
            active: Vec::new(),
        };
        let at = us("2026-11-30T21:30:10Z");
        assert_eq!(timing.muted_by(&nights, at).unwrap(), "mute time interval \"night\"");
        assert_eq!(timing.mute_ends(&nights, at), us("2026-12-01T05:00:00Z"));
        let office = intervals(
            "[[time_interval]]\nname = \"office\"\ntimes = [{start_time = \"08:00\", end_time = \"18:00\"}]\n",
        );
        let only_office = MuteTiming {
            mute: Vec::new(),
            active: vec!["office".into()],
        };
        assert!(
            only_office
                .muted_by(&office, us("2026-11-30T07:59:00Z"))
                .unwrap()
                .contains("outside")
        );
        assert_eq!(only_office.muted_by(&office, us("2026-11-30T08:00:00Z")), None);
        assert_eq!(
            only_office.mute_ends(&office, us("2026-11-30T07:00:30Z")),
            us("2026-11-30T08:00:00Z")
        );
    }

    #[test]
    fn a_bad_interval_is_refused_naming_it() {
        let refused = |text: &str| {
            #[derive(Deserialize)]
            struct Doc {
                time_interval: Vec<TimeIntervalSection>,
            }
            let doc: Doc = toml::from_str(text).unwrap();
            TimeIntervals::read(&doc.time_interval).unwrap_err()
        };
        let said = refused("[[time_interval]]\nname = \"n\"\nweekdays = [\"funday\"]\n");
        assert!(
            said.starts_with("time_interval 1 (\"n\"): weekdays: \"funday\""),
            "{said}"
        );
        let said = refused("[[time_interval]]\nname = \"n\"\nweekdays = [\"friday:monday\"]\n");
        assert!(said.contains("runs backwards"), "{said}");
        let said = refused("[[time_interval]]\nname = \"n\"\ndays_of_month = [\"-1:-3\"]\n");
        assert!(said.contains("runs backwards"), "{said}");
        let said = refused("[[time_interval]]\nname = \"n\"\nlocation = \"Mars/Olympus\"\n");
        assert!(said.contains("not an IANA time zone"), "{said}");
        let said =
            refused("[[time_interval]]\nname = \"n\"\ntimes = [{start_time = \"22:00\", end_time = \"06:00\"}]\n");
        assert!(said.contains("split a range over midnight"), "{said}");
        let intervals = intervals("[[time_interval]]\nname = \"night\"\n");
        let said = intervals
            .check_names(&["nigth".into()], "module 1: mute_time_intervals")
            .unwrap_err();
        assert!(
            said.contains("no time_interval named \"nigth\" (known: night)"),
            "{said}"
        );
    }
}
