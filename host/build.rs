//! Generates the gRPC client of Velociraptor's API from
//! `proto/velociraptor_api.proto`, with a pure-Rust protobuf compiler
//! (protox), so building needs no `protoc`. The server side is generated
//! only for the tests' stand-in (`tests/support/build.rs`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/velociraptor_api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
