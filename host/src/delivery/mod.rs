//! Delivery: works through the durable outbox, sends what is due, retries
//! transient failures with backoff until their deadline, dead-letters the
//! rest with a log line, folds held e-mails into digests when their
//! window ends (decisions D11, D15), and a group's held webhooks into one
//! post (D19).
//!
//! At least once: an item is marked sent after the server took it. A crash
//! between the two sends it again after the restart, so the duplicates of
//! a crash are at most the items in flight (one per worker). A store that
//! cannot take the mark (a full disk) does not make delivery send again:
//! the outcome is kept in memory and written when the store recovers, and
//! nothing new is sent meanwhile.

mod retry;
mod smtp;
mod syslog;
mod velociraptor;
mod webhook;
mod webhook_group;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use velonotify_core::digest::{Digest, Held, HeldBecause, build_digest};
use velonotify_core::vql::Timestamp;

pub use self::retry::RetryPolicy;
pub use self::smtp::{SmtpSection, SmtpSenders};
pub use self::syslog::{SyslogSection, SyslogSenders};
pub use self::velociraptor::ApiActions;
pub use self::webhook::{WebhookSender, WebhookTls};
use crate::capabilities::outbound::OutboundPolicy;
use crate::clock::{Clock, micros};
use crate::metrics::Metrics;
use crate::noise::Labels;
use crate::noise::silence_link::{Link, Linked, SilenceLinks, common_matchers, fresh_link_id};
use crate::pipeline::outbox::one_log_line;
use crate::store::{
    EmailPayload, FailedFollower, Kind, NewDigest, NewItem, OutboxItem, Payload, Status, Store, StoreError, Unreadable,
};

/// `[delivery]`: how delivery retries, throttles and waits.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySection {
    /// First wait after a transient failure, in milliseconds (default 1000).
    pub retry_base_ms: Option<u64>,
    /// Longest wait between two attempts, in seconds (default 300).
    pub retry_cap_s: Option<u64>,
    /// Give up on an item this long after it was queued (default 86400).
    pub retry_deadline_s: Option<u64>,
    /// Least seconds between two e-mails of the whole host, like
    /// Velociraptor's global `mail()` period (default 0: none).
    pub mail_period_s: Option<i64>,
    /// SMTP connection and command timeout, seconds (default 10).
    pub smtp_timeout_s: Option<u64>,
    /// Webhook request timeout, seconds (default 10).
    pub webhook_timeout_s: Option<u64>,
    /// The CA certificates (PEM text, or a file of them) webhook receivers'
    /// certificates are checked against instead of the public roots: an
    /// internal TheHive, IRIS or Splunk. List the public roots in it too
    /// (`/etc/ssl/certs/ca-certificates.crt`) if the host also posts to
    /// public services.
    pub webhook_root_ca: Option<String>,
    /// Accept any certificate from webhook receivers (default false;
    /// `check` warns).
    pub webhook_skip_verify: Option<bool>,
    /// Items delivered at once, each on its own connection (default 4).
    pub workers: Option<usize>,
}

/// `root_ca` as PEM: the text itself when it is PEM, else the file it
/// names.
pub fn pem_of(root_ca: &str) -> Result<Vec<u8>, String> {
    if root_ca.trim_start().starts_with("-----BEGIN") {
        return Ok(root_ca.as_bytes().to_vec());
    }
    std::fs::read(root_ca).map_err(|e| format!("root CA {root_ca}: {e}"))
}

/// Defaults of `[delivery]`.
pub const DEFAULT_TIMEOUT_S: u64 = 10;
pub const DEFAULT_WORKERS: usize = 4;

impl DeliverySection {
    /// How webhooks check certificates.
    pub fn webhook_tls(&self) -> WebhookTls {
        WebhookTls {
            root_ca: self.webhook_root_ca.clone(),
            skip_verify: self.webhook_skip_verify.unwrap_or(false),
        }
    }

