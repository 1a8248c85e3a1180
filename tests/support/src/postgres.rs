//! A real PostgreSQL server for the tests: Debian's server binaries
//! (scripts/setup installs them), a cluster made by `initdb` in a temporary
//! directory and run in the foreground on a free loopback port. One server
//! per test process, started on first use; each test gets a database of
//! its own ([`PostgresServer::database`]).
//!
//! `initdb` and `postgres` refuse to run as root: when the tests do, the
//! cluster runs as Debian's `postgres` user. The server is started behind
//! a shell that waits on a pipe from this process: when the test process
//! ends, however it ends, the pipe closes and the shell stops the server
//! and removes its directory.

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The environment variable that runs a test suite's stores on
/// PostgreSQL (`postgres`) instead of SQLite (unset).
pub const TEST_STORE: &str = "VELONOTIFY_TEST_STORE";

/// Whether this test run keeps its stores on PostgreSQL.
pub fn testing_on_postgres() -> bool {
    std::env::var(TEST_STORE).is_ok_and(|v| v == "postgres")
}

/// The environment a `velonotify` process of the configuration in
/// `config_dir` runs with: on PostgreSQL, the URL of that directory's
/// database (made on first use, so a restarted service and the commands
/// run against its configuration find the same store).
pub fn store_env(config_dir: &Path) -> Vec<(&'static str, String)> {
    if !testing_on_postgres() {
        return Vec::new();
    }
    static DATABASES: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let dir = config_dir.canonicalize().unwrap_or_else(|_| config_dir.to_path_buf());
    let mut databases = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    let url = match databases.iter().find(|(d, _)| *d == dir) {
        Some((_, url)) => url.clone(),
        None => {
            let url = server().database();
            databases.push((dir, url.clone()));
            url
        }
    };
    vec![("VELONOTIFY_STORE_URL", url)]
}

/// Runs `sql` in the database of the configuration in `config_dir` (see
/// [`store_env`]), as the superuser.
pub fn sql_in_store_of(config_dir: &Path, sql: &str) -> String {
    let (_, url) = store_env(config_dir).pop().expect("the tests run on PostgreSQL");
    let database = url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default();
    server().sql_in(database, sql)
}

/// A running server (stopped when the test process ends).
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    /// The watchdog shell's stdin: closing it stops the server.
    watchdog: Mutex<Option<ChildStdin>>,
    shell: Mutex<Child>,
}

/// The test process's server.
pub fn server() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(PostgresServer::start)
}

impl PostgresServer {
    fn start() -> Self {
        let bin = server_binaries();
        let owner = cluster_owner();
        // A port another process takes between our probe and the server's
        // bind makes the server stop: try again, with a cluster of its own
        // (the watchdog removes the directory of one that stopped).
        let mut failures = Vec::new();
        for _ in 0..5 {
            let dir = cluster(&bin, owner);
            let port = free_port();
            let (shell, watchdog) = spawn_watched(&bin, &dir, port, owner);
            let server = Self {
                port,
                bin: bin.clone(),
                watchdog: Mutex::new(Some(watchdog)),
                shell: Mutex::new(shell),
            };
            match server.wait_ready(&dir) {
                Ok(()) => return server,
                Err(why) => failures.push(why),
            }
            server.stop();
        }
        panic!("PostgreSQL did not start: {failures:#?}");
    }

    /// Waits until the server takes connections; why not, if it stopped
    /// (its log's FATAL line) or did not come up in time.
    fn wait_ready(&self, dir: &Path) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let pid_file = std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap_or_default();
            let ready = pid_file.lines().nth(7).is_some_and(|status| status.trim() == "ready");
            if ready && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            if let Some(fatal) = log.lines().find(|l| l.contains("FATAL")) {
                return Err(fatal.to_string());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("not ready within 30 s".into())
    }

    /// Stops the server (the watchdog sees its pipe close) and waits for
    /// the watchdog to have removed the directory.
    fn stop(&self) {
        drop(self.watchdog.lock().unwrap_or_else(|p| p.into_inner()).take());
        let _ = self.shell.lock().unwrap_or_else(|p| p.into_inner()).wait();
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        self.sql(&format!("CREATE DATABASE {name}"));
        format!("postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable", self.port)
    }

    /// Runs `sql` as the superuser (psql), panicking on failure.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_in("postgres", sql)
    }

    /// Runs `sql` in `database` as the superuser.
    pub fn sql_in(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-Atq", "-c", sql])
            .output()
            .expect("running psql");
        assert!(
            output.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A new cluster (`initdb`) in a temporary directory owned by `owner`;
/// the directory (its data in `data`).
fn cluster(bin: &Path, owner: Option<(u32, u32)>) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("velonotify-pg")
        .tempdir()
        .expect("a temporary directory for PostgreSQL")
        .keep();
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("handing the directory to postgres");
    }
    let initdb = as_owner(Command::new(bin.join("initdb")), owner)
        .args([
            "-D",
            &dir.join("data").display().to_string(),
            "-U",
            "postgres",
            "--auth=trust",
        ])
        .args(["--encoding=UTF8", "--locale=C", "--no-sync"])
        .output()
        .expect("running initdb (scripts/setup installs Debian's postgresql)");
    assert!(
        initdb.status.success(),
        "initdb failed:\n{}",
        String::from_utf8_lossy(&initdb.stderr)
    );
    dir
}

/// The newest server installed (`/usr/lib/postgresql/<version>/bin`).
fn server_binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, bin)| bin)
        .expect("no PostgreSQL server in /usr/lib/postgresql (scripts/setup installs Debian's postgresql)")
}

/// Who runs the cluster: Debian's `postgres` user when we are root.
fn cluster_owner() -> Option<(u32, u32)> {
    let id = |flag: &str, user: &str| -> Option<u32> {
        let output = Command::new("id").args([flag, user]).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    let me = Command::new("id").arg("-u").output().expect("running id");
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    Some((
        id("-u", "postgres").expect("a postgres user (Debian's postgresql package makes it)"),
        id("-g", "postgres").expect("a postgres group"),
    ))
}

fn as_owner(mut command: Command, owner: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = owner {
        command.uid(uid).gid(gid);
    }
    command
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// Starts the server behind a watchdog shell; returns the shell and its
/// stdin. Fast settings for tests: no fsync (a killed velonotify is what
/// the tests crash, not the machine), commits still synchronous.
fn spawn_watched(bin: &Path, dir: &Path, port: u16, owner: Option<(u32, u32)>) -> (Child, ChildStdin) {
    let script = r#"
        "$@" >"$LOG" 2>&1 &
        server=$!
        read -r _
        kill -INT "$server" 2>/dev/null
        wait "$server"
        rm -rf "$DIR"
    "#;
    let mut shell = as_owner(Command::new("sh"), owner);
    shell
        .args(["-c", script, "sh"])
        .arg(bin.join("postgres"))
        .args(["-D", &dir.join("data").display().to_string(), "-p", &port.to_string()])
        .args(["-k", &dir.display().to_string()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
        .env("LOG", dir.join("server.log"))
        .env("DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = shell.spawn().expect("starting postgres");
    let stdin = child.stdin.take().unwrap();
    (child, stdin)
}
