#!/usr/bin/env bash
# Builds __STEM__.wasm with componentize-py (pip install componentize-py==0.25.1).
set -euo pipefail
cd "$(dirname "$0")"
componentize-py -d wit -w rule-module componentize -p . app -o __STEM__.wasm
