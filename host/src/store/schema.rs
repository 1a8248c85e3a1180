//! The database's schema and its migrations.
//!
//! The schema version is SQLite's `user_version`. Opening a database runs
//! every migration above its version, each in one `BEGIN IMMEDIATE`
//! transaction with the version bump, so a crash leaves a database at one
//! version or the next, never between. A database of a later release is
//! refused rather than misread. (rusqlite_migration does the same job but
//! follows its own rusqlite version, an older one than ours; the runner is
//! the 20 lines of [`migrate`].)
//!
//! | version | what                                                             |
//! |---------|------------------------------------------------------------------|
//! | 0       | an empty file, or a database of the first releases (no version)  |
//! | 1       | the first releases' tables: `state`, `outbox`, `throttle`        |
//! | 2       | typed outbox items (kind and status checked, versioned payloads); the stream positions' owner renamed |
//! | 3       | `outbox_follows` (an item waits for the items it follows); `event_retries` (events a module failed on for want of a lookup); the host's mail period keyed `host:mail-period`, out of modules' reach |
//! | 4       | `state_usage` and `outbox_open`: each owner's state and the undelivered outbox, in entries and bytes, kept by triggers (quotas and back-pressure read them without counting) |
//! | 5       | `silences`; an outbox item's `labels` (JSON) and `held_by` (what held it back); `outbox_open` leaves out what a module's mute holds |
//! | 6       | `link_keys`: the key that signs the e-mails' silence links; an outbox item's `link_id` (the links its call made, indexed) and a silence's `from_link` (each link makes one silence) |
//! | 7       | `replicas` (each `run` process and when it was last seen) and `leases` (who reads which org's stream); an outbox item's claim (`claimed_by`, `claimed_until_us`): the replica sending it |
//! | 8       | `outbox_attempts`: each delivery attempt of an item (when, sent/retry/dead, the error), the last 50 per item |
//!
//! A PostgreSQL database starts at version 6, with the tables as they are
//! at that version in PostgreSQL's types ([`postgres`]), and keeps its
//! version in a `schema_version` row.

mod postgres;

use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::Value;

use super::outbox::{
    AlertPayload, EmailPayload, LabelOp, LabelPayload, PAYLOAD_VERSION, Payload, UserMessagePayload, WebhookPayload,
};
use super::{Backend, Location, StoreError};

/// The version this release writes.
pub const SCHEMA_VERSION: i64 = 8;

type Step = fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>;

/// Migrations by the version they lead to.
const MIGRATIONS: [(i64, Step); 8] = [
    (1, first_tables),
    (2, typed_outbox),
    (3, follows_and_retries),
    (4, usage_counters),
    (5, silences_and_labels),
    (6, silence_link_keys),
    (7, replicas_and_claims),
    (8, delivery_attempts),
];

/// Brings the database up to [`SCHEMA_VERSION`].
pub(super) fn migrate(backend: &mut Backend, location: &Location) -> Result<(), StoreError> {
    match backend {
        Backend::Sqlite(conn) => migrate_sqlite(conn, location),
        Backend::Postgres(conn) => postgres::migrate(conn, location),
    }
}

fn migrate_sqlite(conn: &mut Connection, location: &Location) -> Result<(), StoreError> {
    let fail = |e: rusqlite::Error| StoreError::sqlite(location, &e);
    let version = |conn: &Connection| conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
    let found = version(conn).map_err(fail)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    // A new database is created, not migrated: nothing to tell.
    let created = found == 0 && !has_tables(conn).map_err(fail)?;
    for (to, step) in MIGRATIONS {
        // Another process may be migrating the same file: the version is
        // read again inside the transaction.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        let current = version(&tx).map_err(fail)?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::permanent(
                location,
                format!(
                    "written by a later release of velonotify (schema version {current}; this release reads up to \
                     {SCHEMA_VERSION})"
                ),
            ));
        }
        if current < to {
            step(&tx).map_err(fail)?;
            tx.pragma_update(None, "user_version", to).map_err(fail)?;
            if !created {
                tracing::info!(%location, from = current, to, "state database migrated");
            }
        }
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

