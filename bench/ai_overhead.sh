#!/usr/bin/env bash
# Gateway overhead of the AI tools: an MCP `chat` call through exai to the built-in mock provider
# versus the same chat request sent to the mock directly, plus a trivial MCP tool for the
# protocol's own share, at concurrency 1 and 50, over Streamable HTTP (exai's server in process)
# and stdio (`exai serve` as a child), side by side on loopback, with the CPU time per call.
# Usage: bench/ai_overhead.sh [--calls N] [--concurrency 1,50] [--transport http,http-pooled,stdio]
#        [--provider-ms L [--open]]  (mock answers after L ms; --open: calls arrive at c*1000/L per s)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p exai
cargo build --release --quiet -p exai-server --example gateway_overhead
target="${CARGO_TARGET_DIR:-target}"
"$target/release/examples/gateway_overhead" "$@"
