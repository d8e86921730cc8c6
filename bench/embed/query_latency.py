#!/usr/bin/env python3
"""Single-query embedding latency of the ONNX back end, against Python's onnxruntime on the same
model, side by side in one run.

The queries are the 200 sentences throughput.py uses for its 1-query column (the Rust Book's
first distinct sentences of 8-17 words). Rounds alternate two processes:
  - exai-embed: the release build of crates/exai-embed/examples/query_latency.rs (built by this
    script), one OnnxEmbedder per precision and variant, `embed_query` called for every
    configuration in turn, a block of --block queries at a time (tokenization and pooling
    included), plus the tokenizer alone;
  - Python onnxruntime (the same library version): `session.run` on the already tokenized query,
    nothing else, for 1 and 2 intra-op threads: the floor ONNX Runtime itself sets.
Per round each row gets --queries calls. Other processes' load skews latencies far more than
any setting does, so before each round the script waits (up to --wait-idle seconds) for an idle
machine, measures how many cores other processes used while the round ran, and the table pools
only the rounds where that stayed under --max-others (all rounds if none did; the table says
which). The last part runs the Python floor on inputs of other lengths (one repeated word piece),
to show how the latency grows with the query's length.

Usage:
    /root/.cache/exai/venv/bin/python bench/embed/query_latency.py [--rounds 3] [--queries 200]
        [--runtime LIB] [--onnx-model DIR] [--variant NAME=THREADS/spin|nospin ...]
        [--gap-ms G --evict-mb M]
--gap-ms and --evict-mb pause and read other memory between two queries, as a server does between
searches (the runtime's idle threads fall asleep, the weights leave the core's caches).
The Python side needs numpy, onnxruntime and tokenizers (the bench venv has them).
"""

import argparse
import glob
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import throughput

ROOT = pathlib.Path(__file__).resolve().parents[2]
N_QUERIES = 200


def stats(lat):
    lat = sorted(lat)
    pick = lambda p: lat[min(len(lat) - 1, round(p * (len(lat) - 1)))]  # noqa: E731
    return {"p50": statistics.median(lat), "p10": pick(0.10), "p90": pick(0.90), "min": lat[0], "n": len(lat)}


class PythonFloor:
    """ONNX Runtime from Python: one session per precision and thread count, raw `run` calls."""

    def __init__(self, model_dir, precisions):
        import numpy as np  # noqa: PLC0415
        import onnxruntime as ort  # noqa: PLC0415
        from tokenizers import Tokenizer  # noqa: PLC0415

        self.np, self.version = np, ort.__version__
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        graphs = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
        self.sessions = {}
        for precision in precisions:
            path = next(p for p in (os.path.join(model_dir, graphs[precision]), os.path.join(model_dir, "onnx", graphs[precision])) if os.path.isfile(p))
            for threads in (1, 2):
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                self.sessions[f"{precision} onnxruntime (Python), {threads} thread{'s' if threads > 1 else ''}"] = session

    def feeds(self, ids, session):
        n = len(ids)
        all_feeds = {
            "input_ids": self.np.array([ids], dtype=self.np.int64),
            "attention_mask": self.np.ones((1, n), dtype=self.np.int64),
            "token_type_ids": self.np.zeros((1, n), dtype=self.np.int64),
        }
        return {i.name: all_feeds[i.name] for i in session.get_inputs()}

    def run(self, queries, n, block):
        ids = [self.tokenizer.encode(q).ids for q in queries]
        feeds = {name: [self.feeds(i, s) for i in ids] for name, s in self.sessions.items()}
        for name, s in self.sessions.items():
            for f in feeds[name][:20]:
                s.run(None, f)
        names = list(self.sessions)
        lat = {name: [] for name in names}
        for b, start in enumerate(range(0, n, block)):
            for k in range(len(names)):
                name = names[(b + k) % len(names)]
                for i in range(start, min(n, start + block)):
                    f = feeds[name][i % len(ids)]
                    t = time.perf_counter()
                    self.sessions[name].run(None, f)
                    lat[name].append((time.perf_counter() - t) * 1000)
        return lat

    def by_length(self, lengths, n):
        """p50 per input length, for every session."""
        out = {}
        for name, s in self.sessions.items():
            for length in lengths:
                # [CLS] + repeated "the" + [SEP]: a real input of exactly this many word pieces.
                ids = self.tokenizer.encode(" ".join(["the"] * (length - 2))).ids
                f = self.feeds(ids, s)
                for _ in range(10):
                    s.run(None, f)
                lat = []
                for _ in range(n):
                    t = time.perf_counter()
                    s.run(None, f)
                    lat.append((time.perf_counter() - t) * 1000)
                out.setdefault(name, {})[len(ids)] = statistics.median(lat)
        return out


