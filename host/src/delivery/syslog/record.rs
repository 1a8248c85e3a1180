//! A notification's record: RFC 5424
//! (<https://www.rfc-editor.org/rfc/rfc5424>), its labels as structured
//! data, or ArcSight's Common Event Format in the message.
//!
//! Everything in a record comes from events and modules, so everything is
//! escaped for where it goes: header fields keep printable ASCII only
//! (anything else becomes `_`) and are bounded as RFC 5424 says;
//! parameter values escape `"`, `\` and `]`; CEF header fields escape `|`
//! and `\`, extension values `=`, `\` and line breaks. No record holds a
//! line break, so even a receiver that frames by lines keeps one record.

use serde::Deserialize;

use velonotify_core::rules::webhook::Severity;

use super::Facility;
use crate::store::SyslogPayload;

/// What goes in the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The summary as MSG, the labels as structured data.
    #[default]
    Rfc5424,
    /// A CEF line as MSG (no structured data).
    Cef,
}

/// The SD-ID of the labels: `velonotify` under the private enterprise
/// number RFC 5612 sets aside for documentation, as velonotify has none
/// of its own.
pub const SD_ID: &str = "velonotify@32473";

/// The most characters of the summary a record carries.
const MAX_SUMMARY_CHARS: usize = 2048;

/// One record, ready to render.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub facility: Facility,
    pub app_name: &'a str,
    pub hostname: &'a str,
    pub payload: &'a SyslogPayload,
}

impl Record<'_> {
    /// The record as one syslog message (without its frame).
    pub fn render(&self, format: Format) -> Vec<u8> {
        let label = |name: &str| self.payload.labels.get(name);
        // The label holds the alert's own word (`noise::labels`).
        let severity = Severity::from_word(label("severity"));
        let priority = u16::from(self.facility.code()) * 8 + u16::from(syslog_severity(severity));
        let (structured, message) = match format {
            Format::Rfc5424 => (self.structured_data(), one_line(&self.payload.summary)),
            Format::Cef => ("-".to_string(), self.cef(severity)),
        };
        format!(
            "<{priority}>1 {} {} {} {} {} {structured} {message}",
            timestamp(self.payload.time_us),
            header_field(self.hostname, 255),
            header_field(self.app_name, 48),
            std::process::id(),
            header_field(label("module"), 32),
        )
        .into_bytes()
    }

    /// `[velonotify@32473 alertname="..." ...]`, a parameter per label.
    fn structured_data(&self) -> String {
        let mut sd = format!("[{SD_ID}");
        for (name, value) in self.payload.labels.iter() {
            if is_param_name(name) {
                sd.push_str(&format!(" {name}=\"{}\"", param_value(value)));
            }
        }
        sd.push(']');
        sd
    }

    /// `CEF:0|Velocidex|Velociraptor|velonotify VERSION|signature|name|severity|extension`.
    fn cef(&self, severity: Severity) -> String {
        let label = |name: &str| self.payload.labels.get(name);
        let name = match label("alertname") {
            "" => one_line(&self.payload.summary),
            alertname => alertname.to_string(),
        };
        let signature = match label("artifact") {
            "" => "velonotify",
            artifact => artifact,
        };
        let mut extension = vec![
            ("rt".to_string(), (self.payload.time_us / 1000).to_string()),
            ("msg".into(), one_line(&self.payload.summary)),
        ];
        if !label("hostname").is_empty() {
            extension.push(("dvchost".into(), label("hostname").to_string()));
        }
        for (i, custom) in ["client_id", "artifact", "module", "org", "kind"].iter().enumerate() {
            if !label(custom).is_empty() {
                extension.push((format!("cs{}Label", i + 1), custom.to_string()));
                extension.push((format!("cs{}", i + 1), label(custom).to_string()));
            }
        }
        let extension: Vec<String> = extension
            .iter()
            .map(|(key, value)| format!("{key}={}", cef_value(value)))
            .collect();
        format!(
            "CEF:0|Velocidex|Velociraptor|velonotify {}|{}|{}|{}|{}",
            env!("CARGO_PKG_VERSION"),
            cef_header(signature),
            cef_header(&name),
            cef_severity(severity),
            extension.join(" ")
        )
    }
}

