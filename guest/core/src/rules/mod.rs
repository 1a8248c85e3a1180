//! The rule modules' logic. Each rule is the whole behaviour of one
//! component; `guest/modules/<name>` only adapts it to the WIT world.

pub mod alert_names;
pub mod alerts;
pub mod audit;
pub mod collections;
pub mod detect;
pub mod errors_alert;
pub mod fleet;
pub mod flow_completion;
pub mod interest;
mod monitor;
pub mod send_email;
pub mod user_message;
pub mod webhook;

use crate::action::{Action, Failure};
use crate::host::{Event, Host};
use crate::params::{ParamSpec, Params};

pub use self::interest::Interest;

/// What a configured rule needs from the host (mirrors `setup` in WIT).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub queues: Vec<String>,
    pub tick_seconds: Option<u32>,
    /// Which rows of `queues` the rule may act on (none: every row).
    pub interests: Vec<Interest>,
}

impl Setup {
    /// A monitor's: no queue, a tick every `tick_seconds`.
    pub fn periodic(tick_seconds: u32) -> Self {
        Self {
            queues: Vec::new(),
            tick_seconds: Some(tick_seconds),
            interests: Vec::new(),
        }
    }
}

/// A rule module's behaviour.
pub trait Rule: Sized {
    /// The Velociraptor artifact the rule ports, e.g. `Server.Monitor.Alerts`.
    const NAME: &'static str;
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;
    /// Every parameter, with the artifact's names and defaults.
    const PARAMS: &'static [ParamSpec];

    /// Builds the rule from parsed parameters.
    fn configure(params: &Params, host: &dyn Host) -> Result<(Self, Setup), Failure>;

    /// Whether a row (its JSON text) could act at all, decided on the
    /// columns the rule filters on, read without building the row
    /// ([`crate::vql::RawRow`]). False must mean that `handle` would return
    /// no action, write no state and make no lookup for this row: the row
    /// is then not built nor handed to `handle`. The default, for rules
    /// that cannot tell before the whole row: every row may act, and the
    /// text is not read twice.
    fn may_act(&self, _row_text: &str) -> bool {
        true
    }

    /// Handles one event of a subscribed queue.
    fn handle(&mut self, event: &Event, host: &dyn Host) -> Result<Vec<Action>, Failure>;

    /// Called every `Setup::tick_seconds`.
    fn tick(&mut self, _host: &dyn Host) -> Result<Vec<Action>, Failure> {
        Ok(Vec::new())
    }
}

/// Parses `given` against the rule's parameters and configures it.
pub fn configure<R: Rule>(given: &[(String, String)], host: &dyn Host) -> Result<(R, Setup), Failure> {
    let params = Params::parse(R::PARAMS, given)?;
    R::configure(&params, host)
}
