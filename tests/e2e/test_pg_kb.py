"""One knowledge base in PostgreSQL shared by two daemons: what one indexes the other finds at
once, both index and search at the same time, and a database that goes away mid-run makes calls
fail cleanly (no hang) until it is back, when the same daemon serves again without a restart.
Needs the test server of scripts/postgres.sh (see pg.py); the outage test starts its own."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import pg
from conftest import free_port, start_daemon, structured

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database():
    url = pg.fresh_database(pg.base_url_or_skip())
    yield url
    pg.drop_database(url)


def write_corpus(root: Path, word: str, n: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"{word}{i}.md").write_text(
            f"# {word.title()} page {i}\n\nThe {word} handbook, part {i}: how {word} tools work.\n\n"
            f"## Details\n\nMore about {word} number {i}.\n")


class Failed:
    """A call that failed, as a tool error or as a JSON-RPC error (the kb tools use both)."""
    is_error = True

    def __init__(self, text: str):
        self.text = text


async def tool(daemon, name: str, args: dict, *, error_ok: bool = False):
    try:
        async with streamable_http_client(daemon.url) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                result = await s.call_tool(name, args)
                if error_ok and result.is_error:
                    return Failed(result.content[0].text)
                return structured(result)
    except BaseException as e:  # the SDK wraps a JSON-RPC error in exception groups
        if not error_ok:
            raise
        while isinstance(e, BaseExceptionGroup) and e.exceptions:
            e = e.exceptions[0]
        if not isinstance(e, MCPError):
            raise
        return Failed(str(e))


def hits(result: dict) -> list[str]:
    return [f"{h['source']}:{h['path']}" for h in result["hits"]]


async def test_two_daemons_share_one_knowledge_base(tmp_path, database):
    env = dict(EXAI_DATABASE_URL=database, EXAI_EMBED_BACKEND="none", EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_corpus(tmp_path / "alpha", "alpha", 30)
    write_corpus(tmp_path / "beta", "beta", 30)
    a = start_daemon(tmp_path / "a", **env)
    b = start_daemon(tmp_path / "b", **env)
    try:
        # Both daemons index at the same time, each its own source, while both search.
        async def searches(d, rounds=10):
            for _ in range(rounds):
                r = await tool(d, "search_docs", {"query": "handbook tools", "limit": 5})
                assert r["mode"] == "keyword"
                await asyncio.sleep(0.05)

        jobs = await asyncio.gather(
            tool(a, "index_path", {"path": str(tmp_path / "alpha"), "source": "alpha", "wait_secs": 60}),
            tool(b, "index_path", {"path": str(tmp_path / "beta"), "source": "beta", "wait_secs": 60}),
            searches(a), searches(b))
        assert jobs[0]["state"] == "done" and jobs[1]["state"] == "done", jobs[:2]

        # Each sees the other's documents at once (no restart, no cache to expire).
        on_a = await tool(a, "search_docs", {"query": "beta handbook", "limit": 3, "source": "beta"})
        on_b = await tool(b, "search_docs", {"query": "alpha handbook", "limit": 3, "source": "alpha"})
        assert hits(on_a) and all(h.startswith("beta:") for h in hits(on_a)), on_a
        assert hits(on_b) and all(h.startswith("alpha:") for h in hits(on_b)), on_b
        both = {s["name"]: s["documents"] for s in (await tool(b, "list_sources", {}))["sources"]}
        assert both == {"alpha": 30, "beta": 30}
        # The same query gives the same answer on both daemons.
        q = {"query": "alpha number 7 details", "limit": 5}
        assert hits(await tool(a, "search_docs", q)) == hits(await tool(b, "search_docs", q))
        chunk = on_a["hits"][0]["chunk_id"]
        assert (await tool(b, "get_chunk", {"chunk_id": chunk}))["chunk"]["id"] == chunk

        # A source being indexed on one daemon is refused on the other; a removal on B is
        # seen by A.
        removed = await tool(b, "remove_source", {"source": "alpha"})
        assert removed["documents_removed"] == 30, removed
        gone = await tool(a, "search_docs", {"query": "alpha handbook", "limit": 3})
        assert not hits(gone) or all(not h.startswith("alpha:") for h in hits(gone))
    finally:
        a.stop()
        b.stop()
    # Nothing of the knowledge base went to the daemons' data directories.
    assert not (tmp_path / "a" / "kb.sqlite").exists() and not (tmp_path / "b" / "kb.sqlite").exists()


def postgres(cmd: str, pgdir: Path, port: int | None = None) -> str:
    env = dict(os.environ)
    if port:
        env["EXAI_PG_PORT"] = str(port)
    out = subprocess.run([str(ROOT / "scripts" / "postgres.sh"), cmd, str(pgdir)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


async def test_the_database_going_away_and_coming_back(tmp_path):
    pg.base_url_or_skip()
    # A server of its own (the shared one must stay up for other tests), in a short,
    # world-searchable directory (the server may run as another user).
    pgdir = Path(tempfile.mkdtemp(prefix="exai-pg-"))
    os.chmod(pgdir, 0o755)
    port = free_port()
    url = postgres("start", pgdir, port).replace("postgres@", "postgres:hunter2@")
    try:
        docs = tmp_path / "docs"
        write_corpus(docs, "gamma", 5)
        home = tmp_path / "home"
        home.mkdir()
        d = start_daemon(home, EXAI_DATABASE_URL=url, EXAI_EMBED_BACKEND="none",
                         EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path), EXAI_DATABASE_CONNECT_RETRY_SECS="1")
        try:
            job = await tool(d, "index_path", {"path": str(docs), "source": "gamma", "wait_secs": 60})
            assert job["state"] == "done", job
            assert hits(await tool(d, "search_docs", {"query": "gamma handbook", "limit": 2}))

            postgres("stop", pgdir)
            started = time.monotonic()
            failed = await tool(d, "search_docs", {"query": "gamma handbook"}, error_ok=True)
            took = time.monotonic() - started
            assert failed.is_error, failed
            text = failed.text
            assert "PostgreSQL" in text and "127.0.0.1" in text, text
            assert "hunter2" not in text, "the password never shows"
            assert took < 10, f"a lost database fails the call quickly, not after {took:.1f} s"
            # The daemon itself stays up and answers what does not need the database.
            assert (await tool(d, "version", {}))["name"] == "exai"

            postgres("start", pgdir, port)
            deadline = time.monotonic() + 20
            while True:
                r = await tool(d, "search_docs", {"query": "gamma handbook", "limit": 2}, error_ok=True)
                if not getattr(r, "is_error", False):
                    assert hits(r), r
                    break
                assert time.monotonic() < deadline, r.text
                await asyncio.sleep(0.5)
        finally:
            d.stop()
            log = (home / "logs" / "exai.log").read_text() if (home / "logs" / "exai.log").exists() else ""
            assert "hunter2" not in log
    finally:
        postgres("stop", pgdir)
        shutil.rmtree(pgdir, ignore_errors=True)


async def test_a_daemon_started_before_its_database_serves_once_it_is_up(tmp_path):
    pg.base_url_or_skip()
    pgdir = Path(tempfile.mkdtemp(prefix="exai-pg-"))
    os.chmod(pgdir, 0o755)
    port = free_port()
    url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    home = tmp_path / "home"
    home.mkdir()
    d = start_daemon(home, EXAI_DATABASE_URL=url, EXAI_EMBED_BACKEND="none", EXAI_DATABASE_CONNECT_RETRY_SECS="1")
    try:
        r = await tool(d, "list_sources", {}, error_ok=True)
        assert r.is_error and "cannot connect to PostgreSQL" in r.text, r.text
        postgres("start", pgdir, port)
        deadline = time.monotonic() + 20
        while True:
            r = await tool(d, "list_sources", {}, error_ok=True)
            if not getattr(r, "is_error", False):
                assert r["sources"] == []
                break
            assert time.monotonic() < deadline, r.text
            await asyncio.sleep(0.5)
    finally:
        d.stop()
        postgres("stop", pgdir)
        shutil.rmtree(pgdir, ignore_errors=True)