/// Whether the database holds any table (the first releases wrote no
/// version: theirs is 0 too).
fn has_tables(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n > 0)
}

/// The tables as the first releases created them (they carried no
/// version): a no-op on their databases, the start of a new one.
fn first_tables(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS state (
            owner      TEXT NOT NULL,
            key        TEXT NOT NULL,
            value      BLOB NOT NULL,
            expires_us INTEGER,
            PRIMARY KEY (owner, key)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS outbox (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            created_us      INTEGER NOT NULL,
            module          TEXT NOT NULL,
            kind            TEXT NOT NULL,
            event           TEXT,
            secret          TEXT,
            sender          TEXT,
            recipients      TEXT NOT NULL,
            subject         TEXT,
            link            TEXT,
            payload         BLOB NOT NULL,
            send_interval   INTEGER NOT NULL DEFAULT -1,
            status          TEXT NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_us INTEGER NOT NULL,
            deadline_us     INTEGER NOT NULL,
            last_error      TEXT,
            digest_id       INTEGER,
            updated_us      INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_us);
        CREATE TABLE IF NOT EXISTS throttle (
            key          TEXT PRIMARY KEY,
            last_sent_us INTEGER NOT NULL
        );",
    )
}

/// Outbox items with a typed, versioned payload and their body apart; the
/// old rows are converted one by one. A row that cannot be converted keeps
/// its id and status, with payload version 0 and the reason, and is
/// reported as unreadable (never dropped, never made something else).
fn typed_outbox(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE outbox_v2 (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            created_us      INTEGER NOT NULL,
            updated_us      INTEGER NOT NULL,
            module          TEXT NOT NULL,
            event           TEXT,
            kind            TEXT NOT NULL,
            status          TEXT NOT NULL,
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_us INTEGER NOT NULL,
            deadline_us     INTEGER NOT NULL,
            last_error      TEXT,
            digest_id       INTEGER,
            payload_version INTEGER NOT NULL,
            payload         TEXT NOT NULL,
            body            BLOB NOT NULL
        );",
    )?;
    let mut old = tx.prepare(
        "SELECT id, created_us, updated_us, module, event, kind, status, attempts, next_attempt_us, deadline_us,
                last_error, digest_id, secret, sender, recipients, subject, link, send_interval, payload
         FROM outbox ORDER BY id",
    )?;
    let mut insert = tx.prepare(
        "INSERT INTO outbox_v2 (id, created_us, updated_us, module, event, kind, status, attempts, next_attempt_us,
                                deadline_us, last_error, digest_id, payload_version, payload, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
    )?;
    let mut rows = old.query([])?;
    while let Some(row) = rows.next()? {
        let legacy = LegacyItem {
            kind: row.get(5)?,
            secret: row.get(12)?,
            sender: row.get(13)?,
            recipients: row.get(14)?,
            subject: row.get(15)?,
            link: row.get(16)?,
            send_interval: row.get(17)?,
            payload: row.get(18)?,
        };
        let (version, payload, body) = match legacy.convert() {
            Ok((payload, body)) => (
                PAYLOAD_VERSION,
                serde_json::to_string(&payload).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
                body,
            ),
            Err(reason) => (0, legacy.unconverted(&reason).to_string(), legacy.payload.clone()),
        };
        insert.execute(params![
            row.get::<_, i64>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, i64>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, Option<String>>(4)?,
            legacy.kind,
            row.get::<_, String>(6)?,
            row.get::<_, i64>(7)?,
            row.get::<_, i64>(8)?,
            row.get::<_, i64>(9)?,
            row.get::<_, Option<String>>(10)?,
            row.get::<_, Option<i64>>(11)?,
            version,
            payload,
            body,
        ])?;
    }
    drop(rows);
    drop(old);
    drop(insert);
    // Ids are never reused, even those of purged items (digests name the
    // items they replaced).
    let sequence: Option<i64> = tx
        .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'", [], |r| {
            r.get(0)
        })
        .ok();
    tx.execute_batch(
        "DROP TABLE outbox;
         ALTER TABLE outbox_v2 RENAME TO outbox;
         CREATE INDEX outbox_due ON outbox (status, next_attempt_us);",
    )?;
    if let Some(sequence) = sequence {
        // The old table's row went with it when nothing was left to copy.
        let updated = tx.execute(
            "UPDATE sqlite_sequence SET seq = max(seq, ?1) WHERE name = 'outbox'",
            params![sequence],
        )?;
        if updated == 0 {
            tx.execute(
                "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?1)",
                params![sequence],
            )?;
        }
    }
    // A module may be named anything but `host:...`: the stream positions
    // move to a `host:` owner, out of any module's reach.
    tx.execute(
        "UPDATE state SET owner = 'host:stream-positions' WHERE owner = 'velonotify/velociraptor'",
        [],
    )?;
    Ok(())
}

