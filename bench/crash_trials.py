#!/usr/bin/env python3
"""Crash trials: `exai index` and `exai db backup` killed with SIGKILL at random instants.

The claim under test (ARCHITECTURE §6): an indexing run killed at any instant leaves a valid
database whose committed documents are intact, a re-run resumes to exactly what an uninterrupted
run produces, and a killed backup neither damages the live databases nor leaves a half-written
backup that `exai db backups` lists as good.

1. Reference: one uninterrupted `exai index` of the corpus into a fresh data directory; its counts
   (`exai db verify --json`, `exai db stats --json`) and a fingerprint of every document and chunk
   (read straight from SQLite, ids and timestamps left out) are what every trial must end with.
2. Index trials: a fresh data directory; `exai index` is killed 1–3 times, each at a random
   instant within the reference run's duration (later kills hit a partly indexed database, within
   the share of the run likely left; a first run that finishes before its instant is started again
   on an empty directory); after every
   kill `exai db verify` must exit 0; then the same command runs to the end and the counts and
   fingerprint must equal the reference's exactly.
3. Backup trials, alternately with an `exai daemon` serving the data directory and with nothing
   running: `exai db backup` is killed at a random instant within a reference backup's duration;
   `exai db verify` must exit 0, the live databases must be unchanged (same fingerprint), the
   daemon must still answer `/ready`, and every backup `exai db backups` lists must pass
   `exai db restore --check`. Whatever a killed backup leaves behind is reported (then removed, so
   the trials do not fill the disk).

Every random choice comes from a seeded generator (one per trial, derived from `--seed` and the
trial's number), printed so a failing trial can be replayed with `--seed S --only index:7`.
Kill instants are wall-clock and the machine's load varies, so a replay hits the same offset into
the run, not necessarily the same line of code.

Exit status: 0 when every trial held, 1 on any loss or failed check, 2 when the set-up failed.

Usage: bench/crash_trials.py [--index-trials 20] [--backup-trials 20] [--seed S] [--embed]
                             [--corpus DIR] [--part SUBDIR ...] [--exai PATH] [--work DIR] [--keep] [--json FILE]
(EXAI_BIN names the binary too; otherwise `cargo build --release --bin exai` runs first.)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = "rustdocs"
# A few thousand pages of the toolchain's own docs: long guides, API pages and examples, so kills
# land in the walk, in parsing and in the batched writes alike.
MAX_ATTEMPTS = 6
DEFAULT_PARTS = ["std", "alloc", "book", "reference", "rust-by-example", "cargo", "nomicon", "edition-guide",
                 "rustc", "error_codes", "unstable-book"]


class SetupError(Exception):
    """The trials could not start (no binary, no corpus, the reference run failed)."""


# ---------------------------------------------------------------------------------------------
# running exai


def scrubbed_env(home: Path, embed: bool) -> dict[str, str]:
    """The caller's environment without exai settings, pointed at `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXAI_") and k != "RUST_LOG"}
    env["EXAI_HOME"] = str(home)
    if not embed:
        # Keyword-only: no model is looked up or downloaded, so a run is the same every time.
        env["EXAI_EMBED_BACKEND"] = "none"
    elif os.environ.get("EXAI_EMBED_MODEL"):
        env["EXAI_EMBED_MODEL"] = os.environ["EXAI_EMBED_MODEL"]
    return env


