//! Crash points: the places where a crash can fall while an input is
//! handled or an item delivered, each named, so that the tests can stop the
//! process exactly there and show that nothing is lost after a restart.
//!
//! Compiled only into test builds (the `failpoints` feature, which the test
//! harness turns on; see `tests/support/Cargo.toml`): in a release build
//! [`crash_point!`] is nothing at all. In a test build a process started
//! with `FAILPOINTS=<name>=return` kills itself with SIGKILL the first time
//! it reaches that point (`<name>=3*off->return`: the fourth time), the
//! syntax of the `fail` crate.
//!
//! | name                        | where                                              |
//! |-----------------------------|----------------------------------------------------|
//! | `engine::after-call`        | a module call returned, its effects not yet kept   |
//! | `store::between-writes`     | inside the input's transaction: state written, outbox not yet |
//! | `service::before-commit`    | an input of events handled, its transaction not yet begun |
//! | `service::after-commit`     | the input committed, not yet acknowledged          |
//! | `delivery::after-send`      | the server took the message, the item not yet marked sent |

/// Stops the process here with SIGKILL when the named point is armed.
#[macro_export]
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::failpoints::reach($name);
    };
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Whether `FAILPOINTS` named any point: a disarmed point then costs a
    /// load, not a lock and a lookup.
    static ARMED: AtomicBool = AtomicBool::new(false);

    /// Reads `FAILPOINTS` once, at start-up; the scenario lasts as long as
    /// the process.
    pub fn setup() {
        if std::env::var_os("FAILPOINTS").is_some() {
            std::mem::forget(fail::FailScenario::setup());
            ARMED.store(true, Ordering::Relaxed);
        }
    }

    pub fn reach(name: &str) {
        if ARMED.load(Ordering::Relaxed) {
            fail::eval(name, |_| crash(name));
        }
    }

    fn crash(name: &str) {
        eprintln!("velonotify: crash point {name} reached: killing the process");
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; this is never reached.
        std::process::abort();
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{reach, setup};

/// Without the feature there is nothing to set up.
#[cfg(not(feature = "failpoints"))]
pub fn setup() {}
