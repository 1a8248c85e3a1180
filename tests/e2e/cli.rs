//! The command line on good and bad input: `check` names what is wrong,
//! `replay` reports bad lines and goes on.

use serde_json::json;
use velonotify_test_support::{data, emails, jsonl, scratch, stderr};

use super::{EXE, replay, velonotify, write_alerts, write_config};

fn check(config: &std::path::Path) -> std::process::Output {
    velonotify(&["check", "-c", &config.display().to_string()])
}

fn alerts_config(params: &str) -> String {
    format!("[[module]]\nname = \"soc-mail\"\npath = \"alerts.wasm\"\n[module.params]\n{params}\n")
}

/// `check` fails, naming the module and the parameter.
fn assert_check_names(params: &str, expected: &[&str]) {
    let dir = scratch();
    let config = write_config(dir.path(), &alerts_config(params));
    let output = check(&config);
    assert!(!output.status.success(), "check accepted {params}");
    let err = stderr(&output);
    assert!(err.contains("module soc-mail"), "{err}");
    for text in expected {
        assert!(err.contains(text), "expected {text:?} in:\n{err}");
    }
}

#[test]
fn check_accepts_the_demo_configuration_and_shows_its_modules() {
    let output = check(&data("demo/velonotify.toml"));
    assert!(output.status.success(), "{}", stderr(&output));
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(
        out.contains("module Server.Monitor.Alerts (Server.Monitor.Alerts 0.1.0)"),
        "{out}"
    );
    assert!(
        out.contains("module oncall-pager (Server.Monitor.Alerts 0.1.0)"),
        "{out}"
    );
    assert!(out.contains("queues:   Server.Internal.Alerts"), "{out}");
    assert!(out.contains("allocator: pooling ("), "{out}");
    assert!(out.contains("ContextRowLimit"), "every parameter is listed:\n{out}");
}