@dataclass
class Exai:
    exe: str
    embed: bool

    def run(self, home: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([self.exe, *args], env=scrubbed_env(home, self.embed), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout)

    def spawn(self, home: Path, args: list[str], log: Path) -> subprocess.Popen:
        out = log.open("ab")
        try:
            return subprocess.Popen([self.exe, *args], env=scrubbed_env(home, self.embed), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out)
        finally:
            out.close()

    def json(self, home: Path, *args: str) -> object:
        p = self.run(home, *args)
        if p.returncode != 0:
            raise RuntimeError(f"exai {' '.join(args)} exited {p.returncode}: {p.stderr.strip()[-800:]}")
        return json.loads(p.stdout)


def find_exe(given: str | None) -> str:
    exe = given or os.environ.get("EXAI_BIN")
    if exe:
        if not os.access(exe, os.X_OK):
            raise SetupError(f"{exe} is not an executable exai binary")
        return exe
    print("building: cargo build --release --bin exai", flush=True)
    subprocess.run(["cargo", "build", "--release", "--bin", "exai"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release" / "exai")


@dataclass
class Corpus:
    """One root and the parts of it to index. One root, not several: documents are keyed by their
    path relative to the root they were found under, so two roots holding the same relative path
    (every mdBook has an `index.html`) would share one document."""

    root: str
    parts: list[str]

    def args(self) -> list[str]:
        out = [self.root]
        for part in self.parts:
            out += ["--include", f"{part}/**"]
        return out


def find_corpus(root: str | None, parts: list[str] | None) -> Corpus:
    if root is None:
        sysroot = subprocess.run(["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout
        root = str(Path(sysroot.strip()) / "share" / "doc" / "rust" / "html")
        parts = parts or DEFAULT_PARTS
    parts = parts or []
    missing = [p for p in [root, *(str(Path(root) / part) for part in parts)] if not Path(p).is_dir()]
    if missing:
        raise SetupError(f"corpus directories missing: {', '.join(missing)} (install the rust-docs "
                         "component: `rustup component add rust-docs`, or pass --corpus DIR)")
    return Corpus(root, parts)


# ---------------------------------------------------------------------------------------------
# what a data directory holds


def fingerprint(db: Path) -> dict[str, object]:
    """Every document and chunk of the knowledge base, as content: ids, times and the generation
    counter are left out (they legitimately differ between an interrupted and a clean run)."""
    if not db.exists():
        return {"documents": 0, "chunks": 0, "digest": None}
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        h = hashlib.blake2b(digest_size=16)
        docs = 0
        for row in conn.execute(
                "SELECT source, path, uri, title, format, technology, category, hash, bytes, metadata "
                "FROM documents ORDER BY source, path"):
            h.update(repr(row).encode())
            docs += 1
        chunks = 0
        for row in conn.execute(
                "SELECT d.source, d.path, c.position, c.section, c.tokens, c.doc_type, c.text_hash "
                "FROM chunks c JOIN documents d ON d.id = c.doc_id ORDER BY d.source, d.path, c.position"):
            h.update(repr(row).encode())
            chunks += 1
        for row in conn.execute("SELECT text_hash, length(vector) FROM embeddings ORDER BY text_hash"):
            h.update(repr(row).encode())
        return {"documents": docs, "chunks": chunks, "digest": h.hexdigest()}
    finally:
        conn.close()


def counts(exai: Exai, home: Path) -> dict[str, object]:
    """The figures exai itself reports, per database, minus what changes with every commit."""
    verify = exai.json(home, "db", "verify", "--json")
    stats = exai.json(home, "db", "stats", "--json")
    out: dict[str, object] = {}
    for db in verify["databases"]:
        kb = db.get("kb") or {}
        out[f"verify.{db['name']}"] = {k: kb.get(k) for k in
                                       ("documents", "chunks", "fts_rows", "vectors", "chunks_without_vectors",
                                        "orphan_vectors")}
    for db in stats:
        out[f"tables.{db['name']}"] = db["tables"]
        if db.get("kb"):
            out[f"stats.{db['name']}"] = {k: db["kb"].get(k) for k in
                                          ("documents", "chunks", "distinct_chunk_texts", "sources", "text_bytes",
                                           "vectors")}
    return out


def verify_exit(exai: Exai, home: Path) -> tuple[int, str]:
    """`exai db verify`'s exit status (0 ok, 1 warnings, 2 problems) and its problems, if any."""
    p = exai.run(home, "db", "verify", "--json")
    detail = ""
    if p.returncode != 0:
        try:
            report = json.loads(p.stdout)
            detail = "; ".join(f"{d['name']}: {x}" for d in report["databases"]
                               for x in d["problems"] + d["warnings"])
        except (json.JSONDecodeError, KeyError):
            detail = (p.stderr or p.stdout).strip()[-800:]
    return p.returncode, detail


def diff(expected: dict, got: dict) -> list[str]:
    keys = sorted(set(expected) | set(got))
    return [f"{k}: expected {expected.get(k)!r}, got {got.get(k)!r}" for k in keys if expected.get(k) != got.get(k)]


# ---------------------------------------------------------------------------------------------
# killing


@dataclass
class Kill:
    after_s: float
    killed: bool  # false: the process had already finished at that instant
    exit_code: int | None
    documents_committed: int | None  # index trials: documents in the database right after the kill
    verify_exit: int
    verify_detail: str = ""


def run_and_kill(exai: Exai, home: Path, args: list[str], after_s: float, log: Path) -> tuple[bool, int | None]:
    """Start exai, SIGKILL it `after_s` seconds later if still running. Returns (killed, exit)."""
    proc = exai.spawn(home, args, log)
    deadline = time.monotonic() + after_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False, proc.returncode
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
    if proc.poll() is not None:
        return False, proc.returncode
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True, None


def timed(exai: Exai, home: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    p = exai.run(home, *args)
    return time.monotonic() - t0, p


# ---------------------------------------------------------------------------------------------
# index trials


@dataclass
class TrialResult:
    kind: str
    number: int
    seed: str
    kills: list[Kill] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        ks = ", ".join(
            (f"{k.after_s:.2f}s→finished first" if not k.killed else f"{k.after_s:.2f}s→killed"
             + ("" if k.documents_committed is None else f"@{k.documents_committed}docs"))
            + ("" if k.verify_exit == 0 else f" VERIFY EXIT {k.verify_exit}")
            for k in self.kills)
        status = "ok" if not self.losses else "LOSS"
        return f"{self.kind:<6} #{self.number:<3} seed={self.seed:<14} {status:<4} [{ks}]" + (
            "" if not self.notes else "  " + "; ".join(self.notes))


def index_args(corpus: Corpus, embed: bool) -> list[str]:
    args = ["index", *corpus.args(), "--source", SOURCE, "--json"]
    if not embed:
        args.append("--no-embed")
    return args


def index_trial(exai: Exai, work: Path, number: int, seed: str, corpus: Corpus, reference: dict,
                ref_seconds: float) -> TrialResult:
    rng = random.Random(f"{seed}:index:{number}")
    result = TrialResult("index", number, f"{seed}:{number}")
    home = work / f"index-{number}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log = work / f"index-{number}.log"
    args = index_args(corpus, exai.embed)
    started = time.monotonic()
    planned = rng.choice([1, 1, 2, 3])
    attempts = 0
    committed = 0
    ref_docs = max(1, int(reference["content"]["documents"]))
    while planned > 0 and attempts < MAX_ATTEMPTS:
        attempts += 1
        # A run that resumes skips what is committed: aim within what is likely left of it.
        left = max(0.15, 1 - committed / ref_docs)
        after = rng.uniform(0.02, 0.98) * ref_seconds * left
        killed, code = run_and_kill(exai, home, args, after, log)
        if not killed and code != 0:
            result.losses.append(f"exai index exited {code} on its own (log: {log})")
        if not killed and not any(k.killed for k in result.kills):
            # The first run finished before its instant (the machine was quicker this time):
            # start again from nothing, so every trial kills a run that began on an empty database.
            result.kills.append(Kill(after, killed, code, None, 0))
            shutil.rmtree(home)
            home.mkdir()
            continue
        planned -= 1
        committed = int(fingerprint(home / "kb.sqlite")["documents"]) if (home / "kb.sqlite").exists() else 0
        vexit, vdetail = verify_exit(exai, home)
        result.kills.append(Kill(after, killed, code, committed, vexit, vdetail))
        if vexit != 0:
            result.losses.append(f"exai db verify exited {vexit} after the kill at {after:.2f} s: {vdetail}")
    # Resume with the very same command, to the end.
    p = exai.run(home, *args)
    if p.returncode != 0:
        result.losses.append(f"the resumed exai index exited {p.returncode}: {p.stderr.strip()[-500:]}")
    else:
        report = json.loads(p.stdout)
        result.notes.append(f"resume: {report['added']} added, {report['updated']} updated, "
                            f"{report['unchanged']} unchanged")
        vexit, vdetail = verify_exit(exai, home)
        if vexit != 0:
            result.losses.append(f"exai db verify exited {vexit} after the resumed run: {vdetail}")
        got = {"counts": counts(exai, home), "content": fingerprint(home / "kb.sqlite")}
        result.losses += [f"after resume, {d}" for d in diff(reference["counts"], got["counts"])]
        if got["content"] != reference["content"]:
            result.losses.append(f"after resume, content differs: expected {reference['content']}, "
                                 f"got {got['content']}")
    result.seconds = time.monotonic() - started
    if not result.losses:
        shutil.rmtree(home, ignore_errors=True)
        log.unlink(missing_ok=True)
    return result


# ---------------------------------------------------------------------------------------------
# backup trials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(base: str, timeout: float = 2) -> bool:
    with contextlib.suppress(OSError, urllib.error.URLError):
        with urllib.request.urlopen(f"{base}/ready", timeout=timeout) as r:
            return r.status == 200
    return False


@dataclass
class Daemon:
    proc: subprocess.Popen
    base: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_daemon(exai: Exai, home: Path, log: Path) -> Daemon:
    port = free_port()
    proc = exai.spawn(home, ["daemon", "--listen", f"127.0.0.1:{port}"], log)
    d = Daemon(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if ready(d.base, 1):
            return d
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    d.stop()
    raise SetupError(f"exai daemon did not become ready (log: {log})")


def backup_listing(root: Path) -> tuple[set[str], set[str]]:
    """(complete backups by exai's own rule, everything else in the backups directory)."""
    entries = {p.name for p in root.iterdir()} if root.is_dir() else set()
    listed = {n for n in entries if n.startswith("exai-backup-") and (root / n / "manifest.json").is_file()}
    return listed, entries - listed


@dataclass
class Leftovers:
    """Entries of the backups directory that `exai db backups` does not list (what killed backups
    left), followed across trials: does a later `exai db backup` remove them, or must this script
    (after one more trial, so the trials do not fill the disk)?"""

    root: Path
    seen: dict[str, int] = field(default_factory=dict)  # name -> trial that left it
    created: int = 0
    removed_by_exai: int = 0
    removed_by_script: int = 0

    def update(self, number: int) -> list[str]:
        """Note what disappeared since the last look and what is new; returns the new names."""
        _, others = backup_listing(self.root)
        for name in [n for n in self.seen if n not in others]:
            self.removed_by_exai += 1
            del self.seen[name]
        new = sorted(others - set(self.seen))
        for name in new:
            self.seen[name] = number
            self.created += 1
        return new

    def describe(self, name: str) -> str:
        path = self.root / name
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        return ", ".join(f"{f.name} {f.stat().st_size / 1e6:.1f} MB" for f in files) or "empty"

    def trim(self, number: int) -> None:
        """Remove what survived at least one later backup."""
        for name, left_by in list(self.seen.items()):
            if number - left_by >= 2:
                path = self.root / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                self.removed_by_script += 1
                del self.seen[name]


def backup_trial(exai: Exai, work: Path, number: int, seed: str, home: Path, live: dict, ref_seconds: float,
                 daemon: Daemon | None, leftovers: Leftovers) -> TrialResult:
    rng = random.Random(f"{seed}:backup:{number}")
    result = TrialResult("backup", number, f"{seed}:{number}")
    result.notes.append("daemon serving" if daemon else "nothing serving")
    root = work / "backups"
    log = work / f"backup-{number}.log"
    leftovers.trim(number)
    listed_before, _ = backup_listing(root)
    started = time.monotonic()
    # A backup is short: when one finishes before its instant, the next attempt draws again, so
    # every trial ends with one kill that landed mid-backup (or says it never did).
    for _ in range(MAX_ATTEMPTS):
        after = rng.uniform(0.02, 0.98) * ref_seconds
        killed, code = run_and_kill(exai, home, ["db", "backup", str(root), "--keep", "3", "--json"], after, log)
        vexit, vdetail = verify_exit(exai, home)
        result.kills.append(Kill(after, killed, code, None, vexit, vdetail))
        if vexit != 0:
            result.losses.append(f"exai db verify exited {vexit} after the kill at {after:.2f} s: {vdetail}")
        if not killed and code != 0:
            result.losses.append(f"exai db backup exited {code} on its own (log: {log})")
        if killed:
            break
    else:
        result.notes.append(f"no kill landed mid-backup in {MAX_ATTEMPTS} attempts")
    now = {"counts": counts(exai, home), "content": fingerprint(home / "kb.sqlite")}
    result.losses += [f"live databases changed: {d}" for d in diff(live["counts"], now["counts"])]
    if now["content"] != live["content"]:
        result.losses.append(f"live knowledge base changed: expected {live['content']}, got {now['content']}")
    if daemon and not ready(daemon.base, 5):
        result.losses.append("the daemon stopped answering /ready")
    # What exai lists must be complete and sound; what it does not list is only reported.
    p = exai.run(home, "db", "backups", str(root))
    if p.returncode != 0:
        result.losses.append(f"exai db backups exited {p.returncode}: {p.stderr.strip()[-300:]}")
    listed, _ = backup_listing(root)
    shown = {line.split()[-1] for line in p.stdout.splitlines() if line.strip() and not line.startswith("no backups")}
    if shown != {str(root / n) for n in listed}:
        result.losses.append(f"exai db backups shows {sorted(shown)}, the directory holds {sorted(listed)}")
    for name in sorted(listed - listed_before):
        check = exai.run(home, "db", "restore", "--check", str(root / name))
        if check.returncode != 0:
            result.losses.append(f"listed backup {name} fails `exai db restore --check`: "
                                 f"{check.stderr.strip()[-300:]}")
        else:
            result.notes.append("backup completed and verifies" if not killed else
                                f"listed {name}, verifies")
    for name in leftovers.update(number):
        result.notes.append(f"left behind, not listed: {name} ({leftovers.describe(name)})")
    result.seconds = time.monotonic() - started
    if not result.losses:
        log.unlink(missing_ok=True)
    return result


# ---------------------------------------------------------------------------------------------
# main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index-trials", type=int, default=20)
    ap.add_argument("--backup-trials", type=int, default=20)
    ap.add_argument("--seed", default=None, help="seed of every random choice (default: random, printed)")
    ap.add_argument("--only", default=None, help="replay one trial, e.g. index:7 or backup:3")
    ap.add_argument("--embed", action="store_true",
                    help="embed too (needs the local model: EXAI_EMBED_MODEL or the data directory's default)")
    ap.add_argument("--corpus", help="directory to index (default: the toolchain's HTML docs)")
    ap.add_argument("--part", action="append", dest="parts",
                    help=f"only this subdirectory of the corpus (repeatable; default for the Rust docs: "
                         f"{' '.join(DEFAULT_PARTS)})")
    ap.add_argument("--exai", help="exai binary (default: EXAI_BIN, else a fresh release build)")
    ap.add_argument("--work", help="working directory (default: a new temporary one, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--json", dest="json_out", help="also write the summary as JSON to this file")
    args = ap.parse_args()

    seed = args.seed or f"{random.SystemRandom().randrange(10**9):09d}"
    only_kind, only_number = (args.only.split(":") + [""])[:2] if args.only else (None, "")
    try:
        exai = Exai(find_exe(args.exai), args.embed)
        corpus = find_corpus(args.corpus, args.parts)
    except (SetupError, subprocess.CalledProcessError) as e:
        print(f"set-up failed: {e}", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="exai-crash-trials-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"exai: {exai.exe}\nseed: {seed}   (replay: --seed {seed} [--only index:N|backup:N])\nwork: {work}")
    print(f"corpus: {corpus.root}, parts: {' '.join(corpus.parts) or 'all'}\n")

    results: list[TrialResult] = []
    leftovers: Leftovers | None = None
    leftovers_after_final: list[str] = []
    try:
        # Reference: one uninterrupted run.
        ref_home = work / "reference"
        shutil.rmtree(ref_home, ignore_errors=True)
        ref_home.mkdir()
        ref_seconds, p = timed(exai, ref_home, *index_args(corpus, args.embed))
        if p.returncode != 0:
            raise SetupError(f"the reference exai index exited {p.returncode}: {p.stderr.strip()[-800:]}")
        report = json.loads(p.stdout)
        vexit, vdetail = verify_exit(exai, ref_home)
        if vexit != 0:
            raise SetupError(f"exai db verify exits {vexit} on the uninterrupted reference: {vdetail}")
        reference = {"counts": counts(exai, ref_home), "content": fingerprint(ref_home / "kb.sqlite")}
        print(f"reference: {report['files_seen']} files seen, {reference['content']['documents']} documents, "
              f"{reference['content']['chunks']} chunks, {ref_seconds:.1f} s wall "
              f"(content digest {reference['content']['digest']})\n")

        if only_kind in (None, "index"):
            numbers = [int(only_number)] if only_kind == "index" else range(1, args.index_trials + 1)
            for n in numbers:
                r = index_trial(exai, work, n, seed, corpus, reference, ref_seconds)
                results.append(r)
                print(r.line(), flush=True)
                for loss in r.losses:
                    print(f"        LOSS: {loss}", flush=True)

        if only_kind in (None, "backup"):
            # The reference data directory is the live one; a clean backup first gives the kill
            # window and shows backups work at all.
            root = work / "backups"
            bsec, p = timed(exai, ref_home, "db", "backup", str(root), "--keep", "3", "--json")
            if p.returncode != 0:
                raise SetupError(f"a clean exai db backup failed: {p.stderr.strip()[-800:]}")
            live = {"counts": counts(exai, ref_home), "content": fingerprint(ref_home / "kb.sqlite")}
            print(f"\nreference backup: {bsec:.2f} s wall, {json.loads(p.stdout)['path']}\n")
            numbers = [int(only_number)] if only_kind == "backup" else range(1, args.backup_trials + 1)
            daemon: Daemon | None = None
            leftovers = Leftovers(root)
            try:
                for n in numbers:
                    want_daemon = n % 2 == 1
                    if want_daemon and daemon is None:
                        daemon = start_daemon(exai, ref_home, work / "daemon.log")
                        # The daemon creates its own state database: that is the live set now.
                        live = {"counts": counts(exai, ref_home), "content": fingerprint(ref_home / "kb.sqlite")}
                    elif not want_daemon and daemon is not None:
                        daemon.stop()
                        daemon = None
                    r = backup_trial(exai, work, n, seed, ref_home, live, bsec, daemon, leftovers)
                    results.append(r)
                    print(r.line(), flush=True)
                    for loss in r.losses:
                        print(f"        LOSS: {loss}", flush=True)
            finally:
                if daemon is not None:
                    daemon.stop()
            # One complete backup after the trials: does it clear what the killed ones left?
            p = exai.run(ref_home, "db", "backup", str(root), "--keep", "3", "--json")
            if p.returncode != 0:
                raise SetupError(f"the backup after the trials failed: {p.stderr.strip()[-800:]}")
            leftovers.update(max(numbers) + 1)
            leftovers_after_final = sorted(leftovers.seen)
            for name in leftovers_after_final:
                print(f"still there after a complete backup: {name} ({leftovers.describe(name)})")
    except SetupError as e:
        print(f"set-up failed: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)

    losses = sum(len(r.losses) for r in results)
    index_results = [r for r in results if r.kind == "index"]
    backup_results = [r for r in results if r.kind == "backup"]
    summary = {
        "seed": seed,
        "exai": exai.exe,
        "corpus": {"root": corpus.root, "parts": corpus.parts},
        "embed": args.embed,
        "index_trials": len(index_results),
        "index_kills": sum(k.killed for r in index_results for k in r.kills),
        "index_kill_attempts_after_finish": sum(not k.killed for r in index_results for k in r.kills),
        "documents_committed_at_kills": sorted(k.documents_committed or 0 for r in index_results for k in r.kills
                                               if k.killed),
        "backup_trials": len(backup_results),
        "backup_kills": sum(k.killed for r in backup_results for k in r.kills),
        "backup_leftovers_created": leftovers.created if leftovers else 0,
        "backup_leftovers_removed_by_exai": leftovers.removed_by_exai if leftovers else 0,
        "backup_leftovers_removed_by_this_script": leftovers.removed_by_script if leftovers else 0,
        "backup_leftovers_after_a_complete_backup": len(leftovers_after_final),
        "trials_with_loss": sum(1 for r in results if r.losses),
        "losses": losses,
        "loss_detail": [f"{r.kind} #{r.number}: {x}" for r in results for x in r.losses],
    }
    print("\nsummary")
    print(f"  index trials  {summary['index_trials']:>4}   SIGKILLs mid-run {summary['index_kills']:>4}"
          f"   (attempts after the run had finished: {summary['index_kill_attempts_after_finish']})")
    if summary["documents_committed_at_kills"]:
        d = summary["documents_committed_at_kills"]
        print(f"                documents committed at the kills: min {d[0]}, median {d[len(d) // 2]}, max {d[-1]} "
              f"(of {reference['content']['documents']})")
    print(f"  backup trials {summary['backup_trials']:>4}   SIGKILLs mid-backup {summary['backup_kills']:>4}")
    print(f"                unlisted leftovers of killed backups: {summary['backup_leftovers_created']} left, "
          f"{summary['backup_leftovers_removed_by_exai']} removed by a later exai db backup, "
          f"{summary['backup_leftovers_after_a_complete_backup']} still there after a complete backup")
    print(f"  losses        {losses:>4}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2) + "\n")
    if losses == 0 and not args.keep and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    elif losses:
        print(f"\nkept for inspection: {work}")
    return 1 if losses else 0


if __name__ == "__main__":
    sys.exit(main())
