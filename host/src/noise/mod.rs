//! Noise control: what sits between the modules' actions and delivery to
//! keep a SOC's inbox usable without losing anything. Every notification
//! gets [`Labels`]; [`Matchers`] in Alertmanager's syntax select them;
//! [`silences`] hold back what an operator silenced, [`inhibition`] rules
//! what a notification of the cause makes redundant, [`time_intervals`]
//! mute a module at night or outside office hours, [`grouping`] makes a
//! burst one e-mail; a [`silence_link`] in each e-mail lets its reader
//! silence what it is about. A held-back item stays
//! in the outbox with the reason, never dropped silently.
//!
//! This room holds the rules, not the storage: the store keeps silences
//! and each item's labels; the pipeline's outbox applies them at the
//! commit of each input.

pub mod grouping;
pub mod inhibition;
pub mod labels;
pub mod matchers;
pub mod silence_link;
pub mod silences;
pub mod time_intervals;

pub use labels::{Labels, Origin};
pub use matchers::{MatchOp, Matcher, MatcherError, Matchers};
pub use silences::{ActiveSilences, NewSilence, Silence, SilenceState};
