//! Generates the server side of Velociraptor's API for the stand-in
//! server (`src/velociraptor_peer.rs`), and builds every rule module and
//! test module as a wasm32-wasip2 component,
//! so that tests load real components and never a hand-built file (the
//! wasmtime `test-programs` pattern).
//!
//! The guests are built by a nested cargo into `target/guests`, beside the
//! outer build's own directories (sharing them would deadlock on cargo's
//! build lock). `scripts/build-modules` builds into the same place.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages built, and the component file each produces.
const GUESTS: &[(&str, &str)] = &[
    ("velonotify-alerts", "alerts.wasm"),
    ("velonotify-flow-completion", "flow_completion.wasm"),
    ("velonotify-errors-alert", "errors_alert.wasm"),
    ("velonotify-client-errors-alert", "client_errors_alert.wasm"),
    ("velonotify-user-message", "user_message.wasm"),
    ("velonotify-webhook", "webhook.wasm"),
    ("velonotify-send-email", "send_email.wasm"),
    ("velonotify-detect", "detect.wasm"),
    ("velonotify-audit", "audit.wasm"),
    ("velonotify-quiet-clients", "quiet_clients.wasm"),
    ("velonotify-enrolment-spike", "enrolment_spike.wasm"),
    ("velonotify-hunts", "hunts.wasm"),
    ("velonotify-stuck-flows", "stuck_flows.wasm"),
    ("velonotify-hostile", "hostile.wasm"),
    ("velonotify-versioned", "versioned.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().and_then(Path::parent).unwrap().to_path_buf();
    stand_in_server(&workspace);
    // Not all of `guest`: guest/js/node_modules holds thousands of files.
    for watched in [
        "guest/core",
        "guest/sdk",
        "guest/modules",
        "guest/testing",
        "guest/python",
        "guest/js/velonotify.js",
        "guest/js/build.mjs",
        "guest/js/examples",
        "guest/js/package-lock.json",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(watched).display());
    }
    let target_dir = workspace.join("target").join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args(["build", "--locked", "--target", "wasm32-wasip2", "--profile", "guest"])
        .env("CARGO_TARGET_DIR", &target_dir)
        // The outer build's flags are for the host target, not for wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_PROFILE_RELEASE_LTO");
    for (package, _) in GUESTS {
        command.args(["-p", package]);
    }
    let status = command.status().expect("running cargo to build the guest components");
    assert!(
        status.success(),
        "building the guest components failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );
    let modules_dir = target_dir.join("wasm32-wasip2").join("guest");
    for (_, file) in GUESTS {
        assert!(modules_dir.join(file).exists(), "{file} was not built");
    }
    python_examples(&workspace, &target_dir.join("python"));
    js_examples(&workspace, &target_dir.join("js"));
    println!("cargo:rustc-env=VELONOTIFY_TEST_MODULES_DIR={}", modules_dir.display());
    println!("cargo:rustc-env=VELONOTIFY_TEST_WORKSPACE={}", workspace.display());
    println!(
        "cargo:rustc-env=VELONOTIFY_TEST_PYTHON_MODULES_DIR={}",
        target_dir.join("python").display()
    );
    println!(
        "cargo:rustc-env=VELONOTIFY_TEST_JS_MODULES_DIR={}",
        target_dir.join("js").display()
    );
}

/// The Python rule modules of `guest/python/examples`, each made a
/// component by componentize-py (installed in `.venv` by scripts/setup)
/// into `<out>/<example>.wasm`. A build takes about 20 s, so an example is
/// built again only when a file it is made from is newer than it.
fn python_examples(workspace: &Path, out: &Path) {
    let componentize = workspace.join(".venv").join("bin").join("componentize-py");
    assert!(
        componentize.exists(),
        "{} is missing: run scripts/setup (it installs componentize-py for the Python modules)",
        componentize.display()
    );
    let python = workspace.join("guest").join("python");
    let wit = workspace.join("wit");
    std::fs::create_dir_all(out).expect("creating the Python modules' directory");
    let sdk_changed = newest(&python.join("velonotify")).max(newest(&wit));
    for entry in std::fs::read_dir(python.join("examples")).expect("guest/python/examples") {
        let example = entry.expect("reading guest/python/examples").path();
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let component = out.join(format!("{name}.wasm"));
        let built = std::fs::metadata(&component).and_then(|m| m.modified()).ok();
        if built.is_some_and(|built| built > sdk_changed.max(newest(&example))) {
            continue;
        }
        let status = Command::new(&componentize)
            .args(["-d"])
            .arg(&wit)
            .args(["-w", "rule-module", "componentize", "-p"])
            .arg(&python)
            .arg("-p")
            .arg(&example)
            .args(["app", "-o"])
            .arg(&component)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running componentize-py");
        assert!(
            status.success(),
            "componentize-py failed to build {}",
            example.display()
        );
    }
}

/// The JavaScript rule modules of `guest/js/examples`, each made a
/// component by componentize-js (`guest/js/build.mjs`, its packages
/// installed by scripts/setup) into `<out>/<example>.wasm`; built again only
/// when a file it is made from is newer than it.
fn js_examples(workspace: &Path, out: &Path) {
    let js = workspace.join("guest").join("js");
    assert!(
        js.join("node_modules")
            .join("@bytecodealliance")
            .join("componentize-js")
            .exists(),
        "guest/js/node_modules is missing: run scripts/setup (it installs componentize-js for the JavaScript modules)"
    );
    let wit = workspace.join("wit");
    std::fs::create_dir_all(out).expect("creating the JavaScript modules' directory");
    // The SDK, the build script and the pinned packages make every example.
    let modified = |file: &str| {
        std::fs::metadata(js.join(file))
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("guest/js/{file}: {e}"))
    };
    let sdk_changed = ["velonotify.js", "build.mjs", "package-lock.json"]
        .into_iter()
        .map(modified)
        .fold(newest(&wit), std::time::SystemTime::max);
    for entry in std::fs::read_dir(js.join("examples")).expect("guest/js/examples") {
        let example = entry.expect("reading guest/js/examples").path();
        let name = example.file_name().unwrap().to_string_lossy().into_owned();
        let component = out.join(format!("{name}.wasm"));
        let built = std::fs::metadata(&component).and_then(|m| m.modified()).ok();
        if built.is_some_and(|built| built > sdk_changed.max(newest(&example))) {
            continue;
        }
        let status = Command::new("node")
            .current_dir(&js)
            .arg("build.mjs")
            .arg(example.join("app.js"))
            .arg(&wit)
            .arg(&component)
            .status()
            .expect("running node (componentize-js)");
        assert!(
            status.success(),
            "componentize-js failed to build {}",
            example.display()
        );
    }
}

/// The latest modification time of the files under `dir`.
fn newest(dir: &Path) -> std::time::SystemTime {
    let mut latest = std::time::SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap_or(latest)
        };
        latest = latest.max(time);
    }
    latest
}

/// The gRPC server of `host/proto/velociraptor_api.proto`: only the tests'
/// stand-in for Velociraptor serves it.
fn stand_in_server(workspace: &Path) {
    let proto_dir = workspace.join("host").join("proto");
    let proto = proto_dir.join("velociraptor_api.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&proto_dir]).expect("compiling the Velociraptor API proto");
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)
        .expect("generating the stand-in's gRPC server");
}
