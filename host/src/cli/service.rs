//! `velonotify run`: inputs from the configured sources (a Velociraptor
//! server, the HTTP ingest endpoint, or else stdin) through the modules,
//! one transaction per input, and delivery working through the outbox.
//!
//! ```text
//! input (row | batch | tick)
//!   -> module calls (state writes staged per call, dropped on a trap)
//!   -> one store transaction { module state, dedup windows, stream position, outbox items }
//!   -> acknowledge (ingest 200 | stream position moves with the commit)
//! ```
//!
//! A store failure that can pass (busy, disk full) does not stop the
//! service: the input's commit is tried again until it is stored, the
//! ingest endpoint answers 503 meanwhile, and the event streams wait.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::config::Config;
use super::runtime::{Overrides, Runtime};
use crate::capabilities::lookups::{ApiLookups, DEFAULT_CACHE_TTL_S, DEFAULT_LOOKUP_TIMEOUT_S, LookupSource};
use crate::clock::{Clock, micros};
use crate::delivery::{
    ApiActions, DEFAULT_TIMEOUT_S, DEFAULT_WORKERS, Deliverer, SmtpSenders, SyslogSenders, WebhookSender,
};
use crate::pipeline::outbox::{Level, Outbox, RecordCopy, Report, StoreOutbox};
use crate::pipeline::reload::{ReloadSettings, Reloader, SwapSlot};
use crate::pipeline::retries::{LookupRetry, RETRIES_PER_INPUT};
use crate::pipeline::row_outcome::Noting;
use crate::sources::row_outcome::RowOutcome;
use crate::sources::velociraptor::{self as stream, Mark, Subscription};
use crate::sources::{BatchHandled, IncomingEvent, Input, JsonlSource, SourceError};
use crate::store::{
    CHECKPOINT_EVERY, Checkpointer, Fence, Health, OutboxBound, SWEEP_EVERY, StateWrite, Store, StoreError, Sweeper,
};
use crate::velociraptor::{
    ApiClient, ApiClientConfig, DEFAULT_BACKFILL_MAX_S, DEFAULT_HEARTBEAT_S, VelociraptorSection,
};

/// Events waiting for the pipeline, at most.
const QUEUE_DEPTH: usize = 1024;

/// How often the store is asked for events to hand to a module again.
const LOOK_FOR_RETRIES_EVERY: Duration = Duration::from_secs(1);

/// Waits between two tries of a commit the store refused: from the first
/// to the longest.
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);
const COMMIT_RETRY_LONGEST: Duration = Duration::from_secs(5);

