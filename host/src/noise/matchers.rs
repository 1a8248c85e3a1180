//! Label matchers in Alertmanager's syntax, so an operator who knows
//! `amtool` knows them: `name="value"` (`=`, `!=`, `=~`, `!~`), a list
//! `{alertname="Honeyfile", severity=~"high|critical"}`. A regex matches
//! the whole value (`=~"ws-.*"`), a label a notification lacks reads as
//! empty, and all matchers of a list must match.
//!
//! Grammar (Alertmanager's UTF-8 matchers, `matcher/parse`): an optional
//! `{` and `}` (both or neither) around matchers separated by commas (one
//! trailing comma is allowed); each is a name, an operator and a value,
//! which is required (`foo=""` for the empty value). Names and values are
//! either double-quoted, with Go's escapes (`\"`, `\\`, `\n`, `\t`,
//! `\xHH`, `\u0041`...; a regex's `\d` is written `\\d`), or unquoted:
//! any characters but white space and `{ } ! = ~ , \ " ' \``. White space
//! between tokens is ignored. A bad list is refused with the position (the
//! character, counted from 1) of what is wrong.

use regex::Regex;

/// Longest list of matchers read, in bytes.
pub const MAX_INPUT_BYTES: usize = 4096;

/// Most matchers in one list.
pub const MAX_MATCHERS: usize = 32;

/// Compiled size limit of one regex (a hostile or careless pattern
/// cannot take the host's memory).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// Alertmanager API v2 spells an operator as two booleans.
    pub fn from_flags(is_regex: bool, is_equal: bool) -> Self {
        match (is_regex, is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }

    pub fn is_equal(self) -> bool {
        matches!(self, MatchOp::Equal | MatchOp::Regex)
    }
}

/// One condition on one label.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// For `=~` and `!~`: the value anchored at both ends.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// A matcher; a regex that does not compile is refused.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("the label name is empty".into());
        }
        let regex = match op.is_regex() {
            true => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("{value:?} is not a valid regex: {}", one_line(&e.to_string())))?,
            ),
            false => None,
        };
        Ok(Self {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn op(&self) -> MatchOp {
        self.op
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label's value (empty when the notification lacks it)
    /// meets this matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(regex)) => regex.is_match(value),
            (MatchOp::NotRegex, Some(regex)) => !regex.is_match(value),
            (_, None) => false,
        }
    }
}

impl std::fmt::Display for Matcher {
    /// `name="value"`: the value always quoted; the name too when it is
    /// not a plain label name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if super::labels::is_label_name(&self.name) {
            f.write_str(&self.name)?;
        } else {
            f.write_str(&quoted(&self.name))?;
        }
        write!(f, "{}{}", self.op.as_str(), quoted(&self.value))
    }
}

/// `text` in double quotes, with `"`, `\` and line breaks escaped: what the
/// parser reads back as `text`.
pub fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            // Event data is hostile: shown on a terminal or in a log, a
            // value must not move the cursor or reorder the line.
            c if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Matchers that must all match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matchers(Vec<Matcher>);

/// A list of matchers that cannot be read: the list, where (a character
/// position, from 1) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad matcher {input:?} at character {position}: {problem}")]
pub struct MatcherError {
    pub input: String,
    pub position: usize,
    pub problem: String,
}

impl Matchers {
    /// Reads one list: `{a="1", b=~"2.*"}`, or the same without braces.
    pub fn parse(input: &str) -> Result<Self, MatcherError> {
        Parser::new(input)?.list()
    }

    /// Reads each argument as a list (`velonotify silence add
    /// 'alertname="x"' 'client_id=~"C.1|C.2"'`), all of them ANDed.
    pub fn parse_all<S: AsRef<str>>(args: &[S]) -> Result<Self, MatcherError> {
        let mut all = Vec::new();
        for arg in args {
            all.extend(Self::parse(arg.as_ref())?.0);
        }
        if all.len() > MAX_MATCHERS {
            return Err(MatcherError {
                input: args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" "),
                position: 1,
                problem: format!("{} matchers; at most {MAX_MATCHERS}", all.len()),
            });
        }
        Ok(Self(all))
    }

    pub fn new(matchers: Vec<Matcher>) -> Self {
        Self(matchers)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Matcher> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every matcher matches `labels`.
    pub fn matches(&self, labels: &super::Labels) -> bool {
        self.0.iter().all(|m| m.matches(labels.get(&m.name)))
    }

    /// Whether this list has each of `others` among its own (the filter of
    /// `silence query`, as amtool's).
    pub fn includes(&self, others: &Matchers) -> bool {
        others.0.iter().all(|o| self.0.contains(o))
    }
}

