//! Silences: "hold back what matches these labels from then to then", with
//! who made it and why, as in Alertmanager. A silenced notification is not
//! lost: it stays in the outbox as `silenced`, naming the silence.

use super::{Labels, Matchers};

/// Longest comment kept, in characters.
pub const MAX_COMMENT_CHARS: usize = 1024;
/// Longest author name, in characters.
pub const MAX_AUTHOR_CHARS: usize = 128;
/// Longest silence accepted: a silence is for an incident, not forever.
pub const MAX_DURATION_US: u64 = 366 * 24 * 3600 * 1_000_000;

/// Where a silence is in its life, at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    /// Starts later.
    Pending,
    Active,
    /// Ended, or expired by hand.
    Expired,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

/// A silence as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    /// A random UUID.
    pub id: String,
    pub matchers: Matchers,
    pub starts_us: u64,
    pub ends_us: u64,
    pub created_by: String,
    pub comment: String,
    pub updated_us: u64,
}

impl Silence {
    pub fn state(&self, now_us: u64) -> SilenceState {
        if now_us >= self.ends_us {
            SilenceState::Expired
        } else if now_us < self.starts_us {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether it holds back a notification with `labels` at `now_us`.
    pub fn silences(&self, labels: &Labels, now_us: u64) -> bool {
        self.state(now_us) == SilenceState::Active && self.matchers.matches(labels)
    }
}

/// A silence to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSilence {
    pub matchers: Matchers,
    pub starts_us: u64,
    pub ends_us: u64,
    pub created_by: String,
    pub comment: String,
}

impl NewSilence {
    /// Checks what a silence must have: matchers, an end after its start
    /// and after `now_us`, an author and a comment, all bounded.
    pub fn check(&self, now_us: u64) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err("a silence needs at least one matcher".into());
        }
        // Kept as text, read back when used: it must read back.
        let text = self.matchers.to_string();
        if text.len() > super::matchers::MAX_INPUT_BYTES {
            return Err(format!(
                "its matchers are {} bytes written out; at most {}",
                text.len(),
                super::matchers::MAX_INPUT_BYTES
            ));
        }
        if self.matchers.iter().all(|m| m.matches("")) {
            return Err(format!(
                "the matchers {} also match a notification without those labels: \
                 a silence needs one matcher that an empty label does not meet",
                self.matchers
            ));
        }
        if self.ends_us <= self.starts_us {
            return Err("a silence must end after it starts".into());
        }
        if self.ends_us <= now_us {
            return Err("a silence must end in the future".into());
        }
        if self.ends_us - self.starts_us > MAX_DURATION_US {
            return Err("a silence may last at most 366 days".into());
        }
        check_text("author", &self.created_by, MAX_AUTHOR_CHARS)?;
        check_text("comment", &self.comment, MAX_COMMENT_CHARS)?;
        Ok(())
    }
}

fn check_text(what: &str, text: &str, max_chars: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!(
            "a silence needs a{} {what}",
            if what == "author" { "n" } else { "" }
        ));
    }
    if text.chars().count() > max_chars {
        return Err(format!("the {what} is longer than {max_chars} characters"));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(format!("the {what} holds control characters"));
    }
    Ok(())
}

/// The silences in force, looked up for each notification.
#[derive(Debug, Clone, Default)]
pub struct ActiveSilences(Vec<Silence>);

impl ActiveSilences {
    pub fn new(silences: Vec<Silence>) -> Self {
        Self(silences)
    }

    /// The first silence holding back a notification with `labels` at
    /// `now_us` (silences that end later come first).
    pub fn silencing(&self, labels: &Labels, now_us: u64) -> Option<&Silence> {
        self.0.iter().find(|s| s.silences(labels, now_us))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;

    fn silence(matchers: &str, starts_s: u64, ends_s: u64) -> NewSilence {
        NewSilence {
            matchers: Matchers::parse(matchers).unwrap(),
            starts_us: starts_s * S,
            ends_us: ends_s * S,
            created_by: "alice".into(),
            comment: "IR-1234: reimaging ws-07".into(),
        }
    }

    fn stored(new: NewSilence) -> Silence {
        Silence {
            id: "s1".into(),
            matchers: new.matchers,
            starts_us: new.starts_us,
            ends_us: new.ends_us,
            created_by: new.created_by,
            comment: new.comment,
            updated_us: 0,
        }
    }

    #[test]
    fn a_silence_holds_back_what_it_matches_while_it_is_active() {
        let s = stored(silence("{client_id=C.7}", 100, 200));
        let on_ws07 = Labels::from([("client_id", "C.7"), ("alertname", "x")]);
        let elsewhere = Labels::from([("client_id", "C.8")]);
        assert_eq!(s.state(99 * S), SilenceState::Pending);
        assert!(!s.silences(&on_ws07, 99 * S));
        assert!(s.silences(&on_ws07, 100 * S));
        assert!(!s.silences(&elsewhere, 150 * S));
        assert!(!s.silences(&on_ws07, 200 * S), "ended");
        assert_eq!(s.state(200 * S), SilenceState::Expired);
    }

    #[test]
    fn a_silence_must_say_what_when_who_and_why() {
        let now = 150;
        assert!(silence("alertname=x", 100, 200).check(now * S).is_ok());
        let problem = |s: NewSilence| s.check(now * S).unwrap_err();
        assert!(problem(silence("{}", 100, 200)).contains("at least one matcher"));
        assert!(problem(silence("alertname=~\".*\"", 100, 200)).contains("empty label"));
        assert!(problem(silence("alertname!=x", 100, 200)).contains("empty label"));
        assert!(problem(silence("alertname=x", 200, 200)).contains("end after it starts"));
        assert!(problem(silence("alertname=x", 100, 140)).contains("in the future"));
        assert!(problem(silence("alertname=x", 100, 100 + 367 * 24 * 3600)).contains("366 days"));
        let mut anonymous = silence("alertname=x", 100, 200);
        anonymous.created_by = " ".into();
        assert!(problem(anonymous).contains("needs an author"));
        // Two matchers each within the parser's bound, too long together.
        let value = "C.0123456789abcdef|".repeat(150);
        let mut long = silence("alertname=x", 100, 200);
        long.matchers = Matchers::new(vec![
            crate::noise::Matcher::new("client_id", crate::noise::MatchOp::Regex, &value).unwrap(),
            crate::noise::Matcher::new("hostname", crate::noise::MatchOp::Regex, &value).unwrap(),
        ]);
        assert!(problem(long).contains("bytes written out"));
        let mut forged = silence("alertname=x", 100, 200);
        forged.comment = "ok\u{1b}[2J".into();
        assert!(problem(forged).contains("control characters"));
    }
}