/// Runs until the input ends (stdin) or the process is stopped.
pub fn run(config: &Config, overrides: &Overrides) -> anyhow::Result<()> {
    keep_running_on_a_full_file();
    // Before anything is opened: a second run of this configuration stops
    // here (replicas share a PostgreSQL store, each with a configuration
    // directory of its own: its ports, its pid file for `reload`).
    let _pid_file = PidFile::lock(&pid_path(config), &config.store_location()?)?;
    let clock = Clock::System;
    let api = config
        .velociraptor
        .as_ref()
        .map(|section| connect(config, section))
        .transpose()?;
    let lookups = api.as_ref().map(|(client, section)| {
        Arc::new(ApiLookups::new(
            client.clone(),
            seconds(section.lookup_timeout_s, DEFAULT_LOOKUP_TIMEOUT_S),
            seconds(section.cache_ttl_s, DEFAULT_CACHE_TTL_S),
            config.server.public_url.clone(),
        )) as Arc<dyn LookupSource>
    });
    let mut runtime = Runtime::start_with(config, overrides, clock.clone(), lookups)?;
    let metrics = runtime.metrics();
    let store = runtime.store();
    let policy = config.delivery.retry_policy();
    // An event a module could not handle for want of a lookup is retried
    // as long as a delivery would be.
    runtime.pipeline.set_lookup_retry(LookupRetry {
        give_up_after: policy.deadline,
        ..LookupRetry::default()
    });
    let waiting = store.retries_waiting()?;
    if waiting > 0 {
        tracing::info!(
            waiting,
            "events modules failed on for want of a lookup are handed to them again when due"
        );
    }
    // Checkpoints run on their own thread, not inside the pipeline's
    // commits (a swap or an event would wait for them).
    let _checkpointer = match store.location() {
        crate::store::Location::File(path) => Some(Checkpointer::start(path, CHECKPOINT_EVERY)?),
        crate::store::Location::Memory | crate::store::Location::Postgres(_) => None,
    };
    store.leave_checkpoints_to_checkpointer()?;
    let delivery_store = Arc::new(store.reopen()?);
    delivery_store.leave_checkpoints_to_checkpointer()?;
    // One replica of those sharing the store (alone on a SQLite file).
    let alone = !matches!(store.location(), crate::store::Location::Postgres(_));
    let membership = super::membership::Membership::join(store.reopen()?, &clock, alone)?;
    let mail_period = config.delivery.mail_period_s.unwrap_or(0);
    let modes = runtime
        .pipeline
        .modules()
        .iter()
        .zip(&config.modules)
        .map(|(module, section)| {
            let mode = section
                .throttle_mode
                .unwrap_or_else(|| default_throttle_mode(&module.info().name));
            (module.name().to_string(), mode)
        })
        .collect();
    let mut out = StoreOutbox::new(
        store.clone(),
        modes,
        mail_period,
        micros(policy.deadline),
        metrics.clone(),
        clock.clone(),
    )
    .with_records(
        config
            .syslog
            .iter()
            .map(|s| RecordCopy {
                receiver: s.name.clone(),
                modules: s.modules.clone(),
            })
            .collect(),
    )
    .with_inhibit_rules(config.inhibitor()?)?
    .with_mutes(config.time_intervals()?, super::runtime::module_mutes(config, &runtime));
    let mut deliverer = Deliverer::new(
        delivery_store.clone(),
        SmtpSenders::new(
            config.smtp.clone(),
            config.secrets.clone().into_iter().collect(),
            seconds(config.delivery.smtp_timeout_s, DEFAULT_TIMEOUT_S),
        ),
        WebhookSender::new(
            seconds(config.delivery.webhook_timeout_s, DEFAULT_TIMEOUT_S),
            &config.delivery.webhook_tls(),
        )
        .map_err(|e| anyhow::anyhow!("delivery.webhook_root_ca: {e}"))?,
        policy,
        metrics.clone(),
        clock.clone(),
        mail_period,
        config.default_sender(),
    )
    .with_workers(config.delivery.workers.unwrap_or(DEFAULT_WORKERS))
    .with_replica(membership.id())
    .with_destinations(
        runtime
            .pipeline
            .modules()
            .iter()
            .map(|module| (module.name().to_string(), module.spec().grants.outbound.clone()))
            .collect(),
    )
    .with_silence_links(runtime.silence_links());
    if !config.syslog.is_empty() {
        let timeout = seconds(config.delivery.webhook_timeout_s, DEFAULT_TIMEOUT_S);
        let senders = SyslogSenders::new(&config.syslog, timeout).map_err(|e| anyhow::anyhow!(e))?;
        deliverer = deliverer.with_syslog(senders);
    }
    if let Some((client, section)) = &api {
        out = out.with_api(section.push_alerts);
        let timeout = seconds(section.lookup_timeout_s, DEFAULT_LOOKUP_TIMEOUT_S);
        deliverer = deliverer.with_api(ApiActions::new(client.clone(), timeout));
        let now = clock.now_us();
        let released = delivery_store.release_waiting_api(now, now.saturating_add(micros(policy.deadline)))?;
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

    let health = Arc::new(Health::default());
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Input>(QUEUE_DEPTH);
    let swaps = Arc::new(SwapSlot::default());
    let _reloader = start_reloader(config, &runtime, &sender, swaps.clone())?;
    let mut sources = Vec::new();
    if let Some((client, section)) = &api {
        subscribe(client, section, &runtime, &store, &sender, &clock, membership.id())?;
        sources.push(format!("Velociraptor API at {}", client.address()));
    }
    if let Some(section) = &config.ingest {
        let settings = section.settings(&config.base_dir, config.default_org(), config.max_event_bytes())?;
        let address = crate::sources::ingest::serve(settings, sender.clone(), health.clone())?;
        sources.push(format!("HTTP ingest at http://{address}/v1/events"));
    }
    if let Some(section) = &config.api {
        let token = section.token(&config.base_dir)?;
        // One connection of its own for the operators' thread.
        let api_store = Arc::new(store.reopen()?);
        let mut routes = crate::operator::silences_api::routes(token, api_store.clone(), clock.clone());
        if let (Some(links), Some(url)) = (runtime.silence_links(), &config.server.velonotify_url) {
            routes = routes.merge(crate::operator::silence_page::routes(
                links,
                api_store,
                clock.clone(),
                url,
            ));
        }
        let address = crate::operator::serve(&section.listen, routes).context("api.listen")?;
        tracing::info!("operator API at http://{address}/v1/silences");
    }
    if let Some(section) = &config.console {
        // One connection of its own for the console's thread.
        let context = crate::operator::console::ConsoleContext {
            metrics: metrics.clone(),
            retry_window_us: micros(policy.deadline),
            streams: if api.is_some() {
                streams_by_org(&runtime)
            } else {
                Vec::new()
            },
            previewer: Some(Arc::new(super::preview::ReplayPreviewer::new(config, overrides))),
        };
        let console =
            crate::operator::console::Console::new(section, Arc::new(store.reopen()?), clock.clone(), context)?;
        let address = crate::operator::console::serve(&section.listen, Arc::new(console)).context("console.listen")?;
        tracing::info!("operator console at http://{address}/");
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
        state = %store.location(),
        "velonotify running; events from {}",
        sources.join(", ")
    );

    let sweep_store = store.reopen()?;
    sweep_store.leave_checkpoints_to_checkpointer()?;
    let _sweeper = Sweeper::start(sweep_store, config.outbox.retention(), SWEEP_EVERY, clock.clone())?;
    let delivering = || !delivery.is_finished();
    let backlog = Backlog {
        bound: config.outbox.bound(),
        health: &health,
        delivering: &delivering,
    };
    // A slow input (lookups to a slow server) keeps its turn.
    let _turn_keeper = crate::store::TurnKeeper::start(runtime.store())?;
    handle_inputs(&mut runtime, &mut out, &receiver, &swaps, &backlog)?;
    tracing::info!(
        open = delivery_store.open_count()?,
        "end of input; delivering what is left"
    );
    draining.store(true, Ordering::Relaxed);
    if delivery.join().is_err() {
        stop.store(true, Ordering::Relaxed);
        bail!("the delivery thread panicked");
    }
    tracing::info!(counts = %delivery_store.counts()?, "done");
    let muted = delivery_store.muted_count()?;
    if muted > 0 {
        tracing::info!("{muted} notifications stay held until their module's mute ends; the next run sends them");
    }
    Ok(())
}

/// A file over the process's size limit must fail the write that grows it
/// (the store reports it and the service waits), not kill the process with
/// SIGXFSZ.
fn keep_running_on_a_full_file() {
    // SIGXFSZ's default action ends the process; handled, the write fails
    // with EFBIG instead.
    let noticed = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, noticed) {
        tracing::warn!(error = %e, "could not handle SIGXFSZ");
    }
}