/// Two tables: which outbox items wait for which (a label change for the
/// announcement before it), and the events to hand a module again because
/// a lookup failed; and the host-wide mail period's throttle key moved to
/// a `host:` name.
fn follows_and_retries(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE outbox_follows (
            item  INTEGER NOT NULL,
            after INTEGER NOT NULL,
            PRIMARY KEY (item, after)
        ) WITHOUT ROWID;
        CREATE INDEX outbox_follows_after ON outbox_follows (after);
        CREATE TABLE event_retries (
            module          TEXT NOT NULL,
            event_id        TEXT NOT NULL,
            queue           TEXT NOT NULL,
            org_id          TEXT NOT NULL,
            row             TEXT NOT NULL,
            ts_us           INTEGER,
            attempts        INTEGER NOT NULL,
            first_failed_us INTEGER NOT NULL,
            next_attempt_us INTEGER NOT NULL,
            last_error      TEXT NOT NULL,
            PRIMARY KEY (module, event_id)
        );
        CREATE INDEX event_retries_due ON event_retries (next_attempt_us);
        DELETE FROM throttle WHERE key = 'host:mail-period';
        UPDATE throttle SET key = 'host:mail-period' WHERE key = '*';",
    )
}

/// What state each owner holds and what the outbox is working to deliver
/// (pending, held, blocked: not what waits for an API that is not
/// configured, which no delivery drains), in entries and bytes, kept up to date by triggers in the writes' own
/// transactions: a quota or a bound reads one row instead of counting.
/// Bytes are a key's and a value's octets, an item's payload and body.
/// (No `INSERT OR IGNORE` in a trigger: the statement that fires it
/// imposes its own conflict policy, and an upsert's is to fail.)
fn usage_counters(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE state_usage (
            owner   TEXT PRIMARY KEY,
            entries INTEGER NOT NULL,
            bytes   INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO state_usage
            SELECT owner, count(*), sum(length(CAST(key AS BLOB)) + length(value)) FROM state GROUP BY owner;
        CREATE TRIGGER state_usage_insert AFTER INSERT ON state BEGIN
            INSERT INTO state_usage SELECT new.owner, 0, 0
             WHERE NOT EXISTS (SELECT 1 FROM state_usage WHERE owner = new.owner);
            UPDATE state_usage SET entries = entries + 1,
                                   bytes = bytes + length(CAST(new.key AS BLOB)) + length(new.value)
             WHERE owner = new.owner;
        END;
        CREATE TRIGGER state_usage_delete AFTER DELETE ON state BEGIN
            UPDATE state_usage SET entries = entries - 1,
                                   bytes = bytes - length(CAST(old.key AS BLOB)) - length(old.value)
             WHERE owner = old.owner;
        END;
        CREATE TRIGGER state_usage_update AFTER UPDATE ON state BEGIN
            UPDATE state_usage SET entries = entries - 1,
                                   bytes = bytes - length(CAST(old.key AS BLOB)) - length(old.value)
             WHERE owner = old.owner;
            INSERT INTO state_usage SELECT new.owner, 0, 0
             WHERE NOT EXISTS (SELECT 1 FROM state_usage WHERE owner = new.owner);
            UPDATE state_usage SET entries = entries + 1,
                                   bytes = bytes + length(CAST(new.key AS BLOB)) + length(new.value)
             WHERE owner = new.owner;
        END;

        CREATE TABLE outbox_open (
            id    INTEGER PRIMARY KEY CHECK (id = 0),
            items INTEGER NOT NULL,
            bytes INTEGER NOT NULL
        );
        INSERT INTO outbox_open
            SELECT 0, count(*), coalesce(sum(length(payload) + length(body)), 0) FROM outbox
             WHERE status IN ('pending', 'held', 'blocked');
        CREATE TRIGGER outbox_open_insert AFTER INSERT ON outbox
         WHEN new.status IN ('pending', 'held', 'blocked') BEGIN
            UPDATE outbox_open SET items = items + 1, bytes = bytes + length(new.payload) + length(new.body);
        END;
        CREATE TRIGGER outbox_open_delete AFTER DELETE ON outbox
         WHEN old.status IN ('pending', 'held', 'blocked') BEGIN
            UPDATE outbox_open SET items = items - 1, bytes = bytes - length(old.payload) - length(old.body);
        END;
        CREATE TRIGGER outbox_open_update_old AFTER UPDATE ON outbox
         WHEN old.status IN ('pending', 'held', 'blocked') BEGIN
            UPDATE outbox_open SET items = items - 1, bytes = bytes - length(old.payload) - length(old.body);
        END;
        CREATE TRIGGER outbox_open_update_new AFTER UPDATE ON outbox
         WHEN new.status IN ('pending', 'held', 'blocked') BEGIN
            UPDATE outbox_open SET items = items + 1, bytes = bytes + length(new.payload) + length(new.body);
        END;",
    )
}

