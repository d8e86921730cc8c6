#!/usr/bin/env python3
"""`exai serve` with the embedding model loaded: search latency and resident memory after N
searches, for one or more exai binaries side by side on the same data directory.

Each binary in turn (rounds alternate the order) is started as `exai serve` on stdio with the
data directory's settings, answers `initialize`, then N `tools/call search_docs` requests cycling
through the questions of a labeled set (mode semantic, hybrid or alternating), one at a time over
raw JSON-RPC. Printed per binary and round: p50/p90 of the client-side round trip per mode, VmRSS
and VmHWM after the last search, and where the resident memory lies (/proc/PID/smaps: anonymous
memory, the exai binary, libonnxruntime, other files).

Usage:
    python3 bench/embed/serve_memory.py --home DATA_DIR [--searches 1800] [--rounds 2]
        [--mode semantic|hybrid|both] [--questions bench/eval/rust_book_questions.json] BIN [BIN...]
DATA_DIR must hold an index with vectors (e.g. one `bench/embed/index_and_quality.sh` run with
KEEP_DATA=DIR); the embedding settings come from the environment as for exai itself
(EXAI_EMBED_BACKEND, EXAI_EMBED_PRECISION, EXAI_EMBED_MODEL, ORT_DYLIB_PATH).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]


class Server:
    def __init__(self, binary, home):
        env = dict(os.environ, EXAI_HOME=home)
        self.proc = subprocess.Popen(
            [binary, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        self.next_id = 0

    def call(self, method, params):
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"exai serve closed its output (exit {self.proc.poll()})")
            reply = json.loads(line)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def notify(self, method):
        self.proc.stdin.write((json.dumps({"jsonrpc": "2.0", "method": method}) + "\n").encode())
        self.proc.stdin.flush()

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def memory(pid):
    status = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            status[key] = int(value.split()[0]) / 1024
    parts = {"anonymous": 0.0, "exai binary": 0.0, "libonnxruntime": 0.0, "other files": 0.0}
    where = None
    for line in open(f"/proc/{pid}/smaps"):
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            path = fields[5] if len(fields) > 5 else ""
            if "libonnxruntime" in path:
                where = "libonnxruntime"
            elif path.startswith("/") and os.path.basename(path).startswith("exai"):
                where = "exai binary"
            elif path.startswith("/"):
                where = "other files"
            else:
                where = "anonymous"
        elif fields and fields[0] == "Rss:" and where:
            parts[where] += int(fields[1]) / 1024
    return status, parts


def run(binary, home, questions, searches, modes):
    server = Server(binary, home)
    try:
        server.call(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "serve_memory", "version": "1"}},
        )
        server.notify("notifications/initialized")
        latencies = {m: [] for m in modes}
        for i in range(searches):
            mode = modes[i % len(modes)]
            query = questions[i % len(questions)]
            started = time.perf_counter()
            result = server.call("tools/call", {"name": "search_docs", "arguments": {"query": query, "mode": mode}})
            latencies[mode].append((time.perf_counter() - started) * 1000)
            if i == 0 and result.get("isError"):
                raise RuntimeError(f"search_docs failed: {result}")
        status, parts = memory(server.proc.pid)
    finally:
        server.close()
    return latencies, status, parts


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, round(p * (len(values) - 1)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--searches", type=int, default=1800)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mode", default="semantic", choices=["semantic", "hybrid", "both"])
    ap.add_argument("--questions", default=str(ROOT / "bench/eval/rust_book_questions.json"))
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    questions = [q["query"] for q in json.load(open(args.questions))["questions"]]
    modes = ["semantic", "hybrid"] if args.mode == "both" else [args.mode]
    print(f"load before: {open('/proc/loadavg').read().strip()}", file=sys.stderr)
    print("| binary | round | mode | p50 ms | p90 ms | VmRSS MB | VmHWM MB | anonymous | exai binary | libonnxruntime | other files | load (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in range(args.rounds):
        order = args.binaries if r % 2 == 0 else list(reversed(args.binaries))
        for binary in order:
            latencies, status, parts = run(binary, args.home, questions, args.searches, modes)
            load = open("/proc/loadavg").read().split()[0]
            for mode, lat in latencies.items():
                print(
                    f"| {binary} | {r + 1} | {mode} | {statistics.median(lat):.2f} | {pct(lat, 0.9):.2f} | "
                    f"{status['VmRSS']:.1f} | {status['VmHWM']:.1f} | {parts['anonymous']:.1f} | "
                    f"{parts['exai binary']:.1f} | {parts['libonnxruntime']:.1f} | {parts['other files']:.1f} | {load} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