/// Watches the module files (and SIGHUP) and puts new versions in the
/// swap slot, waking the pipeline if it is idle.
fn start_reloader(
    config: &Config,
    runtime: &Runtime,
    sender: &SyncSender<Input>,
    swaps: Arc<SwapSlot>,
) -> anyhow::Result<crate::pipeline::reload::StopOnDrop> {
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

/// The pid file, locked while `run` runs: one `run` per configuration
/// directory, so one per SQLite state database, since two would deliver
/// everything twice. The lock goes with the process,
/// however it ends; the file is removed when `run` ends by itself.
#[derive(Debug)]
struct PidFile {
    path: std::path::PathBuf,
    _locked: std::fs::File,
}

impl PidFile {
    fn lock(path: &std::path::Path, store: &crate::store::Location) -> anyhow::Result<Self> {
        use std::io::{Read as _, Write as _};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening the pid file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                match store {
                    crate::store::Location::Postgres(_) => bail!(
                        "another `velonotify run` (pid {pid}) runs this configuration (pid file {}): replicas of a \
                         PostgreSQL store each need a configuration directory of their own (ports, pid file)",
                        path.display()
                    ),
                    _ => bail!(
                        "another `velonotify run` (pid {pid}) is using the state database {store}: one run per state \
                         database (two would deliver everything twice)"
                    ),
                }
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking the pid file {}", path.display()));
            }
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id()).with_context(|| format!("writing the pid file {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            _locked: file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
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

/// One event stream per org, over the queues that org's modules watch,
/// from the positions an earlier run stored.
/// Each org whose queues a module watches, and those queues.
fn streams_by_org(runtime: &Runtime) -> Vec<(String, Vec<String>)> {
    let mut queues_by_org: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for module in runtime.pipeline.modules() {
        let queues = queues_by_org.entry(module.spec().org_id().to_string()).or_default();
        for queue in &module.setup().queues {
            if !queues.contains(queue) {
                queues.push(queue.clone());
            }
        }
    }
    queues_by_org.into_iter().collect()
}

fn subscribe(
    client: &ApiClient,
    section: &VelociraptorSection,
    runtime: &Runtime,
    store: &Store,
    sender: &SyncSender<Input>,
    clock: &Clock,
    replica: &str,
) -> anyhow::Result<()> {
    for (org_id, queues) in streams_by_org(runtime) {
        if queues.is_empty() {
            continue;
        }
        let lease = stream::StreamLease::new(Arc::new(store.reopen()?), replica, &org_id);
        let subscription = Subscription {
            org_id,
            queues,
            heartbeat: Duration::from_secs(section.heartbeat_s.unwrap_or(DEFAULT_HEARTBEAT_S).max(1)),
            backfill_max: Duration::from_secs(section.backfill_max_s.unwrap_or(DEFAULT_BACKFILL_MAX_S)),
            cursors: HashMap::new(),
            fence: None,
        };
        let sender = sender.clone();
        let sink: stream::Sink = Arc::new(move |input| {
            // The pipeline may be busy: wait for room without holding up
            // the other tasks of the runtime.
            tokio::task::block_in_place(|| sender.send(input).is_ok())
        });
        stream::spawn(client.clone(), subscription, sink, clock.clone(), lease);
    }
    Ok(())
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

/// The pipeline loop: each input is handled, then everything it caused is
/// committed in one transaction before it is acknowledged and the next is
/// taken; ticks run while the inputs are quiet. Replicas sharing a store
/// take turns at inputs that read state (see [`crate::store::InputTurn`]).
fn handle_inputs(
    runtime: &mut Runtime,
    out: &mut StoreOutbox,
    receiver: &Receiver<Input>,
    swaps: &SwapSlot,
    backlog: &Backlog<'_>,
) -> anyhow::Result<()> {
    let (health, delivering) = (backlog.health, backlog.delivering);
    // New versions come in between two events, never during one.
    let swap_in = |runtime: &mut Runtime, out: &mut StoreOutbox| {
        for candidate in swaps.take() {
            runtime.pipeline.swap(candidate, out);
        }
    };
    let mut last_retry_look = Instant::now();
    loop {
        // Without delivery nothing would leave: stop, and let the
        // supervisor start a service that delivers (nothing is lost).
        if !delivering() {
            bail!("the delivery thread stopped");
        }
        let store = runtime.store();
        backlog.wait_below_bound(&store)?;
        let mut done = None;
        let mut positions = Vec::new();
        let mut events = false;
        let received = receiver.recv_timeout(Duration::from_millis(500));
        let now = runtime.pipeline.clock().now_us();
        let look_for_retries = last_retry_look.elapsed() >= LOOK_FOR_RETRIES_EVERY;
        let reads_state = match &received {
            Ok(Input::Event(..) | Input::Rows(..) | Input::Batch(..)) => true,
            Err(RecvTimeoutError::Timeout) => runtime.pipeline.tick_due_by(now),
            _ => false,
        };
        let mut turn = match reads_state || look_for_retries {
            true => Some(take_turn(&store, health)?),
            false => None,
        };
        if let Ok(Input::Event(_, Some(mark))) = &received
            && read_under_a_lost_lease(&store, std::slice::from_ref(mark))
        {
            continue;
        }
        if let Ok(Input::Rows(_, marks)) = &received
            && read_under_a_lost_lease(&store, marks)
        {
            continue;
        }
        match received {
            Ok(Input::Event(event, mark)) => {
                swap_in(runtime, out);
                let _watched = runtime.pipeline.dispatch(&event, out);
                positions.extend(mark);
                events = true;
            }
            Ok(Input::Rows(rows, marks)) => {
                for event in &rows {
                    swap_in(runtime, out);
                    let _watched = runtime.pipeline.dispatch(event, out);
                }
                positions.extend(marks);
                events = true;
            }
            Ok(Input::Batch(batch, reply)) => {
                if !reply.claim() {
                    tracing::debug!(
                        rows = batch.len(),
                        "a posted batch whose sender stopped waiting is left alone"
                    );
                    continue;
                }
                let mut unwatched = Unwatched::default();
                let mut rows = Vec::with_capacity(batch.len());
                for event in &batch {
                    swap_in(runtime, out);
                    let mut noting = Noting::new(out);
                    let watched = runtime.pipeline.dispatch(event, &mut noting);
                    if !watched {
                        unwatched.add(event);
                    }
                    noting.outcome.settle(watched);
                    rows.push(noting.outcome);
                }
                unwatched.log();
                done = Some((reply, unwatched.handled(rows)));
                events = true;
            }
            Ok(Input::Position(mark)) => positions.push(mark),
            Ok(Input::Bad(error)) => out.report(source_report(&error)),
            Ok(Input::SwapReady) => swap_in(runtime, out),
            Ok(Input::End) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => runtime.pipeline.advance_to(now, out),
        }
        if look_for_retries {
            last_retry_look = Instant::now();
            hand_due_events_again(runtime, out, &swap_in);
        }
        let mut state = runtime.pipeline.take_staged_state();
        state.extend(positions.iter().map(Mark::to_state_write));
        if events {
            crate::crash_point!("service::before-commit");
        }
        if turn.as_ref().is_some_and(|turn| !turn.kept()) {
            tracing::warn!(
                "the connection to the store was made again during an input: another replica may have handled an \
                 input at the same time, and both may have sent what one should"
            );
            turn = Some(take_turn(&store, health)?);
        }
        commit_input(out, &state, &fences_of(&positions), health)?;
        if events {
            crate::crash_point!("service::after-commit");
        }
        drop(turn);
        // The input counts as handled now, and not before.
        if let Some((reply, handled)) = done {
            reply.answer(handled);
        }
    }
    Ok(())
}

/// What the pipeline loop answers to besides its inputs: whether the
/// store takes writes and delivery runs, and the outbox's bound.
struct Backlog<'a> {
    bound: OutboxBound,
    health: &'a Health,
    delivering: &'a dyn Fn() -> bool,
}

impl Backlog<'_> {
    /// Takes no input while the undelivered outbox is at its bound: the
    /// ingest endpoint answers 503 and the streams wait at their positions
    /// (their channel fills) until delivery catches up. Nothing is dropped.
    fn wait_below_bound(&self, store: &Store) -> anyhow::Result<()> {
        let mut waited = false;
        // Unreadable usage holds nothing back: the commit will say.
        while let Some(why) = self.bound.reached_by(store.open_outbox().unwrap_or_default()) {
            if !(self.delivering)() {
                bail!("the delivery thread stopped");
            }
            // Refusing before saying so: once the line is out, ingest
            // answers 503.
            self.health.refuse(why.clone());
            if !waited {
                tracing::warn!("{why}: taking no more events until delivery catches up (ingest answers 503)");
                waited = true;
            }
            std::thread::sleep(BACKLOG_LOOK_EVERY);
        }
        if waited {
            self.health.recovered();
            tracing::info!("the outbox is below its bound again: taking events");
        }
        Ok(())
    }
}

/// How often a full outbox is looked at again.
const BACKLOG_LOOK_EVERY: Duration = Duration::from_millis(200);

/// Posted rows that no module watches, by org and queue, for one log line
/// per batch: a sender posting to the wrong queue or org hears of it.
#[derive(Default)]
struct Unwatched {
    named: BTreeMap<(String, String), usize>,
    /// Rows of further queues, counted but not named.
    others: usize,
}

impl Unwatched {
    /// Queues named in the log line at most (the poster chooses them).
    const NAMED: usize = 5;

    fn add(&mut self, event: &IncomingEvent) {
        let key = (event.org_id.clone(), event.queue.clone());
        if self.named.len() < Self::NAMED || self.named.contains_key(&key) {
            *self.named.entry(key).or_default() += 1;
        } else {
            self.others += 1;
        }
    }

    fn handled(&self, rows: Vec<RowOutcome>) -> BatchHandled {
        BatchHandled {
            unwatched: self.named.values().sum::<usize>() + self.others,
            rows,
        }
    }

    fn log(&self) {
        if self.named.is_empty() {
            return;
        }
        // Debug quoting: the names come from the poster.
        let mut by_queue: Vec<String> = self
            .named
            .iter()
            .map(|((org, queue), rows)| format!("{rows} for org {org:?} queue {queue:?}"))
            .collect();
        if self.others > 0 {
            by_queue.push(format!("{} for other queues", self.others));
        }
        tracing::warn!(
            "ingest: rows no module watches, handled by nobody: {}",
            by_queue.join(", ")
        );
    }
}

/// Hands the stored events that are due to their modules again, as part of
/// the input being handled (and committed with it).
fn hand_due_events_again(
    runtime: &mut Runtime,
    out: &mut StoreOutbox,
    swap_in: &dyn Fn(&mut Runtime, &mut StoreOutbox),
) {
    let now = runtime.pipeline.clock().now_us();
    let due = match runtime.store().due_retries(now, RETRIES_PER_INPUT) {
        Ok(due) => due,
        Err(error) => {
            // They stay stored; the next look finds them.
            tracing::warn!(%error, "could not read the events to hand to modules again");
            return;
        }
    };
    for retry in &due {
        swap_in(runtime, out);
        runtime.pipeline.hand_again(retry, out);
    }
}

/// Waits for this replica's turn at an input (see [`crate::store::InputTurn`]).
fn take_turn<'s>(store: &'s Store, health: &Health) -> anyhow::Result<crate::store::InputTurn<'s>> {
    until_stored(health, "take this replica's turn at an input", || {
        store.take_input_turn()
    })
}

