#!/usr/bin/env bash
# Debian's Chromium for the tests that render script-built pages (crates/exai-fetch/tests):
# prints the browser's path. Installs the `chromium` package with apt when no Chromium is on
# the machine (as root, or through sudo without a password); fails with what to do otherwise.
set -euo pipefail
for b in "${EXAI_CHROMIUM:-}" chromium chromium-browser google-chrome; do
  if [ -n "$b" ] && command -v "$b" >/dev/null 2>&1; then command -v "$b"; exit 0; fi
done
if [ "$(id -u)" = 0 ]; then apt=(apt-get); elif sudo -n true 2>/dev/null; then apt=(sudo -n apt-get); else
  echo "no Chromium found and no root to install it: apt install chromium (or set EXAI_CHROMIUM)" >&2; exit 1
fi
DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq chromium >/dev/null 2>&1 \
  || { DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq chromium >/dev/null; }
command -v chromium