#[test]
fn check_names_an_unknown_parameter() {
    // FlowCompletion calls it Secret, Alerts calls it ServerSecret.
    assert_check_names(r#"Secret = "mail""#, &["parameter Secret", "unknown parameter"]);
    assert_check_names(
        r#"recipients = "Address\na@b.example""#,
        &["parameter recipients", "did you mean Recipients"],
    );
}

#[test]
fn check_names_a_parameter_of_the_wrong_type() {
    assert_check_names(
        r#"SendInterval = "ten""#,
        &["parameter SendInterval", "expected an integer, got \"ten\""],
    );
    assert_check_names(r#"HTML = "maybe""#, &["parameter HTML", "expected a boolean"]);
    assert_check_names(
        r#"SeverityThreshold = "high""#,
        &["parameter SeverityThreshold", "expected a JSON array"],
    );
    assert_check_names(
        r#"Recipients = "Address\nnot an address""#,
        &["parameter Recipients", "is not an e-mail address"],
    );
}

#[test]
fn check_names_a_regex_that_does_not_compile() {
    assert_check_names(
        r#"AlertMsgInclude = "(honey""#,
        &["parameter AlertMsgInclude", "does not compile"],
    );
    assert_check_names(
        "SeverityTransforms = \"Member,Regex,Replace\\nlevel,[warn,medium\\n\"",
        &["parameter SeverityTransforms", "row 1", "does not compile"],
    );
}

/// The stuck-collections monitor's worked example in the README is taken
/// as written; a Thresholds row that is not minutes is named by row and
/// column.
#[test]
fn check_takes_the_readmes_thresholds_and_names_a_bad_row() {
    let readme = std::fs::read_to_string(data("../../README.md")).unwrap();
    let example = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|block| block.contains("stuck_flows.wasm"))
        .expect("the README's Flows.Stuck example");
    let dir = scratch();
    let output = check(&write_config(dir.path(), example));
    assert!(output.status.success(), "{}", stderr(&output));
    let bad = "[[module]]\nname = \"stuck\"\npath = \"stuck_flows.wasm\"\n[module.params]\n\
               Thresholds = \"Artifact,Minutes\\n.,soon\\n\"\n";
    let output = check(&write_config(dir.path(), bad));
    assert!(!output.status.success());
    let err = stderr(&output);
    for text in ["module stuck", "parameter Thresholds", "row 1 Minutes", "\"soon\""] {
        assert!(err.contains(text), "expected {text:?} in:\n{err}");
    }
}

#[test]
fn check_reports_a_missing_component_and_a_bad_world_file() {
    let dir = scratch();
    let config = write_config(dir.path(), "[[module]]\npath = \"nope.wasm\"\n");
    let err = stderr(&check(&config));
    assert!(err.contains("nope.wasm"), "{err}");

    std::fs::write(dir.path().join("world.json"), r#"{"clients": {"C.1": []}}"#).unwrap();
    let config = write_config(dir.path(), "[lookups]\nworld = \"world.json\"\n");
    let output = check(&config);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("clients.C.1: expected an object, got a list"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn check_rejects_a_component_that_is_not_a_rule_module() {
    let dir = scratch();
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm not really").unwrap();
    let config = write_config(dir.path(), "[[module]]\npath = \"junk.wasm\"\n");
    let output = std::process::Command::new(EXE)
        .args(["check", "-c", &config.display().to_string()])
        .args(["--modules-dir", &dir.path().display().to_string()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("is not a WebAssembly component"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn replay_reports_a_malformed_line_with_its_number_and_goes_on() {
    let out = scratch();
    let output = replay(&data("demo/velonotify.toml"), &data("demo/events.jsonl"), out.path());
    let truncated = velonotify_test_support::event_id(&data("demo/events.jsonl"), "Truncated row");
    let log = jsonl(&out.path().join("log.jsonl"));
    let bad: Vec<_> = log.iter().filter(|l| l["module"].is_null()).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["event"], truncated.as_str());
    assert!(bad[0]["message"].as_str().unwrap().contains("malformed JSON"));
    let err = stderr(&output);
    assert!(err.contains(&format!("{truncated}: malformed JSON")), "{err}");
    let next_line: usize = truncated.rsplit(':').next().unwrap().parse::<usize>().unwrap() + 1;
    let summary = jsonl(&out.path().join("summary.jsonl"));
    let next = format!("events.jsonl:{next_line}");
    assert!(
        summary.iter().any(|s| s["event"] == next.as_str()),
        "the lines after it are handled"
    );
}

#[test]
fn d7_an_alert_without_recipients_sends_nothing_and_logs_one_error() {
    let dir = scratch();
    let config = write_config(dir.path(), "[[module]]\npath = \"alerts.wasm\"\n");
    let rows = [json!({"client_id": "server", "name": "Lonely alert", "event_data": {}, "_ts": 1_778_400_000})];
    let events = write_alerts(dir.path(), &rows);
    let out = dir.path().join("out");
    replay(&config, &events, &out);
    assert!(emails(&out).is_empty());
    let errors: Vec<_> = jsonl(&out.join("log.jsonl"))
        .into_iter()
        .filter(|l| l["level"] == "error")
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("No recipients resolved: set Recipients or enable NotifyExecutor.")
    );
}

#[test]
fn a_module_that_rejects_an_event_is_reported_and_the_next_event_is_handled() {
    let dir = scratch();
    let config = write_config(dir.path(), &alerts_config(r#"Recipients = "Address\nsoc@example.org""#));
    let rows = [
        json!({"client_id": "server", "event_data": {}, "_ts": 1_778_400_000}),
        json!({"client_id": "server", "name": "fine", "event_data": {}, "_ts": 1_778_400_001}),
    ];
    let events = write_alerts(dir.path(), &rows);
    let out = dir.path().join("out");
    replay(&config, &events, &out);
    let log = jsonl(&out.join("log.jsonl"));
    assert!(log.iter().any(|l| l["level"] == "warn"
        && l["module"] == "soc-mail"
        && l["event"] == "events.jsonl:1"
        && l["message"].as_str().unwrap().contains("alert row has no name column")));
    assert_eq!(emails(&out).len(), 1);
}

/// A parameter table of README.md: the section whose title contains
/// `section`, and its n-th table for `section#n`.
fn readme_table(section: &str) -> Vec<Vec<String>> {
    let (title, nth) = match section.split_once('#') {
        Some((title, n)) => (title, n.parse::<usize>().unwrap() - 1),
        None => (section, 0),
    };
    let readme = std::fs::read_to_string(velonotify_test_support::workspace().join("README.md")).unwrap();
    let text = readme
        .split("\n## ")
        .find(|s| s.lines().next().is_some_and(|t| t.contains(title)))
        .unwrap_or_else(|| panic!("README.md has no section about {title}"));
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with('|') {
            if !in_table {
                tables.push(Vec::new());
                in_table = true;
            }
            if line.starts_with("| ") {
                // Cells are separated by " | "; "\\|" inside a cell is a pipe.
                let cells = line
                    .trim_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().to_string())
                    .collect();
                tables.last_mut().unwrap().push(cells);
            }
        } else {
            in_table = false;
        }
    }
    tables
        .into_iter()
        .nth(nth)
        .unwrap_or_else(|| panic!("README.md section {title} has no table {}", nth + 1))
}

/// Every parameter of `params` is in the table of README.md's `section`
/// with its default (its first line, for multi-line defaults), and the
/// table has no other parameter.
fn assert_documented(section: &str, module: &str, params: &[velonotify_core::params::ParamSpec]) {
    let rows = readme_table(section);
    for param in params {
        let row = rows
            .iter()
            .find(|r| r[0] == param.name)
            .unwrap_or_else(|| panic!("README.md does not document {module} {}", param.name));
        let default = &row[2];
        let first_line = param.default.lines().next().unwrap_or("");
        let documented = match first_line {
            "" => default == "(empty)",
            _ => default.contains(&format!("`{first_line}`")),
        };
        assert!(
            documented,
            "README.md gives {module} {} the default {default:?}, the module {:?}",
            param.name, param.default
        );
    }
    assert_eq!(
        rows.len() - 1,
        params.len(),
        "README.md documents {module} parameters the module does not have"
    );
}

#[test]
fn the_readme_documents_every_parameter_with_its_default() {
    use velonotify_core::rules::Rule;
    use velonotify_core::rules::alerts::AlertsRule;
    use velonotify_core::rules::audit::AuditRule;
    use velonotify_core::rules::collections::hunts::HuntsRule;
    use velonotify_core::rules::collections::stuck::StuckFlowsRule;
    use velonotify_core::rules::detect::DetectRule;
    use velonotify_core::rules::errors_alert::{ClientErrorsRule, ServerErrorsRule};
    use velonotify_core::rules::fleet::enrolment::EnrolmentSpikeRule;
    use velonotify_core::rules::fleet::quiet::QuietClientsRule;
    use velonotify_core::rules::flow_completion::FlowCompletionRule;
    use velonotify_core::rules::send_email::SendEmailRule;
    use velonotify_core::rules::user_message::UserMessageRule;
    use velonotify_core::rules::webhook::WebhookRule;
    assert_documented("Server.Monitor.Alerts", AlertsRule::NAME, AlertsRule::PARAMS);
    assert_documented(
        "Server.Monitor.FlowCompletion",
        FlowCompletionRule::NAME,
        FlowCompletionRule::PARAMS,
    );
    // One table for both monitors: the same parameters; ExcludeFilter's
    // defaults differ and both start with its header row.
    assert_documented("error monitors", ServerErrorsRule::NAME, ServerErrorsRule::PARAMS);
    assert_documented("error monitors", ClientErrorsRule::NAME, ClientErrorsRule::PARAMS);
    // The third table of that section maps PagerDuty's event fields.
    let tables = ["user messages", "user messages#2", "user messages#3"];
    assert_documented(tables[0], UserMessageRule::NAME, UserMessageRule::PARAMS);
    assert_documented(tables[1], WebhookRule::NAME, WebhookRule::PARAMS);
    assert_documented(tables[2], DetectRule::NAME, DetectRule::PARAMS);
    assert_documented("SendEmail", SendEmailRule::NAME, SendEmailRule::PARAMS);
    assert_documented("audit log", AuditRule::NAME, AuditRule::PARAMS);
    let fleet = ["Watching the fleet", "Watching the fleet#2"];
    assert_documented(fleet[0], QuietClientsRule::NAME, QuietClientsRule::PARAMS);
    assert_documented(fleet[1], EnrolmentSpikeRule::NAME, EnrolmentSpikeRule::PARAMS);
    let collections = ["Watching hunts", "Watching hunts#2"];
    assert_documented(collections[0], HuntsRule::NAME, HuntsRule::PARAMS);
    assert_documented(collections[1], StuckFlowsRule::NAME, StuckFlowsRule::PARAMS);
}

#[test]
fn bad_flow_completion_rows_are_named_and_the_next_rows_are_handled() {
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &format!(
            "[lookups]\nworld = {:?}\n[[module]]\nname = \"flows\"\npath = \"flow_completion.wasm\"\n[module.params]\n\
             Recipients = \"Address\\nsoc@example.org\"\nDelayThreshold = 0\n",
            data("demo/world.json").display().to_string()
        ),
    );
    let good = json!({"Timestamp": 1_778_401_380u64, "ClientId": "C.91ac3d5e7f20b846", "FlowId": "F.D7M3R8E2OK3QE", "Flow": {}});
    let with = |key: &str, value: serde_json::Value| {
        let mut row = good.clone();
        row[key] = value;
        row
    };
    let without = |key: &str| {
        let mut row = good.clone();
        row.as_object_mut().unwrap().remove(key);
        row
    };
    let rows = [
        without("FlowId"),
        with("ClientId", json!(42)),
        without("Flow"),
        with("Flow", json!([1, 2])),
        with("FlowId", json!("F.UNKNOWN")),
        good.clone(),
    ];
    let mut text = String::new();
    for (i, row) in rows.iter().enumerate() {
        let mut row = row.clone();
        row["_Source"] = "System.Flow.Completion".into();
        row["_ts"] = json!(1_778_401_380u64 + i as u64);
        text.push_str(&format!("{row}\n"));
    }
    let events = dir.path().join("flows.jsonl");
    std::fs::write(&events, text).unwrap();
    let out = dir.path().join("out");
    replay(&config, &events, &out);
    let messages: Vec<(String, String)> = jsonl(&out.join("log.jsonl"))
        .into_iter()
        .filter(|l| l["level"] == "warn")
        .map(|l| {
            (
                l["event"].as_str().unwrap().to_string(),
                l["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (
            "flows.jsonl:1",
            "bad event: System.Flow.Completion row: the row has no FlowId column",
        ),
        (
            "flows.jsonl:2",
            "bad event: flow F.D7M3R8E2OK3QE: column ClientId should be a client id, got 42",
        ),
        (
            "flows.jsonl:3",
            "bad event: flow F.D7M3R8E2OK3QE: the row has no Flow column",
        ),
        (
            "flows.jsonl:4",
            "bad event: flow F.D7M3R8E2OK3QE: column Flow should be the flow object, got [1,2]",
        ),
        (
            "flows.jsonl:5",
            "bad event: flow F.UNKNOWN of client C.91ac3d5e7f20b846: the lookups do not know this flow",
        ),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(e, m)| (e.to_string(), m.to_string())).collect();
    assert_eq!(messages, expected, "one message per bad row, naming the flow");
    let summary = jsonl(&out.join("summary.jsonl"));
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["event"], "flows.jsonl:6", "the row after them is handled");
}

/// A secret named explicitly must exist: a misspelt `ServerSecret` would
/// otherwise send with `[smtp]`, silently.
#[test]
fn check_names_a_secret_that_is_not_configured() {
    assert_check_names(
        r#"ServerSecret = "notify_mial_secret""#,
        &[
            "parameter ServerSecret",
            "names the secret \"notify_mial_secret\", but no [secrets.notify_mial_secret] section exists \
             (there are none)",
        ],
    );
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &format!(
            "[secrets.notify_mail_secret]\nserver = \"smtp.example.org\"\n{}",
            alerts_config(r#"ServerSecret = "notify_mail_secret""#)
        ),
    );
    let output = check(&config);
    assert!(output.status.success(), "{}", stderr(&output));
}

/// A parameter read from a file reads a regular file of text, bounded: a
/// FIFO, a link to `/dev/zero`, a directory or bytes that are not UTF-8 are
/// refused at once, naming the parameter and the file.
#[test]
fn check_refuses_parameter_files_that_are_not_bounded_text() {
    let dir = scratch();
    let fifo = dir.path().join("recipients.fifo");
    rustix::fs::mknodat(rustix::fs::CWD, &fifo, rustix::fs::FileType::Fifo, 0o600.into(), 0).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.csv")).unwrap();
    std::fs::create_dir(dir.path().join("folder.csv")).unwrap();
    std::fs::write(dir.path().join("latin1.csv"), b"Address\nm\xfcller@example.org\n").unwrap();
    let big = dir.path().join("big.csv");
    std::fs::write(&big, "Address\n".to_string() + &"a@example.org\n".repeat(400_000)).unwrap();
    for (file, why) in [
        ("recipients.fifo", "recipients.fifo is a FIFO, not a regular file"),
        ("zero.csv", "zero.csv is a character device, not a regular file"),
        ("folder.csv", "folder.csv is a directory, not a regular file"),
        ("latin1.csv", "not UTF-8 text"),
        ("big.csv", "big.csv is over 4194304 bytes"),
    ] {
        let config = write_config(
            dir.path(),
            &alerts_config(&format!("Recipients = {{ file = \"{file}\" }}")),
        );
        let started = std::time::Instant::now();
        let output = check(&config);
        assert!(!output.status.success(), "{file} accepted");
        let err = stderr(&output);
        assert!(
            err.contains("parameter Recipients") && err.contains(why),
            "{file}: {err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{file}: blocked"
        );
    }
}

/// `velonotify check | head` ends quietly when `head` has read enough,
/// as Unix tools do, instead of panicking on the closed pipe.
#[test]
fn a_command_whose_reader_goes_away_ends_without_a_panic() {
    use std::io::Read as _;
    use std::os::unix::process::ExitStatusExt as _;
    let dir = scratch();
    // Well over a pipe's 64 KiB of listing.
    let modules: String = (0..80)
        .map(|i| alerts_config("").replace("soc-mail", &format!("soc-{i}")))
        .collect();
    let config = write_config(dir.path(), &modules);
    let mut child = std::process::Command::new(EXE)
        .args(["check", "-c", &config.display().to_string()])
        .args([
            "--modules-dir",
            &velonotify_test_support::modules_dir().display().to_string(),
        ])
        .args([
            "--cache-dir",
            &velonotify_test_support::cache_dir().display().to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here, long before the listing ends.
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(output.status.signal(), Some(libc::SIGPIPE), "{err}");
}

/// `velonotify console hash-password` prints a hash that `check` takes for
/// a console user, and refuses a short password; `check` prints the users
/// and roles, never a hash.
#[test]
fn console_hash_password_makes_a_hash_that_check_takes() {
    use std::io::Write as _;
    let hash = |password: &str| {
        let mut child = std::process::Command::new(EXE)
            .args(["console", "hash-password"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };
    let short = hash("hunter2");
    assert!(!short.status.success());
    assert!(stderr(&short).contains("at least 12 characters"), "{}", stderr(&short));
    let made = hash("correct horse battery staple");
    assert!(made.status.success(), "{}", stderr(&made));
    let phc = String::from_utf8(made.stdout).unwrap().trim().to_string();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let dir = scratch();
    let config = write_config(
        dir.path(),
        &format!(
            "{}[console]\nlisten = \"127.0.0.1:9465\"\n[[console.user]]\nname = \"ann\"\npassword_hash = {phc:?}\nrole = \"operator\"\n",
            alerts_config("")
        ),
    );
    let output = check(&config);
    assert!(output.status.success(), "{}", stderr(&output));
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("console: 127.0.0.1:9465, users ann (operator)"),
        "{shown}"
    );
    assert!(!shown.contains("argon2"), "{shown}");
}
