//! velonotify: runs sandboxed rule modules (WebAssembly components of the
//! `velociraptor:notify` world) on Velociraptor events, and delivers what
//! they produce.
//!
//! The rooms follow an input's path, source -> pipeline -> store/outbox ->
//! delivery; each imports only rooms listed above it here (a test pins it):
//!
//! - [`clock`], [`failpoints`], [`files`], [`metrics`], [`http`]: what every
//!   room uses.
//! - [`noise`]: noise control: labels of notifications, matchers and
//!   silences (the rules; the store keeps them, the outbox applies them).
//! - [`store`]: the typed store (SQLite, or PostgreSQL shared by replicas):
//!   schema and migrations, one transaction per input, the outbox, the
//!   replicas' leases and claims.
//! - [`contract`]: the WIT world as Rust types and host traits.
//! - [`velociraptor`]: Velociraptor's gRPC API: client, VQL.
//! - [`capabilities`]: what a module may use of the host (clock, log,
//!   lookups, state, outbound actions), each with its interface,
//!   configuration and per-module policy.
//! - [`engine`]: wasmtime, the component cache, module sandboxes and calls.
//! - [`sources`]: where inputs come from (JSON lines, HTTP ingest, the
//!   Velociraptor event stream).
//! - [`pipeline`]: routing inputs to modules, the alert queue, hot swap,
//!   and the outbox the pipeline ends in.
//! - [`delivery`]: SMTP, webhooks and Velociraptor actions from the outbox,
//!   with retries and digests.
//! - [`operator`]: what operators use of a running service over HTTP (the
//!   silences API).
//! - [`cli`]: the configuration, the wiring of a running host and the
//!   `velonotify` command.

pub mod clock;
pub mod failpoints;
pub mod files;
pub mod http;
pub mod metrics;

pub mod noise;

pub mod store;

pub mod contract;

pub mod velociraptor;

pub mod capabilities;

pub mod engine;

pub mod sources;

pub mod pipeline;

pub mod delivery;

pub mod operator;

pub mod cli;

/// The rooms, lowest first: each may import only the rooms before it
/// (and itself), so data flows one way and no two rooms import each other.
#[cfg(test)]
const ROOMS: [&str; 16] = [
    "clock",
    "failpoints",
    "files",
    "metrics",
    "http",
    "noise",
    "store",
    "contract",
    "velociraptor",
    "capabilities",
    "engine",
    "sources",
    "pipeline",
    "delivery",
    "operator",
    "cli",
];

#[cfg(test)]
mod architecture {
    use std::path::{Path, PathBuf};

    use super::ROOMS;

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(sources(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
        files
    }

    /// The rooms a file's code (not its comments) names as `crate::<room>`.
    fn rooms_named(code: &str) -> Vec<String> {
        let mut named = Vec::new();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                // `crate::crash_point!` is the failpoints room's macro.
                let room = if name == "crash_point" {
                    "failpoints".to_string()
                } else {
                    name
                };
                if !room.is_empty() && !named.contains(&room) {
                    named.push(room);
                }
            }
        }
        named
    }

    #[test]
    fn each_room_imports_only_the_rooms_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for file in sources(&src) {
            let relative = file.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
            let room = first.trim_end_matches(".rs");
            if room == "lib" || room == "main" {
                continue;
            }
            let position = ROOMS
                .iter()
                .position(|r| *r == room)
                .unwrap_or_else(|| panic!("{} is in no room: add it to ROOMS", relative.display()));
            for named in rooms_named(&std::fs::read_to_string(&file).unwrap()) {
                match ROOMS.iter().position(|r| *r == named) {
                    Some(other) if other <= position => {}
                    Some(_) => wrong.push(format!("{} imports {named}, a room above {room}", relative.display())),
                    None => wrong.push(format!("{} names crate::{named}, which is no room", relative.display())),
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_check_sees_an_import_from_a_room_above() {
        assert_eq!(
            rooms_named("use crate::pipeline::Pipeline;\n// crate::cli"),
            ["pipeline"]
        );
        assert_eq!(rooms_named("crate::crash_point!(\"x\");"), ["failpoints"]);
    }
}