/// Silences, and what noise control records on an outbox item: its labels
/// (items of earlier releases have none) and what held it back.
fn silences_and_labels(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE silences (
            id          TEXT PRIMARY KEY,
            matchers    TEXT NOT NULL,
            starts_us   INTEGER NOT NULL,
            ends_us     INTEGER NOT NULL,
            created_by  TEXT NOT NULL,
            comment     TEXT NOT NULL,
            created_us  INTEGER NOT NULL,
            updated_us  INTEGER NOT NULL
        );
        CREATE INDEX silences_by_end ON silences (ends_us);
        ALTER TABLE outbox ADD COLUMN labels TEXT;
        ALTER TABLE outbox ADD COLUMN held_by TEXT;

        -- What a module's mute holds (possibly for days) is not open: it
        -- must not hold events back at the bound. Groups are.
        DROP TRIGGER outbox_open_insert;
        DROP TRIGGER outbox_open_delete;
        DROP TRIGGER outbox_open_update_old;
        DROP TRIGGER outbox_open_update_new;
        CREATE TRIGGER outbox_open_insert AFTER INSERT ON outbox
         WHEN new.status IN ('pending', 'held', 'blocked') AND (new.held_by IS NULL OR new.held_by LIKE 'group %') BEGIN
            UPDATE outbox_open SET items = items + 1, bytes = bytes + length(new.payload) + length(new.body);
        END;
        CREATE TRIGGER outbox_open_delete AFTER DELETE ON outbox
         WHEN old.status IN ('pending', 'held', 'blocked') AND (old.held_by IS NULL OR old.held_by LIKE 'group %') BEGIN
            UPDATE outbox_open SET items = items - 1, bytes = bytes - length(old.payload) - length(old.body);
        END;
        CREATE TRIGGER outbox_open_update_old AFTER UPDATE ON outbox
         WHEN old.status IN ('pending', 'held', 'blocked') AND (old.held_by IS NULL OR old.held_by LIKE 'group %') BEGIN
            UPDATE outbox_open SET items = items - 1, bytes = bytes - length(old.payload) - length(old.body);
        END;
        CREATE TRIGGER outbox_open_update_new AFTER UPDATE ON outbox
         WHEN new.status IN ('pending', 'held', 'blocked') AND (new.held_by IS NULL OR new.held_by LIKE 'group %') BEGIN
            UPDATE outbox_open SET items = items + 1, bytes = bytes + length(new.payload) + length(new.body);
        END;",
    )
}

