#!/usr/bin/env python3
"""Startup latency and footprint of exai, measured from the outside.

- spawn → initialize answered: `exai serve` is spawned N times; each time the clock runs from
  just before the spawn until the initialize response line arrives on stdout.
- idle RSS of `exai daemon`: VmRSS from /proc after /ready answers and a short settle, and again
  after a burst of tool calls.
- tools/call round trip over stdio (the `version` tool), N calls in one session.

Usage: bench/startup_and_footprint.py [path/to/exai]   (default: target/release/exai)
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "release" / "exai")
INIT = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}) + "\n"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def env(home):
    e = {k: v for k, v in os.environ.items() if not k.startswith("EXAI_")}
    e["EXAI_HOME"] = home
    return e


def startup(home, n=50):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        p = subprocess.Popen([EXE, "serve"], env=env(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
        p.stdin.write(INIT.encode())
        p.stdin.flush()
        line = p.stdout.readline()
        times.append((time.perf_counter() - t0) * 1000)
        assert json.loads(line)["id"] == 0
        p.stdin.close()
        p.wait()
    return times


def stdio_round_trips(home, n=2000):
    p = subprocess.Popen([EXE, "serve"], env=env(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    p.stdin.write(INIT.encode())
    p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    p.stdin.flush()
    p.stdout.readline()
    times = []
    for i in range(1, n + 1):
        msg = json.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                          "params": {"name": "version", "arguments": {}}}) + "\n"
        t0 = time.perf_counter()
        p.stdin.write(msg.encode())
        p.stdin.flush()
        p.stdout.readline()
        times.append((time.perf_counter() - t0) * 1000)
    p.stdin.close()
    p.wait()
    return times


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def daemon_rss(home):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([EXE, "daemon", "--listen", f"127.0.0.1:{port}"], env=env(home),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{base}/ready", timeout=1)
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(1)
    idle = rss_kb(p.pid)
    for _ in range(200):
        urllib.request.urlopen(f"{base}/health", timeout=5).read()
    time.sleep(0.5)
    after = rss_kb(p.pid)
    p.terminate()
    p.wait()
    return idle, after


def main():
    with tempfile.TemporaryDirectory() as home:
        st = startup(home)
        rt = stdio_round_trips(home)
        idle, after = daemon_rss(home)
    print(f"binary: {EXE} ({os.path.getsize(EXE) / 1e6:.1f} MB)")
    print(f"spawn -> initialize answered (exai serve, n={len(st)}): p50 {statistics.median(st):.2f} ms, "
          f"p95 {pct(st, 95):.2f} ms, min {min(st):.2f} ms")
    print(f"stdio tools/call version round trip (n={len(rt)}): p50 {statistics.median(rt):.3f} ms, "
          f"p99 {pct(rt, 99):.3f} ms")
    print(f"exai daemon RSS: idle {idle / 1024:.1f} MB, after 200 /health requests {after / 1024:.1f} MB")


if __name__ == "__main__":
    main()
