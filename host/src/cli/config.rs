//! The configuration file: one TOML document (format in README.md). Each
//! section belongs to the room that uses it, which defines it with its
//! defaults: `[smtp]`, `[secrets]` and `[delivery]` to delivery, `[server]`
//! and `[lookups]` to the lookups capability, `[velociraptor]` to the API
//! client, `[ingest]` to its source, `[reload]` to the pipeline's hot swap,
//! `[metrics]` to the metrics, `[api]` to the operators' API; `[host]` and
//! `[[module]]` are assembled here
//! from what each capability checks.
//!
//! Module parameters keep the names and value formats of the Velociraptor
//! artifacts, so an artifact configuration ports by copying its values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::capabilities::lookups::{HostFacts, LookupsSection, ServerSection};
use crate::capabilities::outbound::DEFAULT_MAX_EMAIL_MIB;
use crate::delivery::{DeliverySection, SmtpSection};
use crate::engine::{RecyclePolicy, SandboxLimits};
use crate::metrics::MetricsSection;
use crate::noise::silence_link::SilenceLinks;
use crate::pipeline::reload::ReloadSection;
use crate::sources::ingest::IngestSection;
use crate::store::ThrottleMode;
use crate::velociraptor::VelociraptorSection;

/// `[server] velonotify_url` must be an http(s) address a mail reader can
/// open, to which the page's path is appended.
fn check_velonotify_url(url: &str) -> anyhow::Result<()> {
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("must be an address without a query, a fragment or spaces (the page's path is added to it)");
    }
    let uri: http::Uri = url.parse().context("not an address")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!("must start with http:// or https:// and name a host");
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        bail!("must not hold a user name or password (it goes in every e-mail)");
    }
    Ok(())
}

/// What velonotify uses when nothing says otherwise.
pub const DEFAULT_SENDER: &str = "no-reply@velociraptor.example.com";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub smtp: SmtpSection,
    #[serde(default)]
    pub host: HostSection,
    /// Where the state is kept: PostgreSQL for replicas, else the SQLite
    /// file (`[host] state`).
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub lookups: LookupsSection,
    /// Named SMTP Creds secrets (`[secrets.notify_mail_secret]`), used by
    /// modules whose `Secret`/`ServerSecret` names them; others use `[smtp]`.
    #[serde(default)]
    pub secrets: BTreeMap<String, SmtpSection>,
    #[serde(default)]
    pub delivery: DeliverySection,
    /// Retention of finished items and the bound of undelivered ones.
    #[serde(default)]
    pub outbox: crate::store::OutboxSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    /// A Velociraptor server to take events from and answer lookups.
    pub velociraptor: Option<VelociraptorSection>,
    /// An HTTP endpoint that takes events posted to it.
    pub ingest: Option<IngestSection>,
    /// The operators' HTTP API (silences).
    pub api: Option<crate::operator::ApiSection>,
    /// The operator console (pages in the browser, with a login).
    pub console: Option<crate::operator::console::ConsoleSection>,
    /// Inhibit rules: notifications of a cause hold back those of its
    /// effects.
    #[serde(default)]
    pub inhibit: Vec<crate::noise::inhibition::InhibitSection>,
    /// Syslog receivers, each recording the notifications of its modules.
    #[serde(default, rename = "syslog")]
    pub syslog: Vec<crate::delivery::SyslogSection>,
    /// Named time intervals, for modules' mute and active times.
    #[serde(default, rename = "time_interval")]
    pub time_intervals: Vec<crate::noise::time_intervals::TimeIntervalSection>,
    /// Hot swap of changed module components while `run` serves.
    #[serde(default)]
    pub reload: ReloadSection,
    #[serde(default, rename = "module")]
    pub modules: Vec<ModuleSection>,
    /// The directory of the configuration file: relative paths start here.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The environment variable that names the store, over `[store] url`.
pub const STORE_URL_VARIABLE: &str = "VELONOTIFY_STORE_URL";

/// The database replicas share.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `postgres://user:password@host:port/database` (a key=value
    /// connection string is not taken: the URL is what logs show, without
    /// its password). Unset: the SQLite file of `[host] state`.
    pub url: Option<String>,
}