    /// The retry policy it sets.
    pub fn retry_policy(&self) -> RetryPolicy {
        let defaults = RetryPolicy::default();
        RetryPolicy {
            base: self.retry_base_ms.map(Duration::from_millis).unwrap_or(defaults.base),
            cap: self.retry_cap_s.map(Duration::from_secs).unwrap_or(defaults.cap),
            deadline: self
                .retry_deadline_s
                .map(Duration::from_secs)
                .unwrap_or(defaults.deadline),
        }
    }
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again (connection refused, timeout, 4xx, HTTP 5xx).
    Transient(String),
    /// Will fail the same way again (SMTP 5xx, HTTP 4xx, TLS failure).
    Permanent(String),
}

/// An outcome decided and not yet written to the store.
#[derive(Debug, Clone)]
enum Settlement {
    Sent,
    Retry { next_attempt_us: u64, error: String },
    Dead(String),
    SetAside(Unreadable),
}

/// Sends what the outbox holds.
pub struct Deliverer {
    store: Arc<Store>,
    smtp: SmtpSenders,
    webhooks: WebhookSender,
    policy: RetryPolicy,
    metrics: Arc<Metrics>,
    clock: Clock,
    mail_period_s: i64,
    default_sender: String,
    /// Items sent at once (each on its own connection).
    workers: usize,
    /// Executes user messages, labels and alert pushes.
    api: Option<ApiActions>,
    /// Where each configured module's webhooks may go today; None: as
    /// checked when they were stored (tests).
    destinations: Option<HashMap<String, OutboundPolicy>>,
    /// Outcomes the store could not take yet, by item.
    unsettled: Mutex<BTreeMap<i64, Settlement>>,
    /// Rows this release cannot read, each reported once (they wait for a
    /// release that can, or for an operator).
    unreadable: Mutex<HashSet<i64>>,
    /// Signs the silence link of each digest, when velonotify serves the page.
    silence_links: Option<Arc<SilenceLinks>>,
    /// The `[[syslog]]` receivers.
    syslog: Option<SyslogSenders>,
    /// The replica whose claims this deliverer's items are (see
    /// `store/replicas.rs`).
    replica: String,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The replica name of a deliverer that is not told its own (tests and
/// tools, alone on their store).
pub const LOCAL_REPLICA: &str = "local";

/// Most items tried in one round.
const BATCH: usize = 100;

/// The wait before the next round when the store failed.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// How long an outbox row this release cannot read is set aside before it
/// is looked at (and reported) again.
const UNREADABLE_AGAIN: Duration = Duration::from_secs(3600);

impl Deliverer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        smtp: SmtpSenders,
        webhooks: WebhookSender,
        policy: RetryPolicy,
        metrics: Arc<Metrics>,
        clock: Clock,
        mail_period_s: i64,
        default_sender: String,
    ) -> Self {
        Self {
            store,
            smtp,
            webhooks,
            policy,
            metrics,
            clock,
            mail_period_s,
            default_sender,
            workers: 1,
            api: None,
            destinations: None,
            unsettled: Mutex::default(),
            unreadable: Mutex::default(),
            replica: LOCAL_REPLICA.to_string(),
            silence_links: None,
            syslog: None,
        }
    }

    /// Sends records to the `[[syslog]]` receivers.
    pub fn with_syslog(mut self, syslog: SyslogSenders) -> Self {
        self.syslog = Some(syslog);
        self
    }

    /// Executes user messages, labels and alert pushes through the
    /// Velociraptor API.
    pub fn with_api(mut self, api: ApiActions) -> Self {
        self.api = Some(api);
        self
    }

    /// Ends each digest with a link that silences what its members share.
    pub fn with_silence_links(mut self, links: Option<Arc<SilenceLinks>>) -> Self {
        self.silence_links = links;
        self
    }

