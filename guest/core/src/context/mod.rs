//! Alert context: the free-form `event_data` of an alert, flattened,
//! filtered and rated (docs/velociraptor.md §3 `Unnest`, §7.3, §7.4).

mod filter;
mod severity;
mod unnest;

pub use self::filter::{
    ContextFilter, ContextRows, MAX_FIELD_LIMIT, MAX_ROW_LIMIT, MAX_TEXT_ROWS, MAX_VALUE_LIMIT, clamp_limit,
};
pub use self::severity::{SeverityRule, SeverityRules, SeverityThreshold};
pub use self::unnest::unnest;
