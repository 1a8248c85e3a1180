//! velonotify-guest: turns a [`velonotify_core::rules::Rule`] into a
//! component of the `velociraptor:notify/rule-module` world.
//!
//! A rule module crate is one line:
//!
//! ```text
//! velonotify_guest::rule_module!(velonotify_core::rules::alerts::AlertsRule);
//! ```
//!
//! This crate owns the generated bindings, the rule's instance state, the
//! [`Host`](velonotify_core::host::Host) implementation over the imported
//! host interface, and the conversions between core and WIT types.

// The bindings wit-bindgen generates call into the component ABI.
#[allow(
    unsafe_code,
    missing_debug_implementations,
    unused_qualifications,
    clippy::too_many_arguments
)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "rule-module",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_rule_module",
        default_bindings_module: "velonotify_guest::bindings",
    });
}

mod convert;
mod host;

use std::any::Any;
use std::cell::RefCell;

use velonotify_core::host::{Event, Log as _, LogLevel};
use velonotify_core::rules::Rule;

use crate::bindings::velociraptor::notify::actions::Action as WitAction;
use crate::bindings::velociraptor::notify::types as wit;
use crate::host::WitHost;

/// Exports `$rule` (a type implementing `Rule`) as this component's
/// rule-module world.
#[macro_export]
macro_rules! rule_module {
    ($rule:ty) => {
        struct RuleComponent;

        impl $crate::bindings::Guest for RuleComponent {
            fn describe() -> $crate::bindings::ModuleInfo {
                $crate::describe::<$rule>()
            }
            fn configure(
                params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::std::result::Result<$crate::bindings::Setup, $crate::bindings::Failure> {
                $crate::configure::<$rule>(params)
            }
            fn handle(
                event: $crate::bindings::Event,
            ) -> ::std::result::Result<::std::vec::Vec<$crate::bindings::Action>, $crate::bindings::Failure> {
                $crate::handle::<$rule>(event)
            }
            fn tick() -> ::std::result::Result<::std::vec::Vec<$crate::bindings::Action>, $crate::bindings::Failure> {
                $crate::tick::<$rule>()
            }
        }

        $crate::bindings::export_rule_module!(RuleComponent with_types_in $crate::bindings);
    };
}

thread_local! {
    /// The configured rule of this instance (components are single-threaded).
    static RULE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

#[doc(hidden)]
pub fn describe<R: Rule>() -> wit::ModuleInfo {
    wit::ModuleInfo {
        name: R::NAME.to_string(),
        version: R::VERSION.to_string(),
        description: R::DESCRIPTION.to_string(),
        params: R::PARAMS.iter().map(convert::param).collect(),
    }
}

#[doc(hidden)]
pub fn configure<R: Rule + 'static>(params: Vec<(String, String)>) -> Result<wit::Setup, wit::Failure> {
    let (rule, setup) = velonotify_core::rules::configure::<R>(&params, &WitHost).map_err(convert::failure)?;
    RULE.with(|slot| *slot.borrow_mut() = Some(Box::new(rule)));
    Ok(wit::Setup {
        queues: setup.queues,
        tick_seconds: setup.tick_seconds,
        interests: setup.interests.into_iter().map(convert::interest).collect(),
    })
}

#[doc(hidden)]
pub fn handle<R: Rule + 'static>(event: wit::Event) -> Result<Vec<WitAction>, wit::Failure> {
    // A row the rule can tell from a few columns will not act is not
    // built at all (most rows, for a filter), unless the host keeps the
    // debug lines in which `handle` says why it drops a row.
    let may_act = RULE.with(|slot| {
        let slot = slot.borrow();
        slot.as_ref()
            .and_then(|r| r.downcast_ref::<R>())
            .is_none_or(|rule| rule.may_act(&event.row))
    });
    if !may_act && !WitHost.enabled(LogLevel::Debug) {
        return Ok(Vec::new());
    }
    let row = match serde_json::from_str::<serde_json::Value>(&event.row) {
        Ok(serde_json::Value::Object(row)) => row,
        Ok(other) => return Err(wit::Failure::BadEvent(format!("row is not a JSON object: {other}"))),
        Err(e) => return Err(wit::Failure::BadEvent(format!("row is not JSON: {e}"))),
    };
    let event = Event {
        id: event.id,
        queue: event.queue,
        row,
        org_id: event.org_id,
    };
    with_rule::<R, _>(|rule| rule.handle(&event, &WitHost))
}

#[doc(hidden)]
pub fn tick<R: Rule + 'static>() -> Result<Vec<WitAction>, wit::Failure> {
    with_rule::<R, _>(|rule| rule.tick(&WitHost))
}

fn with_rule<R: Rule + 'static, F>(f: F) -> Result<Vec<WitAction>, wit::Failure>
where
    F: FnOnce(&mut R) -> Result<Vec<velonotify_core::action::Action>, velonotify_core::action::Failure>,
{
    RULE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let rule = slot
            .as_mut()
            .and_then(|r| r.downcast_mut::<R>())
            .ok_or_else(|| wit::Failure::Internal("handle called before configure".into()))?;
        f(rule)
            .map(|actions| actions.into_iter().map(convert::action).collect())
            .map_err(convert::failure)
    })
}
