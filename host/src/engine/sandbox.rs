//! What a rule module's store holds, and the walls around it: WASI with
//! nothing granted, a memory limit, a virtual clock, captured stderr, and
//! the per-call context the host interface answers from.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, ResourceTable, WasiCtx, WasiCtxView, WasiView};

use super::bindings::LogLevel;
use crate::lookups::{HostFacts, Lookups};
use crate::state::StateStore;

/// Limits of one module instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Longest a single call (`handle`, `tick`, `configure`) may run.
    pub deadline: Duration,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Most actions one call may produce; a call producing more keeps none.
    pub max_actions: usize,
    /// Largest action in bytes, below the host's limits per kind.
    pub max_action_bytes: Option<u64>,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_millis(500),
            memory_bytes: 256 << 20,
            max_actions: 100,
            max_action_bytes: None,
        }
    }
}

/// The data of a module's store.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) call: CallContext,
    pub(crate) stderr: GuestOutput,
}

impl std::fmt::Debug for StoreData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreData")
            .field("module", &self.call.module)
            .finish_non_exhaustive()
    }
}

impl StoreData {
    /// A store with WASI that grants nothing: no preopened directories, no
    /// sockets, no environment, no arguments; stdout discarded, stderr
    /// captured (panic messages), and clocks that read the host's clock.
    pub fn new(call: CallContext, limits: SandboxLimits) -> Self {
        let stderr = GuestOutput::new(STDERR_CAPACITY);
        let clock = call.clock.clone();
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .wall_clock(clock.clone())
            .monotonic_clock(clock)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory_bytes,
            },
            call,
            stderr,
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

/// What the host interface needs to answer a module during one call.
pub struct CallContext {
    /// The module instance's name (from the configuration).
    pub module: String,
    pub org_id: String,
    pub now_us: u64,
    pub clock: SharedClock,
    pub lookups: Arc<dyn Lookups>,
    pub facts: HostFacts,
    pub state: Arc<StateStore>,
    /// Log lines of the current call, bounded.
    pub logs: Vec<(LogLevel, String)>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("module", &self.module)
            .field("org_id", &self.org_id)
            .field("now_us", &self.now_us)
            .finish_non_exhaustive()
    }
}

/// A call may log this many lines of at most this many bytes; the rest is
/// counted, not kept.
const MAX_LOG_LINES: usize = 100;
const MAX_LOG_LINE: usize = 4096;
const STDERR_CAPACITY: usize = 16 * 1024;

impl CallContext {
    pub(crate) fn log(&mut self, level: LogLevel, mut message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            return;
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.logs.push((level, message));
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
/// anonymous abort).
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    limit: usize,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(MemoryLimitExceeded {
                limit: self.limit,
                desired,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The host's clock as the guest's WASI clocks see it: the virtual clock
/// of a replay or the system clock, whichever the pipeline sets.
#[derive(Debug, Clone, Default)]
pub struct SharedClock(Arc<AtomicU64>);

impl SharedClock {
    pub fn set_us(&self, now_us: u64) {
        self.0.store(now_us, Ordering::Relaxed);
    }

    pub fn now_us(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl HostWallClock for SharedClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        Duration::from_micros(self.now_us())
    }
}

impl HostMonotonicClock for SharedClock {
    fn resolution(&self) -> u64 {
        1000
    }

    fn now(&self) -> u64 {
        self.now_us().saturating_mul(1000)
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
