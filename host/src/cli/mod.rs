//! The `velonotify` command line, and the wiring of the other rooms into
//! a running host: the configuration ([`config`]), the modules started
//! from it ([`runtime`]), and the service of `run` ([`service`]).

pub mod config;
mod membership;
mod new_module;
mod preview;
mod rule_test;
pub mod runtime;
pub mod service;
mod silence;
mod status;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use self::config::Config;
use self::runtime::{Overrides, Runtime, load_world};
use crate::clock::{Clock, micros};
use crate::contract::ParamKind;
use crate::pipeline::Pipeline;
use crate::pipeline::files::FileOutbox;
use crate::pipeline::outbox::{Level, Outbox};
use crate::sources::{IncomingEvent, JsonlSource, SourceError};
use crate::store::{Location, OutboxItem, Status, Store};

/// Alerting and notifications for Velociraptor, with rule modules that run
/// as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "velonotify", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Feed recorded events through the modules offline and write what they
    /// produce into a directory.
    Replay(ReplayArgs),
    /// Load and validate the configuration and every module; print what
    /// would run.
    Check(CommonArgs),
    /// Run as a service: events from the Velociraptor API and the HTTP
    /// ingest endpoint when configured, else JSON lines on stdin; actions
    /// into the durable outbox and delivered with retries. At the end of
    /// stdin, what is left is delivered before it exits.
    Run(CommonArgs),
    /// Inspect and act on the delivery outbox.
    Outbox(OutboxArgs),
    /// Make a new rule module project (Rust, Python or JavaScript) that
    /// builds as it is, with self-test rows and the actions they should give.
    New(NewArgs),
    /// Run rows through one module alone and print its actions as JSON
    /// lines, or check them against the lines expected (a rule author's
    /// test; no configuration needed).
    Test(TestArgs),
    /// Hold back notifications whose labels match, for a while, with who
    /// and why (as Alertmanager's silences): add, list, expire, query.
    Silence(silence::SilenceArgs),
    /// Ask the running `velonotify run` of this configuration to look at
    /// its module files now and swap in those that changed (sends SIGHUP
    /// to the process named in its pid file, beside the state database).
    Reload(ReloadArgs),
    /// Say what the replicas sharing this configuration's store are doing:
    /// which are alive, who reads which org's stream, what each is sending,
    /// the outbox by status.
    Status(status::StatusArgs),
    /// The operator console's helpers.
    Console(ConsoleArgs),
}

#[derive(Debug, Args)]
struct ConsoleArgs {
    #[command(subcommand)]
    action: ConsoleAction,
}

