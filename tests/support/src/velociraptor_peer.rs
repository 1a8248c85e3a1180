//! A stand-in Velociraptor server for the API tests: a real gRPC server
//! (tonic, mutual TLS with certificates made here) implementing `proto.API`
//! `Query` the way Velociraptor does for the VQL velonotify sends: event
//! queues through `watch_monitoring()` (live rows only, `_ts` in seconds),
//! stored server event queues read back with `source()` (`_ts` in
//! milliseconds), lookups answered from a world file, and actions recorded.
//! It keeps every request, so tests can check that no event data ever
//! reached a VQL text.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};
use velonotify::capabilities::lookups::{LookupSource, World};
use velonotify::velociraptor::vql;
use velonotify_core::velociraptor::activity;

use self::proto::api_server::{Api, ApiServer};
use self::proto::{VfsFileBuffer, VqlCollectorArgs, VqlResponse};

/// The server side of `host/proto/velociraptor_api.proto`, generated for
/// this stand-in only (the host builds the client).
#[allow(missing_debug_implementations, unused_qualifications, clippy::all)]
pub mod proto {
    tonic::include_proto!("proto");
}

/// A certificate authority and what it signed, as Velociraptor sets them up.
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_pem: String,
    pub server_cert: String,
    pub server_key: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").finish_non_exhaustive()
    }
}

/// Which client certificate an api_client file carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    /// Signed by the server's CA, valid now.
    Good,
    /// Signed by another CA.
    ForeignCa,
    /// Signed by the server's CA, expired.
    Expired,
    /// A whole api_client file made for another server: its CA and a
    /// client certificate that CA signed.
    OtherServer,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl TestPki {
    pub fn generate() -> Self {
        let ca = new_ca("Velociraptor CA");
        let mut params = CertificateParams::new(vec!["VelociraptorServer".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "VelociraptorServer");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let server = params.signed_by(&key, &ca).unwrap();
        Self {
            ca_pem: ca.pem(),
            server_cert: server.pem(),
            server_key: key.serialize_pem(),
            ca,
        }
    }

    /// A client certificate for API user `name`, its key, and the CA the
    /// file names.
    fn client(&self, name: &str, which: ClientCert) -> (String, String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if which == ClientCert::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        match which {
            ClientCert::ForeignCa => {
                let cert = params.signed_by(&key, &new_ca("Some other CA")).unwrap();
                (cert.pem(), key.serialize_pem(), self.ca_pem.clone())
            }
            ClientCert::OtherServer => {
                let other = new_ca("Another server's CA");
                let cert = params.signed_by(&key, &other).unwrap();
                (cert.pem(), key.serialize_pem(), other.pem())
            }
            _ => {
                let cert = params.signed_by(&key, &self.ca).unwrap();
                (cert.pem(), key.serialize_pem(), self.ca_pem.clone())
            }
        }
    }

    /// Writes an api_client YAML as `velociraptor config api_client` does.
    pub fn api_client_file(&self, path: &Path, port: u16, which: ClientCert) -> PathBuf {
        let (cert, key, ca) = self.client("velonotify", which);
        let block = |pem: &str| pem.lines().map(|l| format!("  {l}\n")).collect::<String>();
        let text = format!(
            "ca_certificate: |\n{}client_cert: |\n{}client_private_key: |\n{}api_connection_string: 127.0.0.1:{port}\nname: velonotify\n",
            block(&ca),
            block(&cert),
            block(&key)
        );
        std::fs::write(path, text).unwrap();
        // As `velociraptor config api_client` leaves it: velonotify refuses
        // a key others may read.
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        path.to_path_buf()
    }
}

/// The host's clock, in microseconds.
fn host_now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// What the stand-in shares between its calls and the test.
struct Shared {
    /// What lookups answer from; replaced whole by [`VelociraptorPeer::set_world`].
    world: RwLock<Arc<World>>,
    /// Every row written to a stored (server event) queue.
    stored: Mutex<Vec<(String, Value)>>,
    live: broadcast::Sender<(String, Value)>,
    /// Bumped to cut every open stream.
    generation: watch::Sender<u64>,
    /// Bumped to drop every watcher and leave its stream open and silent.
    stalls: watch::Sender<u64>,
    requests: Mutex<Vec<Value>>,
    actions: Mutex<Vec<Value>>,
    /// Every string of every row published: event data, which must never
    /// appear in a VQL text.
    event_strings: Mutex<std::collections::HashSet<String>>,
    /// Requests whose VQL held event data.
    violations: Mutex<Vec<String>>,
    /// How long lookups take to answer (a slow or loaded server).
    lookup_delay: Mutex<Duration>,
    /// The server's clock minus the host's, in seconds.
    clock_offset_s: std::sync::atomic::AtomicI64,
    /// Users deleted from the server since it started.
    removed_users: Mutex<std::collections::HashSet<String>>,
    /// Plugins and functions the API user may not use.
    denied: Mutex<std::collections::HashSet<String>>,
    /// How long after an event stream starts its watchers are in place.
    watch_delay: Mutex<Duration>,
    /// How long a read-back query waits before it reads the queue.
    backfill_delay: Mutex<Duration>,
}

/// A running stand-in server; stops when dropped.
pub struct VelociraptorPeer {
    pub port: u16,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for VelociraptorPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VelociraptorPeer").field("port", &self.port).finish()
    }
}

