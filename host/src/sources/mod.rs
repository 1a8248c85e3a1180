//! Where inputs come from: JSON lines from a file or stdin ([`jsonl`]), the
//! HTTP ingest endpoint ([`ingest`]), and a Velociraptor server's event
//! queues ([`velociraptor`]). Each hands the service [`Input`]s; the
//! service answers a source (ingest 200, a stream position kept) only once
//! what the input caused is committed.

pub mod ingest;
pub mod jsonl;
pub mod velociraptor;

pub use self::jsonl::{JsonlSource, SourceError};
use self::velociraptor::Mark;

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
    pub fn to_wit(&self) -> crate::contract::Event {
        crate::contract::Event {
            id: self.id.clone(),
            queue: self.queue.clone(),
            row: self.row.clone(),
            org_id: self.org_id.clone(),
        }
    }
}

/// What became of a batch of posted rows, once committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchHandled {
    /// Rows no module watches (their org and queue): handled by nobody.
    pub unwatched: usize,
}

/// What the sources hand the service, one input at a time.
#[derive(Debug)]
pub enum Input {
    /// An event, and the stream position to keep with it.
    Event(IncomingEvent, Option<Mark>),
    /// Rows of one message (or page) of an event stream, and the positions
    /// they take their queues to, kept with them.
    Rows(Vec<IncomingEvent>, Vec<Mark>),
    /// A stream position to keep with no event: where a stream starts, so
    /// that what is written before the first row is caught up after a
    /// restart.
    Position(Mark),
    /// A line that is not an event: reported and skipped.
    Bad(SourceError),
    /// Rows posted to the ingest endpoint; `done` is told once everything
    /// they caused is committed.
    Batch(Vec<IncomingEvent>, tokio::sync::oneshot::Sender<BatchHandled>),
    /// A new version of a module waits in the swap slot (a wake-up: the
    /// slot is also looked at before every event).
    SwapReady,
    /// The end of a finite input (stdin).
    End,
}