impl std::fmt::Display for Matchers {
    /// `{a="1", b=~"2.*"}`, which [`Matchers::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, matcher) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{matcher}")?;
        }
        f.write_str("}")
    }
}

/// A token and the character position (from 1) it starts at.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Op(MatchOp),
    /// Quoted or not.
    Text(String),
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Open => "'{'".into(),
            Token::Close => "'}'".into(),
            Token::Comma => "','".into(),
            Token::Op(op) => format!("'{}'", op.as_str()),
            Token::Text(text) => quoted(text),
        }
    }
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<(Token, usize)>,
    next: usize,
}

const RESERVED: &str = "{}!=~,\\\"'`";

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Result<Self, MatcherError> {
        let mut parser = Parser {
            input,
            tokens: Vec::new(),
            next: 0,
        };
        if input.len() > MAX_INPUT_BYTES {
            return Err(parser.error(1, format!("longer than {MAX_INPUT_BYTES} bytes")));
        }
        parser.tokens = parser.lex()?;
        Ok(parser)
    }

    fn error(&self, position: usize, problem: impl Into<String>) -> MatcherError {
        MatcherError {
            input: self.input.to_string(),
            position,
            problem: problem.into(),
        }
    }

    /// The character position just past the input.
    fn end(&self) -> usize {
        self.input.chars().count() + 1
    }

    fn lex(&self) -> Result<Vec<(Token, usize)>, MatcherError> {
        let chars: Vec<char> = self.input.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let at = i + 1;
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            let (token, width) = match c {
                c if c.is_whitespace() => {
                    i += 1;
                    continue;
                }
                '{' => (Token::Open, 1),
                '}' => (Token::Close, 1),
                ',' => (Token::Comma, 1),
                '=' if next == Some('~') => (Token::Op(MatchOp::Regex), 2),
                '=' => (Token::Op(MatchOp::Equal), 1),
                '!' if next == Some('=') => (Token::Op(MatchOp::NotEqual), 2),
                '!' if next == Some('~') => (Token::Op(MatchOp::NotRegex), 2),
                '!' => return Err(self.error(at, "'!' must be followed by '=' or '~'")),
                '"' => {
                    let (text, width) = self.quoted_text(&chars[i..], at)?;
                    (Token::Text(text), width)
                }
                c if RESERVED.contains(c) => {
                    return Err(self.error(at, format!("unexpected {c:?}: quote a value holding {c:?} (\"...\")")));
                }
                _ => {
                    let width = chars[i..]
                        .iter()
                        .take_while(|c| !c.is_whitespace() && !RESERVED.contains(**c))
                        .count();
                    (Token::Text(chars[i..i + width].iter().collect()), width)
                }
            };
            tokens.push((token, at));
            i += width;
        }
        Ok(tokens)
    }

    /// A double-quoted text at the start of `chars` (Go's escapes, as
    /// Alertmanager reads it): its content and the characters it takes.
    fn quoted_text(&self, chars: &[char], at: usize) -> Result<(String, usize), MatcherError> {
        let not_closed = || self.error(at, "a quoted text is not closed: '\"' missing");
        let mut bytes = Vec::new();
        let mut i = 1;
        loop {
            let c = *chars.get(i).ok_or_else(not_closed)?;
            match c {
                '"' => break,
                '\n' => return Err(self.error(at + i, "a line break in a quoted text is written \\n")),
                '\\' => {
                    let (decoded, width) = self.escape(&chars[i..], at + i)?;
                    bytes.extend_from_slice(&decoded);
                    i += width;
                }
                c => {
                    bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    i += 1;
                }
            }
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| self.error(at, "a quoted text whose escapes are not UTF-8 (\\x... bytes)"))?;
        Ok((text, i + 1))
    }

    /// One escape at the start of `chars` (its backslash included): the
    /// bytes it stands for and the characters it takes.
    fn escape(&self, chars: &[char], at: usize) -> Result<(Vec<u8>, usize), MatcherError> {
        let hex = |n: usize| -> Option<u32> {
            let digits = chars.get(2..2 + n)?;
            if !digits.iter().all(char::is_ascii_hexdigit) {
                return None;
            }
            u32::from_str_radix(&digits.iter().collect::<String>(), 16).ok()
        };
        let char_bytes = |c: char| c.encode_utf8(&mut [0; 4]).as_bytes().to_vec();
        let simple = |c: char| Some((char_bytes(c), 2));
        let decoded = match chars.get(1) {
            Some('"') => simple('"'),
            Some('\\') => simple('\\'),
            Some('n') => simple('\n'),
            Some('t') => simple('\t'),
            Some('r') => simple('\r'),
            Some('a') => simple('\u{7}'),
            Some('b') => simple('\u{8}'),
            Some('f') => simple('\u{c}'),
            Some('v') => simple('\u{b}'),
            Some('x') => hex(2).map(|b| (vec![b as u8], 4)),
            Some('u') => hex(4).and_then(char::from_u32).map(|c| (char_bytes(c), 6)),
            Some('U') => hex(8).and_then(char::from_u32).map(|c| (char_bytes(c), 10)),
            Some(d) if d.is_digit(8) => {
                let digits: String = chars.get(1..4).unwrap_or_default().iter().collect();
                u8::from_str_radix(&digits, 8)
                    .ok()
                    .filter(|_| digits.len() == 3)
                    .map(|b| (vec![b], 4))
            }
            _ => None,
        };
        decoded.ok_or_else(|| {
            let shown: String = chars.iter().take(2).collect();
            self.error(
                at,
                format!("unknown escape {shown} (use \\\" \\\\ \\n \\t \\xHH \\uHHHH; a regex's \\d is written \\\\d)"),
            )
        })
    }

    fn peek(&self) -> Option<&(Token, usize)> {
        self.tokens.get(self.next)
    }

    fn take(&mut self) -> Option<(Token, usize)> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn list(mut self) -> Result<Matchers, MatcherError> {
        let braced = matches!(self.peek(), Some((Token::Open, _)));
        if braced {
            self.take();
        }
        let mut matchers = Vec::new();
        loop {
            match self.peek().cloned() {
                None if braced => return Err(self.error(self.end(), "'}' missing at the end")),
                None => break,
                Some((Token::Close, at)) if !braced => return Err(self.error(at, "a '}' without '{' at the start")),
                Some((Token::Close, at)) if braced => {
                    self.take();
                    if let Some((token, at)) = self.peek() {
                        return Err(self.error(*at, format!("unexpected {} after '}}'", token.describe())));
                    }
                    let _ = at;
                    break;
                }
                Some(_) => {}
            }
            matchers.push(self.matcher()?);
            if matchers.len() > MAX_MATCHERS {
                return Err(self.error(1, format!("more than {MAX_MATCHERS} matchers")));
            }
            match self.take() {
                None if braced => return Err(self.error(self.end(), "'}' missing at the end")),
                None => break,
                Some((Token::Comma, _)) => {}
                Some((Token::Close, at)) if !braced => return Err(self.error(at, "a '}' without '{' at the start")),
                Some((Token::Close, at)) if braced => {
                    if let Some((token, at)) = self.peek() {
                        return Err(self.error(*at, format!("unexpected {} after '}}'", token.describe())));
                    }
                    let _ = at;
                    break;
                }
                Some((token, at)) => {
                    return Err(self.error(at, format!("expected ',' between matchers, found {}", token.describe())));
                }
            }
        }
        Ok(Matchers(matchers))
    }

    fn matcher(&mut self) -> Result<Matcher, MatcherError> {
        let (name, at) = match self.take() {
            Some((Token::Text(name), at)) => (name, at),
            Some((token, at)) => {
                return Err(self.error(at, format!("expected a label name, found {}", token.describe())));
            }
            None => return Err(self.error(self.end(), "expected a label name")),
        };
        let op = match self.take() {
            Some((Token::Op(op), _)) => op,
            Some((token, at)) => {
                return Err(self.error(
                    at,
                    format!(
                        "expected an operator ('=', '!=', '=~' or '!~') after {}, found {}",
                        quoted(&name),
                        token.describe()
                    ),
                ));
            }
            None => {
                return Err(self.error(
                    self.end(),
                    format!("expected an operator ('=', '!=', '=~' or '!~') after {}", quoted(&name)),
                ));
            }
        };
        let value = match self.take() {
            Some((Token::Text(value), _)) => value,
            Some((token, at)) => {
                return Err(self.error(at, format!("expected a value, found {}", token.describe())));
            }
            None => {
                return Err(self.error(
                    self.end(),
                    format!("expected a value after {} (\"\" for the empty value)", quoted(&name)),
                ));
            }
        };
        Matcher::new(&name, op, &value).map_err(|problem| self.error(at, problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::Labels;

    fn parsed(input: &str) -> Vec<(String, MatchOp, String)> {
        Matchers::parse(input)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|m| (m.name.clone(), m.op, m.value.clone()))
            .collect()
    }

    fn refused(input: &str) -> MatcherError {
        Matchers::parse(input).expect_err(input)
    }

    /// The successes of Alertmanager's `matcher/parse/parse_test.go`
    /// (TestMatchers), and the examples of its configuration docs.
    #[test]
    fn alertmanagers_examples_are_read_as_alertmanager_reads_them() {
        use MatchOp::*;
        type Expected<'a> = &'a [(&'a str, MatchOp, &'a str)];
        let cases: &[(&str, Expected)] = &[
            ("", &[]),
            ("{}", &[]),
            ("{foo=bar}", &[("foo", Equal, "bar")]),
            ("{foo=bar,}", &[("foo", Equal, "bar")]),
            ("{foo!=bar}", &[("foo", NotEqual, "bar")]),
            ("{foo=~[a-z]+}", &[("foo", Regex, "[a-z]+")]),
            ("{foo!~[a-z]+}", &[("foo", NotRegex, "[a-z]+")]),
            ("{foo=🙂}", &[("foo", Equal, "🙂")]),
            ("{foo=🙂bar}", &[("foo", Equal, "🙂bar")]),
            ("foo=bar", &[("foo", Equal, "bar")]),
            ("foo=bar,", &[("foo", Equal, "bar")]),
            ("foo!=bar", &[("foo", NotEqual, "bar")]),
            ("foo=~[a-z]+", &[("foo", Regex, "[a-z]+")]),
            ("foo!~[a-z]+", &[("foo", NotRegex, "[a-z]+")]),
            (r#"{"foo"="bar"}"#, &[("foo", Equal, "bar")]),
            (r#"{"foo"="bar",}"#, &[("foo", Equal, "bar")]),
            (r#"{"foo"!="bar"}"#, &[("foo", NotEqual, "bar")]),
            (r#"{"foo"=~"[a-z]+"}"#, &[("foo", Regex, "[a-z]+")]),
            (r#"{"foo"=~"\\d+"}"#, &[("foo", Regex, r"\d+")]),
            (r#"{"foo"!~"[a-z]+"}"#, &[("foo", NotRegex, "[a-z]+")]),
            (r#"{"foo"="🙂"}"#, &[("foo", Equal, "🙂")]),
            (r#"{"foo"="\xf0\x9f\x99\x82"}"#, &[("foo", Equal, "🙂")]),
            (r#"{"foo"="\U0001f642"}"#, &[("foo", Equal, "🙂")]),
            (r#"{"foo"="🙂bar"}"#, &[("foo", Equal, "🙂bar")]),
            (r#"{"foo"="bar\n"}"#, &[("foo", Equal, "bar\n")]),
            (r#"{"foo"="bar\t"}"#, &[("foo", Equal, "bar\t")]),
            (r#"{"foo"="\"bar\""}"#, &[("foo", Equal, "\"bar\"")]),
            (r#"{"foo"="bar\\"}"#, &[("foo", Equal, "bar\\")]),
            (r#""foo"="bar""#, &[("foo", Equal, "bar")]),
            (r#""foo"="bar","#, &[("foo", Equal, "bar")]),
            ("{foo=bar,bar!=baz}", &[("foo", Equal, "bar"), ("bar", NotEqual, "baz")]),
            (
                r#"{foo="bar",bar!="baz"}"#,
                &[("foo", Equal, "bar"), ("bar", NotEqual, "baz")],
            ),
            ("foo=bar,bar!=baz", &[("foo", Equal, "bar"), ("bar", NotEqual, "baz")]),
            (
                r#"foo="bar",bar!="baz""#,
                &[("foo", Equal, "bar"), ("bar", NotEqual, "baz")],
            ),
            // The configuration docs.
            (
                r#"{alertname="Watchdog", severity=~"warning|critical"}"#,
                &[
                    ("alertname", Equal, "Watchdog"),
                    ("severity", Regex, "warning|critical"),
                ],
            ),
            (
                "{\n   alertname = \"Watchdog\",\n   severity =~ \"warning|critical\",\n}",
                &[
                    ("alertname", Equal, "Watchdog"),
                    ("severity", Regex, "warning|critical"),
                ],
            ),
            (r#"foo = "bar,baz""#, &[("foo", Equal, "bar,baz")]),
            (
                r#"{quote=~"She said: \"Hi, all!( How're you…)?\""}"#,
                &[("quote", Regex, "She said: \"Hi, all!( How're you…)?\"")],
            ),
            ("hello🙂Σ\u{202f}=\u{202f}world", &[("hello🙂Σ", Equal, "world")]),
            ("foo=\"\"", &[("foo", Equal, "")]),
        ];
        for (input, expected) in cases {
            let expected: Vec<(String, MatchOp, String)> = expected
                .iter()
                .map(|(n, op, v)| (n.to_string(), *op, v.to_string()))
                .collect();
            assert_eq!(parsed(input), expected, "{input}");
        }
    }

    /// The errors of the same tests, at the same places (Alertmanager
    /// counts from 0, these from 1), with this parser's words.
    #[test]
    fn a_bad_list_is_refused_naming_the_position() {
        let cases = [
            (",", 1, "expected a label name, found ','"),
            ("{,}", 2, "expected a label name, found ','"),
            ("{", 2, "'}' missing at the end"),
            ("}", 1, "a '}' without '{'"),
            ("foo=bar}", 8, "a '}' without '{'"),
            ("{foo=bar", 9, "'}' missing at the end"),
            (r#"{foo=:"bar"}"#, 7, "expected ',' between matchers, found \"bar\""),
            (r#"{foo="bar\w"}"#, 10, "unknown escape \\w"),
            (r#"{"foo"=~"\d+"}"#, 10, "a regex's \\d is written \\\\d"),
            (r"{foo=bar\n}", 9, "unexpected '\\\\'"),
            (r#"{"foo"="\xf0\x9f"}"#, 8, "not UTF-8"),
            (r#"foo="\x+1""#, 6, "unknown escape"),
            ("{{alertname=x}}", 2, "expected a label name, found '{'"),
            ("foo", 4, "expected an operator"),
            ("foo=", 5, "expected a value after \"foo\" (\"\" for the empty value)"),
            ("foo==bar", 5, "expected a value, found '='"),
            ("foo=\"bar", 5, "not closed"),
            ("=bar", 1, "expected a label name"),
            ("foo=bar baz=1", 9, "expected ',' between matchers"),
            ("foo!bar", 4, "'!' must be followed"),
            ("{foo=bar}x=1", 10, "after '}'"),
            ("foo=~\"(\"", 1, "is not a valid regex"),
            ("foo=ba'r", 7, "quote a value"),
            ("foo=\"a\nb\"", 7, "written \\n"),
        ];
        for (input, position, problem) in cases {
            let error = refused(input);
            assert_eq!(error.position, position, "{input}: {error}");
            assert!(error.problem.contains(problem), "{input}: {error}");
        }
    }

    #[test]
    fn a_regex_matches_the_whole_value_and_a_missing_label_is_empty() {
        let labels = Labels::from([("alertname", "Honeyfile"), ("client_id", "C.12")]);
        let holds = |input: &str| Matchers::parse(input).unwrap().matches(&labels);
        assert!(holds("alertname=Honeyfile"));
        assert!(holds("client_id=~\"C\\\\.1.\""));
        assert!(!holds("client_id=~\"C.1\""), "anchored: not a prefix");
        assert!(holds("client_id!~\"C.9.*\""));
        assert!(holds("hostname=\"\""), "a label it lacks is empty");
        assert!(!holds("hostname=~\".+\""));
        assert!(holds("{alertname=Honeyfile, client_id!=C.13}"));
        assert!(
            !holds("{alertname=Honeyfile, client_id=C.13}"),
            "every matcher must match"
        );
    }

    #[test]
    fn a_list_is_written_back_as_it_is_read() {
        for input in [
            "{a=\"\\u001b[2J\\u202e\\t\"}",
            "{alertname=\"Honeyfile\", client_id=~\"C\\\\.1.*\"}",
            "{a!=\"x \\\"y\\\"\", \"odd name\"!~\"z\\n\"}",
        ] {
            let matchers = Matchers::parse(input).unwrap();
            assert_eq!(matchers.to_string(), input);
            assert_eq!(Matchers::parse(&matchers.to_string()).unwrap(), matchers);
        }
    }

    #[test]
    fn arguments_are_lists_joined() {
        let all = Matchers::parse_all(&["alertname=x", "{client_id=~\"C.1|C.2\", severity!=low}"]).unwrap();
        assert_eq!(all.len(), 3);
        let many: Vec<String> = (0..33).map(|i| format!("l{i}=v")).collect();
        assert!(Matchers::parse_all(&many).unwrap_err().problem.contains("at most 32"));
    }

    #[test]
    fn a_query_filter_names_matchers_a_list_has() {
        let silence = Matchers::parse("{alertname=x, client_id=C.1}").unwrap();
        assert!(silence.includes(&Matchers::parse("alertname=\"x\"").unwrap()));
        assert!(!silence.includes(&Matchers::parse("alertname=~x").unwrap()));
    }
}