    /// Checks each webhook against its module's policy of today before it
    /// is posted: an item of a module no longer configured, or to a host
    /// its `allowed_hosts` no longer names, is dead-lettered instead.
    pub fn with_destinations(mut self, policies: HashMap<String, OutboundPolicy>) -> Self {
        self.destinations = Some(policies);
        self
    }

    /// Claims items as replica `id` (the others leave them alone while it
    /// is alive).
    pub fn with_replica(mut self, id: &str) -> Self {
        self.replica = id.to_string();
        self
    }

    /// Sends up to `workers` items at once. One SMTP session waits for the
    /// server's reply at every step, so parallel sessions are what makes a
    /// burst go out quickly; at most `workers` messages are in flight.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Delivers until `stop` is set, or, once `draining` is set, until
    /// nothing is left to deliver.
    pub fn run(&self, stop: &AtomicBool, draining: &AtomicBool) {
        let mut failing: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            let worked = match self.round() {
                Ok(n) => {
                    if failing.take().is_some() {
                        tracing::info!("delivery goes on: the state database takes writes again");
                    }
                    n
                }
                Err(e) => {
                    // Said once, not every round, while the store fails.
                    let error = e.to_string();
                    if failing.as_deref() != Some(error.as_str()) {
                        tracing::error!(%error, "delivery paused: the state database refuses writes; trying again");
                    }
                    failing = Some(error);
                    std::thread::sleep(STORE_RETRY);
                    continue;
                }
            };
            let open = self.store.open_count().unwrap_or(u64::MAX);
            if open != u64::MAX {
                self.metrics.set_queue_depth(open);
            }
            // Rows this release cannot read never go: draining does not
            // wait for them.
            let waiting = open.saturating_sub(self.unreadable_count());
            if draining.load(Ordering::Relaxed) && waiting == 0 && self.unsettled().is_empty() {
                return;
            }
            if worked == 0 {
                let next = self.store.next_due_us().ok().flatten().unwrap_or(u64::MAX);
                // Due but not claimed: other replicas are sending it.
                let wait = match next.checked_sub(self.clock.now_us()) {
                    Some(wait) if wait > 0 => wait.clamp(10_000, 250_000),
                    _ => 100_000,
                };
                std::thread::sleep(Duration::from_micros(wait));
            }
        }
    }

    fn unsettled(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Settlement>> {
        self.unsettled.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes an unreadable row; true the first time it is seen.
    fn first_seen_unreadable(&self, unreadable: &Unreadable) -> bool {
        self.unreadable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(unreadable.id)
    }

    fn unreadable_count(&self) -> u64 {
        self.unreadable.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }

    /// Writes the outcomes kept while the store failed, then makes the
    /// digests that are due and tries the items that are due, each marked
    /// as soon as it is tried. Returns how many items it tried.
    pub fn round(&self) -> Result<usize, StoreError> {
        self.settle_kept()?;
        let now_us = self.clock.now_us();
        self.make_digests(now_us)?;
        let due = self.store.claim_due(&self.replica, now_us, BATCH)?;
        let next = AtomicUsize::new(0);
        let work = || {
            while let Some(row) = due.get(next.fetch_add(1, Ordering::Relaxed)) {
                // While the store refuses outcomes, nothing more is sent:
                // what is sent and not marked is sent again after a crash.
                if !self.unsettled().is_empty() {
                    return;
                }
                let (id, settlement) = match row {
                    Ok(item) => (item.id, self.attempt(item)),
                    Err(unreadable) => (unreadable.id, Settlement::SetAside(unreadable.clone())),
                };
                if let Err(error) = self.settle(id, &settlement) {
                    tracing::error!(item = id, %error, "could not record a delivery; kept until the store recovers");
                    self.unsettled().insert(id, settlement);
                }
            }
        };
        match self.workers.min(due.len()) {
            0 | 1 => work(),
            n => std::thread::scope(|scope| {
                for _ in 0..n {
                    scope.spawn(work);
                }
            }),
        }
        Ok(due.len())
    }

    /// Sends one item and decides what becomes of it.
    fn attempt(&self, item: &OutboxItem) -> Settlement {
        let attempt = match &item.payload {
            Payload::Email(email) => {
                let from = email.sender.as_deref().unwrap_or(&self.default_sender);
                self.smtp
                    .send(email.secret.as_deref(), from, &email.recipients, &item.body)
            }
            Payload::Webhook(hook) => match self.destination_today(&item.module, &hook.url) {
                Ok(may_reach_private) => self.webhooks.post(
                    &hook.url,
                    &hook.headers,
                    &item.body,
                    may_reach_private.unwrap_or(hook.may_reach_private),
                ),
                Err(why) => Attempt::Permanent(why),
            },
            Payload::Syslog(record) => match &self.syslog {
                Some(syslog) => syslog.send(record),
                None => Attempt::Permanent("no [[syslog]] receiver is configured".into()),
            },
            payload @ (Payload::UserMessage(_) | Payload::Label(_) | Payload::Alert(_)) => match &self.api {
                Some(api) => api.execute(&item.module, payload),
                None => Attempt::Transient("waiting for the Velociraptor API to be configured".into()),
            },
        };
        crate::crash_point!("delivery::after-send");
        self.decide(item, attempt)
    }

    /// Whether `module`'s webhook to `url` may go by today's configuration,
    /// and whether it may reach a private address (None: not checked).
    fn destination_today(&self, module: &str, url: &str) -> Result<Option<bool>, String> {
        let Some(destinations) = &self.destinations else {
            return Ok(None);
        };
        let policy = destinations.get(module).ok_or_else(|| {
            format!("not sent: module {module:?} is no longer configured, so where its webhooks may go is unknown")
        })?;
        policy
            .check_destination(url)
            .map_err(|why| format!("not sent: {why}"))?;
        Ok(Some(policy.names_host_of(url)))
    }

    fn decide(&self, item: &OutboxItem, attempt: Attempt) -> Settlement {
        // A server's reply may span lines: logged as one.
        let what = one_log_line(&item.describe()).into_owned();
        let kind = item.kind().as_str();
        match attempt {
            Attempt::Delivered => {
                self.metrics.sent(kind);
                tracing::debug!(item = item.id, module = %item.module, "delivered {what}");
                Settlement::Sent
            }
            Attempt::Permanent(error) => {
                self.metrics.dead_lettered(kind);
                tracing::error!(item = item.id, module = %item.module, "dead-lettered {what}: {}", one_log_line(&error));
                Settlement::Dead(error)
            }
            Attempt::Transient(error) => {
                let attempts = item.attempts + 1;
                let now_us = self.clock.now_us();
                let next_attempt_us = now_us.saturating_add(micros(self.policy.wait(attempts)));
                if next_attempt_us > item.deadline_us {
                    let error = format!("gave up after {attempts} attempts: {error}");
                    self.metrics.dead_lettered(kind);
                    tracing::error!(item = item.id, module = %item.module, "dead-lettered {what}: {}", one_log_line(&error));
                    return Settlement::Dead(error);
                }
                self.metrics.retried(kind);
                let wait = Duration::from_micros(next_attempt_us - now_us);
                let error_line = one_log_line(&error);
                tracing::warn!(item = item.id, module = %item.module, "{what} failed ({error_line}); retrying in {wait:.1?}");
                Settlement::Retry { next_attempt_us, error }
            }
        }
    }

    /// Writes every kept outcome; stops at the first the store refuses.
    fn settle_kept(&self) -> Result<(), StoreError> {
        let kept: Vec<(i64, Settlement)> = self.unsettled().iter().map(|(id, s)| (*id, s.clone())).collect();
        for (id, settlement) in kept {
            self.settle(id, &settlement)?;
            self.unsettled().remove(&id);
        }
        Ok(())
    }

    /// What followed a dead item and was dead-lettered with it.
    fn report_failed_followers(&self, followers: Vec<FailedFollower>) {
        for follower in followers {
            self.metrics.dead_lettered(&follower.kind);
            tracing::error!(item = follower.id, "dead-lettered {}: {}", follower.kind, follower.why);
        }
    }

    /// Records what became of item `id`.
    fn settle(&self, id: i64, settlement: &Settlement) -> Result<(), StoreError> {
        let now_us = self.clock.now_us();
        match settlement {
            Settlement::Sent => self.store.mark_sent(id, now_us),
            Settlement::Retry { next_attempt_us, error } => {
                self.store
                    .mark_retry(id, *next_attempt_us, error, now_us, &self.replica)
            }
            Settlement::Dead(error) => {
                let followers = self.store.mark_dead(id, error, now_us, &self.replica)?;
                self.report_failed_followers(followers);
                Ok(())
            }
            Settlement::SetAside(unreadable) => {
                if self.first_seen_unreadable(unreadable) {
                    tracing::error!(item = id, "{unreadable}; set aside, its status unchanged");
                }
                let until = now_us.saturating_add(micros(UNREADABLE_AGAIN));
                self.store.set_aside(unreadable, until, now_us)
            }
        }
    }

    /// One digest per module and recipient list whose window has ended.
    fn make_digests(&self, now_us: u64) -> Result<(), StoreError> {
        let mut digests = Vec::new();
        for module_rows in self.store.held_by_module(now_us)? {
            let mut items = Vec::with_capacity(module_rows.len());
            for row in module_rows {
                match row {
                    Ok(item) => items.push(item),
                    Err(unreadable) => {
                        if self.first_seen_unreadable(&unreadable) {
                            tracing::error!("{unreadable}; left held");
                        }
                    }
                }
            }
            // Those held by a mute go when it ends; the others when
            // their module's window does.
            let (muted, windowed): (Vec<OutboxItem>, Vec<OutboxItem>) =
                items.into_iter().partition(|item| item.held_by.is_some());
            digests.extend(self.digests_of(&muted, now_us));
            digests.extend(self.group_posts(&muted));
            let Some(last) = windowed.last() else { continue };
            let Payload::Email(last_email) = &last.payload else {
                continue;
            };
            let open = self
                .store
                .window_open_until(&last.module, last_email.send_interval_s, self.mail_period_s)?;
            if open.is_some_and(|end| end > now_us) {
                continue;
            }
            digests.extend(self.digests_of(&windowed, now_us));
        }
        if digests.is_empty() {
            return Ok(());
        }
        let deadline = now_us.saturating_add(micros(self.policy.deadline));
        let folded = self.store.fold_into_digests(&digests, now_us, deadline)?;
        for (digest, folded) in digests.iter().zip(folded) {
            let Some((id, failed_followers)) = folded else {
                tracing::debug!(module = %digest.item.module, "a digest's items were folded by another process");
                continue;
            };
            let module = &digest.item.module;
            match &digest.refused {
                None => {
                    self.metrics.digest();
                    let what = match digest.item.payload {
                        Payload::Webhook(_) => "webhooks go out as one post",
                        _ => "e-mails go out as one digest",
                    };
                    tracing::info!(module = %module, "{} held {what} (outbox item {id})", digest.held.len());
                }
                Some(why) => {
                    self.metrics.dead_lettered(Kind::Email.as_str());
                    tracing::error!(
                        module = %module,
                        "the digest of {} held e-mails (outbox item {id}) is refused: {why}",
                        digest.held.len()
                    );
                    self.report_failed_followers(failed_followers);
                }
            }
        }
        Ok(())
    }

    /// The digests of one module's held e-mails, one per recipient list,
    /// with the ids of the items each replaces, each checked as a module's
    /// e-mail is before it may leave.
    fn digests_of(&self, items: &[OutboxItem], now_us: u64) -> Vec<NewDigest> {
        // One digest per recipient list and reason (a SendInterval window,
        // or a mute that ended).
        type Key = (Vec<String>, Option<String>);
        let mut by_recipients: BTreeMap<Key, Vec<(&OutboxItem, &EmailPayload)>> = BTreeMap::new();
        for item in items {
            if let Payload::Email(email) = &item.payload {
                by_recipients
                    .entry((email.recipients.clone(), item.held_by.clone()))
                    .or_default()
                    .push((item, email));
            }
        }
        let now = Timestamp::from_unix_micros(i64::try_from(now_us).unwrap_or(i64::MAX));
        by_recipients
            .into_iter()
            .map(|((recipients, held_by), group)| {
                let (first, first_email) = group[0];
                let module = &first.module;
                let sender = first_email
                    .sender
                    .clone()
                    .unwrap_or_else(|| self.default_sender.clone());
                let held: Vec<Held> = group
                    .iter()
                    .map(|(item, email)| Held {
                        subject: email.subject.clone(),
                        link: email.link.clone(),
                        at: Timestamp::from_unix_micros(i64::try_from(item.created_us).unwrap_or(i64::MAX)),
                    })
                    .collect();
                let held_because = match &held_by {
                    Some(group) if group.starts_with("group ") => HeldBecause::Group(&group["group ".len()..]),
                    Some(why) => HeldBecause::Muted(why),
                    None => HeldBecause::Window(
                        group
                            .last()
                            .and_then(|(_, e)| crate::store::window_seconds(e.send_interval_s)),
                    ),
                };
                let identity = format!("digest/{module}/{}/{now_us}", first.id);
                let labels = Labels::common(group.iter().map(|(item, _)| &item.labels));
                let serverless = group.iter().all(|(item, _)| item.labels.get("client_id").is_empty());
                let silence_link = self.digest_silence_link(&labels, serverless, now_us);
                let (subject, message) = build_digest(&Digest {
                    module,
                    sender: &sender,
                    recipients: &recipients,
                    held: &held,
                    held_because,
                    now,
                    identity: &identity,
                    silence_link: silence_link.as_deref(),
                });
                let ids: Vec<i64> = group.iter().map(|(item, _)| item.id).collect();
                let refused = self.digest_refused(module, &sender, &recipients, &subject, &message);
                let digest = NewItem {
                    module: module.clone(),
                    event: None,
                    status: Status::Pending,
                    payload: Payload::Email(EmailPayload {
                        secret: first_email.secret.clone(),
                        sender: Some(sender),
                        recipients,
                        subject,
                        link: None,
                        send_interval_s: -1,
                    }),
                    body: message,
                    follows: Vec::new(),
                    labels,
                    held_by: None,
                    release_us: None,
                    link_id: None,
                };
                NewDigest {
                    held: ids,
                    item: digest,
                    refused,
                }
            })
            .collect()
    }

    /// One post per group of a module's held webhooks (same address and
    /// headers), its body listing the members' in their shape.
    fn group_posts(&self, items: &[OutboxItem]) -> Vec<NewDigest> {
        type Key = (String, String, Vec<(String, String)>);
        let mut groups: BTreeMap<Key, Vec<&OutboxItem>> = BTreeMap::new();
        for item in items {
            if let (Payload::Webhook(webhook), Some(group)) = (&item.payload, &item.held_by)
                && group.starts_with("group ")
            {
                let key = (group.clone(), webhook.url.clone(), webhook.headers.clone());
                groups.entry(key).or_default().push(item);
            }
        }
        groups
            .into_iter()
            .flat_map(|((group, url, headers), members)| {
                // Members a receiver takes one per post go one by one.
                match self.listed_bodies(&members[..1]) {
                    Some((first, true)) if !webhook_group::foldable(&first[0]) => members
                        .into_iter()
                        .map(|member| ((group.clone(), url.clone(), headers.clone()), vec![member]))
                        .collect(),
                    _ => vec![((group, url, headers), members)],
                }
            })
            .filter_map(|((group, _, _), members)| {
                let first = members[0];
                let Payload::Webhook(payload) = &first.payload else {
                    return None;
                };
                let (bodies, all_read) = self.listed_bodies(&members)?;
                if members.len() == 1 && !all_read {
                    // Alone, it would be posted as it is: it waits, held,
                    // for a release that reads it (as any unreadable row).
                    return None;
                }
                let key = &group["group ".len()..];
                let item = NewItem {
                    module: first.module.clone(),
                    event: None,
                    status: Status::Pending,
                    payload: Payload::Webhook(payload.clone()),
                    body: webhook_group::group_body(&first.module, key, &bodies, members.len()),
                    follows: Vec::new(),
                    labels: Labels::common(members.iter().map(|m| &m.labels)),
                    held_by: None,
                    release_us: None,
                    link_id: None,
                };
                Some(NewDigest {
                    held: members.iter().map(|m| m.id).collect(),
                    item,
                    refused: None,
                })
            })
            .collect()
    }

    /// The bodies of a group's first members, those its post lists (held
    /// rows are read without them), and whether each was read. A body this
    /// release cannot read is listed as saying so (and said once in the
    /// log); None when the store fails (the group is folded at a later
    /// pass, its members still held).
    fn listed_bodies(&self, members: &[&OutboxItem]) -> Option<(Vec<Vec<u8>>, bool)> {
        let mut bodies = Vec::with_capacity(members.len().min(webhook_group::MAX_LISTED));
        let mut all_read = true;
        for member in members.iter().take(webhook_group::MAX_LISTED) {
            match self.store.item(member.id) {
                Ok(Some(Ok(item))) => bodies.push(item.body),
                Ok(Some(Err(unreadable))) => {
                    if self.first_seen_unreadable(&unreadable) {
                        tracing::error!("{unreadable}; its group's post says so");
                    }
                    all_read = false;
                    bodies.push(format!("(outbox item {}: {})", member.id, unreadable.reason).into_bytes())
                }
                Ok(None) => {
                    all_read = false;
                    bodies.push(format!("(outbox item {} is gone)", member.id).into_bytes())
                }
                Err(e) => {
                    tracing::warn!(module = %member.module, "a group's webhooks wait: {e}");
                    return None;
                }
            }
        }
        Some((bodies, all_read))
    }

    /// The link that silences notifications like a digest's members: on
    /// what they all share of `alertname`, `client_id` and `module`. A
    /// digest of different alerts has none: its link would silence the
    /// whole module.
    fn digest_silence_link(&self, common: &Labels, serverless: bool, now_us: u64) -> Option<String> {
        let links = self.silence_links.as_ref()?;
        let link = Link {
            id: fresh_link_id(),
            linked: Linked::Matchers(common_matchers(common, serverless)?.to_string()),
        };
        links.link(link, now_us)
    }

    /// Why a digest may not leave, by the checks every module's e-mail
    /// passes (addresses, size), under its module's policy of today.
    fn digest_refused(
        &self,
        module: &str,
        sender: &str,
        recipients: &[String],
        subject: &str,
        message: &[u8],
    ) -> Option<String> {
        let policy = self
            .destinations
            .as_ref()
            .and_then(|d| d.get(module).cloned())
            .unwrap_or_default();
        let email = crate::contract::Email {
            secret: None,
            sender: sender.to_string(),
            recipients: recipients.to_vec(),
            subject: subject.to_string(),
            message: message.to_vec(),
            send_interval_seconds: -1,
            link: None,
        };
        policy.check(&crate::contract::Action::Email(email)).err()
    }
}

/// What went wrong with TLS, if `error` (or one of its causes) is a TLS
/// failure: a certificate that does not verify, a failed handshake.
pub(crate) fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // io::Error::source() skips the error it wraps: look inside.
        if let Some(tls) = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        next = error.source();
    }
    None
}