/// How the host runs modules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Where module paths are looked up (default: the config's directory).
    pub modules_dir: Option<PathBuf>,
    /// Where compiled components are cached (default: none).
    pub cache_dir: Option<PathBuf>,
    /// Default deadline of one module call, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Default memory limit of one module instance, in MiB.
    pub memory_mib: Option<u64>,
    /// Default state quota of one module (keys and values), in MiB (16).
    pub state_mib: Option<u64>,
    /// A fresh instance replaces one whose memory reached this, in MiB
    /// (default: half of `memory_mib`; 0: never).
    pub recycle_above_mib: Option<u64>,
    /// ... or that answered this many calls (default 1,000,000; 0: never).
    pub recycle_after_calls: Option<u64>,
    /// Longest event line accepted, in bytes (default 4 MiB).
    pub max_event_bytes: Option<usize>,
    /// Largest e-mail accepted from a module, in MiB (default 25).
    pub max_email_mib: Option<u64>,
    /// The state database: module state, alert dedup, cursors (default:
    /// `velonotify.db` beside the configuration; replays keep their state
    /// in memory unless given `--state`).
    pub state: Option<PathBuf>,
    /// How instances get memory: "auto" (default: pooling when the address
    /// space allows, else on-demand), "pooling" or "on-demand".
    #[serde(default)]
    pub allocator: crate::engine::AllocatorChoice,
    /// Whether modules' declared interests spare them the rows they would
    /// not act on (default true; false calls every module for every row of
    /// its queues, to compare).
    pub interests: Option<bool>,
}

/// One rule module instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSection {
    /// The instance's name (default: the module's own name).
    pub name: Option<String>,
    /// The component file, relative to `host.modules_dir`.
    pub path: PathBuf,
    /// The org whose events the module gets (default: `server.org_id`).
    pub org: Option<String>,
    pub deadline_ms: Option<u64>,
    pub memory_mib: Option<u64>,
    /// Octets of state the module may keep, in MiB (default `host.state_mib`).
    pub state_mib: Option<u64>,
    pub recycle_above_mib: Option<u64>,
    pub recycle_after_calls: Option<u64>,
    /// Within its SendInterval: hold e-mails for a digest (default) or drop
    /// them with a log line, as Velociraptor does.
    pub throttle_mode: Option<ThrottleMode>,
    /// Hosts the module's webhooks may post to (`hooks.slack.com`,
    /// `*.webhook.office.com`). Unset: the hosts of the URLs in the
    /// module's own parameters (its `WebhookURL`, `SlackToken`), so a module
    /// posts where its operator said and nowhere else.
    pub allowed_hosts: Option<Vec<String>>,
    /// Most actions one call may produce (default 100); a call producing
    /// more keeps none of them.
    pub max_actions: Option<usize>,
    /// Largest action (an e-mail's message, a webhook's body...), in bytes
    /// (default: 25 MiB for e-mails, 1 MiB for webhooks, 64 KiB for user
    /// messages and alert context).
    pub max_action_bytes: Option<u64>,
    /// The lookups the module may make (default: all); see `LOOKUP_NAMES`.
    pub lookups: Option<Vec<String>>,
    /// Members of the rows it handles (or of an alert's `event_data`) that
    /// label its notifications for silences, beside the built-in labels
    /// (`Rule`, `User`).
    pub labels_from: Option<Vec<String>>,
    /// Time intervals (`[[time_interval]]` names) during which its
    /// notifications are held until the interval ends ...
    pub mute_time_intervals: Option<Vec<String>>,
    /// ... or outside of which they are (default: active always).
    pub active_time_intervals: Option<Vec<String>>,
    /// Muted e-mails go out as one digest when the mute ends (default), or
    /// muted notifications are dropped with a log line and a counter.
    pub mute_mode: Option<ThrottleMode>,
    /// Labels whose values make a group: its e-mails wait `group_wait_s`
    /// (default 30) for the others, then go as one; later ones within
    /// `group_interval_s` (default 300) go in the group's next e-mail.
    pub group_by: Option<Vec<String>>,
    pub group_wait_s: Option<u64>,
    pub group_interval_s: Option<u64>,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
}

pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 << 20;

impl ModuleSection {
    /// Its grouping, if it groups (checked).
    pub fn grouping(&self) -> Result<Option<crate::noise::grouping::Grouping>, String> {
        let Some(by) = &self.group_by else {
            if self.group_wait_s.is_some() || self.group_interval_s.is_some() {
                return Err("group_wait_s and group_interval_s need group_by".into());
            }
            return Ok(None);
        };
        crate::noise::grouping::Grouping::new(by, self.group_wait_s, self.group_interval_s).map(Some)
    }
}

impl Config {
    /// Reads the configuration file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: Config = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        config.validate().with_context(|| format!("in {}", path.display()))?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(from) = &self.smtp.from
            && !velonotify_core::recipients::is_address(from)
        {
            bail!("smtp.from: {from:?} is not an e-mail address");
        }
        let mut syslog_names = std::collections::HashSet::new();
        for section in &self.syslog {
            section
                .check()
                .map_err(|problem| anyhow::anyhow!("syslog {:?}: {problem}", section.name))?;
            if !syslog_names.insert(section.name.as_str()) {
                bail!("syslog {:?}: two [[syslog]] sections have this name", section.name);
            }
        }
        self.delivery
            .webhook_tls()
            .check()
            .map_err(|problem| anyhow::anyhow!("delivery.webhook_root_ca: {problem}"))?;
        for (i, module) in self.modules.iter().enumerate() {
            if let Some(name) = &module.name {
                check_module_name(name).with_context(|| format!("module {}: name", i + 1))?;
            }
            if let Some(names) = &module.labels_from {
                crate::noise::labels::check_labels_from(names)
                    .map_err(|problem| anyhow::anyhow!("module {}: {problem}", i + 1))?;
            }
            module
                .grouping()
                .map_err(|problem| anyhow::anyhow!("module {}: {problem}", i + 1))?;
            for (name, value) in &module.params {
                param_text(value, &self.base_dir).with_context(|| {
                    format!(
                        "module {} ({}): parameter {name}",
                        module.name.as_deref().unwrap_or("?"),
                        i + 1
                    )
                })?;
            }
        }
        if let Some(url) = &self.server.velonotify_url {
            check_velonotify_url(url).with_context(|| format!("server.velonotify_url {url:?}"))?;
            if self.api.is_none() {
                bail!(
                    "server.velonotify_url: the silence links of e-mails open a page that [api] serves; \
                     add an [api] section (listen, token) or remove velonotify_url"
                );
            }
        }
        self.inhibitor()?;
        let intervals = self.time_intervals()?;
        for (i, module) in self.modules.iter().enumerate() {
            for (names, what) in [
                (&module.mute_time_intervals, "mute_time_intervals"),
                (&module.active_time_intervals, "active_time_intervals"),
            ] {
                intervals
                    .check_names(
                        names.as_deref().unwrap_or_default(),
                        &format!("module {}: {what}", i + 1),
                    )
                    .map_err(anyhow::Error::msg)?;
            }
        }
        Ok(())
    }

    /// What signs the e-mails' silence links, with `store`'s key (made now
    /// if the database has none), when `[server] velonotify_url` is set.
    pub fn silence_links(&self, store: &crate::store::Store, now_us: u64) -> anyhow::Result<Option<Arc<SilenceLinks>>> {
        let Some(url) = &self.server.velonotify_url else {
            return Ok(None);
        };
        let key = store
            .link_key(&SilenceLinks::fresh_key(), now_us)
            .context("the key of the silence links")?;
        Ok(Some(Arc::new(SilenceLinks::new(&key, url))))
    }

    /// The named time intervals, read.
    pub fn time_intervals(&self) -> anyhow::Result<crate::noise::time_intervals::TimeIntervals> {
        crate::noise::time_intervals::TimeIntervals::read(&self.time_intervals).map_err(anyhow::Error::msg)
    }

    /// The inhibit rules, read.
    pub fn inhibitor(&self) -> anyhow::Result<crate::noise::inhibition::Inhibitor> {
        let rules = self
            .inhibit
            .iter()
            .enumerate()
            .map(|(i, section)| section.rule(i + 1))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        Ok(crate::noise::inhibition::Inhibitor::new(rules))
    }

    /// A secret a module's parameter names explicitly must be a
    /// `[secrets.NAME]` section: a misspelt name would otherwise send with
    /// `[smtp]`, silently. (Left out, the artifact's default name falls
    /// back to `[smtp]` when no such section exists, as documented.)
    /// Checked once the module has taken its parameters, so that a
    /// parameter it does not have is named as such first.
    pub fn check_secrets_named(&self, module: &ModuleSection) -> anyhow::Result<()> {
        for name in SECRET_PARAMS {
            if let Some(value) = module.params.get(name) {
                let secret = param_text(value, &self.base_dir)?;
                self.check_secret_named(&secret)
                    .with_context(|| format!("parameter {name}"))?;
            }
        }
        Ok(())
    }

    fn check_secret_named(&self, secret: &str) -> anyhow::Result<()> {
        if secret.is_empty() || self.secrets.contains_key(secret) {
            return Ok(());
        }
        let known: Vec<&str> = self.secrets.keys().map(String::as_str).collect();
        let known = match known.is_empty() {
            true => "there are none".to_string(),
            false => format!("there are {}", known.join(", ")),
        };
        bail!(
            "names the secret {secret:?}, but no [secrets.{secret}] section exists ({known}); name one, or leave \
             the parameter out to send with [smtp]"
        )
    }

    /// A path from the configuration, relative to the config file.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Where module components are looked up.
    pub fn modules_dir(&self) -> PathBuf {
        match &self.host.modules_dir {
            Some(dir) => self.resolve(dir),
            None => self.base_dir.clone(),
        }
    }

    /// The state quota of a module, in octets.
    pub fn state_quota_bytes(&self, module: &ModuleSection) -> u64 {
        module
            .state_mib
            .or(self.host.state_mib)
            .map_or(crate::capabilities::state::DEFAULT_STATE_QUOTA_BYTES, |mib| {
                mib.saturating_mul(1 << 20)
            })
    }

    /// The org of events that do not name one.
    pub fn default_org(&self) -> &str {
        self.server.org()
    }

    /// The From address of modules that set none: the secret's `from`,
    /// else its user name when that is an address, else Velociraptor's
    /// fallback.
    pub fn default_sender(&self) -> String {
        if let Some(from) = self.smtp.from.as_deref().filter(|f| !f.is_empty()) {
            return from.to_string();
        }
        if let Some(user) = self
            .smtp
            .auth_username
            .as_deref()
            .filter(|u| velonotify_core::recipients::is_address(u))
        {
            return user.to_string();
        }
        DEFAULT_SENDER.to_string()
    }

    /// The store `run` and the commands use: the `VELONOTIFY_STORE_URL`
    /// environment variable (a password kept out of the configuration
    /// file), else `[store] url`, else the SQLite file of
    /// [`Config::state_path`].
    pub fn store_location(&self) -> anyhow::Result<crate::store::Location> {
        let from_env = std::env::var(STORE_URL_VARIABLE).ok().filter(|url| !url.is_empty());
        let (source, url) = match (from_env, &self.store.url) {
            (Some(url), _) => (STORE_URL_VARIABLE, url),
            (None, Some(url)) => ("[store] url", url.clone()),
            (None, None) => return Ok(crate::store::Location::File(self.state_path())),
        };
        // Only the scheme is repeated: the rest may hold a password.
        let scheme = url.split_once("://").map_or("no scheme", |(scheme, _)| scheme);
        crate::store::PostgresUrl::parse(&url)
            .map(crate::store::Location::Postgres)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{source}: not a PostgreSQL URL ({scheme}); expected postgres://user:password@host:port/database"
                )
            })
    }

    /// Where `run` keeps its state when it is a SQLite file.
    pub fn state_path(&self) -> PathBuf {
        match &self.host.state {
            Some(path) => self.resolve(path),
            None => self.base_dir.join("velonotify.db"),
        }
    }

    pub fn max_event_bytes(&self) -> usize {
        self.host.max_event_bytes.unwrap_or(DEFAULT_MAX_EVENT_BYTES)
    }

    /// What modules are told about this host.
    pub fn host_facts(&self) -> HostFacts {
        HostFacts {
            default_sender: self.default_sender(),
            max_email_bytes: self.max_email_bytes(),
        }
    }

    /// The largest e-mail a module may produce.
    pub fn max_email_bytes(&self) -> u64 {
        self.host
            .max_email_mib
            .unwrap_or(DEFAULT_MAX_EMAIL_MIB)
            .saturating_mul(1 << 20)
    }

    /// The engine's options: the cache and allocator of `[host]`, a pool
    /// sized for the configured modules.
    pub fn engine_options(&self, cache_dir: Option<PathBuf>) -> crate::engine::EngineOptions {
        let max_memory_bytes = self
            .modules
            .iter()
            .map(|m| self.limits(m).memory_bytes)
            .max()
            .unwrap_or(SandboxLimits::default().memory_bytes);
        crate::engine::EngineOptions {
            cache_dir,
            allocator: self.host.allocator,
            // Each module: its live instance, a restart, and during a hot
            // swap the candidate, its self-test and the previous version.
            max_instances: (self.modules.len() as u32).saturating_mul(5),
            max_memory_bytes,
        }
    }

    /// A module's sandbox limits: its own, else the host defaults.
    pub fn limits(&self, module: &ModuleSection) -> SandboxLimits {
        let defaults = SandboxLimits::default();
        let deadline = module.deadline_ms.or(self.host.deadline_ms).map(Duration::from_millis);
        let memory = module.memory_mib.or(self.host.memory_mib).map(|m| (m as usize) << 20);
        let memory_bytes = memory.unwrap_or(defaults.memory_bytes);
        let mut recycle = RecyclePolicy::for_memory_limit(memory_bytes);
        // 0 means never, as for `recycle_after_calls`.
        if let Some(mib) = module.recycle_above_mib.or(self.host.recycle_above_mib) {
            recycle.above_bytes = match mib {
                0 => usize::MAX,
                mib => usize::try_from(mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            };
        }
        if let Some(calls) = module.recycle_after_calls.or(self.host.recycle_after_calls) {
            recycle.after_calls = calls;
        }
        SandboxLimits {
            deadline: deadline.unwrap_or(defaults.deadline),
            memory_bytes,
            recycle,
        }
    }
}