/// One signing key per database, made by the first process that needs it,
/// so that every process serving the database makes and accepts the same
/// links.
fn silence_link_keys(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE link_keys (
            id         INTEGER PRIMARY KEY CHECK (id = 0),
            key        BLOB NOT NULL,
            created_us INTEGER NOT NULL
        );
        ALTER TABLE outbox ADD COLUMN link_id TEXT;
        CREATE INDEX outbox_by_link ON outbox (link_id) WHERE link_id IS NOT NULL;
        ALTER TABLE silences ADD COLUMN from_link TEXT;
        CREATE UNIQUE INDEX silences_by_link ON silences (from_link) WHERE from_link IS NOT NULL;",
    )
}

/// Replicas, the streams they hold and the items they are sending (see
/// `replicas.rs`).
fn replicas_and_claims(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(REPLICAS_AND_CLAIMS)
}

/// Version 7's tables, in the SQL both engines take.
pub(super) const REPLICAS_AND_CLAIMS: &str = "
    CREATE TABLE replicas (
        id         TEXT PRIMARY KEY,
        host       TEXT NOT NULL,
        pid        BIGINT NOT NULL,
        started_us BIGINT NOT NULL,
        seen_us    BIGINT NOT NULL
    );
    CREATE TABLE leases (
        name     TEXT PRIMARY KEY,
        holder   TEXT NOT NULL,
        since_us BIGINT NOT NULL
    );
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claimed_until_us BIGINT;";

fn delivery_attempts(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(&format!(
        "CREATE TABLE outbox_attempts (id INTEGER PRIMARY KEY, {ATTEMPT_COLUMNS}); {ATTEMPTS_INDEX}"
    ))
}

/// Version 8's table but for its id column, in the SQL both engines take.
pub(super) const ATTEMPT_COLUMNS: &str = "
        item    BIGINT NOT NULL,
        at_us   BIGINT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'retry', 'dead')),
        error   TEXT";
pub(super) const ATTEMPTS_INDEX: &str = "CREATE INDEX outbox_attempts_by_item ON outbox_attempts (item, id);";

/// An outbox row as the first releases wrote it: kind and status as text,
/// e-mail fields in columns, other actions as JSON with their body inline.
struct LegacyItem {
    kind: String,
    secret: Option<String>,
    sender: Option<String>,
    recipients: String,
    subject: Option<String>,
    link: Option<String>,
    send_interval: i64,
    payload: Vec<u8>,
}

impl LegacyItem {
    /// What a row that cannot be converted keeps (its body apart): the
    /// reason and every column of the first releases, so nothing of it is
    /// lost.
    fn unconverted(&self, reason: &str) -> Value {
        serde_json::json!({
            "reason": reason,
            "legacy": {
                "kind": self.kind,
                "secret": self.secret,
                "sender": self.sender,
                "recipients": self.recipients,
                "subject": self.subject,
                "link": self.link,
                "send_interval": self.send_interval,
            },
        })
    }

