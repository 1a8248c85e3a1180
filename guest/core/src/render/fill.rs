//! Text templates with `{field}` placeholders: alert names of the detect
//! module, messages of the webhook module. `{{` and `}}` stand for braces.

use std::fmt;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(String),
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillError(String);

impl fmt::Display for FillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FillTemplate {
    /// Parses `text`; `{name}` is a field, `{{`/`}}` are literal braces.
    pub fn parse(text: &str) -> Result<Self, FillError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(FillError(format!("unclosed {{ in {text:?} (write {{{{ for a brace)")));
                            }
                            Some(c) => name.push(c),
                        }
                    }
                    let name = name.trim().to_string();
                    if name.is_empty() {
                        return Err(FillError(format!("empty {{}} in {text:?}")));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name));
                }
                '}' => return Err(FillError(format!("unmatched }} in {text:?} (write }}}} for a brace)"))),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Self { parts })
    }

    /// The field names, in order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Checks that every field is allowed: `known` names, or names under
    /// one of `prefixes` (`event_data.` matches `event_data.Path`).
    pub fn check_fields(&self, known: &[&str], prefixes: &[&str]) -> Result<(), FillError> {
        for field in self.fields() {
            let ok = known.contains(&field) || prefixes.iter().any(|p| field.starts_with(p) && field.len() > p.len());
            if !ok {
                let mut all: Vec<String> = known.iter().map(|k| format!("{{{k}}}")).collect();
                all.extend(prefixes.iter().map(|p| format!("{{{p}...}}")));
                return Err(FillError(format!(
                    "unknown field {{{field}}} (known: {})",
                    all.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The text with each field replaced by `value(field)`; a field without
    /// a value becomes empty.
    pub fn fill(&self, mut value: impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(name) => out.push_str(&value(name).unwrap_or_default()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_replaced_and_double_braces_are_literal() {
        let t = FillTemplate::parse("Honey file \"{FileName}\" accessed on {client.hostname} {{x}}").unwrap();
        let out = t.fill(|f| match f {
            "FileName" => Some("/home/a/.ssh/id_rsa".into()),
            "client.hostname" => Some("ws1".into()),
            _ => None,
        });
        assert_eq!(out, "Honey file \"/home/a/.ssh/id_rsa\" accessed on ws1 {x}");
    }

    #[test]
    fn missing_values_are_empty() {
        assert_eq!(FillTemplate::parse("a{x}b").unwrap().fill(|_| None), "ab");
    }

    #[test]
    fn bad_templates_say_what_is_wrong() {
        assert!(
            FillTemplate::parse("a {b")
                .unwrap_err()
                .to_string()
                .contains("unclosed {")
        );
        assert!(
            FillTemplate::parse("a } b")
                .unwrap_err()
                .to_string()
                .contains("unmatched }")
        );
        assert!(
            FillTemplate::parse("a {} b")
                .unwrap_err()
                .to_string()
                .contains("empty {}")
        );
    }

    #[test]
    fn unknown_fields_are_named_with_the_known_ones() {
        let t = FillTemplate::parse("{name} {nmae}").unwrap();
        let err = t
            .check_fields(&["name", "client_id"], &["event_data."])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown field {nmae} (known: {name}, {client_id}, {event_data....})"
        );
        assert!(
            FillTemplate::parse("{event_data.File}")
                .unwrap()
                .check_fields(&[], &["event_data."])
                .is_ok()
        );
    }
}