/// The leases the rows of an input were read under, each once.
fn fences_of(positions: &[Mark]) -> Vec<Fence> {
    let mut fences: Vec<Fence> = Vec::new();
    for fence in positions.iter().filter_map(|mark| mark.fence.as_ref()) {
        if !fences.contains(fence) {
            fences.push(fence.clone());
        }
    }
    fences
}

/// Whether rows were read from a stream this replica no longer reads as
/// it did then (it was held up past the replicas' timeout, and another
/// replica took the stream over): they are left to the stream's reader,
/// without a call (an unreadable lease: they are handled, and the commit
/// checks again).
fn read_under_a_lost_lease(store: &Store, marks: &[Mark]) -> bool {
    // A SQLite store has one process, which holds every lease: no read.
    if !matches!(store.location(), crate::store::Location::Postgres(_)) {
        return false;
    }
    let lost = fences_of(marks)
        .into_iter()
        .find(|fence| matches!(store.still_holds(fence), Ok(false)));
    if let Some(fence) = &lost {
        tracing::warn!(
            lease = %fence.lease,
            "this replica was held up past the replicas' timeout and no longer reads this stream: the rows it had \
             read are left to the replica reading it now"
        );
    }
    lost.is_some()
}

/// Commits the input in hand until the store takes it. A stream it came
/// from that another replica reads now (this one was held up past the
/// replicas' timeout) makes it that replica's: nothing is stored, and the
/// other replica reads on from the stored position.
fn commit_input(out: &mut StoreOutbox, state: &[StateWrite], fences: &[Fence], health: &Health) -> anyhow::Result<()> {
    let mut fenced = None;
    until_stored(health, "store an input", || match out.commit_fenced(state, fences) {
        Err(error) if error.is_fenced() => {
            fenced = Some(error);
            Ok(())
        }
        stored => stored,
    })?;
    if let Some(error) = fenced {
        out.discard_input();
        tracing::warn!(
            %error,
            "this replica was held up past the replicas' timeout: the rows it had read are left to the replica \
             reading the stream now"
        );
    }
    Ok(())
}