#[derive(Debug, Subcommand)]
enum ConsoleAction {
    /// Read a password from stdin (its first line) and print its argon2
    /// hash, for a `[[console.user]]`'s `password_hash`.
    HashPassword,
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The language of the module.
    #[arg(long, value_enum)]
    lang: new_module::Language,
    /// The module's name, as artifacts are named (e.g. Custom.Detection.Honeyfiles).
    name: String,
    /// The directory to write the project into (new or empty).
    dir: PathBuf,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// The rule module: a component file.
    #[arg(value_name = "MODULE.wasm")]
    module: PathBuf,
    /// Rows as JSON lines, as `replay` reads them (and as a module's
    /// `<name>.selftest.jsonl` holds them).
    #[arg(long, value_name = "ROWS.jsonl")]
    events: PathBuf,
    /// The actions expected, one JSON line each as this command prints
    /// them: any difference is named and the command fails.
    #[arg(long, value_name = "EXPECTED.jsonl")]
    expect: Option<PathBuf>,
    /// Answers to the module's lookups (a world file, as `replay` takes).
    #[arg(long, value_name = "WORLD")]
    world: Option<PathBuf>,
    /// A parameter of the module, NAME=VALUE (repeat for more).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = name_value)]
    params: Vec<(String, String)>,
    /// The org the rows belong to.
    #[arg(long, default_value = "root")]
    org: String,
    /// The queue of rows that carry no `_Source` (default: the module's
    /// queue, when it reads one).
    #[arg(long, value_name = "QUEUE")]
    queue: Option<String>,
    /// Where the compiled module is cached between runs.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

/// `NAME=VALUE`, split at the first `=`.
fn name_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[derive(Debug, Args)]
struct ReloadArgs {
    /// The configuration file (TOML) of the running service.
    #[arg(short, long, value_name = "CONFIG")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct OutboxArgs {
    /// The configuration file (TOML): the outbox is in its state database.
    #[arg(short, long, value_name = "CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    action: OutboxAction,
}

#[derive(Debug, Subcommand)]
enum OutboxAction {
    /// List items, newest first, with counts per status.
    List {
        /// Only items with this status (pending, held, sent, dead, dropped,
        /// digested, waiting-api, blocked, silenced).
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Put dead-lettered items back in line (all of them without ids).
    Retry { ids: Vec<i64> },
    /// Delete finished items (sent, dead, dropped, digested).
    Purge {
        /// Only items with this status.
        #[arg(long)]
        status: Option<String>,
        /// Only items last updated at least this many seconds ago.
        #[arg(long, default_value_t = 0, value_parser = epoch_seconds())]
        older_than_s: u64,
    },
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// The configuration file (TOML).
    #[arg(short, long, value_name = "CONFIG")]
    config: PathBuf,
    /// Where module components are looked up (overrides `host.modules_dir`).
    #[arg(long, value_name = "DIR")]
    modules_dir: Option<PathBuf>,
    /// Where compiled components are cached (overrides `host.cache_dir`).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Events as JSON lines (`-` for stdin), each a row as watch_monitoring()
    /// emits it. Without events, give --start and --end: periodic modules
    /// still get their ticks (a replay of monitoring logs alone).
    #[arg(long, value_name = "FILE", required_unless_present_all = ["start", "end"])]
    events: Option<PathBuf>,
    /// The offline answers to lookups (overrides `lookups.world`).
    #[arg(long, value_name = "WORLD")]
    world: Option<PathBuf>,
    /// The output directory.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The queue of rows that carry no `_Source` (a dump of one queue).
    #[arg(long, value_name = "QUEUE")]
    queue: Option<String>,
    /// Start of the virtual clock, epoch seconds (default: the first row's `_ts`).
    #[arg(long, value_name = "TS", value_parser = epoch_seconds())]
    start: Option<u64>,
    /// End of the virtual clock, epoch seconds (default: the last row's `_ts`).
    #[arg(long, value_name = "TS", value_parser = epoch_seconds())]
    end: Option<u64>,
    /// Keep state (alert dedup, cursors, module state) in this database, so
    /// that a later replay carries on from it (default: memory, forgotten):
    /// a SQLite file, or a PostgreSQL store's `postgres://` URL.
    #[arg(long, value_name = "DB")]
    state: Option<PathBuf>,
    /// Say only what modules do, not why they drop rows: `log.jsonl` keeps
    /// info and above, modules skip explaining the rows they will not act
    /// on, and their declared interests spare them those rows (as `run`
    /// does). Without it, every module sees every row of its queues and
    /// says why it drops one.
    #[arg(long)]
    no_explain: bool,
    /// With --no-explain: call every module for every row of its queues,
    /// as if none had declared an interest. What modules do must not
    /// change (a check of a module's interests).
    #[arg(long, requires = "no_explain")]
    no_interests: bool,
}

/// Runs the command line; errors are printed with their causes.
/// A number of seconds that is a time (or an age) velonotify can count in
/// microseconds: up to the year 9999.
fn epoch_seconds() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(0..=crate::clock::LATEST_S)
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        stop_quietly_on_a_closed_pipe();
    }
    init_logging();
    crate::failpoints::setup();
    let result = match cli.command {
        Command::Replay(args) => replay(args),
        Command::Check(args) => check(args),
        Command::Run(args) => run(args),
        Command::Outbox(args) => outbox(args),
        Command::Reload(args) => reload(args),
        Command::Test(args) => rule_test(args),
        Command::New(args) => new_project(args),
        Command::Silence(args) => silence::run(args),
        Command::Status(args) => status::run(args),
        Command::Console(args) => console(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn new_project(args: NewArgs) -> anyhow::Result<()> {
    let stem = new_module::create(args.lang, &args.name, &args.dir)?;
    println!("{} written to {}", args.name, args.dir.display());
    println!("build it:  {}/build.sh", args.dir.display());
    println!(
        "test it:   velonotify test {0}/{stem}.wasm --events {0}/{stem}.selftest.jsonl --expect {0}/expected.jsonl",
        args.dir.display()
    );
    Ok(())
}

fn rule_test(args: TestArgs) -> anyhow::Result<()> {
    let test = rule_test::RuleTest {
        module: args.module,
        events: args.events,
        expect: args.expect,
        world: args.world,
        params: args.params,
        org: args.org,
        queue: args.queue,
        cache_dir: args.cache_dir,
    };
    if test.run(&mut std::io::stdout().lock())? {
        Ok(())
    } else {
        anyhow::bail!(
            "the module's actions differ from {}",
            test.expect.as_ref().expect("compared").display()
        )
    }
}

/// `velonotify check | head`: a command that prints ends, as Unix tools
/// do, when its reader goes away, instead of panicking in `println!` (Rust
/// ignores SIGPIPE). `run` keeps ignoring it: a closed socket is an error
/// it handles, not a reason to stop.
fn stop_quietly_on_a_closed_pipe() {
    let always = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    if let Err(e) = signal_hook::flag::register_conditional_default(signal_hook::consts::SIGPIPE, always) {
        tracing::debug!(error = %e, "could not restore SIGPIPE's default action");
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VELONOTIFY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_target(false)
        // A log that cannot be written (a full disk) must not stop the
        // service: the line is lost, the service goes on.
        .log_internal_errors(false)
        .init();
}

fn overrides(common: &CommonArgs, world: Option<PathBuf>) -> Overrides {
    Overrides {
        modules_dir: common.modules_dir.clone(),
        world,
        cache_dir: common.cache_dir.clone(),
        state: None,
        interests: None,
        explain: false,
    }
}

fn event_reader(path: &Path) -> anyhow::Result<(Box<dyn BufRead + Send>, String)> {
    if path == Path::new("-") {
        return Ok((Box::new(BufReader::new(std::io::stdin())), "stdin".into()));
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening events file {}", path.display()))?;
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok((Box::new(BufReader::with_capacity(1 << 16, file)), name))
}

fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.common.config)?;
    let overrides = Overrides {
        state: args.state.clone(),
        interests: args.no_interests.then_some(false),
        explain: !args.no_explain,
        ..overrides(&args.common, args.world.clone())
    };
    let mut runtime = Runtime::start(&config, &overrides, Clock::virtual_at(0))?;
    let clock = runtime.pipeline.clock().clone();
    let mut out = FileOutbox::fresh(&args.out, runtime.store(), clock)?
        .with_trace_level(Level::Warn)
        .with_inhibit_rules(config.inhibitor()?)
        .with_mutes(config.time_intervals()?, runtime::module_mutes(&config, &runtime));
    if args.no_explain {
        out = out.with_log_level(Level::Info);
    }
    let source = match &args.events {
        Some(path) => {
            let (reader, name) = event_reader(path)?;
            let source = JsonlSource::new(reader, &name, config.default_org(), config.max_event_bytes());
            Some(source.with_default_queue(args.queue))
        }
        None => None,
    };

    let window = (args.start, args.end);
    let (events, skipped) = replay_into(&mut runtime.pipeline, source.into_iter().flatten(), &mut out, window)?;
    print_replay_summary(&runtime.pipeline, &out, events, skipped, &args.out);
    Ok(())
}

/// Replays `source` through `pipeline` into `out`, the clock moved to
/// `start` (s) before and to `end` after; returns the events read and the
/// lines skipped.
fn replay_into(
    pipeline: &mut Pipeline,
    source: impl Iterator<Item = Result<IncomingEvent, SourceError>>,
    out: &mut FileOutbox,
    (start, end): (Option<u64>, Option<u64>),
) -> anyhow::Result<(u64, u64)> {
    // Each input's state is stored before the next, as in `run`.
    let commit = |pipeline: &mut Pipeline, out: &mut FileOutbox| out.commit(&pipeline.take_staged_state());
    if let Some(start) = start {
        pipeline.advance_to(start.saturating_mul(1_000_000), out);
        commit(pipeline, out)?;
    }
    let (mut events, mut skipped) = (0u64, 0u64);
    for item in source {
        match item {
            Ok(event) => {
                events += 1;
                let _watched = pipeline.dispatch(&event, out);
            }
            Err(error) => {
                skipped += 1;
                out.report(service::source_report(&error));
            }
        }
        commit(pipeline, out)?;
    }
    if let Some(end) = end {
        pipeline.advance_to(end.saturating_mul(1_000_000), out);
        commit(pipeline, out)?;
    }
    out.flush()?;
    Ok((events, skipped))
}

fn print_replay_summary(pipeline: &Pipeline, out: &FileOutbox, events: u64, skipped: u64, dir: &Path) {
    let counts = out.counts();
    let (raised, suppressed) = pipeline.alert_counts();
    let silenced = match counts.held_back {
        0 => String::new(),
        n => format!(" ({n} more held back by silences or inhibit rules)"),
    };
    eprintln!(
        "replayed {events} events ({skipped} lines skipped): {} e-mails and {} other actions{silenced} in {}; \
         {raised} alerts raised, {suppressed} suppressed by dedup",
        counts.emails,
        counts.other_actions,
        dir.display()
    );
    for module in pipeline.modules() {
        let s = module.stats();
        eprintln!(
            "  {:<32} handled {:>6}  failed {:>4}  trapped {:>4}  actions {:>6}  spared {:>6}",
            module.name(),
            s.handled,
            s.failed,
            s.trapped,
            s.actions,
            s.spared
        );
    }
}

fn console(args: ConsoleArgs) -> anyhow::Result<()> {
    match args.action {
        ConsoleAction::HashPassword => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.chars().count() < 12 {
                anyhow::bail!("use a password of at least 12 characters");
            }
            println!("{}", crate::operator::console::hash_password(password)?);
            Ok(())
        }
    }
}

fn check(args: CommonArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    load_world(&config, &overrides(&args, None))?;
    let runtime = Runtime::start(&config, &overrides(&args, None), Clock::virtual_at(0))?;
    let api = match &config.velociraptor {
        Some(section) => {
            let api = crate::velociraptor::ApiClientConfig::load(&config.resolve(&section.api_config))
                .context("velociraptor.api_config")?;
            api.check_certificates().context("velociraptor.api_config")?;
            let name = api.server_name(section.server_name.as_deref());
            Some(format!(
                "{} as {} (server name {name})",
                api.api_connection_string, api.name
            ))
        }
        None => None,
    };
    if let Some(section) = &config.ingest {
        section.senders(&config.base_dir, config.default_org())?;
    }
    println!("{}: OK", args.config.display());
    println!("allocator: {}", runtime.engine().allocator());
    if let Some(api) = api {
        println!("Velociraptor API: {api}");
    }
    if let Some(section) = &config.ingest {
        println!("HTTP ingest: {}", section.listen);
    }
    if let Some(section) = &config.api {
        section.token(&config.base_dir)?;
        println!("operator API: {}", section.listen);
    }
    if let Some(section) = &config.console {
        println!("{}", section.check()?);
    }
    if let Some(url) = &config.server.velonotify_url {
        println!(
            "silence links: e-mails link to {}{}",
            url.trim_end_matches('/'),
            crate::noise::silence_link::PAGE_PATH
        );
    }
    for (i, rule) in config.inhibit.iter().enumerate() {
        let rule = rule.rule(i + 1).map_err(anyhow::Error::msg)?;
        println!(
            "inhibit {}: {} holds back {} with equal {:?} for {} s",
            i + 1,
            rule.source,
            rule.target,
            rule.equal,
            rule.window_us / 1_000_000
        );
    }
    let mutes = runtime::module_mutes(&config, &runtime);
    for module in runtime.pipeline.modules() {
        let info = module.info();
        let setup = module.setup();
        let spec = module.spec();
        println!("module {} ({} {})", module.name(), info.name, info.version);
        println!("  queues:   {}", setup.queues.join(", "));
        if let Some(tick) = setup.tick_seconds {
            println!("  tick:     every {tick} s");
        }
        for interest in &setup.interests {
            println!("  interest: {}", describe_interest(interest));
        }
        println!("  org:      {}", spec.org_id());
        if !spec.labels_from.is_empty() {
            println!("  labels from: {}", spec.labels_from.join(", "));
        }
        if let Some(mute) = mutes.get(module.name()) {
            if !mute.timing.mute.is_empty() {
                let mode = if mute.mode == crate::store::ThrottleMode::Drop {
                    "drop"
                } else {
                    "digest"
                };
                println!("  muted in: {} (mute_mode {mode})", mute.timing.mute.join(", "));
            }
            if !mute.timing.active.is_empty() {
                println!("  active in: {}", mute.timing.active.join(", "));
            }
            if let Some(grouping) = &mute.grouping {
                println!("  grouped:  {grouping}");
            }
        }
        println!(
            "  limits:   {} ms per call, {} MiB memory",
            spec.limits.deadline.as_millis(),
            spec.limits.memory_bytes >> 20
        );
        for param in &info.params {
            let set = spec.params.iter().rev().find(|(n, _)| *n == param.name).map(|(_, v)| v);
            let shown = set.map_or_else(
                || format!("(default) {}", one_line(&param.default)),
                |v| shown_param(&param.name, v),
            );
            println!("  {:<24} {:<11} {shown}", param.name, kind_name(param.kind));
        }
    }
    Ok(())
}

/// A parameter's value as `check` shows it: a credential (`ApiKey`,
/// `RoutingKey`, `SlackToken`...) not at all, URLs without their secrets.
fn shown_param(name: &str, value: &str) -> String {
    if is_credential(name) && !value.is_empty() {
        return "(set, not shown)".into();
    }
    one_line(&without_url_secrets(value))
}

/// Whether a parameter named `name` holds a key, token or password
/// (`Secret` and `ServerSecret` only name a `[secrets]` section).
pub(crate) fn is_credential(name: &str) -> bool {
    ["Key", "Token", "Password"].iter().any(|word| name.ends_with(word))
}

/// `text` with each http(s) URL in it shown without its path and query,
/// where webhook secrets are kept.
fn without_url_secrets(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    let mut rest = text;
    let next_url = |s: &str| [s.find("http://"), s.find("https://")].into_iter().flatten().min();
    while let Some(start) = next_url(rest) {
        shown.push_str(&rest[..start]);
        let url_len = rest[start..]
            .find(|c: char| c.is_whitespace() || "\"',<>".contains(c))
            .unwrap_or(rest.len() - start);
        shown.push_str(&crate::store::redacted_url(&rest[start..start + url_len]));
        rest = &rest[start + url_len..];
    }
    shown.push_str(rest);
    shown
}

fn one_line(text: &str) -> String {
    let flat = text.trim_end().replace('\n', "\\n");
    if flat.chars().count() > 60 {
        format!("{}…", flat.chars().take(60).collect::<String>())
    } else {
        flat
    }
}

fn kind_name(kind: ParamKind) -> &'static str {
    match kind {
        ParamKind::Bool => "bool",
        ParamKind::Int => "int",
        ParamKind::String => "string",
        ParamKind::Regex => "regex",
        ParamKind::Csv => "csv",
        ParamKind::JsonArray => "json_array",
        ParamKind::Choices => "choices",
        ParamKind::Multichoice => "multichoice",
    }
}

fn run(args: CommonArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    service::run(&config, &overrides(&args, None))
}

fn reload(args: ReloadArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let path = service::pid_path(&config);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no pid file at {} (is `velonotify run` running with this configuration?)",
            path.display()
        )
    })?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .with_context(|| format!("{}: {:?} is not a process id", path.display(), text.trim()))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).with_context(|| {
        format!(
            "signalling process {} named in {} (a stale pid file?)",
            pid.as_raw_nonzero(),
            path.display()
        )
    })?;
    println!(
        "asked velonotify (pid {}) to reload its modules; its log says what was swapped",
        pid.as_raw_nonzero()
    );
    Ok(())
}

