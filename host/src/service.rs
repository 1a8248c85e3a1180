//! `velonotify run`: events from the configured sources (a Velociraptor
//! server, the HTTP ingest endpoint, or else stdin) through the modules
//! into the durable outbox, and a delivery thread working through it.

use std::collections::HashMap;
use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::checkpoint::{CHECKPOINT_EVERY, Checkpointer};
use crate::config::{Config, VelociraptorSection};
use crate::delivery::{ApiActions, Deliverer, SmtpSenders, WebhookSender};
use crate::lookups::Lookups;
use crate::outbox::{Level, Outbox, OutboxStore, Report, StoreOutbox};
use crate::pipeline::{ClockMode, system_now_us};
use crate::reload::{ReloadSettings, Reloader, SwapSlot};
use crate::runtime::{Overrides, Runtime};
use crate::source::{IncomingEvent, JsonlSource, SourceError};
use crate::state::StateStore;
use crate::velociraptor::events::{self, Cursor, Mark, Subscription};
use crate::velociraptor::{ApiClient, ApiClientConfig, ApiLookups};

/// What the sources hand the pipeline.
#[derive(Debug)]
pub enum Input {
    /// An event, and the stream position to keep once it is handled.
    Event(IncomingEvent, Option<Mark>),
    /// A line that is not an event: reported and skipped.
    Bad(SourceError),
    /// Rows posted to the ingest endpoint; `done` is told once their
    /// actions are in the outbox.
    Batch(Vec<IncomingEvent>, tokio::sync::oneshot::Sender<()>),
    /// A new version of a module waits in the swap slot (a wake-up: the
    /// slot is also looked at before every event).
    SwapReady,
    /// The end of a finite input (stdin).
    End,
}

/// Events waiting for the pipeline, at most.
const QUEUE_DEPTH: usize = 1024;

