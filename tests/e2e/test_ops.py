"""The operations toolkit end to end on real data directories: db backup while a client indexes
and searches, restore into a fresh directory with the same search results, restore refused while
a daemon has the databases open, a corrupted database caught by `db verify` and `health`, logs
and stats over real tool calls, migrate, compact, reindex, log pruning."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import base_env, exai_bin, run_exai, start_daemon, structured

pytestmark = pytest.mark.anyio


def ops(home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_exai(home, *args, EXAI_EMBED_BACKEND="none")


def corpus(root: Path, name: str, files: int, word: str) -> Path:
    docs = root / name
    docs.mkdir()
    for i in range(files):
        (docs / f"{name}{i}.md").write_text(
            f"# {name} page {i}\n\n## Part {i % 5}\n\n"
            + " ".join(f"{word}{i % 13} {name}w{i}_{j}" for j in range(80)) + "\n")
    return docs


def search_paths(home: Path, query: str) -> list[str]:
    out = ops(home, "search", query, "--mode", "keyword", "--limit", "20", "--json")
    assert out.returncode == 0, out.stderr
    return [h["path"] for h in json.loads(out.stdout)["hits"]]


async def test_backup_while_indexing_and_searching_then_restore_elsewhere(home, tmp_path):
    first = corpus(tmp_path, "alpha", 40, "alphaterm")
    second = corpus(tmp_path, "beta", 1500, "betaterm")
    assert ops(home, "index", str(first), "--source", "alpha").returncode == 0
    before = {q: search_paths(home, q) for q in ("alphaterm3", "alphaterm7 alpha", "alphaw12_5")}
    assert all(before.values()), before

    daemon = start_daemon(home, EXAI_EMBED_BACKEND="none", EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path))
    try:
        async with streamable_http_client(daemon.url) as (r, w, *_):
            async with ClientSession(r, w) as session:
                await session.initialize()
                job = structured(await session.call_tool(
                    "index_path", {"path": str(second), "source": "beta", "wait_secs": 0}))
                searches = 0
                stop = asyncio.Event()

                async def keep_searching():
                    nonlocal searches
                    while not stop.is_set():
                        res = structured(await session.call_tool("search_docs", {"query": "alphaterm3"}))
                        assert res["hits"], res
                        searches += 1
                        await asyncio.sleep(0.01)

                searcher = asyncio.create_task(keep_searching())
                backup = await asyncio.to_thread(ops, home, "db", "backup", "--json")
                assert backup.returncode == 0, backup.stderr
                # Let the job finish, still searching.
                deadline = time.monotonic() + 120
                while True:
                    st = structured(await session.call_tool("job_status", {"job_id": job["job_id"]}))
                    if st["state"] != "running":
                        break
                    assert time.monotonic() < deadline, st
                    await asyncio.sleep(0.1)
                # Stop between two searches, not mid-call: a call abandoned while its answer is
                # on the way makes the Python SDK fail when the session then closes.
                stop.set()
                await searcher
                assert st["state"] == "done", st
                assert searches > 0
    finally:
        daemon.stop()

    report = json.loads(backup.stdout)
    manifest = report["manifest"]
    kb = next(f for f in manifest["files"] if f["name"] == "kb")
    assert kb["schema_version"] == 3 and len(kb["blake3"]) == 64
    backed_docs = kb["tables"]["documents"]
    assert 40 <= backed_docs <= 1540
    assert Path(report["path"], "manifest.json").is_file()

    fresh = tmp_path / "fresh-home"
    fresh.mkdir()
    checked = ops(fresh, "db", "restore", report["path"], "--check")
    assert checked.returncode == 0 and "verified" in checked.stdout, checked.stderr
    restored = ops(fresh, "db", "restore", report["path"])
    assert restored.returncode == 0, restored.stderr
    verify = ops(fresh, "db", "verify", "--json")
    assert verify.returncode == 0, verify.stdout
    fresh_kb = next(d for d in json.loads(verify.stdout)["databases"] if d["name"] == "kb")
    assert fresh_kb["kb"]["documents"] == backed_docs
    # The alpha documents never changed: the same ranked results before the backup, in the
    # restored copy, and in the original now that beta is complete.
    for q, paths in before.items():
        assert search_paths(fresh, q) == paths, q
        assert search_paths(home, q) == paths, q

    # A second restore over a live file keeps the replaced one beside it.
    again = ops(fresh, "db", "restore", report["path"])
    assert again.returncode == 0 and "replaced file kept as" in again.stdout, again.stdout
    assert list(fresh.glob("kb.sqlite.replaced-*"))

    # Keep the newest N: three more backups with keep 2 leave two.
    for _ in range(3):
        assert ops(home, "db", "backup", "--keep", "2").returncode == 0
    listed = ops(home, "db", "backups").stdout.strip().splitlines()
    assert len(listed) == 2, listed


async def test_restore_refused_while_the_daemon_has_the_databases_open(home, tmp_path):
    docs = corpus(tmp_path, "eta", 20, "etaterm")
    assert ops(home, "index", str(docs), "--source", "eta").returncode == 0
    backup = json.loads(ops(home, "db", "backup", "--json").stdout)["path"]
    kb = home / "kb.sqlite"
    daemon = start_daemon(home, EXAI_EMBED_BACKEND="none")
    try:
        async with streamable_http_client(daemon.url) as (r, w, *_):
            async with ClientSession(r, w) as session:
                await session.initialize()
                hits = structured(await session.call_tool("search_docs", {"query": "etaterm4"}))["hits"]
                assert hits
                inode = kb.stat().st_ino
                refused = ops(home, "db", "restore", backup)
                assert refused.returncode == 1, refused.stdout
                assert f"an exai process (pid {daemon.proc.pid}: exai daemon" in refused.stderr, refused.stderr
                assert "`exai daemon stop`" in refused.stderr, refused.stderr
                assert kb.stat().st_ino == inode and not list(home.glob("kb.sqlite.replaced-*"))
                # The daemon never noticed: it still answers from the same file.
                again = structured(await session.call_tool("search_docs", {"query": "etaterm4"}))["hits"]
                assert [h["path"] for h in again] == [h["path"] for h in hits]
        # Its files are private while it runs.
        for name in ("exai.pid", "exai.lock", "kb.sqlite", "kb.sqlite-wal", "logs/exai.log", "logs/activity.jsonl"):
            assert (home / name).stat().st_mode & 0o777 == 0o600, name
        assert home.stat().st_mode & 0o777 == 0o700
    finally:
        assert daemon.stop() == 0
    restored = ops(home, "db", "restore", backup)
    assert restored.returncode == 0 and "replaced file kept as" in restored.stdout, restored.stderr
    assert kb.stat().st_mode & 0o777 == 0o600
    assert search_paths(home, "etaterm4")


def test_corrupt_database_fails_verify_and_health(home, tmp_path):
    docs = corpus(tmp_path, "gamma", 60, "gammaterm")
    assert ops(home, "index", str(docs), "--source", "gamma").returncode == 0
    ok = ops(home, "db", "verify")
    assert ok.returncode == 0 and ok.stdout.startswith("ok"), ok.stdout
    db = home / "kb.sqlite"
    size = db.stat().st_size
    with open(db, "r+b") as f:
        # Leave the header page alone (the file still opens), scramble pages in the middle.
        f.seek(size // 3)
        f.write(os.urandom(min(size // 3, 64 * 1024)))
    bad = ops(home, "db", "verify")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "FAIL" in bad.stdout and "problem:" in bad.stdout, bad.stdout
    health = ops(home, "health", "--json")
    assert health.returncode == 2, health.stdout + health.stderr
    report = json.loads(health.stdout)
    assert report["status"] == "fail"
    kb = next(c for c in report["checks"] if c["name"] == "db_kb")
    assert kb["status"] == "fail" and "exai db restore" in kb["detail"], kb
    text = ops(home, "health")
    assert "FAIL" in text.stdout and "db_kb" in text.stdout and "overall: FAILED" in text.stdout

    # Not a database at all.
    db.write_bytes(b"this is not a database" * 100)
    for name in ("kb.sqlite-wal", "kb.sqlite-shm"):
        (home / name).unlink(missing_ok=True)
    worse = ops(home, "db", "verify")
    assert worse.returncode == 2 and "not a database" in worse.stdout.lower() + worse.stderr.lower(), worse.stdout


async def test_logs_and_stats_over_real_calls(home, tmp_path):
    daemon = start_daemon(home, EXAI_TOOLS_DIAGNOSTICS="1")
    try:
        async with streamable_http_client(daemon.url) as (r, w, *_):
            async with ClientSession(r, w) as session:
                await session.initialize()
                for _ in range(5):
                    structured(await session.call_tool("version", {}))
                for _ in range(2):
                    res = await session.call_tool("ping", {"delay_ms": 1})
                    assert not res.is_error
                bad = await session.call_tool("ping", {"delay_ms": "soon"})
                assert bad.is_error
        health = ops(home, "health", "--json")
        report = json.loads(health.stdout)
        d = next(c for c in report["checks"] if c["name"] == "daemon")
        assert d["status"] == "ok" and d["data"]["pid"] == daemon.proc.pid, d
        assert any(c["name"] == "daemon_memory" for c in report["checks"])
    finally:
        daemon.stop()

    stats = json.loads(ops(home, "stats", "--json").stdout)
    tools = {row["name"]: row for row in stats["by_tool"]}
    assert tools["version"]["calls"] == 5 and tools["version"]["errors"] == 0
    assert tools["ping"]["calls"] == 3 and tools["ping"]["errors"] == 1
    assert tools["version"]["p50_ms"] <= tools["version"]["p99_ms"]
    assert "version" in ops(home, "stats", "--since", "1h").stdout

    lines = [json.loads(l) for l in ops(home, "logs", "--activity", "--json").stdout.splitlines()]
    assert len(lines) == 8 and all(l["origin"] == "activity" for l in lines)
    errors = ops(home, "logs", "--errors", "--activity", "--tool", "ping")
    assert errors.returncode == 0 and len(errors.stdout.strip().splitlines()) == 1, errors.stdout
    assert "ping error" in errors.stdout
    assert ops(home, "logs", "--tool", "version", "--since", "1h", "-n", "2").stdout.count("CALL") == 2
    assert ops(home, "logs", "--grep", "[").returncode != 0

    # Follow picks up what is appended.
    follow = subprocess.Popen([exai_bin(), "logs", "--follow", "--activity", "-n", "0"], env=base_env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)
        with open(home / "logs" / "activity.jsonl", "a") as f:
            f.write(json.dumps({"time": "2026-12-02T00:00:00Z", "tool": "followed", "session": "s", "request_id": "1",
                                "duration_ms": 1.0, "outcome": "ok"}) + "\n")
        time.sleep(1.5)
    finally:
        follow.terminate()
    out, _ = follow.communicate(timeout=10)
    assert "followed" in out, out

    # Prune: rotated files older than the cutoff go, the live files stay.
    old = home / "logs" / "activity.jsonl.1"
    old.write_text("{}\n")
    os.utime(old, (time.time() - 10 * 86400,) * 2)
    pruned = ops(home, "logs", "prune", "--older-than", "7d")
    assert pruned.returncode == 0 and "activity.jsonl.1" in pruned.stdout, pruned.stdout
    assert not old.exists() and (home / "logs" / "activity.jsonl").exists()


def test_migrate_stats_compact_reindex(home, tmp_path):
    docs = corpus(tmp_path, "delta", 30, "deltaterm")
    assert ops(home, "index", str(docs), "--source", "delta").returncode == 0
    check = ops(home, "db", "migrate", "--check")
    assert check.returncode == 0 and "schema 3 (current)" in check.stdout, check.stdout
    stats = json.loads(ops(home, "db", "stats", "--json").stdout)
    kb = next(s for s in stats if s["name"] == "kb")
    assert kb["kb"]["documents"] == 30 and kb["tables"]["chunks"] == kb["kb"]["chunks"]
    # Remove half the documents, then compact gets space back.
    for p in sorted(docs.glob("*.md"))[:15]:  # delta0, delta1, delta10…21 go; delta3…9 and 22…29 stay
        p.unlink()
    assert ops(home, "index", str(docs), "--source", "delta", "--prune").returncode == 0
    compact = ops(home, "db", "compact", "--json")
    assert compact.returncode == 0, compact.stderr
    done = next(c for c in json.loads(compact.stdout) if c["name"] == "kb")
    assert done["bytes_after"] < done["bytes_before"], done
    before = search_paths(home, "deltaterm5")
    re = ops(home, "db", "reindex")
    assert re.returncode == 0 and "rebuilt from" in re.stdout, re.stderr
    assert search_paths(home, "deltaterm5") == before and before
    assert ops(home, "db", "verify").returncode == 0


def test_health_live_asks_each_provider(home, tmp_path):
    key = "sk-ops-test"
    mock = subprocess.Popen([exai_bin(), "mock-llm", "--api-key", key], env=base_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = json.loads(mock.stdout.readline())["url"]
        good = run_exai(home, "health", "--live", "--json", GLM_API_KEY=key, GLM_API_URL=url,
                        KIMI_API_KEY="sk-wrong", KIMI_API_URL=url)
        report = json.loads(good.stdout)
        checks = {c["name"]: c for c in report["checks"]}
        assert checks["providers"]["data"]["configured"] == ["glm", "kimi"]
        assert checks["provider_glm"]["status"] == "ok", checks["provider_glm"]
        assert checks["provider_glm"]["data"]["tokens_out"] > 0
        assert checks["provider_kimi"]["status"] == "fail", checks["provider_kimi"]
        assert "sk-wrong" not in good.stdout + good.stderr
        assert good.returncode == 2
    finally:
        mock.terminate()
        mock.wait(10)