fn outbox(args: OutboxArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let location = config.store_location()?;
    if let Location::File(path) = &location
        && !path.exists()
    {
        bail!("no state database at {} (velonotify run creates it)", path.display());
    }
    let store = Store::open_at(&location)?;
    let status = |text: &Option<String>| -> anyhow::Result<Option<Status>> {
        text.as_deref()
            .map(|t| {
                Status::parse(t).with_context(|| {
                    let known: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                    format!("unknown status {t:?} (known: {})", known.join(", "))
                })
            })
            .transpose()
    };
    let now = Clock::System.now_us();
    match args.action {
        OutboxAction::List { status: wanted, limit } => {
            println!(
                "{:>6}  {:<11}  {:<12}  {:<28}  {:>3}  {:<30}  SUBJECT / LAST ERROR",
                "ID", "STATUS", "KIND", "MODULE", "TRY", "TO"
            );
            for row in store.list(status(&wanted)?, limit)? {
                match row {
                    Ok(item) => print_item(&item),
                    Err(unreadable) => println!("{:>6}  {unreadable}", unreadable.id),
                }
            }
            println!("{}", store.counts()?);
        }
        OutboxAction::Retry { ids } => {
            let deadline = now.saturating_add(micros(config.delivery.retry_policy().deadline));
            let n = store.retry(&ids, now, deadline)?;
            println!("{n} dead-lettered items put back in line");
        }
        OutboxAction::Purge {
            status: wanted,
            older_than_s,
        } => {
            let before = now.saturating_sub(older_than_s.saturating_mul(1_000_000));
            let n = store.purge(status(&wanted)?, before)?;
            println!("{n} items deleted");
        }
    }
    Ok(())
}