impl VelociraptorPeer {
    /// Serves on a free port with the server certificate of `pki`,
    /// answering lookups from `world` (a world file's JSON).
    pub fn start(pki: &TestPki, world: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Shared {
            world: RwLock::new(Arc::new(World::parse(world).expect("a valid world"))),
            stored: Mutex::default(),
            live: broadcast::channel(100_000).0,
            generation: watch::channel(0).0,
            stalls: watch::channel(0).0,
            requests: Mutex::default(),
            actions: Mutex::default(),
            event_strings: Mutex::default(),
            violations: Mutex::default(),
            lookup_delay: Mutex::default(),
            clock_offset_s: std::sync::atomic::AtomicI64::new(0),
            removed_users: Mutex::default(),
            denied: Mutex::default(),
            watch_delay: Mutex::default(),
            backfill_delay: Mutex::default(),
        });
        // The world's clients and users are data too.
        let world_value: Value = serde_json::from_str(world).expect("world JSON");
        for part in ["clients", "users"] {
            strings_of(&world_value[part], &mut shared.event_strings.lock().unwrap());
        }
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&pki.server_cert, &pki.server_key))
            .client_ca_root(Certificate::from_pem(&pki.ca_pem));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let service = ApiServer::new(PeerService { shared: shared.clone() });
        runtime.spawn(async move {
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
        Self {
            port: address.port(),
            shared,
            _runtime: runtime,
        }
    }

    /// Answers lookups from `world` (a world file's JSON) from now on, as
    /// if the server's clients, flows, hunts and logs had become so.
    pub fn set_world(&self, world: &str) {
        let parsed = World::parse(world).expect("a valid world");
        let value: Value = serde_json::from_str(world).expect("world JSON");
        for part in ["clients", "users"] {
            strings_of(&value[part], &mut self.shared.event_strings.lock().unwrap());
        }
        *self.shared.world.write().unwrap() = Arc::new(parsed);
    }

    /// Writes `row` to `queue` as the server would: `_ts` (seconds) and
    /// `_Source` added, kept if the queue is stored, shown to watchers.
    pub fn publish(&self, queue: &str, mut row: Value) {
        row["_ts"] = json!(self.shared.now_s());
        row["_Source"] = json!(queue);
        self.shared.publish(queue, row);
    }

    /// Sets the server's clock `offset_s` seconds off the host's (negative:
    /// behind): its rows, heartbeats and answers carry its time.
    pub fn set_clock_offset(&self, offset_s: i64) {
        self.shared
            .clock_offset_s
            .store(offset_s, std::sync::atomic::Ordering::Relaxed);
    }

    /// Makes every lookup (client, flow, hunt, ... queries) take `delay`
    /// before it answers, as a loaded server does.
    pub fn delay_lookups(&self, delay: Duration) {
        *self.shared.lookup_delay.lock().unwrap() = delay;
    }

    /// Deletes the user `name`, as an administrator would: `gui_users()`
    /// no longer lists it.
    pub fn remove_user(&self, name: &str) {
        self.shared.removed_users.lock().unwrap().insert(name.to_string());
    }

    /// Takes from the API user the permission `plugin` (`clients`, `label`,
    /// `user_message`, `send_event`, ...) needs: the server then answers as
    /// its ACL checks do, with a plain log line and no row (a plugin) or a
    /// NULL (a function).
    pub fn deny(&self, plugin: &str) {
        self.shared.denied.lock().unwrap().insert(plugin.to_string());
    }

    /// Makes a read-back (`source()`) query wait `delay` before it reads
    /// the queue: rows written meanwhile are in its answer.
    pub fn delay_backfill_reads(&self, delay: Duration) {
        *self.shared.backfill_delay.lock().unwrap() = delay;
    }

    /// Makes each event stream start watching its queues `delay` after it
    /// says the query started, as `watch_monitoring()` registers its
    /// watcher once its goroutine runs: rows written in between are stored
    /// but not streamed.
    pub fn delay_watchers(&self, delay: Duration) {
        *self.shared.watch_delay.lock().unwrap() = delay;
    }

    /// Gives back every permission [`VelociraptorPeer::deny`] took.
    pub fn allow_all(&self) {
        self.shared.denied.lock().unwrap().clear();
    }

    /// As [`VelociraptorPeer::publish`], written at second `ts_s` (a burst
    /// of rows written in one second).
    pub fn publish_at(&self, queue: &str, mut row: Value, ts_s: u64) {
        row["_ts"] = json!(ts_s);
        row["_Source"] = json!(queue);
        self.shared.publish(queue, row);
    }

    /// Cuts every open stream, as a server restart or a network failure would.
    pub fn disconnect_all(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Drops every watcher as a restarting frontend behind a proxy does:
    /// the streams stay open but carry nothing more, not even heartbeats;
    /// rows written later are stored.
    pub fn drop_watchers(&self) {
        self.shared.stalls.send_modify(|g| *g += 1);
    }

    /// How many event streams are open.
    pub fn watchers(&self) -> usize {
        self.shared.live.receiver_count()
    }

    /// Every request: `{"vql", "env", "org_id"}`.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The VQL texts that held event data (none, if the client is right).
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().unwrap().clone()
    }

    /// Every action executed: `{"user_message"|"label"|"alert": ...}`.
    pub fn actions(&self) -> Vec<Value> {
        self.shared.actions.lock().unwrap().clone()
    }
}