/// Runs until the input ends (stdin) or the process is stopped.
pub fn run(config: &Config, overrides: &Overrides) -> anyhow::Result<()> {
    let api = config
        .velociraptor
        .as_ref()
        .map(|section| connect(config, section))
        .transpose()?;
    let lookups = api.as_ref().map(|(client, section)| {
        Arc::new(ApiLookups::new(
            client.clone(),
            seconds(section.lookup_timeout_s, 10),
            seconds(section.cache_ttl_s, 30),
            config.server.public_url.clone(),
        )) as Arc<dyn Lookups>
    });
    let mut runtime = Runtime::start_with(config, overrides, ClockMode::System, lookups)?;
    let metrics = runtime.metrics();
    let store = Arc::new(OutboxStore::open(&config.state_path())?);
    // Checkpoints run on their own thread, not inside the pipeline's
    // commits (a swap or an event would wait for them).
    let state_db = overrides.state.clone().unwrap_or_else(|| config.state_path());
    let mut checkpointers = vec![Checkpointer::start(&config.state_path(), CHECKPOINT_EVERY)?];
    if state_db != config.state_path() {
        checkpointers.push(Checkpointer::start(&state_db, CHECKPOINT_EVERY)?);
    }
    store.leave_checkpoints_to_checkpointer()?;
    runtime.state().leave_checkpoints_to_checkpointer()?;
    let policy = config.retry_policy();
    let mail_period = config.delivery.mail_period_s.unwrap_or(0);
    let modes = runtime
        .pipeline
        .modules()
        .iter()
        .zip(&config.modules)
        .map(|(module, section)| (module.name().to_string(), section.throttle_mode.unwrap_or_default()))
        .collect();
    let mut out = StoreOutbox::new(
        store.clone(),
        modes,
        mail_period,
        policy.deadline.as_micros() as u64,
        metrics.clone(),
        Box::new(system_now_us),
    );
    let mut deliverer = Deliverer::new(
        store.clone(),
        SmtpSenders::new(
            config.smtp.clone(),
            config.secrets.clone().into_iter().collect(),
            seconds(config.delivery.smtp_timeout_s, 10),
        ),
        WebhookSender::new(seconds(config.delivery.webhook_timeout_s, 10)),
        policy,
        metrics.clone(),
        mail_period,
        config.default_sender(),
    )
    .with_workers(config.delivery.workers.unwrap_or(4));
    if let Some((client, section)) = &api {
        out = out.with_api(section.push_alerts);
        deliverer = deliverer.with_api(ApiActions::new(client.clone(), seconds(section.lookup_timeout_s, 10)));
        let now = system_now_us();
        let released = store.release_waiting_api(now, now + policy.deadline.as_micros() as u64)?;
        if released > 0 {
            tracing::info!(released, "user messages and labels kept for the API are put in line");
        }
    }
    if let Some(listen) = &config.metrics.listen {
        let address = crate::http::serve_metrics(listen, metrics.clone())?;
        tracing::info!(%address, "serving Prometheus metrics at /metrics");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let draining = Arc::new(AtomicBool::new(false));
    let delivery = {
        let (stop, draining) = (stop.clone(), draining.clone());
        std::thread::Builder::new()
            .name("velonotify-delivery".into())
            .spawn(move || deliverer.run(&stop, &draining))?
    };

    let (sender, receiver) = std::sync::mpsc::sync_channel::<Input>(QUEUE_DEPTH);
    let state = runtime.state();
    let _pid_file = PidFile::write(&pid_path(config))?;
    let swaps = Arc::new(SwapSlot::default());
    let _reloader = start_reloader(config, &runtime, &sender, swaps.clone())?;
    let mut sources = Vec::new();
    if let Some((client, section)) = &api {
        subscribe(client, section, &runtime, &state, &sender);
        sources.push(format!("Velociraptor API at {}", client.address()));
    }
    if let Some(ingest) = &config.ingest {
        let address = crate::ingest::serve(config, ingest, sender.clone())?;
        sources.push(format!("HTTP ingest at http://{address}/v1/events"));
    }
    // Network sources never end: the service runs until it is stopped,
    // even when no stream is open (modules that only tick).
    let _network_sources_open = if sources.is_empty() {
        read_stdin(config, sender)?;
        sources.push("stdin".into());
        None
    } else {
        Some(sender)
    };
    tracing::info!(
        modules = runtime.pipeline.modules().len(),
        state = %config.state_path().display(),
        "velonotify running; events from {}",
        sources.join(", ")
    );

    handle_inputs(&mut runtime, &mut out, &receiver, &swaps, &state)?;
    tracing::info!(open = store.open_count()?, "end of input; delivering what is left");
    draining.store(true, Ordering::Relaxed);
    if delivery.join().is_err() {
        stop.store(true, Ordering::Relaxed);
        bail!("the delivery thread panicked");
    }
    let counts = store.counts()?;
    tracing::info!(?counts, "done");
    Ok(())
}

/// Watches the module files (and SIGHUP) and puts new versions in the
/// swap slot, waking the pipeline if it is idle.
fn start_reloader(
    config: &Config,
    runtime: &Runtime,
    sender: &SyncSender<Input>,
    swaps: Arc<SwapSlot>,
) -> anyhow::Result<crate::reload::StopOnDrop> {
    let requested = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, requested.clone()).context("handling SIGHUP")?;
    let settings = ReloadSettings::from_config(&config.reload);
    let reloader = Reloader::new(
        runtime.engine(),
        runtime.module_files(),
        settings,
        requested,
        runtime.metrics(),
    );
    let sender = sender.clone();
    let stop = reloader.spawn(move |candidate| {
        swaps.put(candidate);
        // A full queue means a busy pipeline, which looks at the slot
        // before its next event anyway.
        !matches!(sender.try_send(Input::SwapReady), Err(TrySendError::Disconnected(_)))
    })?;
    match settings.poll {
        Some(poll) => tracing::info!(
            poll_ms = poll.as_millis() as u64,
            "watching the module files for new versions"
        ),
        None => tracing::info!("new module versions are loaded on SIGHUP or `velonotify reload`"),
    }
    Ok(stop)
}

/// Where `run` writes its process id, for `velonotify reload`: beside the
/// state database.
pub fn pid_path(config: &Config) -> std::path::PathBuf {
    config.state_path().with_extension("pid")
}

