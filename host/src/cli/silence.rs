//! `velonotify silence`: silences in the configuration's state database,
//! as `amtool silence` keeps them in Alertmanager (README, "Silences").

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};

use super::config::Config;
use crate::clock::Clock;
use crate::noise::{Matchers, NewSilence, Silence};
use crate::store::{Expired, Store};

#[derive(Debug, Args)]
pub struct SilenceArgs {
    /// The configuration file (TOML): silences are kept in its state
    /// database, where `velonotify run` reads them.
    #[arg(short, long, value_name = "CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    action: SilenceAction,
}

#[derive(Debug, Subcommand)]
enum SilenceAction {
    /// Silence the notifications whose labels match every matcher, e.g.
    /// `alertname="Honeyfile accessed" client_id=~"C\.1.*"`. Prints its id.
    Add {
        /// Matchers in Alertmanager's syntax, each argument a matcher or a
        /// `{...}` list; all must match. A first argument without an
        /// operator is the alertname (as amtool reads it).
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// When it starts (RFC 3339, e.g. 2026-11-30T21:00:00Z; default now).
        #[arg(long, value_name = "TIME")]
        start: Option<String>,
        /// How long it lasts (e.g. 2h, 90m, 1h30m).
        #[arg(
            long,
            value_name = "DURATION",
            conflicts_with = "until",
            required_unless_present = "until"
        )]
        duration: Option<String>,
        /// When it ends (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why (an incident, a ticket).
        #[arg(long)]
        comment: String,
        /// Who made it.
        #[arg(long)]
        author: String,
    },
    /// List the silences in force (active or pending), ending last first.
    List {
        /// Those that ended instead.
        #[arg(long)]
        expired: bool,
    },
    /// End silences now.
    Expire {
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// List the silences in force that have each of these matchers among
    /// theirs (the same name, operator and value, as amtool's query).
    Query {
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// Those that ended instead.
        #[arg(long)]
        expired: bool,
    },
}

pub fn run(args: SilenceArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let store = Store::open_at(&config.store_location()?)?;
    let now_us = Clock::System.now_us();
    match args.action {
        SilenceAction::Add {
            matchers,
            start,
            duration,
            until,
            comment,
            author,
        } => {
            let matchers = cli_matchers(&matchers)?;
            let starts_us = match start {
                Some(text) => time_us(&text).context("--start")?,
                None => now_us,
            };
            let ends_us = match (duration, until) {
                (Some(text), _) => starts_us.saturating_add(duration_us(&text).context("--duration")?),
                (None, Some(text)) => time_us(&text).context("--until")?,
                (None, None) => bail!("give --duration or --until"),
            };
            let new = NewSilence {
                matchers,
                starts_us,
                ends_us,
                created_by: author,
                comment,
            };
            match store.add_silence(&new, now_us)? {
                Ok(silence) => println!("{}", silence.id),
                Err(problem) => bail!("silence refused: {problem}"),
            }
        }
        SilenceAction::List { expired } => print(&store, None, expired, now_us)?,
        SilenceAction::Query { matchers, expired } => {
            let filter = cli_matchers(&matchers)?;
            print(&store, Some(&filter), expired, now_us)?;
        }
        SilenceAction::Expire { ids } => {
            let mut unknown = Vec::new();
            for id in ids {
                match store.expire_silence(&id, now_us)? {
                    Ok(Expired::Now(_)) => println!("{id} expired"),
                    Ok(Expired::Already(_)) => println!("{id} had expired already"),
                    Ok(Expired::Unknown) => unknown.push(id),
                    Err(unreadable) => bail!("{unreadable}"),
                }
            }
            if !unknown.is_empty() {
                bail!("no silence with id {}", unknown.join(", "));
            }
        }
    }
    Ok(())
}

/// The matchers of the command line: a first argument that names no
/// operator is the alertname (`silence add Honeyfile client_id=C.1`).
fn cli_matchers(args: &[String]) -> Result<Matchers, crate::noise::MatcherError> {
    match args.split_first() {
        Some((first, rest)) if !first.contains(['=', '~']) && Matchers::parse(first).is_err() => {
            let mut all = vec![format!("alertname={}", crate::noise::matchers::quoted(first))];
            all.extend(rest.iter().cloned());
            Matchers::parse_all(&all)
        }
        _ => Matchers::parse_all(args),
    }
}

fn print(store: &Store, filter: Option<&Matchers>, expired: bool, now_us: u64) -> anyhow::Result<()> {
    println!(
        "ID                                    STATE    STARTS                ENDS                  CREATED BY    COMMENT / MATCHERS"
    );
    for row in store.silences()? {
        let silence = match row {
            Ok(silence) => silence,
            Err(unreadable) => {
                println!("{unreadable}");
                continue;
            }
        };
        let state = silence.state(now_us);
        if expired != (state == crate::noise::SilenceState::Expired)
            || filter.is_some_and(|f| !silence.matchers.includes(f))
        {
            continue;
        }
        print_silence(&silence, state.as_str());
    }
    Ok(())
}

fn print_silence(silence: &Silence, state: &str) {
    println!(
        "{:<36}  {:<7}  {:<20}  {:<20}  {:<12}  {}",
        silence.id,
        state,
        rfc3339(silence.starts_us),
        rfc3339(silence.ends_us),
        super::one_line(&silence.created_by),
        super::one_line(&silence.comment),
    );
    println!("{:<36}  {}", "", super::one_line(&silence.matchers.to_string()));
}

/// A time the command line gives: RFC 3339 (`2026-11-30T21:00:00Z`).
pub fn time_us(text: &str) -> anyhow::Result<u64> {
    crate::clock::parse_rfc3339(text).map_err(anyhow::Error::msg)
}

/// A duration the command line gives: `2h`, `90m`, `1h30m`, `1d`.
pub fn duration_us(text: &str) -> anyhow::Result<u64> {
    let duration: jiff::SignedDuration = text
        .parse()
        .or_else(|_| {
            text.parse::<jiff::Span>()
                .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
        })
        .with_context(|| format!("{text:?} is not a duration such as 2h, 90m or 1h30m"))?;
    if duration.is_negative() || duration.is_zero() {
        bail!("{text:?}: a duration must be positive");
    }
    u64::try_from(duration.as_micros()).with_context(|| format!("{text:?} is too long"))
}

/// To the second, as a listing shows times.
fn rfc3339(us: u64) -> String {
    crate::clock::rfc3339(us - us % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_argument_without_an_operator_is_the_alertname() {
        let read = |args: &[&str]| cli_matchers(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let matchers = read(&["Honeyfile accessed", "client_id=C.1"]).unwrap();
        assert_eq!(
            matchers.to_string(),
            "{alertname=\"Honeyfile accessed\", client_id=\"C.1\"}"
        );
        assert!(read(&["client_id=C.1", "Honeyfile"]).is_err(), "only the first");
    }

    #[test]
    fn times_and_durations_read_as_an_operator_writes_them() {
        assert_eq!(time_us("1970-01-01T00:00:10Z").unwrap(), 10_000_000);
        assert!(
            time_us("tomorrow")
                .unwrap_err()
                .to_string()
                .contains("2026-11-30T21:00:00Z")
        );
        assert_eq!(duration_us("2h").unwrap(), 7_200_000_000);
        assert_eq!(duration_us("1h30m").unwrap(), 5_400_000_000);
        assert_eq!(duration_us("1d").unwrap(), 86_400_000_000);
        assert!(duration_us("0s").is_err());
        assert!(duration_us("soon").is_err());
        assert_eq!(rfc3339(10_000_000), "1970-01-01T00:00:10Z");
    }
}