/// Does `what` until the store takes it: a failure that can pass (busy,
/// disk full, a lock held too long) is waited out, with the ingest
/// endpoint answering 503 meanwhile; any other failure stops the service.
fn until_stored<T>(
    health: &Health,
    what: &str,
    mut attempt: impl FnMut() -> Result<T, StoreError>,
) -> anyhow::Result<T> {
    let mut wait = COMMIT_RETRY_FIRST;
    loop {
        match attempt() {
            Ok(value) => {
                let was_failing = health.is_failing();
                health.recovered();
                if was_failing {
                    tracing::info!("the state database takes writes again; carrying on");
                }
                return Ok(value);
            }
            Err(error) if error.is_transient() => {
                // Failing before saying so (and recovered before saying
                // that): once a line is out, ingest answers as it says.
                let first = !health.is_failing();
                health.failed(&error);
                if first {
                    tracing::error!(
                        %error,
                        "could not {what}; holding the input and trying again (ingest answers 503 meanwhile)"
                    );
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(COMMIT_RETRY_LONGEST);
            }
            Err(error) => return Err(error).with_context(|| format!("could not {what}")),
        }
    }
}

/// A skipped input line, reported with where it was.
pub fn source_report(error: &SourceError) -> Report {
    let at = format!("{}:{}", error.source_name, error.line);
    Report::input(Level::Warn, Some(&at), format!("{at}: {}; line skipped", error.message))
}

/// The throttle mode of a module whose section sets none: SendEmail's
/// messages are each their own (a digest would keep only their subjects),
/// so they wait for their turn; every other module's are held for a
/// digest.
fn default_throttle_mode(module_name: &str) -> crate::store::ThrottleMode {
    use crate::store::ThrottleMode;
    use velonotify_core::rules::Rule as _;
    match module_name == velonotify_core::rules::send_email::SendEmailRule::NAME {
        true => ThrottleMode::Queue,
        false => ThrottleMode::default(),
    }
}