/// The strings of `value` worth looking for (short ones match by chance).
fn strings_of(value: &Value, out: &mut std::collections::HashSet<String>) {
    match value {
        Value::String(s) if s.len() >= 4 => {
            out.insert(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !k.starts_with('_'))
            .for_each(|(_, v)| strings_of(v, out)),
        _ => {}
    }
}

impl Shared {
    /// The world lookups answer from now.
    fn world(&self) -> Arc<World> {
        self.world.read().unwrap().clone()
    }

    /// The server's clock, in microseconds.
    fn now_us(&self) -> u64 {
        let offset = self.clock_offset_s.load(std::sync::atomic::Ordering::Relaxed);
        host_now_us().saturating_add(offset.saturating_mul(1_000_000)).max(0) as u64
    }

    fn now_s(&self) -> u64 {
        self.now_us() / 1_000_000
    }

    /// The answer to a query whose plugin or function the API user may
    /// not use: the rows the server gives (none from a plugin, a NULL
    /// column from a function) and its log line.
    fn denial(&self, vql_text: &str) -> Option<(Vec<Vec<Value>>, String)> {
        let (plugin, permission, column) = match vql_text {
            vql::CLIENT_INFO | vql::CLIENTS_SEARCH | vql::CLIENTS_ALL => ("clients", "READ_RESULTS", None),
            vql::FLOW => ("flows", "READ_RESULTS", None),
            vql::HUNT => ("hunts", "READ_RESULTS", None),
            vql::USERS => ("gui_users", "READ_RESULTS", None),
            vql::LABEL => ("label", "LABEL_CLIENT", Some("Done")),
            vql::USER_MESSAGE => ("user_message", "SERVER_ADMIN", Some("Sent")),
            vql::PUSH_ALERT => ("send_event", "PUBLISH", Some("Sent")),
            _ => return None,
        };
        if !self.denied.lock().unwrap().contains(plugin) {
            return None;
        }
        let rows = match column {
            Some(column) => vec![json!({column: null})],
            None => vec![],
        };
        let line = format!("{plugin}: PermissionDenied: Permission denied: [{permission}]");
        Some((vec![rows], line))
    }

    /// `gui_users()`: the world's users, less those deleted.
    fn users(&self, org: &str) -> Result<Vec<Value>, Status> {
        let removed = self.removed_users.lock().unwrap();
        let users = self.world().users(org).map_err(|e| Status::internal(e.to_string()))?;
        Ok(users
            .into_iter()
            .filter(|u| !u["name"].as_str().is_some_and(|n| removed.contains(n)))
            .collect())
    }

    /// Refuses a VQL text that holds event data, and records it.
    fn check_vql(&self, vql_text: &str) -> Result<(), Status> {
        let strings = self.event_strings.lock().unwrap();
        if let Some(found) = strings.iter().find(|s| vql_text.contains(s.as_str())) {
            self.violations.lock().unwrap().push(vql_text.to_string());
            return Err(Status::invalid_argument(format!(
                "event data {found:?} in the VQL text"
            )));
        }
        Ok(())
    }

    fn publish(&self, queue: &str, row: Value) {
        strings_of(&row, &mut self.event_strings.lock().unwrap());
        let stored = self.world().artifact("root", queue).ok().flatten().is_some_and(|a| {
            a["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("server_event"))
        });
        if stored {
            self.stored.lock().unwrap().push((queue.to_string(), row.clone()));
        }
        let _ = self.live.send((queue.to_string(), row));
    }
}

struct PeerService {
    shared: Arc<Shared>,
}

type ResponseStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<VqlResponse, Status>> + Send>>;

/// Rows of one statement, stamped with the server's time.
fn batch(query_id: u64, rows: &[Value], now_us: u64) -> VqlResponse {
    VqlResponse {
        response: Value::Array(rows.to_vec()).to_string(),
        query_id,
        timestamp: now_us,
        ..Default::default()
    }
}

/// A log line, stamped with the server's time.
fn log(line: &str, now_us: u64) -> VqlResponse {
    VqlResponse {
        log: format!("{line}\n"),
        timestamp: now_us,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Api for PeerService {
    type QueryStream = ResponseStream;

    /// A piece of a file of the world's `files`, as the server's
    /// `VFSGetBuffer` answers: up to `length` bytes from `offset`, none at
    /// the end or for a path it does not hold; `PermissionDenied` without
    /// READ_RESULTS (`deny("vfs_get_buffer")`).
    async fn vfs_get_buffer(&self, request: Request<VfsFileBuffer>) -> Result<Response<VfsFileBuffer>, Status> {
        let asked = request.into_inner();
        self.shared.requests.lock().unwrap().push(json!({
            "rpc": "VFSGetBuffer", "components": asked.components, "offset": asked.offset,
            "length": asked.length, "org_id": asked.org_id,
        }));
        if self.shared.denied.lock().unwrap().contains("vfs_get_buffer") {
            return Err(Status::permission_denied(
                "PermissionDenied: Permission denied: [READ_RESULTS]",
            ));
        }
        if asked.length > 4 << 20 {
            return Err(Status::invalid_argument("length too large"));
        }
        // As the server's file store fails to open a path it lacks.
        let file = self
            .shared
            .world()
            .server_file(&asked.org_id, &asked.components, u64::MAX)
            .map_err(|e| Status::internal(format!("{e:?}")))?
            .map(|f| f.data)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "open /{}: no such file or directory",
                    asked.components.join("/")
                ))
            })?;
        let start = (asked.offset as usize).min(file.len());
        let end = (start + asked.length as usize).min(file.len());
        Ok(Response::new(VfsFileBuffer {
            data: file[start..end].to_vec(),
            ..asked
        }))
    }

    async fn query(&self, request: Request<VqlCollectorArgs>) -> Result<Response<Self::QueryStream>, Status> {
        let args = request.into_inner();
        let vql_text: String = args.query.iter().map(|q| q.vql.as_str()).collect::<Vec<_>>().join("\n");
        let env: HashMap<String, String> = args.env.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
        self.shared
            .requests
            .lock()
            .unwrap()
            .push(json!({"vql": vql_text, "env": env, "org_id": args.org_id}));
        self.shared.check_vql(&vql_text)?;
        let max_row = if args.max_row == 0 { 1 } else { args.max_row as usize };
        let (sender, receiver) = mpsc::channel(1024);
        if vql_text.contains("watch_monitoring(") {
            self.watch(env, sender);
        } else {
            let backfill_delay = *self.shared.backfill_delay.lock().unwrap();
            if vql_text.starts_with(vql::BACKFILL) && !backfill_delay.is_zero() {
                tokio::time::sleep(backfill_delay).await;
            }
            let (answer, logs) = match self.shared.denial(&vql_text) {
                Some((statements, line)) => (Ok(statements), vec![line]),
                None => (answer(&self.shared, &vql_text, &env), Vec::new()),
            };
            let delay = if is_lookup(&vql_text) {
                *self.shared.lookup_delay.lock().unwrap()
            } else {
                Duration::ZERO
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = sender.send(Ok(log("Starting query execution.", shared.now_us()))).await;
                for line in logs {
                    let _ = sender.send(Ok(log(&line, shared.now_us()))).await;
                }
                match answer {
                    Ok(statements) => {
                        // Each statement ships its rows in batches of max_row,
                        // and always a last batch, empty or not.
                        for (i, rows) in statements.iter().enumerate() {
                            for (part, chunk) in rows.chunks(max_row).enumerate() {
                                let _ = sender.send(Ok(batch(i as u64, chunk, shared.now_us()))).await;
                                let line = format!(
                                    "Time 0: velonotify: Sending response part {part} 1.2 kB ({} rows).",
                                    chunk.len()
                                );
                                let _ = sender.send(Ok(log(&line, shared.now_us()))).await;
                            }
                            if rows.is_empty() {
                                let _ = sender.send(Ok(batch(i as u64, &[], shared.now_us()))).await;
                            }
                        }
                    }
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                    }
                }
            });
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

impl PeerService {
    /// An event stream: live rows of the watched queues and heartbeats,
    /// until the client goes or the stream is cut.
    fn watch(&self, env: HashMap<String, String>, sender: mpsc::Sender<Result<VqlResponse, Status>>) {
        let queues: Vec<String> = (0..).map_while(|i| env.get(&format!("Queue{i}")).cloned()).collect();
        let heartbeat: u64 = env.get("HeartbeatSeconds").and_then(|s| s.parse().ok()).unwrap_or(30);
        let mut generation = self.shared.generation.subscribe();
        let mut stalls = self.shared.stalls.subscribe();
        let shared = self.shared.clone();
        let watch_delay = *self.shared.watch_delay.lock().unwrap();
        tokio::spawn(async move {
            if sender
                .send(Ok(log("Starting query execution.", shared.now_us())))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(watch_delay).await;
            let mut live = shared.live.subscribe();
            // watch_monitoring() ends a branch on a name it does not know,
            // saying so only in a plain log line.
            for queue in &queues {
                if shared.world().artifact("root", queue).ok().flatten().is_none() {
                    let line = format!("watch_monitoring: Artifact {queue} not known");
                    if sender.send(Ok(log(&line, shared.now_us()))).await.is_err() {
                        return;
                    }
                }
            }
            let mut beat = tokio::time::interval(Duration::from_secs(heartbeat));
            loop {
                let stalled = tokio::select! {
                    row = live.recv() => {
                        // What arrived meanwhile goes in the same batch.
                        let mut rows = Vec::new();
                        let mut next = row;
                        loop {
                            match next {
                                Ok((queue, row)) if queues.contains(&queue) => rows.push(row),
                                Ok(_) => {}
                                Err(_) => return,
                            }
                            if rows.len() >= 100 { break; }
                            match live.try_recv() {
                                Ok(item) => next = Ok(item),
                                Err(_) => break,
                            }
                        }
                        if !rows.is_empty() && sender.send(Ok(batch(0, &rows, shared.now_us()))).await.is_err() { return; }
                        false
                    },
                    _ = beat.tick() => {
                        let row = json!({"_Source": vql::HEARTBEAT_SOURCE, "_ts": shared.now_s()});
                        if sender.send(Ok(batch(0, &[row], shared.now_us()))).await.is_err() { return; }
                        false
                    }
                    _ = generation.changed() => {
                        let _ = sender.send(Err(Status::unavailable("server going away"))).await;
                        return;
                    }
                    _ = stalls.changed() => true,
                };
                if stalled {
                    drop(live);
                    sender.closed().await;
                    return;
                }
            }
        });
    }
}

/// Whether `vql_text` is one of the lookups a module makes (not an action,
/// not the stream's own queries).
fn is_lookup(vql_text: &str) -> bool {
    ![
        vql::BACKFILL,
        vql::ARTIFACT_TYPES,
        vql::USER_MESSAGE,
        vql::LABEL,
        vql::PUSH_ALERT,
    ]
    .contains(&vql_text)
}

/// The rows of each statement of a finite query.
fn answer(shared: &Shared, vql_text: &str, env: &HashMap<String, String>) -> Result<Vec<Vec<Value>>, Status> {
    let world = shared.world();
    let var = |k: &str| env.get(k).cloned().unwrap_or_default();
    let num = |k: &str| var(k).parse::<u64>().unwrap_or(0);
    let unavailable = |e: velonotify_core::host::LookupError| Status::internal(e.to_string());
    let one = |v: Option<Value>| vec![v.into_iter().collect::<Vec<_>>()];
    let org = "root";
    // A page of a stored queue: `... LIMIT n`.
    let page = vql_text
        .strip_prefix(vql::BACKFILL)
        .and_then(|rest| rest.strip_prefix(" LIMIT "))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(limit) = page {
        let since = num("Since");
        let queue = var("Queue");
        let rows = shared
            .stored
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, r)| *q == queue && r["_ts"].as_u64().unwrap_or(0) >= since)
            .take(limit)
            .map(|(_, r)| {
                // Read back from a timed result set: `_ts` in milliseconds, no `_Source`.
                let mut r = r.clone();
                r["_ts"] = json!(r["_ts"].as_u64().unwrap_or(0) * 1000 + 123);
                r.as_object_mut().unwrap().remove("_Source");
                r
            })
            .collect();
        return Ok(vec![rows]);
    }
    let rows = match vql_text {
        vql::ARTIFACT_TYPES => {
            let names: Vec<String> = serde_json::from_str(&var("Names")).unwrap_or_default();
            vec![
                names
                    .iter()
                    .filter_map(|n| world.artifact(org, n).ok().flatten())
                    .map(|a| json!({"name": a["name"], "type": a["type"]}))
                    .collect(),
            ]
        }
        vql::CLIENT_INFO => one(world.client_info(org, &var("ClientId")).map_err(unavailable)?),
        vql::CLIENT_METADATA => vec![vec![
            json!({"Metadata": world.client_metadata(org, &var("ClientId")).map_err(unavailable)?}),
        ]],
        vql::CLIENTS_SEARCH => {
            // As the server searches labels: a prefix, ignoring case.
            let search = var("Search");
            let prefix = search.strip_prefix("label:").unwrap_or_default().to_lowercase();
            let found = world
                .clients(org, None)
                .map_err(unavailable)?
                .into_iter()
                .filter(|c| {
                    c["labels"].as_array().is_some_and(|labels| {
                        labels
                            .iter()
                            .any(|l| l.as_str().is_some_and(|l| l.to_lowercase().starts_with(&prefix)))
                    })
                })
                .collect();
            vec![found]
        }
        vql::CLIENTS_ALL => vec![world.clients(org, None).map_err(unavailable)?],
        vql::FLOW => one(world.flow(org, &var("ClientId"), &var("FlowId")).map_err(unavailable)?),
        vql::FLOW_RESULTS => {
            let page = world
                .flow_results(
                    org,
                    &var("ClientId"),
                    &var("FlowId"),
                    &var("Source"),
                    Some(num("MaxRows") as u32),
                    None,
                )
                .map_err(unavailable)?;
            vec![page.rows, vec![json!({"Total": page.total_rows})]]
        }
        vql::FLOW_UPLOADS => vec![
            world
                .flow_uploads(org, &var("ClientId"), &var("FlowId"))
                .map_err(unavailable)?,
        ],
        vql::HUNT => one(world.hunt(org, &var("HuntId")).map_err(unavailable)?),
        // As the statements sort and bound: newest hunts, oldest flows.
        vql::RUNNING_HUNTS => vec![activity::newest_hunts(
            world.running_hunts(org, u64::MAX).map_err(unavailable)?,
        )],
        vql::ACTIVE_FLOWS => {
            let flows = world
                .active_flows(org, num("After"), num("Before"))
                .map_err(unavailable)?;
            vec![activity::oldest_flows(flows, num("After"), num("Before"))]
        }
        vql::ARTIFACT => one(world.artifact(org, &var("Name")).map_err(unavailable)?),
        vql::USERS => vec![shared.users(org)?],
        vql::EVENT_TABLES => {
            let tables = world.event_tables(org).map_err(unavailable)?;
            vec![vec![json!({"Server": tables["server"], "Client": tables["client"]})]]
        }
        vql::MONITORING_LOGS => {
            let rows = world
                .monitoring_logs(
                    org,
                    &var("ClientId"),
                    &var("Artifact"),
                    (num("Since") * 1000).saturating_sub(1),
                    num("Until") * 1000 + 999,
                )
                .map_err(unavailable)?;
            vec![rows]
        }
        // The world's rows written by now: the server's log as it stands.
        vql::AUDIT_LOG => vec![
            world
                .audit_log(org, num("Since") * 1_000_000, shared.now_us())
                .map_err(unavailable)?,
        ],
        vql::USER_MESSAGE => {
            // `FROM gui_users() WHERE name = User`: no row for a user the
            // server does not know (user_message() itself would not care).
            let known = shared
                .users(org)?
                .iter()
                .any(|u| u["name"].as_str() == Some(var("User").as_str()));
            if !known {
                return Ok(vec![vec![]]);
            }
            let message: Value = serde_json::from_str(&var("Message")).unwrap_or(Value::Null);
            shared
                .actions
                .lock()
                .unwrap()
                .push(json!({"user_message": {"user": var("User"), "message": message}}));
            vec![vec![json!({"Sent": var("User")})]]
        }
        vql::LABEL => {
            let labels: Vec<String> = serde_json::from_str(&var("Labels")).unwrap_or_default();
            let op = var("Op");
            world.apply_label_change(org, &var("ClientId"), op == "set", &labels);
            shared
                .actions
                .lock()
                .unwrap()
                .push(json!({"label": {"client_id": var("ClientId"), "op": op, "labels": labels}}));
            vec![vec![json!({"Done": {"client_id": var("ClientId")}})]]
        }
        vql::PUSH_ALERT => {
            let mut row: Value = serde_json::from_str(&var("Row")).unwrap_or(Value::Null);
            shared.actions.lock().unwrap().push(json!({"alert": row.clone()}));
            row["_ts"] = json!(shared.now_s());
            row["_Source"] = json!("Server.Internal.Alerts");
            shared.publish("Server.Internal.Alerts", row);
            vec![vec![json!({"Sent": true})]]
        }
        other => {
            return Err(Status::invalid_argument(format!(
                "the stand-in does not know this VQL: {other}"
            )));
        }
    };
    Ok(rows)
}
