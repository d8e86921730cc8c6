#!/usr/bin/env bash
# Install the ONNX Runtime shared library that exai's ONNX embedding back end loads at run time,
# from the PyPI `onnxruntime` wheel (its `onnxruntime/capi/libonnxruntime.so.*`), into DEST
# (default: `onnxruntime` in exai's data directory, where exai looks for it by itself). Prints the
# library's path on stdout, for ORT_DYLIB_PATH. Only the wheel itself is installed (--no-deps):
# exai needs the C library, not the Python package's numpy and friends.
#
# Usage: scripts/install-onnxruntime.sh DEST
set -euo pipefail
# Pinned: the version the ONNX back end is tested and benchmarked with. exai accepts any
# ONNX Runtime >= 1.17 (the C API level the `ort` crate is built against).
version="${EXAI_ONNXRUNTIME_VERSION:-1.32.0}"
dest="${1:?usage: install-onnxruntime.sh DEST}"

find_lib() {
  # The versioned file (libonnxruntime.so.1.32.0) is the real library; the unversioned name may
  # be missing from the wheel.
  [ -d "$dest/onnxruntime/capi" ] || return 0
  find "$dest/onnxruntime/capi" -maxdepth 1 -name 'libonnxruntime.so*' -type f | sort | tail -n 1
}

lib="$(find_lib)"
if [ -n "$lib" ] && [ -f "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$version" ]; then
  echo "$lib"
  exit 0
fi
echo "installing ONNX Runtime $version into $dest (PyPI: onnxruntime)" >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
  --target "$tmp/pkg" "onnxruntime==$version" >&2
mkdir -p "$(dirname "$dest")"
rm -rf "$dest.partial"
mkdir -p "$dest.partial/onnxruntime/capi"
# Only the C library is needed (35 MB; the Python bindings beside it are as large again). The
# layout onnxruntime/capi/ is kept so exai's search for a pip-installed runtime finds it here too.
cp "$tmp"/pkg/onnxruntime/capi/libonnxruntime*.so* "$dest.partial/onnxruntime/capi/"
echo "$version" > "$dest.partial/.version"
rm -rf "$dest"
mv "$dest.partial" "$dest"
lib="$(find_lib)"
if [ -z "$lib" ]; then
  echo "install-onnxruntime.sh: the onnxruntime $version wheel has no libonnxruntime.so under onnxruntime/capi" >&2
  exit 1
fi
echo "$lib"
