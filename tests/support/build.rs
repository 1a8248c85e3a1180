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
    ("velonotify-detect", "detect.wasm"),
    ("velonotify-hostile", "hostile.wasm"),
    ("velonotify-versioned", "versioned.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().and_then(Path::parent).unwrap().to_path_buf();
    stand_in_server(&workspace);
    for watched in ["guest", "wit", "Cargo.lock", "Cargo.toml"] {
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
    println!("cargo:rustc-env=VELONOTIFY_TEST_MODULES_DIR={}", modules_dir.display());
    println!("cargo:rustc-env=VELONOTIFY_TEST_WORKSPACE={}", workspace.display());
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
