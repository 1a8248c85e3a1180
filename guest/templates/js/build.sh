#!/usr/bin/env bash
# Builds __STEM__.wasm with componentize-js (the packages of package.json).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules ] || npm install --no-audit --no-fund --loglevel=error
node build.mjs app.js wit __STEM__.wasm