    fn convert(&self) -> Result<(Payload, Vec<u8>), String> {
        let json = || -> Result<Value, String> {
            serde_json::from_slice(&self.payload).map_err(|e| format!("its {} action is not JSON: {e}", self.kind))
        };
        let text = |v: &Value, key: &str| -> Result<String, String> {
            v[key]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("its {} has no {key}", self.kind))
        };
        let optional = |v: &Value, key: &str| v[key].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let object = |v: &Value, key: &str| -> Result<serde_json::Map<String, Value>, String> {
            v[key]
                .as_object()
                .cloned()
                .ok_or_else(|| format!("its {} has no {key} object", self.kind))
        };
        let strings = |v: &Value, key: &str| -> Result<Vec<String>, String> {
            serde_json::from_value(v[key].clone()).map_err(|e| format!("its {key}: {e}"))
        };
        Ok(match self.kind.as_str() {
            "email" => (
                Payload::Email(EmailPayload {
                    secret: self.secret.clone(),
                    sender: self.sender.clone(),
                    recipients: serde_json::from_str(&self.recipients).map_err(|e| format!("its recipients: {e}"))?,
                    subject: self.subject.clone().unwrap_or_default(),
                    link: self.link.clone(),
                    send_interval_s: self.send_interval,
                }),
                self.payload.clone(),
            ),
            "webhook" => {
                let v = json()?;
                let body = match (v["body"].as_str(), v["body_base64"].as_str()) {
                    (Some(text), _) => text.as_bytes().to_vec(),
                    (None, Some(encoded)) => {
                        use base64::Engine as _;
                        base64::engine::general_purpose::STANDARD
                            .decode(encoded)
                            .map_err(|e| format!("its body_base64: {e}"))?
                    }
                    (None, None) => Vec::new(),
                };
                let headers: Vec<(String, String)> =
                    serde_json::from_value(v["headers"].clone()).map_err(|e| format!("its headers: {e}"))?;
                (
                    Payload::Webhook(WebhookPayload {
                        url: text(&v, "url")?,
                        headers,
                        may_reach_private: true,
                    }),
                    body,
                )
            }
            "user-message" => {
                let v = json()?;
                let payload = UserMessagePayload {
                    org_id: text(&v, "org_id")?,
                    user: text(&v, "user")?,
                    message: object(&v, "message")?,
                };
                (Payload::UserMessage(payload), Vec::new())
            }
            "label" => {
                let v = json()?;
                let op = match v["op"].as_str() {
                    Some("set") => LabelOp::Set,
                    Some("remove") => LabelOp::Remove,
                    other => return Err(format!("its label op {other:?} is neither set nor remove")),
                };
                let payload = LabelPayload {
                    org_id: text(&v, "org_id")?,
                    client_id: text(&v, "client_id")?,
                    op,
                    labels: strings(&v, "labels")?,
                };
                (Payload::Label(payload), Vec::new())
            }
            "alert" => {
                let v = json()?;
                let payload = AlertPayload {
                    org_id: text(&v, "org_id")?,
                    name: text(&v, "name")?,
                    timestamp: text(&v, "timestamp")?,
                    event_data: object(&v, "event_data")?,
                    client_id: optional(&v, "client_id"),
                    artifact: optional(&v, "artifact"),
                    artifact_type: optional(&v, "artifact_type"),
                    flow_id: optional(&v, "flow_id"),
                };
                (Payload::Alert(payload), Vec::new())
            }
            other => return Err(format!("kind {other:?} is not one this release knows")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{Kind, Owner, Status, Store};

    const RELEASE_DB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/store/release-0.1.db");

    fn copy_of_release_db(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("state.db");
        std::fs::copy(RELEASE_DB, &path).unwrap();
        path
    }

    /// `tests/data/store/release-0.1.db` was written by the release before
    /// the typed store: every item and every state entry survives the
    /// migration, readable, with its id, kind and status.
    #[test]
    fn a_database_of_the_first_release_opens_migrated_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = copy_of_release_db(dir.path());
        let before: BTreeMap<i64, (String, String)> = {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let mut stmt = conn.prepare("SELECT id, kind, status FROM outbox").unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(before.len() > 40, "the fixture holds {} items", before.len());

        let store = Store::open(&path).unwrap();
        let items = store.list(None, 10_000).unwrap();
        let after: BTreeMap<i64, (String, String)> = items
            .iter()
            .map(|row| {
                let item = row.as_ref().unwrap_or_else(|e| panic!("{e}"));
                (item.id, (item.kind().to_string(), item.status.to_string()))
            })
            .collect();
        assert_eq!(after, before);
        let kinds: std::collections::BTreeSet<Kind> = items.iter().flatten().map(|i| i.kind()).collect();
        assert_eq!(kinds.len(), 4, "e-mails, webhooks, user messages and labels: {kinds:?}");
        let statuses: std::collections::BTreeSet<Status> = items.iter().flatten().map(|i| i.status).collect();
        assert_eq!(statuses.len(), 6, "{statuses:?}");

        let email = items
            .iter()
            .flatten()
            .find(|i| i.kind() == Kind::Email && i.status == Status::Sent)
            .unwrap();
        assert!(email.body.starts_with(b"From: ") || email.body.windows(9).any(|w| w == b"Subject: "));
        let webhook = items.iter().flatten().find(|i| i.kind() == Kind::Webhook).unwrap();
        assert!(
            std::str::from_utf8(&webhook.body).unwrap().starts_with('{'),
            "the body is the JSON posted"
        );

        let module = Owner::Module("Server.Slack.Clients.Online".into());
        assert!(store.state_get(&module, "awaiting-label-removal", 0).unwrap().is_some());
        let dedup: i64 = store
            .read(|c| {
                c.query_one(
                    "SELECT count(*) FROM state WHERE owner = 'host:alert-dedup'",
                    &[],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(dedup, 2);

        // The counters the quotas and the outbox bound read start from
        // what the old database holds.
        let stored: i64 = store
            .read(|c| {
                c.query_one(
                    "SELECT sum(length(CAST(key AS BLOB)) + length(value)) FROM state WHERE owner = ?1",
                    super::super::db::args![module.as_db()],
                    |r| r.get(0),
                )
            })
            .unwrap();
        assert_eq!(store.state_bytes(&module).unwrap(), stored as u64);
        let open = items
            .iter()
            .flatten()
            .filter(|i| Status::OPEN.contains(&i.status))
            .count();
        assert!(open > 0);
        assert_eq!(store.open_outbox().unwrap().items, open as u64);
    }

    #[test]
    fn a_migrated_database_hands_out_new_ids_above_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&copy_of_release_db(dir.path())).unwrap();
        let highest = store.list(None, 1).unwrap()[0].as_ref().unwrap().id;
        assert!(commit_an_email(&store) > highest);
    }

    /// Commits one e-mail, as an input would; returns its id.
    fn commit_an_email(store: &Store) -> i64 {
        let items = [super::super::outbox::tests::email("alerts", "a@example.org", "A", -1)];
        let changes = super::super::Changes {
            state: &[],
            items: &items,
            retries: &[],
            fences: &[],
        };
        store
            .commit(&changes, 1, 2, &super::super::Throttle::default())
            .unwrap()[0]
            .id
    }

    /// A database of the first releases, its outbox made by `rows`.
    fn first_release_db(dir: &std::path::Path, rows: &str) -> std::path::PathBuf {
        let path = dir.join("state.db");
        let mut conn = rusqlite::Connection::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        super::first_tables(&tx).unwrap();
        tx.execute_batch(rows).unwrap();
        tx.commit().unwrap();
        path
    }

    const OLD_ROW: &str = "INSERT INTO outbox (created_us, module, kind, recipients, subject, payload, status,
                           next_attempt_us, deadline_us, updated_us)
                           VALUES (1, 'alerts', 'email', '[\"a@example.org\"]', 'S', X'00', 'dead', 1, 2, 3);";

    /// Purged to the last item: the new table still hands out ids above
    /// the old ones (digests name the items they replaced).
    #[test]
    fn ids_are_not_reused_after_migrating_an_emptied_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let rows = format!("{OLD_ROW}{OLD_ROW}{OLD_ROW}DELETE FROM outbox;");
        let store = Store::open(&first_release_db(dir.path(), &rows)).unwrap();
        assert_eq!(commit_an_email(&store), 4);
    }

    /// A row the first releases wrote and this one cannot convert keeps its
    /// id, status and every column, and is reported, not dropped.
    #[test]
    fn a_row_that_cannot_be_converted_is_kept_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let broken = OLD_ROW.replace(r#"["a@example.org"]"#, "not a list");
        let path = first_release_db(dir.path(), &format!("{OLD_ROW}{broken}"));
        let store = Store::open(&path).unwrap();
        let rows = store.list(None, 10).unwrap();
        assert!(rows[1].is_ok());
        let unreadable = rows[0].as_ref().unwrap_err();
        assert_eq!(unreadable.id, 2);
        assert!(unreadable.reason.contains("its recipients"), "{unreadable}");
        let kept: String = store
            .read(|c| c.query_one("SELECT payload FROM outbox WHERE id = 2", &[], |r| r.get(0)))
            .unwrap();
        let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(kept["legacy"]["subject"], "S");
        assert_eq!(store.counts().unwrap().by_status[&Status::Dead], 2);
    }

    #[test]
    fn a_database_of_a_later_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        drop(Store::open(&path).unwrap());
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", super::SCHEMA_VERSION + 1)
            .unwrap();
        let error = Store::open(&path).unwrap_err().to_string();
        assert!(error.contains("written by a later release"), "{error}");
    }
}
