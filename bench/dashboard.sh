#!/usr/bin/env bash
# The dashboard's page weight, first render and idle cost (bench/dashboard.mjs), on the release
# binary, in Debian's Chromium. Usage: bench/dashboard.sh [--renders N] [--idle-secs S] [--pages a,b]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin exai
(cd tests/ts && npm ci --no-audit --no-fund --silent)
target="${CARGO_TARGET_DIR:-target}"
uptime
node bench/dashboard.mjs "$target/release/exai" "$@"