/// One line of `outbox list`.
fn print_item(item: &OutboxItem) {
    let to = item.payload.recipients().join(",");
    let subject = item.payload.subject().unwrap_or_default();
    let held = item.held_by.as_ref().map(|held_by| format!("{held_by}: {subject}"));
    let what = held.as_deref().or(item.last_error.as_deref()).unwrap_or(subject);
    println!(
        "{:>6}  {:<11}  {:<12}  {:<28}  {:>3}  {:<30}  {}",
        item.id,
        item.status.as_str(),
        item.kind().as_str(),
        one_line(&item.module),
        item.attempts,
        one_line(&to),
        one_line(what)
    );
}

/// An interest as `check` lists it: `Queue: Column =~ "regex", ...`.
fn describe_interest(interest: &crate::contract::Interest) -> String {
    use crate::contract::ValueTest;
    let tests: Vec<String> = interest
        .columns
        .iter()
        .map(|c| match &c.test {
            ValueTest::Matches(p) => format!("{} =~ {p:?}", c.column),
            ValueTest::NotMatches(p) => format!("NOT {} =~ {p:?}", c.column),
            ValueTest::OneOf(values) => format!("{} in {values:?}", c.column),
        })
        .collect();
    format!("{}: {}", interest.queue, tests.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::{shown_param, without_url_secrets};

    #[test]
    fn check_shows_that_credentials_are_set_but_not_what_they_are() {
        assert_eq!(shown_param("ApiKey", "s3cr3t"), "(set, not shown)");
        assert_eq!(shown_param("RoutingKey", "R0123"), "(set, not shown)");
        assert_eq!(
            shown_param("SlackToken", "https://hooks.slack.com/x"),
            "(set, not shown)"
        );
        assert_eq!(shown_param("ApiKey", ""), "");
        assert_eq!(shown_param("Target", "thehive"), "thehive");
    }

    #[test]
    fn check_shows_urls_in_parameters_without_their_secrets() {
        assert_eq!(
            without_url_secrets("Slack: https://hooks.slack.com/services/T0/B0/s3cr3t, then http://h:8080/x?sig=1"),
            "Slack: https://hooks.slack.com/…, then http://h:8080/…"
        );
        assert_eq!(
            without_url_secrets("Address\nsoc@example.org\n"),
            "Address\nsoc@example.org\n"
        );
    }
}
