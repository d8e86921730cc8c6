#!/usr/bin/env bash
# The knowledge base on SQLite against PostgreSQL + pgvector, side by side in one run
# (crates/exai-kb/examples/backend_bench.rs): keyword-only indexing of std + the Rust Book
# (~77k chunks) into both, unchanged re-index, the same vectors into both, then 350+ queries in
# keyword / semantic / hybrid mode, with and without filters, interleaved across SQLite exact,
# SQLite HNSW and PostgreSQL; p50/p95/p99/max, top-10 agreement, and EXPLAIN of PostgreSQL's
# semantic query. Prints a Markdown report and writes it to OUT.
#
# Usage: bench/backends.sh [OUT]   (default OUT: ${TMPDIR:-/tmp}/exai-backends.md)
#
# PostgreSQL: EXAI_TEST_DATABASE_URL if set (a server where databases may be created and
# dropped); otherwise a throwaway server (scripts/postgres.sh, pgvector from the PyPI package
# pgserver, fsync off) in a temp dir, stopped afterwards.
# Model: EXAI_BENCH_MODEL (default ~/.cache/exai-ci/models/all-MiniLM-L6-v2-onnx), int8 through
# ONNX Runtime (installed by scripts/install-onnxruntime.sh); EXAI_BENCH_PRECISION=fp32 for fp32;
# EXAI_BENCH_MODEL=none for synthetic (feature-hashing) vectors. Vectors are cached per model
# under ~/.cache/exai-ci/bench, so only the first run embeds (~20k texts).
# Extra arguments for the example: EXAI_BENCH_ARGS (e.g. "--rounds 3 --std-questions 300").
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${TMPDIR:-/tmp}/exai-backends.md}"
cache="${EXAI_CACHE_DIR:-$HOME/.cache/exai-ci}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
model="${EXAI_BENCH_MODEL:-$cache/models/all-MiniLM-L6-v2-onnx}"
precision="${EXAI_BENCH_PRECISION:-int8}"

model_args=()
if [ "$model" != none ]; then
  if [ ! -f "$model/model.onnx" ]; then
    scripts/install-model.sh --onnx "$model" >&2
  fi
  ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$(scripts/install-onnxruntime.sh "$cache/onnxruntime")}"
  export ORT_DYLIB_PATH
  model_args=(--model "$model" --precision "$precision"
    --vector-cache "$cache/bench/backend_bench-$(basename "$model")-$precision.vectors")
fi

pg_dir=""
cleanup() {
  if [ -n "$pg_dir" ]; then
    scripts/postgres.sh stop "$pg_dir" || true
    rm -rf "$pg_dir"
  fi
}
trap cleanup EXIT
if [ -z "${EXAI_TEST_DATABASE_URL:-}" ]; then
  # Short and searchable by the server's user (scripts/postgres.sh runs it as exai-pg as root).
  pg_dir="$(mktemp -d /tmp/exai-bb-pg.XXXXXX)"
  chmod 755 "$pg_dir"
  EXAI_TEST_DATABASE_URL="$(scripts/postgres.sh start "$pg_dir")"
  export EXAI_TEST_DATABASE_URL
  echo "PostgreSQL for this run: $EXAI_TEST_DATABASE_URL ($pg_dir)" >&2
fi

# Other work may share the cores: build at low priority, measure at normal priority.
nice -n 10 cargo build --release --locked -p exai-kb --example backend_bench >&2
bin="$CARGO_TARGET_DIR/release/examples/backend_bench"
start=$(date +%s)
# shellcheck disable=SC2086
"$bin" "${model_args[@]}" --out "$out" ${EXAI_BENCH_ARGS:-}
echo "backend_bench: $(( $(date +%s) - start )) s; report in $out" >&2
