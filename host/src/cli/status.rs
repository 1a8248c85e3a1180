//! `velonotify status`: what the replicas sharing a configuration's store
//! are doing: which are alive, who reads which org's stream, what each is
//! sending, and the outbox by status.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use super::config::Config;
use crate::clock::{Clock, rfc3339};
use crate::store::{Lease, REPLICA_TIMEOUT, Replica, StatusCounts, Store};

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The configuration file (TOML) the replicas run with.
    #[arg(short, long, value_name = "CONFIG")]
    config: PathBuf,
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let store = Store::open_at(&config.store_location()?)?;
    let report = Report {
        replicas: store.replicas()?,
        leases: store.leases()?,
        claims: store.claims()?,
        outbox: store.counts()?,
        open: store.open_count()?,
        now_us: Clock::System.now_us(),
    };
    print!("store: {}\n{}", store.location(), report.render());
    Ok(())
}

/// What `status` prints, read in one go.
#[derive(Debug)]
struct Report {
    replicas: Vec<Replica>,
    leases: Vec<Lease>,
    claims: Vec<(String, u64)>,
    outbox: StatusCounts,
    open: u64,
    now_us: u64,
}

impl Report {
    fn alive(&self, replica: &Replica) -> bool {
        self.now_us.saturating_sub(replica.seen_us) < REPLICA_TIMEOUT.as_micros() as u64
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let alive = self.replicas.iter().filter(|r| self.alive(r)).count();
        let _ = writeln!(out, "replicas: {alive} alive");
        for replica in &self.replicas {
            let seen_s = self.now_us.saturating_sub(replica.seen_us) as f64 / 1e6;
            let state = if self.alive(replica) {
                "alive".to_string()
            } else {
                "dead: what it held goes to the others".to_string()
            };
            let sending = self
                .claims
                .iter()
                .find(|(id, _)| *id == replica.id)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(
                out,
                "  {}  host {} pid {}  started {}  seen {seen_s:.1} s ago ({state})  sending {sending}",
                replica.id,
                replica.host,
                replica.pid,
                rfc3339(replica.started_us),
            );
        }
        let _ = writeln!(out, "streams:");
        if self.leases.is_empty() {
            let _ = writeln!(out, "  (none read)");
        }
        for lease in &self.leases {
            let holder_alive = self.replicas.iter().any(|r| r.id == lease.holder && self.alive(r));
            let note = if holder_alive {
                ""
            } else {
                " (holder dead: taken over next)"
            };
            let _ = writeln!(
                out,
                "  {}  held by {} since {}{note}",
                lease.name,
                lease.holder,
                rfc3339(lease.since_us)
            );
        }
        let _ = writeln!(out, "outbox: {} to deliver; {}", self.open, self.outbox);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    #[test]
    fn status_names_the_live_replicas_the_stream_holders_and_the_outbox_depth() {
        let replica = |id: &str, seen_us| Replica {
            id: id.into(),
            host: "h".into(),
            pid: 7,
            started_us: 0,
            seen_us,
        };
        let report = Report {
            replicas: vec![replica("a", 99 * S), replica("b", 90 * S)],
            leases: vec![Lease {
                name: "stream/root".into(),
                holder: "b".into(),
                since_us: 0,
            }],
            claims: vec![("a".into(), 4)],
            outbox: StatusCounts::default(),
            open: 12,
            now_us: 100 * S,
        };
        let text = report.render();
        assert!(text.contains("replicas: 1 alive"), "{text}");
        assert!(
            text.contains("  a  host h pid 7") && text.contains("(alive)  sending 4"),
            "{text}"
        );
        assert!(text.contains("seen 10.0 s ago (dead"), "{text}");
        assert!(
            text.contains("stream/root  held by b since") && text.contains("(holder dead"),
            "{text}"
        );
        assert!(text.contains("outbox: 12 to deliver"), "{text}");
    }
}
