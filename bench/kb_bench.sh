#!/usr/bin/env bash
# Knowledge-base benchmarks on the toolchain's own docs, in one run on this machine:
#  1. keyword-only indexing of std + core + alloc + reference (chunks/s),
#  2. re-indexing the unchanged corpus (seconds),
#  3. search latency p50/p99 per mode over the labeled questions, on that corpus (keyword) and
#     on the Rust Book with real vectors (keyword, semantic, hybrid), plus semantic search alone
#     at 50k rows: exact scan vs HNSW, p50/p99 and recall@10, side by side.
# Usage: bench/kb_bench.sh [MODEL_DIR]   (results are printed; BENCHMARKS.md records them)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-${EXAI_TEST_MODEL_DIR:-$HOME/.cache/exai-ci/models/all-MiniLM-L6-v2}}"
scripts/install-model.sh "$model"
cargo build --release --locked --bin exai --example search_latency -p exai -p exai-kb
exe="${CARGO_TARGET_DIR:-target}/release/exai"
bench_bin="${CARGO_TARGET_DIR:-target}/release/examples/search_latency"
docs="$(rustc --print sysroot)/share/doc/rust/html"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== 1. keyword-only indexing: std, core, alloc, reference"
export EXAI_HOME="$work/big" EXAI_EMBED_BACKEND=none
for part in std core alloc reference; do
  "$exe" index "$docs/$part" --source "$part" --technology rust --include '*.html' --no-embed --json > "$work/$part.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]:<10} {r['files_seen']:>6} files {r['chunks_written']:>7} chunks {r['seconds']:>6.1f} s {r['chunks_written']/r['seconds']:>8.0f} chunks/s\")" "$work/$part.json" "$part"
done
"$exe" sources | tail -n +4

echo "== 2. re-index the unchanged corpus"
start=$(date +%s.%N)
for part in std core alloc reference; do
  "$exe" index "$docs/$part" --source "$part" --technology rust --include '*.html' --no-embed --json > /dev/null
done
echo "unchanged re-index: $(python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$start") s"

echo "== 3a. keyword search latency on the big corpus"
"$bench_bin" --db "$work/big/kb.sqlite" --questions bench/eval/rust_book_questions.json --rounds 3

echo "== 3b. all modes on the Rust Book with real vectors, and exact scan vs HNSW at 50k rows"
export EXAI_HOME="$work/book" EXAI_EMBED_BACKEND=local EXAI_EMBED_MODEL="$model"
"$exe" index "$docs/book" --source rust-book --technology rust --include '*.html' --exclude print.html --exclude toc.html --exclude 404.html --json > "$work/book.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"rust book: {r['chunks_written']} chunks, {r['texts_embedded']} texts embedded, {r['seconds']:.0f} s\")" "$work/book.json"
"$bench_bin" --db "$work/book/kb.sqlite" --questions bench/eval/rust_book_questions.json --model "$model" --rounds 3 --scan-rows 50000
echo "== quality (Rust Book, 154 questions)"
"$exe" eval --questions bench/eval/rust_book_questions.json