impl ModuleSection {
    /// The parameters as the module receives them: Velociraptor's text.
    /// `base_dir` is where `{ file = "..." }` values are read from.
    pub fn param_texts(&self, base_dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
        self.params
            .iter()
            .map(|(name, value)| {
                Ok((
                    name.clone(),
                    param_text(value, base_dir).with_context(|| format!("parameter {name}"))?,
                ))
            })
            .collect()
    }
}

/// Module names key their state: they must be readable and must not take
/// the host's own `host:` owners. Checked for configured names, and for the
/// name a module gives itself when its section sets none.
pub(crate) fn check_module_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        bail!("{name:?}: a name is 1 to 100 characters without control characters");
    }
    if name.starts_with("host:") {
        bail!("{name:?}: names starting with host: are the host's own");
    }
    Ok(())
}

/// The artifacts' parameters that name an SMTP Creds secret.
const SECRET_PARAMS: [&str; 2] = ["ServerSecret", "Secret"];

/// Largest parameter read from a file (`{ file = "..." }`): a long CSV
/// table, such as an error catalogue, is tens of KiB.
pub const MAX_PARAM_FILE_BYTES: u64 = 4 << 20;

/// A TOML value as the text a Velociraptor parameter holds: booleans as
/// `Y`/`N`, numbers as decimals, lists as JSON (a list of tables is a CSV
/// parameter's rows), and `{ file = "path" }` as the file's text (relative
/// to `base_dir`), for long CSV tables such as the KB's error catalogue: a
/// regular file of UTF-8 text, at most [`MAX_PARAM_FILE_BYTES`].
fn param_text(value: &toml::Value, base_dir: &Path) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => if *b { "Y" } else { "N" }.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => serde_json::to_string(&toml_to_json(value))?,
        toml::Value::Table(table) => match (table.get("file"), table.len()) {
            (Some(toml::Value::String(file)), 1) => {
                let path = if Path::new(file).is_absolute() {
                    PathBuf::from(file)
                } else {
                    base_dir.join(file)
                };
                crate::files::read_regular_text(&path, MAX_PARAM_FILE_BYTES)?
            }
            _ => bail!(
                "a table is not a parameter value (write the text, a list of tables for a CSV parameter's rows, \
                 or {{ file = \"path\" }})"
            ),
        },
    })
}

fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => serde_json::Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// A store URL that is not PostgreSQL's is named by where it came
    /// from, and its password is not repeated.
    #[test]
    fn a_store_url_of_another_database_is_refused_without_its_password() {
        let c = parse("[store]\nurl = \"mysql://velonotify:s3cr3t@db/alerts\"\n").unwrap();
        if std::env::var(STORE_URL_VARIABLE).is_ok_and(|url| !url.is_empty()) {
            return; // the environment's URL wins (a PostgreSQL run of the suite)
        }
        let error = c.store_location().unwrap_err().to_string();
        assert!(
            error.starts_with("[store] url: not a PostgreSQL URL (mysql)"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn parameters_become_velociraptor_text() {
        let c = parse(
            r#"
            [[module]]
            path = "alerts.wasm"
            [module.params]
            HTML = false
            SendInterval = -1
            SeverityThreshold = ["medium", "high"]
            Recipients = [{Address = "soc@example.org"}]
            AlertMsgInclude = "(?i)honey"
            "#,
        )
        .unwrap();
        let params: BTreeMap<String, String> = c.modules[0].param_texts(Path::new(".")).unwrap().into_iter().collect();
        assert_eq!(params["HTML"], "N");
        assert_eq!(params["SendInterval"], "-1");
        assert_eq!(params["SeverityThreshold"], r#"["medium","high"]"#);
        assert_eq!(params["Recipients"], r#"[{"Address":"soc@example.org"}]"#);
        assert_eq!(params["AlertMsgInclude"], "(?i)honey");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = parse("[smtp]\nhost = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field `host`"), "{err:#}");
    }

    #[test]
    fn a_parameter_can_be_read_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("filter.csv"), "Artifact,Level,Message\n.+,ERROR,.+\n").unwrap();
        let config = dir.path().join("velonotify.toml");
        let module = "[[module]]\nname = \"errors\"\npath = \"a.wasm\"\n[module.params]\n";
        std::fs::write(
            &config,
            format!("{module}IncludeFilter = {{ file = \"filter.csv\" }}\n"),
        )
        .unwrap();
        let c = Config::load(&config).unwrap();
        let params = c.modules[0].param_texts(&c.base_dir).unwrap();
        assert_eq!(
            params,
            [(
                "IncludeFilter".to_string(),
                "Artifact,Level,Message\n.+,ERROR,.+\n".to_string()
            )]
        );

        std::fs::write(
            &config,
            format!("{module}IncludeFilter = {{ file = \"missing.csv\" }}\n"),
        )
        .unwrap();
        let err = format!("{:#}", Config::load(&config).unwrap_err());
        assert!(
            err.contains("module errors (1): parameter IncludeFilter: reading") && err.contains("missing.csv"),
            "{err}"
        );
    }

    #[test]
    fn a_table_parameter_is_an_error_naming_it() {
        let err =
            parse("[[module]]\nname = \"alerts\"\npath = \"a.wasm\"\n[module.params.Recipients]\nAddress = \"x\"\n")
                .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("parameter Recipients") && text.contains("alerts"),
            "{text}"
        );
    }

    #[test]
    fn default_sender_follows_the_secret_fields() {
        assert_eq!(parse("").unwrap().default_sender(), DEFAULT_SENDER);
        assert_eq!(
            parse("[smtp]\nauth_username = \"bot@corp.example\"\n")
                .unwrap()
                .default_sender(),
            "bot@corp.example"
        );
        assert_eq!(
            parse("[smtp]\nauth_username = \"bot\"\nfrom = \"v@corp.example\"\n")
                .unwrap()
                .default_sender(),
            "v@corp.example"
        );
        assert!(parse("[smtp]\nfrom = \"not an address\"\n").is_err());
    }
}
