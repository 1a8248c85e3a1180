//! Where inputs come from: JSON lines from a file or stdin ([`jsonl`]), the
//! HTTP ingest endpoint ([`ingest`]), and a Velociraptor server's event
//! queues ([`velociraptor`]). Each hands the service [`Input`]s; the
//! service answers a source (ingest 200, a stream position kept) only once
//! what the input caused is committed.

pub mod ingest;
pub mod jsonl;
pub mod row_outcome;
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchHandled {
    /// Rows no module watches (their org and queue): handled by nobody.
    pub unwatched: usize,
    /// What the modules did with each row, in order.
    pub rows: Vec<row_outcome::RowOutcome>,
}

/// The service's side of a posted batch. The batch is the service's or
/// the sender's, whoever claims it first: the service, which then handles
/// it and answers; or the sender's deadline, after which the sender is
/// told nothing was kept and the service leaves the batch alone. So a
/// sender never waits without limit (the service may be holding inputs
/// back), and a 503 never hides a batch that is handled anyway.
#[derive(Debug)]
pub struct BatchReply {
    claim: std::sync::Arc<std::sync::atomic::AtomicU8>,
    done: tokio::sync::oneshot::Sender<BatchHandled>,
}

/// The sender's side of a posted batch.
#[derive(Debug)]
pub struct BatchWait {
    claim: std::sync::Arc<std::sync::atomic::AtomicU8>,
    pub handled: tokio::sync::oneshot::Receiver<BatchHandled>,
}

const WAITING: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

impl BatchReply {
    pub fn new() -> (Self, BatchWait) {
        let claim = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(WAITING));
        let (done, handled) = tokio::sync::oneshot::channel();
        let reply = Self {
            claim: claim.clone(),
            done,
        };
        (reply, BatchWait { claim, handled })
    }

    /// The service claims the batch; false when its sender stopped waiting.
    pub fn claim(&self) -> bool {
        self.claim
            .compare_exchange(
                WAITING,
                TAKEN,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .is_ok()
    }

    /// Tells the sender the batch is committed.
    pub fn answer(self, handled: BatchHandled) {
        let _ = self.done.send(handled);
    }
}

impl BatchWait {
    /// The sender stops waiting; false when the service has claimed the
    /// batch already (its answer is coming).
    pub fn abandon(&self) -> bool {
        self.claim
            .compare_exchange(
                WAITING,
                ABANDONED,
                std::sync::atomic::Ordering::AcqRel,
                std::sync::atomic::Ordering::Acquire,
            )
            .is_ok()
    }
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
    /// Rows posted to the ingest endpoint, handled only if the service
    /// claims them before their sender stops waiting; told once everything
    /// they caused is committed.
    Batch(Vec<IncomingEvent>, BatchReply),
    /// A new version of a module waits in the swap slot (a wake-up: the
    /// slot is also looked at before every event).
    SwapReady,
    /// The end of a finite input (stdin).
    End,
}
