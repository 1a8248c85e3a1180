//! What a rule module's store holds, and the walls around it: WASI with
//! nothing granted, a memory limit, the call's clock, captured stderr, and
//! the call context the host's interfaces answer from.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxView, WasiView};

use crate::capabilities::CallContext;
use crate::clock::CallTime;

/// Limits of one module instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Longest a single call (`handle`, `tick`, `configure`) may run.
    pub deadline: Duration,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// When a fresh instance replaces a live one.
    pub recycle: RecyclePolicy,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        let memory_bytes = 256 << 20;
        Self {
            deadline: Duration::from_millis(500),
            memory_bytes,
            recycle: RecyclePolicy::for_memory_limit(memory_bytes),
        }
    }
}

/// Linear memory never shrinks: an instance that once grew keeps the
/// memory for its life. A fresh instance (its durable state is in the
/// store, so nothing of it is lost) replaces one whose memory has reached
/// `above_bytes` or that has answered `after_calls` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecyclePolicy {
    /// `usize::MAX`: never for its memory.
    pub above_bytes: usize,
    /// 0: never for its number of calls.
    pub after_calls: u64,
}

/// Calls an instance answers before it is recycled, unless
/// `recycle_after_calls` says.
pub const DEFAULT_RECYCLE_AFTER_CALLS: u64 = 1_000_000;

impl RecyclePolicy {
    pub const NEVER: Self = Self {
        above_bytes: usize::MAX,
        after_calls: 0,
    };

    /// The default for a memory limit: recycled at half of it.
    pub fn for_memory_limit(memory_bytes: usize) -> Self {
        Self {
            above_bytes: memory_bytes / 2,
            after_calls: DEFAULT_RECYCLE_AFTER_CALLS,
        }
    }
}

/// Why an instance was recycled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recycled {
    /// Its memory reached `recycle_above_mib`.
    Memory,
    /// It answered `recycle_after_calls` calls.
    Calls,
}

impl Recycled {
    pub fn as_str(self) -> &'static str {
        match self {
            Recycled::Memory => "memory",
            Recycled::Calls => "calls",
        }
    }
}

/// What a module may write to stderr (a panic message) per call, at most.
const STDERR_CAPACITY: usize = 16 * 1024;

/// The data of a module's store.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) call: CallContext,
    pub(crate) stderr: GuestOutput,
    /// The deadline of the call in progress.
    pub(crate) budget: CallBudget,
}

/// A call's deadline counts the module's own work: the time it waits for
/// the host (a lookup answered by a slow server) is not its to spend, and
/// lookups have their own timeout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallBudget {
    started: std::time::Instant,
    deadline: Duration,
}

impl CallBudget {
    pub(crate) fn start(deadline: Duration) -> Self {
        Self {
            started: std::time::Instant::now(),
            deadline,
        }
    }

    /// What is left of the deadline once `waiting` (time spent in the
    /// host) is taken out of the time since the call started; None once it
    /// is spent.
    pub(crate) fn left(&self, waiting: Duration) -> Option<Duration> {
        let own = self.started.elapsed().saturating_sub(waiting);
        self.deadline.checked_sub(own).filter(|left| !left.is_zero())
    }
}

impl std::fmt::Debug for StoreData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreData")
            .field("module", &self.call.module())
            .finish_non_exhaustive()
    }
}

impl StoreData {
    /// A store with WASI that grants nothing: no preopened directories, no
    /// sockets, no environment, no arguments; stdout discarded, stderr
    /// captured (panic messages), and clocks that read the host's clock.
    pub fn new(call: CallContext, time: CallTime, limits: SandboxLimits) -> Self {
        let stderr = GuestOutput::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .wall_clock(time.clone())
            .monotonic_clock(time)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory_bytes,
                in_use: 0,
            },
            call,
            stderr,
            budget: CallBudget::start(limits.deadline),
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The memory limit was reached: the module's trap carries this error.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes reached (the module asked for {desired} bytes)")]
pub struct MemoryLimitExceeded {
    pub limit: usize,
    pub desired: usize,
}

/// Traps a module that grows its memory beyond the limit, with an error
/// that says so (instead of a failed `memory.grow` the guest turns into an
/// anonymous abort), and counts the memory the instance holds.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// Linear memory of every memory of the instance (a component may
    /// have several), in bytes: what it was granted, created and grown.
    in_use: usize,
}

impl MemoryLimiter {
    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded {
                limit: self.limit,
                desired,
            }
            .into());
        }
        self.in_use = self.in_use.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Captures what a module writes to stderr (a panic message, typically)
/// up to a fixed size, silently dropping the rest: a chatty module must
/// not trap on a full pipe, nor fill the host's memory.
#[derive(Debug, Clone)]
pub(crate) struct GuestOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
    capacity: usize,
}

impl GuestOutput {
    fn new(capacity: usize) -> Self {
        Self {
            buffer: Arc::default(),
            capacity,
        }
    }

    /// What was written since the last call, as text.
    pub(crate) fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.buffer.lock().expect("stderr lock"));
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().expect("stderr lock");
        let room = self.capacity.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
