//! A rule module that misbehaves on purpose, so that tests can show the
//! host contains it: it loops forever, allocates without bound, recurses
//! without bound (on Rust's stack in linear memory, or on WebAssembly's own
//! stack) or panics; or it answers with a flood of actions, a huge one, or
//! one that is not valid JSON, as its `Behaviour` parameter says, on every
//! event whose `name` matches `Trigger`; or (`grow`) it grows its memory by
//! 48 MiB, lets it go, and answers with how many times it has grown, kept
//! in its state. On other events it echoes the event as a webhook action,
//! which shows that it still works.

use velonotify_core::action::{Action, Failure, UserMessage, Webhook};
use velonotify_core::host::{Event, Host};
use velonotify_core::params::{ParamKind, ParamSpec, Params};
use velonotify_core::rules::{Rule, Setup};
use velonotify_core::vql::VqlRegex;

const BEHAVIOURS: &[&str] = &[
    "loop",
    "alloc",
    "recurse",
    "recurse-native",
    "panic",
    "flood",
    "huge",
    "bad-json",
    "grow",
    "echo",
];

/// The hostile rule.
#[derive(Debug)]
pub struct Hostile {
    behaviour: String,
    trigger: VqlRegex,
}

impl Rule for Hostile {
    const NAME: &'static str = "Test.Hostile";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Misbehaves on purpose (sandbox tests only).";
    const PARAMS: &'static [ParamSpec] = &[
        ParamSpec::new("Behaviour", ParamKind::Choices, "loop", "How to misbehave.").with_choices(BEHAVIOURS),
        ParamSpec::new(
            "Trigger",
            ParamKind::Regex,
            ".*",
            "Misbehave on events whose name matches.",
        ),
        ParamSpec::new(
            "Queue",
            ParamKind::String,
            "Server.Internal.Alerts",
            "The queue to watch.",
        ),
        ParamSpec::new(
            "TickSeconds",
            ParamKind::Int,
            "0",
            "Ask for a tick this often (0: never).",
        ),
    ];

    fn configure(p: &Params, _host: &dyn Host) -> Result<(Self, Setup), Failure> {
        let rule = Self {
            behaviour: p.text("Behaviour").to_string(),
            trigger: p.regex("Trigger").clone(),
        };
        let tick_seconds = u32::try_from(p.int("TickSeconds")).ok().filter(|t| *t > 0);
        let setup = Setup {
            queues: vec![p.text("Queue").to_string()],
            tick_seconds,
            interests: Vec::new(),
        };
        Ok((rule, setup))
    }

    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        let name = event.row.get("name").and_then(|v| v.as_str()).unwrap_or("");
        if self.trigger.is_match(name) {
            if let Some(actions) = bad_actions(&self.behaviour) {
                return Ok(actions);
            }
            if self.behaviour == "grow" {
                return Ok(vec![grow(host)]);
            }
            misbehave(&self.behaviour);
        }
        Ok(vec![Action::Webhook(Webhook {
            url: "https://hooks.example.org/echo".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::Value::Object(event.row.clone()).to_string().into_bytes(),
        })])
    }

    fn tick(&mut self, host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Self::tick_echo(host))
    }
}

impl Hostile {
    /// Echoes the tick's time, so tests can see when ticks happen.
    fn tick_echo(host: &dyn Host) -> Vec<Action> {
        vec![Action::Webhook(Webhook {
            url: "https://hooks.example.org/tick".into(),
            headers: Vec::new(),
            body: format!("{{\"tick_us\":{}}}", host.now_us()).into_bytes(),
        })]
    }
}

/// Answers the host cannot take: 10,000 actions, a 100 MB webhook body,
/// a user message that is not JSON.
fn bad_actions(behaviour: &str) -> Option<Vec<Action>> {
    let hook = |body: Vec<u8>| {
        Action::Webhook(Webhook {
            url: "https://hooks.example.org/flood".into(),
            headers: Vec::new(),
            body,
        })
    };
    match behaviour {
        "flood" => Some(
            (0..10_000)
                .map(|i| hook(format!("{{\"n\":{i}}}").into_bytes()))
                .collect(),
        ),
        "huge" => Some(vec![hook(vec![b'x'; 100 << 20])]),
        "bad-json" => Some(vec![Action::UserMessage(UserMessage {
            user: "ann".into(),
            message: "{\"Message\": \"unterminated".into(),
        })]),
        _ => None,
    }
}

/// Grows linear memory by 48 MiB (touched, then freed: the memory stays
/// the instance's), and counts the times in its state.
fn grow(host: &dyn Host) -> Action {
    let hoard = std::hint::black_box(vec![1u8; 48 << 20]);
    drop(hoard);
    let times = host
        .state_get("grown")
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    host.state_put("grown", times.to_string().as_bytes(), 0);
    Action::Webhook(Webhook {
        url: "https://hooks.example.org/grown".into(),
        headers: Vec::new(),
        body: format!("{{\"grown\":{times}}}").into_bytes(),
    })
}

fn misbehave(behaviour: &str) {
    match behaviour {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                // Touch every page so the memory is really used.
                hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
            }
        }
        "recurse" => {
            std::hint::black_box(recurse(0));
        }
        "recurse-native" => {
            std::hint::black_box(recurse_native(0));
        }
        "panic" => panic!("hostile module panics on purpose"),
        _ => {}
    }
}

/// Recursion whose frames live on Rust's stack in linear memory.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    recurse(depth + 1) + pad[(depth % 64) as usize]
}

velonotify_guest::rule_module!(Hostile);

/// Recursion whose frames live only on WebAssembly's own stack.
#[allow(unconditional_recursion)]
fn recurse_native(depth: u64) -> u64 {
    recurse_native(depth.wrapping_add(1)).wrapping_mul(3) ^ depth
}
