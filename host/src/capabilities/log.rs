//! The `log` interface: what a module says about what it did. A call keeps
//! at most [`MAX_LOG_LINES`] lines of at most [`MAX_LOG_LINE`] bytes; the
//! pipeline reports them with the module's and the event's names.

use std::cell::RefCell;

use super::CallContext;
use crate::contract::LogLevel;

/// A call may log this many lines of at most this many bytes; the rest is
/// dropped.
pub const MAX_LOG_LINES: usize = 100;
pub const MAX_LOG_LINE: usize = 4096;

/// The lines of the call in progress.
#[derive(Debug, Default)]
pub(super) struct CallLog(RefCell<Vec<(LogLevel, String)>>);

impl CallLog {
    fn push(&self, level: LogLevel, message: &str) {
        let mut lines = self.0.borrow_mut();
        if lines.len() >= MAX_LOG_LINES {
            return;
        }
        let mut line = message.to_string();
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        lines.push((level, line));
    }

    pub(super) fn take(&self) -> Vec<(LogLevel, String)> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

impl velonotify_core::host::Log for CallContext {
    fn log(&self, level: velonotify_core::host::LogLevel, message: &str) {
        use velonotify_core::host::LogLevel as Core;
        let level = match level {
            Core::Debug => LogLevel::Debug,
            Core::Info => LogLevel::Info,
            Core::Warn => LogLevel::Warn,
            Core::Error => LogLevel::Error,
        };
        self.log.push(level, message);
    }

    fn enabled(&self, level: velonotify_core::host::LogLevel) -> bool {
        self.keeps_debug || level != velonotify_core::host::LogLevel::Debug
    }
}

impl crate::contract::log::Host for CallContext {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log.push(level, &message);
    }

    fn enabled(&mut self, level: LogLevel) -> bool {
        self.keeps_debug || level != LogLevel::Debug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_keeps_a_bounded_log() {
        let log = CallLog::default();
        log.push(LogLevel::Info, &"é".repeat(MAX_LOG_LINE));
        for _ in 0..MAX_LOG_LINES + 5 {
            log.push(LogLevel::Debug, "again");
        }
        let lines = log.take();
        assert_eq!(lines.len(), MAX_LOG_LINES);
        assert!(lines[0].1.len() <= MAX_LOG_LINE + '…'.len_utf8());
        assert!(log.take().is_empty(), "taken");
    }
}
