#!/usr/bin/env bash
# The main job on embedded defaults: build exai and serve MCP over Streamable HTTP at
# http://127.0.0.1:8079/mcp (no keys, no external server). Extra arguments go to `exai daemon`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin exai
exec "${CARGO_TARGET_DIR:-target}/release/exai" daemon "$@"
