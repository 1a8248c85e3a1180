#!/usr/bin/env bash
# Builds __STEM__.wasm (rustup target add wasm32-wasip2).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/__STEM__.wasm" __STEM__.wasm
