#!/usr/bin/env bash
# End-to-end web sources through the release binary: `exai index URL` (crawl, parse, chunk,
# write; keyword only) over loopback against a generated N-page site and the toolchain's Rust
# Book, served by Python's http.server (ETag-less, Last-Modified and 304 like most static
# servers), with politeness off (no delay, 8 in flight) and on (the defaults: 250 ms, 2 in
# flight); then the refresh of the unchanged site; peak memory from /usr/bin/time -v.
# Usage: bench/sources.sh [PAGES]   (default 5000; results are printed, BENCHMARKS.md records them)
set -euo pipefail
cd "$(dirname "$0")/.."
pages="${1:-5000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked --bin exai >/dev/null
exai="$CARGO_TARGET_DIR/release/exai"
work="$(mktemp -d)"; trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work/site" "$pages" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{root}/docs", exist_ok=True)
sections = max(1, n // 100)
def page(title, body, links):
    a = "".join(f'<li><a href="{l}">{l}</a></li>' for l in links)
    return f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1>{body}<ul>{a}</ul></main></body></html>"
para = lambda i: "".join(f"<p>Paragraph {j} of page {i}: the widget {i % 97} connects to gadget {j} through port {i * j % 1000}.</p>" for j in range(8))
with open(f"{root}/docs/index.html", "w") as f:
    f.write(page("Index", para(0), [f"s{s}.html" for s in range(sections)]))
made = 1
for s in range(sections):
    kids = [f"p{s}_{k}.html" for k in range(100) if made + 1 + k < n]
    with open(f"{root}/docs/s{s}.html", "w") as f:
        f.write(page(f"Section {s}", para(s), kids))
    made += 1
    for k in kids:
        with open(f"{root}/docs/{k}", "w") as f:
            f.write(page(k, para(made), ["index.html"]))
        made += 1
print(f"generated {made} pages")
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ln -s "$(rustc --print sysroot)/share/doc/rust/html/book" "$work/site/book"
(cd "$work/site" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) & server=$!
sleep 1
export EXAI_EMBED_BACKEND=none EXAI_KB_FETCH_ALLOWED_HOSTS="127.0.0.1:$port" EXAI_KB_CRAWL_MAX_PAGES=100000 EXAI_KB_CRAWL_MAX_DEPTH=100
run() { # label, home, args...
  local label="$1" home="$2"; shift 2
  /usr/bin/time -v -o "$work/time" env EXAI_HOME="$home" "$exai" "$@" --json > "$work/out" 2>/dev/null
  python3 - "$label" "$work/out" "$work/time" <<'PY'
import json, re, sys
label, out, tm = sys.argv[1:]
r = json.load(open(out)); t = open(tm).read()
wall = r["seconds"]; rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
seen = r["files_seen"]
print(f"{label}: {seen} pages ({r['added']} added, {r['unchanged']} unchanged) in {wall:.2f} s = {seen / wall:.0f} pages/s, {r['chunks_written']} chunks, peak RSS {rss:.0f} MB")
PY
}
EXAI_KB_CRAWL_DELAY_MS=0 EXAI_KB_CRAWL_CONCURRENCY=8 run "generated site, politeness off" "$work/h1" index "http://127.0.0.1:$port/docs/index.html" --source gen
EXAI_KB_CRAWL_DELAY_MS=0 EXAI_KB_CRAWL_CONCURRENCY=8 run "refresh of the unchanged site" "$work/h1" refresh gen
EXAI_KB_CRAWL_DELAY_MS=0 EXAI_KB_CRAWL_CONCURRENCY=8 run "Rust Book, politeness off" "$work/h2" index "http://127.0.0.1:$port/book/" --source book
run "Rust Book, politeness on (defaults), first 40 pages" "$work/h3" index "http://127.0.0.1:$port/book/" --source book --max-pages 40