def build():
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    cmd = ["cargo", "build", "--release", "-q", "-p", "exai-embed", "--example", "query_latency"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    return target / "release/examples/query_latency"


def others_cpu(fn):
    """Runs fn(); returns (its result, cores used by other processes meanwhile)."""
    tick = os.sysconf("SC_CLK_TCK")
    b0, _ = throughput.cpu_jiffies()
    self0 = os.times()
    t = time.monotonic()
    result, own = fn()
    elapsed = time.monotonic() - t
    b1, _ = throughput.cpu_jiffies()
    self1 = os.times()
    mine = own if own is not None else (self1.user - self0.user) + (self1.system - self0.system)
    return result, max(0.0, (b1 - b0) / tick - mine) / elapsed


def run_rust(binary, args, queries_path, n):
    cmd = [str(binary), "--model", args.onnx_model, "--runtime", args.runtime, "--input", queries_path, "--queries", str(n), "--block", str(args.block)]
    cmd += ["--gap-ms", str(args.gap_ms), "--evict-mb", str(args.evict_mb)]
    for v in args.variant or []:
        cmd += ["--variant", v]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            err.seek(0)
            sys.exit(f"query_latency failed: {err.read().decode(errors='replace')}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--queries", type=int, default=100, help="calls per row and round")
    ap.add_argument("--block", type=int, default=20, help="consecutive calls of one row before the next row's")
    ap.add_argument("--wait-idle", type=float, default=120)
    ap.add_argument("--max-others", type=float, default=0.1, help="rounds where other processes used more cores are left out")
    ap.add_argument("--bin", help="a built query_latency (default: build it)")
    ap.add_argument("--gap-ms", type=int, default=0, help="pause between two queries, as between a server's searches")
    ap.add_argument("--evict-mb", type=int, default=0, help="other memory read between two queries")
    ap.add_argument("--onnx-model")
    ap.add_argument("--runtime")
    ap.add_argument("--variant", action="append", help="NAME=THREADS/spin|nospin (default: before, default)")
    args = ap.parse_args()
    args.onnx_model = args.onnx_model or os.environ.get("EXAI_TEST_ONNX_MODEL_DIR") or str(ROOT.parent / "shared/models/all-MiniLM-L6-v2-onnx")
    args.runtime = args.runtime or os.environ.get("ORT_DYLIB_PATH")
    if not args.runtime:
        found = sorted(glob.glob(os.path.expanduser("~/.cache/exai-ci/onnxruntime/onnxruntime/capi/libonnxruntime.so*")))
        args.runtime = found[-1] if found else sys.exit("no ONNX Runtime library: --runtime LIB or ORT_DYLIB_PATH")

    queries = throughput.short_sentences(throughput.book_text())[:N_QUERIES]
    work = tempfile.mkdtemp(prefix="exai-query-latency-")
    queries_path = os.path.join(work, "queries.json")
    pathlib.Path(queries_path).write_text(json.dumps(queries), encoding="utf-8")
    binary = args.bin or build()
    floor = PythonFloor(args.onnx_model, ["fp32", "int8"])

    # One entry per process run: (side, cores other processes used, {row: latencies}).
    runs, tokens = [], None
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: exai-embed", file=sys.stderr)
        throughput.wait_for_idle(args.wait_idle)
        result, busy = others_cpu(lambda: run_rust(binary, args, queries_path, args.queries))
        tokens = result["tokens"]
        runs.append(("rust", busy, {f"exai-embed {k}": v for k, v in result["latency_ms"].items()}))
        print(f"round {r + 1}/{args.rounds}: Python onnxruntime {floor.version} (others used {busy:.2f} cores)", file=sys.stderr)
        throughput.wait_for_idle(args.wait_idle)
        result, busy = others_cpu(lambda: (floor.run(queries, args.queries, args.block), None))
        runs.append(("python", busy, result))
        print(f"  (others used {busy:.2f} cores)", file=sys.stderr)
    throughput.wait_for_idle(args.wait_idle)
    lengths, busy = others_cpu(lambda: (floor.by_length([3, 8, 16, 32, 64, 128], 100), None))

    print(f"\nqueries: {len(queries)} sentences of {min(tokens)}-{max(tokens)} word pieces (median {statistics.median(tokens):.0f}); "
          f"{args.rounds} rounds × {args.queries} calls per row; ONNX Runtime {floor.version}")
    for side in ("rust", "python"):
        mine = [run for run in runs if run[0] == side]
        kept = [run for run in mine if run[1] <= args.max_others] or mine
        note = f"{len(kept)} of {len(mine)} rounds" + (f" (others' CPU ≤ {args.max_others})" if kept is not mine else " (none was idle enough: all)")
        print(f"{'exai-embed' if side == 'rust' else 'Python'}: {note}; other processes' cores per round: "
              + ", ".join(f"{run[1]:.2f}" for run in mine))
    def table(pick):
        rows = {}
        for side in ("rust", "python"):
            for _, busy, result in pick([run for run in runs if run[0] == side]):
                for name, values in result.items():
                    row = rows.setdefault(name, ([], []))
                    row[0].extend(values)
                    row[1].append(busy)
        print("| what | p50 | p10 | p90 | calls | others' CPU |")
        print("|---|---|---|---|---|---|")
        order = lambda name: (name.split()[1] if name.startswith("exai") else name.split()[0], name)  # noqa: E731
        for name in sorted(rows, key=order):
            values, busy = rows[name]
            s = stats(values)
            print(f"| {name} | {s['p50']:.2f} ms | {s['p10']:.2f} ms | {s['p90']:.2f} ms | {s['n']} | {statistics.mean(busy):.2f} |")

    print()
    table(lambda mine: [run for run in mine if run[1] <= args.max_others] or mine)
    if any(run[1] > args.max_others for run in runs):
        print(f"\nThe rounds left out above (other processes used more than {args.max_others} cores):\n")
        table(lambda mine: [run for run in mine if run[1] > args.max_others])
    print(f"\nPython onnxruntime, p50 by input length (word pieces, [CLS] and [SEP] included; others' CPU {busy:.2f}):\n")
    sizes = sorted({n for row in lengths.values() for n in row})
    print("| session | " + " | ".join(str(n) for n in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, row in lengths.items():
        print(f"| {name} | " + " | ".join(f"{row[n]:.2f} ms" for n in sizes) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
