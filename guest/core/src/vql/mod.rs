//! The parts of VQL's runtime semantics that the artifacts depend on
//! (docs/velociraptor.md §1): how regexes match, what is "truthy", how
//! values print, and how timestamps are read, printed and humanized.

mod humanize;
mod members;
mod raw_row;
mod regex;
mod time;
mod value;

pub use self::humanize::{humanize_bytes, humanize_duration_since};
pub use self::members::read_members;
pub use self::raw_row::RawRow;
pub use self::regex::{RegexError, VqlRegex};
pub use self::time::{Timestamp, parse_timestamp, parse_timestamp_str};
pub use self::value::{get_member_path, get_path, is_truthy, render_value, render_value_or_empty};
