#!/usr/bin/env bash
# The main job on embedded defaults (no keys, no external server): build exai, install the
# embedding model, index the Rust Book from the local toolchain if the knowledge base is empty,
# and serve MCP over Streamable HTTP at http://127.0.0.1:8079/mcp (and the dashboard at
# http://127.0.0.1:8079/). Keyword search works at once;
# the daemon computes the embeddings in the background. Extra arguments go to `exai daemon`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin exai
exe="${CARGO_TARGET_DIR:-target}/release/exai"

paths="$("$exe" config paths)"
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]] or '')" "$paths" "$1"; }
if [ -z "$(field model_dir)" ]; then
  scripts/install-model.sh "$(field default_model_dir)"
fi
# ONNX Runtime makes local embedding 2-3x faster than candle (BENCHMARKS.md); `embed.backend =
# auto` picks it up from the data directory. Without it exai still works, on candle.
scripts/install-onnxruntime.sh "$(field data_dir)/onnxruntime" >/dev/null || echo "ONNX Runtime not installed; embedding with candle" >&2
scripts/install-model.sh --onnx "$(field data_dir)/models/all-MiniLM-L6-v2-onnx" || true

documents="$("$exe" sources --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["documents"])')"
if [ "$documents" = "0" ]; then
  book="$(rustc --print sysroot)/share/doc/rust/html/book"
  echo "indexing the Rust Book from $book" >&2
  "$exe" index "$book" --source rust-book --technology rust \
    --include '*.html' --exclude print.html --exclude toc.html --exclude 404.html --no-embed
fi
echo "MCP at http://127.0.0.1:8079/mcp; the dashboard at http://127.0.0.1:8079/ (unless --listen says otherwise)" >&2
exec "$exe" daemon "$@"