/// The pid file, removed when `run` ends.
#[derive(Debug)]
struct PidFile(std::path::PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing the pid file {}", path.display()))?;
        Ok(Self(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A configured number of seconds, or `default`.
fn seconds(value: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(value.unwrap_or(default))
}

/// Reads the api_client file and prepares the connection.
fn connect<'a>(
    config: &Config,
    section: &'a VelociraptorSection,
) -> anyhow::Result<(ApiClient, &'a VelociraptorSection)> {
    let path = config.resolve(&section.api_config);
    let api_config = ApiClientConfig::load(&path).context("velociraptor.api_config")?;
    api_config.check_certificates().context("velociraptor.api_config")?;
    let server_name = api_config.server_name(section.server_name.as_deref());
    let client = ApiClient::new(&api_config, &server_name)?;
    tracing::info!(address = client.address(), user = %api_config.name, %server_name, "Velociraptor API configured");
    Ok((client, section))
}

/// Where a stream position is kept in the state store.
const CURSOR_OWNER: &str = "velonotify/velociraptor";

fn cursor_key(org: &str, queue: &str) -> String {
    format!("cursor/{org}/{queue}")
}

/// One event stream per org, over the queues that org's modules watch.
fn subscribe(
    client: &ApiClient,
    section: &VelociraptorSection,
    runtime: &Runtime,
    state: &StateStore,
    sender: &SyncSender<Input>,
) {
    let mut queues_by_org: HashMap<String, Vec<String>> = HashMap::new();
    for module in runtime.pipeline.modules() {
        let queues = queues_by_org.entry(module.spec().org_id.clone()).or_default();
        for queue in &module.setup().queues {
            if !queues.contains(queue) {
                queues.push(queue.clone());
            }
        }
    }
    let now = system_now_us();
    for (org_id, queues) in queues_by_org {
        if queues.is_empty() {
            continue;
        }
        let cursors = queues
            .iter()
            .filter_map(|q| {
                let bytes = state.get(CURSOR_OWNER, &cursor_key(&org_id, q), now)?;
                Some((q.clone(), serde_json::from_slice::<Cursor>(&bytes).ok()?))
            })
            .collect();
        let subscription = Subscription {
            org_id,
            queues,
            heartbeat: Duration::from_secs(section.heartbeat_s.unwrap_or(30).max(1)),
            backfill_max: Duration::from_secs(section.backfill_max_s.unwrap_or(86_400)),
            cursors,
        };
        let sender = sender.clone();
        let sink: events::Sink = Arc::new(move |event, mark| {
            // The pipeline may be busy: wait for room without holding up
            // the other tasks of the runtime.
            tokio::task::block_in_place(|| sender.send(Input::Event(event, mark)).is_ok())
        });
        events::spawn(client.clone(), subscription, sink);
    }
}

/// Events as JSON lines on stdin, until its end.
fn read_stdin(config: &Config, sender: SyncSender<Input>) -> anyhow::Result<()> {
    let org = config.default_org().to_string();
    let max = config.max_event_bytes();
    std::thread::Builder::new()
        .name("velonotify-stdin".into())
        .spawn(move || {
            let source = JsonlSource::new(BufReader::new(std::io::stdin()), "stdin", &org, max);
            for item in source {
                let input = match item {
                    Ok(event) => Input::Event(event, None),
                    Err(error) => Input::Bad(error),
                };
                if sender.send(input).is_err() {
                    return;
                }
            }
            let _ = sender.send(Input::End);
        })?;
    Ok(())
}

/// Stream positions are written at most this often: a crash replays at
/// most this much of a stored queue (handled twice, never lost).
const CURSOR_FLUSH: Duration = Duration::from_secs(1);

/// The pipeline loop: each input is handled and its actions committed to
/// the outbox before the next; ticks run while the inputs are quiet.
fn handle_inputs(
    runtime: &mut Runtime,
    out: &mut StoreOutbox,
    receiver: &Receiver<Input>,
    swaps: &SwapSlot,
    state: &StateStore,
) -> anyhow::Result<()> {
    let mut marks: HashMap<(String, String), Cursor> = HashMap::new();
    let mut flushed = Instant::now();
    // New versions come in between two events, never during one.
    let swap_in = |runtime: &mut Runtime, out: &mut StoreOutbox| {
        for candidate in swaps.take() {
            runtime.pipeline.swap(candidate, out);
        }
    };
    loop {
        let mut done = None;
        match receiver.recv_timeout(Duration::from_millis(500)) {
            Ok(Input::Event(event, mark)) => {
                swap_in(runtime, out);
                runtime.pipeline.dispatch(&event, out)?;
                if let Some(mark) = mark {
                    marks.insert((mark.org_id, mark.queue), mark.cursor);
                }
            }
            Ok(Input::Batch(batch, reply)) => {
                for event in &batch {
                    swap_in(runtime, out);
                    runtime.pipeline.dispatch(event, out)?;
                }
                done = Some(reply);
            }
            Ok(Input::Bad(error)) => out.report(source_report(&error)),
            Ok(Input::SwapReady) => swap_in(runtime, out),
            Ok(Input::End) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => runtime.pipeline.advance_to(system_now_us(), out)?,
        }
        // The event counts as processed once its actions are in the outbox.
        out.commit()?;
        if let Some(reply) = done {
            let _ = reply.send(());
        }
        if !marks.is_empty() && flushed.elapsed() >= CURSOR_FLUSH {
            flush_marks(&mut marks, state);
            flushed = Instant::now();
        }
    }
    flush_marks(&mut marks, state);
    Ok(())
}

fn flush_marks(marks: &mut HashMap<(String, String), Cursor>, state: &StateStore) {
    let now = system_now_us();
    for ((org, queue), cursor) in marks.drain() {
        let value = serde_json::to_vec(&cursor).unwrap_or_default();
        state.put(CURSOR_OWNER, &cursor_key(&org, &queue), value, 0, now);
    }
}

/// A skipped input line, reported with where it was.
pub fn source_report(error: &SourceError) -> Report {
    let at = format!("{}:{}", error.source_name, error.line);
    Report::input(Level::Warn, Some(&at), format!("{at}: {}; line skipped", error.message))
}
