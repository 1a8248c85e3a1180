//! A rule module whose builds tell themselves apart, for the hot-swap
//! tests.
//!
//! Which build this is lives in one marker, [`BUILD`]:
//! `velonotify-swap-build:v000:ok`. The tests make new builds by rewriting
//! the marker in the component's bytes (same length, so the component stays
//! valid): a version number, and a mode:
//! - `ok`: every event is answered with a user message naming the build
//!   and the event (`{"build": "v007", "event": "...", "n": 41}`);
//! - `cf`: `configure` refuses the parameters;
//! - `tr`: every event traps (a panic);
//! - `fa`: every event fails with an internal error;
//! - `ev`: as `ok` for rows whose `n` is even, nothing for the others,
//!   which it declares as its interest (`n` ends in an even digit).

use velonotify_core::action::{Action, Failure, UserMessage};
use velonotify_core::host::{Event, Host};
use velonotify_core::params::{ParamError, ParamKind, ParamSpec, Params};
use velonotify_core::rules::interest::{ColumnTest, Interest, ValueTest};
use velonotify_core::rules::{Rule, Setup};

/// The marker the tests rewrite. Read through `black_box`, so the compiler
/// cannot fold its value into the code: the bytes in the data segment are
/// the only copy.
static BUILD: [u8; 29] = *b"velonotify-swap-build:v000:ok";

fn build() -> (&'static str, &'static str) {
    let marker: &'static [u8; 29] = std::hint::black_box(&BUILD);
    let text = std::str::from_utf8(marker).unwrap_or("velonotify-swap-build:v???:??");
    (&text[22..26], &text[27..29])
}

/// The versioned rule.
#[derive(Debug)]
pub struct Versioned;

impl Rule for Versioned {
    const NAME: &'static str = "Test.Versioned";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Names its build in every answer (hot-swap tests only).";
    const PARAMS: &'static [ParamSpec] = &[ParamSpec::new(
        "Queue",
        ParamKind::String,
        "Custom.Swap",
        "The queue to watch.",
    )];

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        if build().1 == "cf" {
            return Err(ParamError::new("Queue", "this build refuses every configuration").into());
        }
        let queue = p.text("Queue").to_string();
        let interests = match build().1 {
            "ev" => vec![Interest {
                queue: queue.clone(),
                columns: vec![ColumnTest {
                    column: "n".into(),
                    test: ValueTest::Matches("[02468]$".into()),
                }],
            }],
            _ => Vec::new(),
        };
        let setup = Setup {
            queues: vec![queue],
            tick_seconds: None,
            interests,
        };
        Ok((Self, setup))
    }

    fn handle(&mut self, event: &Event, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let (version, mode) = build();
        if mode == "tr" {
            panic!("build {version} traps on every event");
        }
        if mode == "fa" {
            return Err(Failure::Internal(format!("build {version} fails on every event")));
        }
        if mode == "ev"
            && event
                .row
                .get("n")
                .and_then(serde_json::Value::as_u64)
                .is_some_and(|n| n % 2 == 1)
        {
            return Ok(Vec::new());
        }
        let message = serde_json::json!({
            "build": version,
            "event": event.id,
            "n": event.row.get("n"),
        });
        Ok(vec![Action::UserMessage(UserMessage {
            user: "ann".into(),
            message: message.to_string(),
        })])
    }
}

velonotify_guest::rule_module!(Versioned);
