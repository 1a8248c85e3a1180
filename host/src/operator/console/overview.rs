//! `GET /`: what velonotify is doing. The modules (which version, in which
//! language, what they handled, failed and trapped, their memory and call
//! time), the sources (events read and their rate, each Velociraptor
//! stream's position), and the outbox by status.
//!
//! The counters are this process's since it started: on replicas each
//! console shows its own process; the outbox is the shared database's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};

use super::Console;
use super::layout::{page, respond, shown_time, unavailable};
use crate::metrics::ModuleFigures;

/// How often the events counter is sampled, and how many samples the rate
/// is taken over (a minute).
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const SAMPLES_KEPT: usize = 13;

/// `(time µs, events read)`, oldest first.
#[derive(Debug, Default)]
pub(super) struct Samples(Mutex<VecDeque<(u64, u64)>>);

impl Samples {
    fn add(&self, now_us: u64, events: u64) {
        let mut samples = self.0.lock().expect("samples lock");
        if samples.len() == SAMPLES_KEPT {
            samples.pop_front();
        }
        samples.push_back((now_us, events));
    }

    /// Events per second over the samples kept; None before two.
    fn rate(&self) -> Option<f64> {
        let samples = self.0.lock().expect("samples lock");
        let (&(t0, n0), &(t1, n1)) = (samples.front()?, samples.back()?);
        (t1 > t0).then(|| n1.saturating_sub(n0) as f64 * 1e6 / (t1 - t0) as f64)
    }
}

/// Samples the events counter from a thread of its own while the process
/// runs.
pub(super) fn sample_events(console: Arc<Console>) {
    let spawned = std::thread::Builder::new()
        .name("velonotify-console-samples".into())
        .spawn(move || {
            loop {
                console
                    .samples
                    .add(console.clock.now_us(), console.context.metrics.events_in());
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("console: no ingest rate ({e})");
    }
}

pub(super) async fn show(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let session = match console.session(&headers) {
        Ok(session) => session,
        Err(denied) => return denied.response(),
    };
    let counts = match console.store.counts() {
        Ok(counts) => counts,
        Err(e) => return unavailable(&session, &e.to_string()),
    };
    let body = html! {
        (modules(&console))
        (sources(&console))
        section #outbox {
            h2 { "Outbox" }
            table {
                tr { th { "Status" } th { "Items" } }
                @for (status, count) in &counts.by_status {
                    tr .status { td { a href={ "/outbox?status=" (status.as_str()) } { (status.to_string()) } } td .count { (count) } }
                }
                @for (status, count) in &counts.unknown {
                    tr .status { td { (status) " (unknown to this release)" } td .count { (count) } }
                }
            }
            @if counts.by_status.is_empty() && counts.unknown.is_empty() {
                p { "The outbox is empty." }
            }
        }
    };
    respond(StatusCode::OK, page("Overview", Some(&session), body))
}

fn modules(console: &Console) -> Markup {
    let metrics = &console.context.metrics;
    let roster = metrics.roster();
    html! {
        section #modules {
            h2 { "Modules" }
            @if roster.is_empty() { p { "No module runs." } }
            @for (name, version) in &roster {
                @let figures = metrics.module_figures(name);
                div .module data-module=(name) {
                    h3 { (name) }
                    p .version {
                        (version.language) ", version " (version.version) ", build "
                        code title=(version.digest) { (version.digest.get(..12).unwrap_or(&version.digest)) }
                        " since " (shown_time(version.since_us))
                    }
                    (module_figures(&figures))
                }
            }
        }
    }
}

fn module_figures(figures: &ModuleFigures) -> Markup {
    html! {
        dl .figures {
            div { dt { "Handled" } dd .handled { (figures.handled) } }
            div { dt { "Failed" } dd .failed { (figures.failed) } }
            div { dt { "Trapped" } dd .trapped { (figures.trapped) } }
            div { dt { "Spared" } dd .spared { (figures.spared) } }
            div { dt { "Mean call" } dd .latency { (format!("{:.2} ms", figures.mean_call_s * 1000.0)) } }
            div { dt { "Memory" } dd .memory { (mib(figures.memory_bytes)) " (at most " (mib(figures.memory_high_water_bytes)) ")" } }
            div { dt { "Swaps" } dd .swaps { (figures.swapped) " swapped, " (figures.rolled_back) " rolled back, " (figures.refused) " refused" } }
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn sources(console: &Console) -> Markup {
    let now_us = console.clock.now_us();
    let rate = console.samples.rate();
    html! {
        section #sources {
            h2 { "Sources" }
            p #events {
                "Events read since start: " span .events { (console.context.metrics.events_in()) }
                @if let Some(rate) = rate { ", " span .rate { (format!("{rate:.1}")) } " a second over the last minute" }
            }
            @if !console.context.streams.is_empty() {
                table #streams {
                    tr { th { "Org" } th { "Queue" } th { "Last row" } th { "Behind" } }
                    @for (org, queues) in &console.context.streams {
                        @let cursors = crate::sources::velociraptor::stored_cursors(&console.store, org, queues, now_us).unwrap_or_default();
                        @for queue in queues {
                            tr {
                                td { (org) } td { (queue) }
                                @match cursors.get(queue) {
                                    Some(cursor) => {
                                        td { (shown_time(cursor.ts_s.saturating_mul(1_000_000))) }
                                        td { (format!("{} s", (now_us / 1_000_000).saturating_sub(cursor.ts_s))) }
                                    }
                                    None => { td { "none yet" } td { "" } }
                                }
                            }
                        }
                    }
                }
                p .hint { "A quiet queue looks behind: the time is that of its last row." }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_taken_over_the_samples_kept() {
        let samples = Samples::default();
        assert_eq!(samples.rate(), None);
        samples.add(0, 0);
        assert_eq!(samples.rate(), None);
        // Quiet for a while, then 10 events a second: the rate is the last
        // minute's, not the average since the first sample.
        for i in 1..=30u64 {
            samples.add(i * 5_000_000, i.saturating_sub(15) * 50);
        }
        assert_eq!(samples.rate(), Some(10.0));
    }
}
