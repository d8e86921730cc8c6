#!/usr/bin/env bash
# Two builds of exai side by side in one run, alternating old and new (old, new, new, old) so that
# the machine's drift falls on both: keyword-only indexing, indexing with embeddings, search
# latency per mode, and the chat gateway's overhead over HTTP and stdio.
# Each directory holds the release binaries `exai`, `search_latency` and `gateway_overhead` of one
# commit, e.g. for commit C:
#   git worktree add /tmp/wt C && cd /tmp/wt && cargo build --release --locked -p exai --bin exai \
#     -p exai-kb --example search_latency -p exai-server --example gateway_overhead
#   mkdir DIR && cp target/release/exai target/release/examples/{search_latency,gateway_overhead} DIR/
# Usage: bench/side_by_side.sh OLD_DIR NEW_DIR [MODEL_DIR]   (results are printed)
set -euo pipefail
cd "$(dirname "$0")/.."
old="$(cd "$1" && pwd)" new="$(cd "$2" && pwd)"
model="${3:-${EXAI_TEST_MODEL_DIR:-$HOME/.cache/exai-ci/models/all-MiniLM-L6-v2}}"
scripts/install-model.sh "$model"
docs="$(rustc --print sysroot)/share/doc/rust/html"
questions="$PWD/bench/eval/rust_book_questions.json"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
order=(old new new old)
dir() { if [ "$1" = old ]; then echo "$old"; else echo "$new"; fi; }
report() { # label json-file
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:<4} {r['files_seen']:>6} files {r['chunks_written']:>7} chunks {r.get('texts_embedded',0):>6} embedded {r['seconds']:>7.2f} s {r['chunks_written']/r['seconds']:>8.0f} chunks/s\")" "$2" "$1"
}

echo "== 1. keyword-only indexing of std (fresh data directory each round)"
for i in "${!order[@]}"; do
  who="${order[$i]}"
  EXAI_HOME="$work/kw-$i" EXAI_EMBED_BACKEND=none "$(dir "$who")/exai" index "$docs/std" --source std \
    --technology rust --include '*.html' --no-embed --json > "$work/kw-$i.json"
  report "$who" "$work/kw-$i.json"
done

echo "== 2. indexing the Rust Book with embeddings (ONNX int8), from scratch"
for who in old new; do
  EXAI_HOME="$work/book-$who" EXAI_EMBED_BACKEND=local EXAI_EMBED_MODEL="$model" "$(dir "$who")/exai" \
    index "$docs/book" --source rust-book --technology rust --include '*.html' --exclude print.html \
    --exclude toc.html --exclude 404.html --json > "$work/book-$who.json"
  report "$who" "$work/book-$who.json"
done

echo "== 3. search latency on each build's own Rust Book index (154 questions, 3 rounds per mode)"
for who in "${order[@]}"; do
  echo "-- $who"
  "$(dir "$who")/search_latency" --db "$work/book-$who/kb.sqlite" --questions "$questions" \
    --model "$model" --precision int8 --rounds 3
done

echo "== 4. chat gateway overhead, concurrency 1, HTTP and stdio"
for who in "${order[@]}"; do
  echo "-- $who"
  "$(dir "$who")/gateway_overhead" --calls 2000 --concurrency 1 --transport http,stdio \
    --exai "$(dir "$who")/exai"
done
