//! `humanize()` as go-humanize v1.0.1 prints (docs/velociraptor.md §1.9).

use super::time::Timestamp;

/// `humanize(time=then)` relative to `now`: `now`, `10 seconds ago`,
/// `3 days from now`, `a long while ago`, ...
pub fn humanize_duration_since(then: Timestamp, now: Timestamp) -> String {
    let diff = now.unix_micros() as i128 - then.unix_micros() as i128;
    let (label, magnitude) = if diff < 0 {
        ("from now", (-diff) as u128)
    } else {
        ("ago", diff as u128)
    };
    let seconds = (magnitude / 1_000_000) as u64;
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    const WEEK: u64 = 7 * DAY;
    const MONTH: u64 = 30 * DAY;
    const YEAR: u64 = 12 * MONTH;
    let amount = match seconds {
        0 => return "now".to_string(),
        1 => "1 second".to_string(),
        s if s < MINUTE => format!("{s} seconds"),
        s if s < 2 * MINUTE => "1 minute".to_string(),
        s if s < HOUR => format!("{} minutes", s / MINUTE),
        s if s < 2 * HOUR => "1 hour".to_string(),
        s if s < DAY => format!("{} hours", s / HOUR),
        s if s < 2 * DAY => "1 day".to_string(),
        s if s < WEEK => format!("{} days", s / DAY),
        s if s < 2 * WEEK => "1 week".to_string(),
        s if s < MONTH => format!("{} weeks", s / WEEK),
        s if s < 2 * MONTH => "1 month".to_string(),
        s if s < YEAR => format!("{} months", s / MONTH),
        s if s < 18 * MONTH => "1 year".to_string(),
        s if s < 2 * YEAR => "2 years".to_string(),
        s if s < 37 * YEAR => format!("{} years", s / YEAR),
        _ => "a long while".to_string(),
    };
    format!("{amount} {label}")
}

/// `humanize(bytes=n)`: SI units, base 1000 (`2.6 kB`, `480 kB`).
pub fn humanize_bytes(bytes: u64) -> String {
    if bytes < 10 {
        return format!("{bytes} B");
    }
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let exponent = ((bytes as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (bytes as f64 / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ago(seconds: i64) -> String {
        let now = Timestamp::from_unix_seconds(1_800_000_000);
        humanize_duration_since(Timestamp::from_unix_seconds(1_800_000_000 - seconds), now)
    }

    #[test]
    fn durations_use_go_humanize_buckets() {
        assert_eq!(ago(0), "now");
        assert_eq!(ago(1), "1 second ago");
        assert_eq!(ago(10), "10 seconds ago");
        assert_eq!(ago(90), "1 minute ago");
        assert_eq!(ago(3 * 3600 + 5), "3 hours ago");
        assert_eq!(ago(6 * 86400), "6 days ago");
        assert_eq!(ago(10 * 86400), "1 week ago");
        assert_eq!(ago(45 * 86400), "1 month ago");
        assert_eq!(ago(400 * 86400), "1 year ago");
        assert_eq!(ago(-120), "2 minutes from now");
        assert_eq!(ago(100 * 365 * 86400), "a long while ago");
    }

    #[test]
    fn bytes_use_si_units() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(9), "9 B");
        assert_eq!(humanize_bytes(24), "24 B");
        assert_eq!(humanize_bytes(2600), "2.6 kB");
        assert_eq!(humanize_bytes(480_000), "480 kB");
        assert_eq!(humanize_bytes(1_073_741_824), "1.1 GB");
    }
}
