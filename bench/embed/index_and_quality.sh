#!/usr/bin/env bash
# Local embedding back ends end to end, side by side in one run: for candle (fp32), ONNX Runtime
# fp32 and ONNX Runtime int8, index the toolchain's Rust Book from scratch into a fresh data
# directory (wall time and peak RSS from /usr/bin/time -v; parse, chunk, write and embed every
# chunk), then score retrieval on the labeled questions (`exai eval`: nDCG@10, MRR@10, recall@10
# for keyword, semantic and hybrid search).
#
# Usage: bench/embed/index_and_quality.sh [VARIANT...]   (default: candle onnx-fp32 onnx-int8)
#   BENCH_EXAI_BIN         exai release binary (default: built here)
#   EXAI_TEST_MODEL_DIR    safetensors model for candle (default: ~/.cache/exai-ci/models/all-MiniLM-L6-v2)
#   EXAI_TEST_ONNX_MODEL_DIR  ONNX model dir (default: ~/.cache/exai-ci/models/all-MiniLM-L6-v2-onnx)
#   ORT_DYLIB_PATH         ONNX Runtime library (default: scripts/install-onnxruntime.sh ~/.cache/exai-ci/onnxruntime)
set -euo pipefail
cd "$(dirname "$0")/../.."
cache="${EXAI_CACHE_DIR:-$HOME/.cache/exai-ci}"
candle_model="${EXAI_TEST_MODEL_DIR:-$cache/models/all-MiniLM-L6-v2}"
onnx_model="${EXAI_TEST_ONNX_MODEL_DIR:-$cache/models/all-MiniLM-L6-v2-onnx}"
scripts/install-model.sh "$candle_model"
scripts/install-model.sh --onnx "$onnx_model"
runtime="${ORT_DYLIB_PATH:-$(scripts/install-onnxruntime.sh "$cache/onnxruntime")}"
exe="${BENCH_EXAI_BIN:-}"
if [ -z "$exe" ]; then
  cargo build --release --locked --bin exai -p exai
  exe="${CARGO_TARGET_DIR:-target}/release/exai"
fi
# exai refuses EXAI_* variables that are not its settings; these were only for this script.
unset EXAI_TEST_ONNX_MODEL_DIR EXAI_ONNX_MODEL_SRC
book="$(rustc --print sysroot)/share/doc/rust/html/book"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(candle onnx-fp32 onnx-int8)

printf '| variant | index from scratch | chunks | texts embedded | peak RSS | mode | nDCG@10 | MRR@10 | recall@10 | mean ms |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for v in "${variants[@]}"; do
  case "$v" in
    candle) backend=candle precision=fp32 model="$candle_model" ;;
    onnx-fp32) backend=onnx precision=fp32 model="$onnx_model" ;;
    onnx-int8) backend=onnx precision=int8 model="$onnx_model" ;;
    *) echo "unknown variant $v (candle, onnx-fp32, onnx-int8)" >&2; exit 2 ;;
  esac
  export EXAI_HOME="$work/$v" EXAI_EMBED_BACKEND="$backend" EXAI_EMBED_PRECISION="$precision" \
    EXAI_EMBED_MODEL="$model" ORT_DYLIB_PATH="$runtime"
  /usr/bin/time -v -o "$work/$v.time" "$exe" index "$book" --source rust-book --technology rust \
    --include '*.html' --exclude print.html --exclude toc.html --exclude 404.html --json > "$work/$v.json"
  "$exe" eval --questions bench/eval/rust_book_questions.json --json > "$work/$v.eval.json"
  python3 - "$v" "$work/$v.json" "$work/$v.time" "$work/$v.eval.json" <<'EOF'
import json, re, sys
v, report, timing, scores = sys.argv[1:]
r = json.load(open(report))
t = open(timing).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", t).group(1)
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
first = True
for s in json.load(open(scores)):
    head = f"| {v} ({r['embedding_model'].rsplit(':', 1)[-1]}) | {secs:.1f} s | {r['chunks_written']} | {r['texts_embedded']} | {rss:.0f} MB" if first else "| | | | |"
    print(f"{head} | {s['mode']} | {s['ndcg_at_10']:.4f} | {s['mrr_at_10']:.4f} | {s['recall_at_10']:.4f} | {s['mean_ms']:.1f} |")
    first = False
EOF
done
