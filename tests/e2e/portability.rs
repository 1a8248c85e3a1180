//! Portability: a velonotify module is a plain WebAssembly component. The
//! alerts component, transpiled to JavaScript by jco and run in Node.js with
//! a host interface written in JavaScript (tests/portability), renders the
//! same e-mails, byte for byte, as under velonotify's own host.
//!
//! Needs Node.js and `npm ci` in tests/portability (scripts/setup does it).

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use velonotify::capabilities::lookups::LookupSource;
use velonotify::cli::config::Config;
use velonotify::cli::runtime::{Overrides, load_world};
use velonotify_test_support::{emails, jsonl, modules_dir, scratch, workspace};

use super::{replay, write_config};

const WORLD: &str = r#"{
  "clients": {
    "C.4b7e1a9c0d2f3e51": {
      "client_id": "C.4b7e1a9c0d2f3e51",
      "os_info": {"system": "linux", "hostname": "ws-lin-07", "fqdn": "ws-lin-07.corp.example"},
      "labels": ["linux", "honeypot"],
      "metadata": {"Owner": "alice@corp.example", "Department": "Finance"}
    }
  }
}"#;

const EVENTS: &str = r#"{"client_id":"C.4b7e1a9c0d2f3e51","name":"Honeyfile opened: <salaries>.xlsx","level":"high","timestamp":"2026-11-22T10:00:00Z","event_data":{"path":"C:\\Users\\alice\\<script>alert(1)</script>.xlsx","user":"Zoë"},"artifact":"Custom.Honeyfiles","artifact_type":"CLIENT_EVENT","_ts":1795341600,"_Source":"Server.Internal.Alerts"}
{"client_id":"server","name":"Event query failing","level":"medium","timestamp":"2026-11-22T10:01:00Z","event_data":{"query":"Server.Monitor.Health","error":"timeout"},"artifact":"Server.Monitor.Health","artifact_type":"SERVER_MONITORING","_ts":1795341660,"_Source":"Server.Internal.Alerts"}

{"client_id":"C.unknown","name":"Unknown client","level":"low","event_data":{"n":3},"artifact":"Custom.X","artifact_type":"CLIENT_EVENT","_ts":1795341720,"_Source":"Server.Internal.Alerts"}
"#;

const MODULE: &str = r#"
[server]
public_url = "https://velociraptor.corp.example:8889/app/index.html"

[smtp]
from = "velociraptor-alerts@corp.example"

[lookups]
world = "world.json"

[[module]]
name = "soc-mail"
path = "alerts.wasm"
[module.params]
Recipients = "Address\nsoc@corp.example\n"
IncludeClientDetails = true
ClientMetadata = "Field\nOwner\nDepartment\n"
IncludeFlowDetails = false
IncludeArtifactDetails = false
"#;

fn portability_dir() -> std::path::PathBuf {
    workspace().join("tests").join("portability")
}

/// Transpiles `component` with jco into tests/portability/transpiled
/// (where Node finds the preview2 shim), each of velonotify's interfaces
/// mapped to the export of the same name in tests/portability/host.js. Returns the module's JavaScript file.
fn transpile(component: &Path) -> std::path::PathBuf {
    let jco = portability_dir().join("node_modules/@bytecodealliance/jco/dist/jco.js");
    assert!(
        jco.exists(),
        "jco is not installed in tests/portability: run scripts/setup (needs Node.js and npm)"
    );
    let stem = component.file_stem().unwrap().to_string_lossy().into_owned();
    let out = portability_dir().join("transpiled").join(&stem);
    let output = Command::new("node")
        .arg(&jco)
        .arg("transpile")
        .arg(component)
        .arg("-o")
        .arg(&out)
        .args(["--map", "velociraptor:notify/*=../../host.js#*", "--quiet"])
        .output()
        .expect("running node (is Node.js installed?)");
    assert!(
        output.status.success(),
        "jco transpile failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    out.join(format!("{stem}.js"))
}

/// What the JavaScript host answers: velonotify's own answers for the
/// same configuration and world.
fn answers(config_path: &Path) -> Value {
    let config = Config::load(config_path).unwrap();
    let module = &config.modules[0];
    let params = module.param_texts(&config.base_dir).unwrap();
    let world = load_world(&config, &Overrides::default()).unwrap();
    let server = config.host_facts().server_info(world.org_info(config.default_org()));
    json!({
        "params": params,
        "org_id": config.default_org(),
        "server": {
            "org_id": server.org_id,
            "org_name": server.org_name,
            "public_url": server.public_url,
            "default_sender": server.default_sender,
            "max_email_bytes": server.max_email_bytes,
        },
        "world": serde_json::from_str::<Value>(WORLD).unwrap(),
    })
}

#[test]
fn the_alerts_component_renders_the_same_emails_in_node_through_jco() {
    let dir = scratch();
    std::fs::write(dir.path().join("world.json"), WORLD).unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, EVENTS).unwrap();
    let config = write_config(dir.path(), MODULE);

    let out = dir.path().join("out");
    replay(&config, &events, &out);
    let native: Vec<Vec<u8>> = emails(&out).into_iter().map(|(_, bytes)| bytes).collect();
    let summary = jsonl(&out.join("summary.jsonl"));
    assert_eq!(native.len(), 3, "every alert is e-mailed under velonotify");

    let answers_file = dir.path().join("answers.json");
    std::fs::write(&answers_file, answers(&config).to_string()).unwrap();
    let module_js = transpile(&modules_dir().join("alerts.wasm"));
    let output = Command::new("node")
        .arg(portability_dir().join("run.mjs"))
        .args([&module_js, &answers_file, &events])
        .output()
        .expect("running node");
    assert!(
        output.status.success(),
        "the module failed in Node.js:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let actions: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    assert_eq!(actions.len(), native.len(), "{actions:#?}");
    for ((action, native), line) in actions.iter().zip(&native).zip(&summary) {
        assert_eq!(action["kind"], "email");
        assert_eq!(action["event"], line["event"]);
        assert_eq!(action["subject"], line["subject"]);
        assert_eq!(action["recipients"], line["recipients"]);
        let message = base64_decode(action["message"].as_str().unwrap());
        assert!(
            &message == native,
            "the e-mail for {} differs:\n--- Node.js ---\n{}\n--- velonotify ---\n{}",
            line["event"],
            String::from_utf8_lossy(&message),
            String::from_utf8_lossy(native)
        );
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}
