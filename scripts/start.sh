#!/usr/bin/env bash
# The main job on embedded defaults (no keys, no external server): build exai, install the
# embedding model, index the Rust Book from the local toolchain if the knowledge base is empty,
# and serve MCP over Streamable HTTP at http://127.0.0.1:8079/mcp. Keyword search works at once;
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

documents="$("$exe" sources --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["documents"])')"
if [ "$documents" = "0" ]; then
  book="$(rustc --print sysroot)/share/doc/rust/html/book"
  echo "indexing the Rust Book from $book" >&2
  "$exe" index "$book" --source rust-book --technology rust \
    --include '*.html' --exclude print.html --exclude toc.html --exclude 404.html --no-embed
fi
exec "$exe" daemon "$@"