/// RFC 5424's severity: a notification without one is a warning.
fn syslog_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium | Severity::Unstated => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// CEF's 0 to 10.
fn cef_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Critical => 10,
        Severity::High => 8,
        Severity::Medium | Severity::Unstated => 5,
        Severity::Low => 3,
        Severity::Info => 1,
    }
}

/// RFC 3339 in UTC with microseconds (RFC 5424 allows six digits).
fn timestamp(time_us: u64) -> String {
    let micros = i64::try_from(time_us).unwrap_or(i64::MAX);
    velonotify_core::vql::Timestamp::from_unix_micros(micros).rfc3339_precise()
}

/// A header field: printable ASCII without spaces, at most `max`, `-` when
/// empty.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// Whether a label's name may be an SD-PARAM name (1 to 32 printable
/// ASCII characters, none of `= ]"`).
fn is_param_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_graphic() && !b"=]\"".contains(&b))
}

/// A PARAM-VALUE: `"`, `\` and `]` escaped, line breaks made spaces.
fn param_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in one_line(value).chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A CEF header field: `\` and `|` escaped.
fn cef_header(text: &str) -> String {
    one_line(text).replace('\\', "\\\\").replace('|', "\\|")
}

/// A CEF extension value: `\` and `=` escaped, line breaks as `\n`.
fn cef_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().take(MAX_SUMMARY_CHARS) {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` on one line (control characters as spaces), bounded.
fn one_line(text: &str) -> String {
    text.chars()
        .take(MAX_SUMMARY_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::Labels;

    fn payload(summary: &str, labels: &[(&str, &str)]) -> SyslogPayload {
        let mut set = Labels::default();
        for (name, value) in labels {
            set.set(name, value);
        }
        SyslogPayload {
            sink: "siem".into(),
            time_us: 1_778_400_000_250_000,
            summary: summary.into(),
            labels: set,
        }
    }

    fn render(payload: &SyslogPayload, format: Format) -> String {
        let record = Record {
            facility: Facility::Local4,
            app_name: "velonotify",
            hostname: "vr-notify",
            payload,
        };
        String::from_utf8(record.render(format)).unwrap()
    }

    #[test]
    fn an_rfc5424_record_carries_the_labels_as_structured_data() {
        let p = payload(
            "Alert: Honey\nnext line",
            &[
                ("alertname", "Honey \"x\" ]"),
                ("severity", "high"),
                ("module", "alerts"),
            ],
        );
        let line = render(&p, Format::Rfc5424);
        let pid = std::process::id();
        assert_eq!(
            line,
            format!(
                "<163>1 2026-05-10T08:00:00.25Z vr-notify velonotify {pid} alerts \
                 [velonotify@32473 alertname=\"Honey \\\"x\\\" \\]\" module=\"alerts\" severity=\"high\"] Alert: Honey next line"
            )
        );
    }

    #[test]
    fn a_cef_record_escapes_its_header_and_extension() {
        let p = payload(
            "a=b\\c",
            &[
                ("alertname", "Pipe|name"),
                ("client_id", "C.1"),
                ("severity", "critical"),
                ("artifact", "A.B"),
            ],
        );
        let line = render(&p, Format::Cef);
        let cef = &line[line.find("CEF:").unwrap()..];
        assert!(
            cef.starts_with(&format!(
                "CEF:0|Velocidex|Velociraptor|velonotify {}|A.B|Pipe\\|name|10|rt=1778400000250 msg=a\\=b\\\\c cs1Label=client_id cs1=C.1",
                env!("CARGO_PKG_VERSION")
            )),
            "{cef}"
        );
        assert!(line.starts_with("<162>1 "), "local4.crit: {line}");
    }

    #[test]
    fn header_fields_keep_printable_ascii_and_have_a_nil_value() {
        assert_eq!(header_field("my module é", 32), "my_module__");
        assert_eq!(header_field("", 32), "-");
        assert_eq!(header_field(&"x".repeat(40), 32).len(), 32);
        assert!(!is_param_name("a b") && !is_param_name("") && is_param_name("client_id"));
    }
}
