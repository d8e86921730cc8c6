#!/usr/bin/env bash
# Search latency on SQLite at ~11k and ~100k chunks, the rows of issue 17: keyword search with
# long natural-language questions (bench/search/long_queries.json) and hybrid search including
# the query's embedding (ONNX int8), side by side for one or more builds of the `search_latency`
# example, alternating them (A B B A ...) so the machine's drift falls on all; `uptime` is
# printed with every figure.
#
#   11k:  the Rust Book, the Reference, the Nomicon, the Cargo book and the Edition Guide
#         (about 11,400 chunks), every chunk with a vector;
#   100k: the same plus std, Rust by Example, the rustc book, the error codes, the Unstable Book
#         and the Embedded book (about 102,000 chunks), keyword-only beyond the 11k (embedding
#         90k more chunks takes longer than a session here): hybrid there is the 100k keyword
#         half with the 11k vectors; `search_latency --scan-rows 100000` gives the vector half
#         at 100k on its own.
#
# Usage: bench/search_latency.sh [BIN...]   (default: the example built from this tree)
# Env: EXAI_BENCH_DIR (corpora, default ~/.cache/exai-ci/bench/search; built once),
#      EXAI_BENCH_ROUNDS (alternations, default 2), EXAI_BENCH_MODEL (ONNX model directory,
#      default ~/.cache/exai-ci/models/all-MiniLM-L6-v2-onnx), ORT_DYLIB_PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EXAI_CACHE_DIR:-$HOME/.cache/exai-ci}"
dir="${EXAI_BENCH_DIR:-$cache/bench/search}"
rounds="${EXAI_BENCH_ROUNDS:-2}"
model="${EXAI_BENCH_MODEL:-$cache/models/all-MiniLM-L6-v2-onnx}"
[ -f "$model/model.onnx" ] || scripts/install-model.sh --onnx "$model" >&2
ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/install-onnxruntime.sh "$cache/onnxruntime")}"
export ORT_DYLIB_PATH
target="${CARGO_TARGET_DIR:-target}"
if [ $# -eq 0 ]; then
  nice -n 10 cargo build --release --locked -p exai --bin exai -p exai-kb --example search_latency >&2
  set -- "$target/release/examples/search_latency"
fi
exe="$target/release/exai"
[ -x "$exe" ] || nice -n 10 cargo build --release --locked -p exai --bin exai >&2
docs="$(rustc --print sysroot)/share/doc/rust/html"
index() { # data-dir part [--no-embed]
  local extra=()
  [ "$2" = book ] && extra=(--exclude print.html --exclude toc.html --exclude 404.html)
  EXAI_HOME="$1" EXAI_EMBED_BACKEND=onnx EXAI_EMBED_PRECISION=int8 EXAI_EMBED_MODEL="$model" \
    "$exe" index "$docs/$2" --source "$2" --technology rust --include '*.html' "${extra[@]}" \
    "${@:3}" --json > /dev/null
}
if [ ! -f "$dir/11k/done" ]; then
  rm -rf "$dir/11k" "$dir/100k"
  echo "building the 11k corpus with vectors in $dir/11k (embeds ~7,800 texts)" >&2
  for part in book reference nomicon cargo edition-guide; do index "$dir/11k" "$part"; done
  touch "$dir/11k/done"
fi
if [ ! -f "$dir/100k/done" ]; then
  rm -rf "$dir/100k"
  cp -a "$dir/11k" "$dir/100k"
  for part in std rust-by-example rustc error_codes unstable-book embedded-book; do
    index "$dir/100k" "$part" --no-embed
  done
  touch "$dir/100k/done"
fi
python3 bench/search/make_long_queries.py > /dev/null
long=bench/search/long_queries.json
questions=bench/eval/rust_book_questions.json

run() { # label bin args...
  local label="$1" bin="$2"
  shift 2
  echo "-- $label: $bin  (load: $(uptime | sed 's/.*load average: //'))"
  "$bin" --precision int8 "$@" | grep -E '^(database|keyword|semantic|hybrid|quality) '
}
order=()
for ((r = 0; r < rounds; r++)); do
  if ((r % 2 == 0)); then order+=("$@"); else for ((i = $#; i >= 1; i--)); do order+=("${!i}"); done; fi
done
echo "== 1. keyword, 11k chunks, long questions"
for bin in "${order[@]}"; do run "11k keyword long" "$bin" --db "$dir/11k/kb.sqlite" --questions "$long" --modes keyword --rounds 3; done
echo "== 2. hybrid incl. query embedding, 11k chunks (the Book's questions, then the long ones)"
for bin in "${order[@]}"; do
  run "11k hybrid questions" "$bin" --db "$dir/11k/kb.sqlite" --questions "$questions" --model "$model" --modes hybrid --rounds 3
  run "11k hybrid long" "$bin" --db "$dir/11k/kb.sqlite" --questions "$long" --model "$model" --modes hybrid --rounds 3
done
echo "== 3. keyword and hybrid, 102k chunks (11k with vectors), long questions"
for bin in "${order[@]}"; do run "100k keyword+hybrid long" "$bin" --db "$dir/100k/kb.sqlite" --questions "$long" --model "$model" --modes keyword,hybrid --rounds 3; done
