//! Properties of what event data and configuration pass through: the
//! parameter parsers, the MIME builder, HTML escaping and CSV cells, on
//! arbitrary input (hostile included) rather than on chosen examples.
//!
//! `scripts/test` runs a fixed number of cases (PROPTEST_CASES); set it
//! higher to search longer.

use std::collections::BTreeSet;

use proptest::prelude::*;
use velonotify_core::mime::{Attachment, MailContent, build_message};
use velonotify_core::params::{DEFAULT_INT_RANGE, ParamKind, ParamSpec, Params};
use velonotify_core::render::{Html, csv_cell_safe, subject_safe};

/// Any text, with more of what attacks a reader than chance would give:
/// line breaks, NUL, quotes, markup, RFC 2047 look-alikes, reordering
/// characters and non-ASCII.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "\r\n",
        "\n",
        "\r",
        "\0",
        "<",
        ">",
        "&",
        "\"",
        "'",
        "\\",
        "=?utf-8?B?",
        "?=",
        ": ",
        "Bcc: x@y.org",
        "\u{202e}",
        "é",
        "日本",
        "\u{1F600}",
        "\t",
        "=",
        "+",
        "-",
        "@",
        " ",
        "a",
        "boundary",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(pieces, 0..40).prop_map(|p| p.concat()),
    ]
}

fn address() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,20}@[a-z][a-z0-9-]{0,20}\\.(org|com|example)"
}

/// The headers a message is built with, each once: no event data can add
/// one (decision D14).
const TOP_HEADERS: [&str; 7] = [
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
];

proptest! {
    /// An `Int` parameter's text is parsed or refused, never a panic; a
    /// number in its range reads back as itself, one outside is refused
    /// naming the range.
    #[test]
    fn int_parameters_parse_within_their_range_or_say_why(text in hostile_text(), n in any::<i64>()) {
        const SPECS: &[ParamSpec] = &[ParamSpec::new("N", ParamKind::Int, "0", "")];
        let given = |t: &str| vec![("N".to_string(), t.to_string())];
        let _ = Params::parse(SPECS, &given(&text));
        let (min, max) = DEFAULT_INT_RANGE;
        match Params::parse(SPECS, &given(&n.to_string())) {
            Ok(params) => {
                prop_assert!((min..=max).contains(&n));
                prop_assert_eq!(params.int("N"), n);
            }
            Err(e) => {
                prop_assert!(!(min..=max).contains(&n));
                prop_assert_eq!(e.message, format!("{n} is out of range ({min} to {max})"));
            }
        }
    }

    /// Every kind of parameter takes any text without panicking.
    #[test]
    fn no_parameter_text_panics_the_parser(text in hostile_text()) {
        const SPECS: &[ParamSpec] = &[
            ParamSpec::new("B", ParamKind::Bool, "N", ""),
            ParamSpec::new("S", ParamKind::String, "", ""),
            ParamSpec::new("R", ParamKind::Regex, ".", ""),
            ParamSpec::new("C", ParamKind::Csv, "", ""),
            ParamSpec::new("J", ParamKind::JsonArray, "[]", ""),
            ParamSpec::new("H", ParamKind::Choices, "a", "").with_choices(&["a", "b"]),
            ParamSpec::new("M", ParamKind::Multichoice, "[]", "").with_choices(&["a", "b"]),
        ];
        for spec in SPECS {
            let given = vec![(spec.name.to_string(), text.clone())];
            if let Err(e) = Params::parse(SPECS, &given) {
                prop_assert_eq!(e.param, spec.name);
            }
        }
    }

    /// Escaped text holds no markup of its own, and unescaping it gives the
    /// text back (line breaks as `<br>`).
    #[test]
    fn escaped_html_holds_no_markup_and_reads_back(text in hostile_text()) {
        let html = Html::text(&text).into_string();
        let without_breaks = html.replace("<br>", "");
        prop_assert!(!without_breaks.contains(['<', '>', '"', '\'', '\\']), "{html}");
        let back = html
            .replace("<br>", "\n")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&#92;", "\\")
            .replace("&amp;", "&");
        prop_assert_eq!(back, text.replace("\r\n", "\n"));
    }

    /// A CSV cell never starts with what a spreadsheet runs; a cell that
    /// did not is left alone, one that did gets one leading quote.
    #[test]
    fn csv_cells_never_start_a_formula(text in hostile_text()) {
        let cell = csv_cell_safe(&text);
        let runs = |s: &str| s.starts_with(['=', '+', '-', '@', '\t', '\r']);
        prop_assert!(!runs(&cell));
        if runs(&text) {
            prop_assert_eq!(cell.as_ref(), format!("'{text}"));
        } else {
            prop_assert_eq!(cell.as_ref(), text.as_str());
        }
    }

    /// Whatever the subject, bodies and attachment names hold, the message
    /// has exactly the intended headers, once each, no line over 998
    /// octets, and decodes back to what it was given.
    #[test]
    fn messages_have_only_their_headers_short_lines_and_decode_back(
        subject in hostile_text(),
        text in hostile_text(),
        html in hostile_text(),
        filename in hostile_text(),
        data in prop::collection::vec(any::<u8>(), 0..2000),
        from in address(),
        to in prop::collection::vec(address(), 1..4),
    ) {
        let attachments = [Attachment {
            filename: filename.clone(),
            content_type: "text/csv".into(),
            data: data.clone(),
        }];
        let message = build_message(&MailContent {
            from: &from,
            to: &to,
            subject: &subject,
            date_unix: 1_778_400_000,
            identity: "property",
            text: &text,
            html: Some(&html),
            attachments: &attachments,
        });
        for line in message.split(|b| *b == b'\n') {
            prop_assert!(line.len() <= 998 + 1, "a line of {} octets", line.len());
        }
        let mail = mailparse::parse_mail(&message).unwrap();
        let names: Vec<String> = mail.headers.iter().map(|h| h.get_key().to_ascii_lowercase()).collect();
        let distinct: BTreeSet<&str> = names.iter().map(String::as_str).collect();
        prop_assert_eq!(names.len(), distinct.len(), "a header twice: {:?}", names);
        prop_assert_eq!(distinct, TOP_HEADERS.into_iter().collect::<BTreeSet<_>>());
        let shown = mail.headers.iter().find(|h| h.get_key() == "Subject").unwrap().get_value();
        // (Folding a long header may shorten a run of spaces, and a reader
        // keeps none at either end: whitespace is compared as single spaces.)
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        prop_assert_eq!(words(&shown), words(&subject_safe(&subject)));

        let alternative = &mail.subparts[0];
        prop_assert_eq!(alternative.subparts[0].get_body().unwrap(), text);
        prop_assert_eq!(alternative.subparts[1].get_body().unwrap(), html);
        let attached = &mail.subparts[1];
        prop_assert_eq!(attached.get_body_raw().unwrap(), data);
        for part in [alternative, &alternative.subparts[0], attached] {
            for header in &part.headers {
                prop_assert!(
                    !header.get_value().contains('\n'),
                    "a line break in a part's {} header", header.get_key()
                );
            }
        }
    }
}
