#!/usr/bin/env bash
# Crawl throughput over loopback on the toolchain's Rust Book (pages/s with politeness off and
# on) and the refresh of the unchanged Book; see crates/exai-fetch/examples/crawl_bench.rs.
# Usage: bench/crawl.sh [--polite-pages N]   (results are printed; BENCHMARKS.md records them)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p exai-fetch --example crawl_bench
"${CARGO_TARGET_DIR:-target}/release/examples/crawl_bench" "$@"
