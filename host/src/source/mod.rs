//! Where events come from. Now: JSON lines as `watch_monitoring()` emits
//! them (`velociraptor query ... --format jsonl`), from a file or stdin.

mod jsonl;

pub use self::jsonl::{JsonlSource, SourceError};

/// One event row, before any module has seen it.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingEvent {
    /// `<source>:<line>`: unique per input and stable across replays.
    pub id: String,
    pub queue: String,
    /// The row's JSON text, exactly as read.
    pub row: String,
    pub org_id: String,
    /// The row's `_ts` (the queue's write time), in microseconds.
    pub ts_us: Option<u64>,
}

impl IncomingEvent {
    /// The event as a module receives it.
    pub fn to_wit(&self) -> crate::engine::Event {
        crate::engine::Event {
            id: self.id.clone(),
            queue: self.queue.clone(),
            row: self.row.clone(),
            org_id: self.org_id.clone(),
        }
    }
}
