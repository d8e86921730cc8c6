"""Two daemons on one PostgreSQL: a conversation started on one continues on the other and
survives a restart, and `exai validate` records its run there — no state that matters stays in a
daemon's data directory. Needs the test server of scripts/postgres.sh (see pg.py)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import pg
from conftest import MOCK_KEY, base_env, run_exai, start_daemon, structured

pytestmark = pytest.mark.anyio

KEY = MOCK_KEY


@pytest.fixture
def database():
    url = pg.fresh_database(pg.base_url_or_skip())
    yield url
    pg.drop_database(url)




async def call(daemon, name, args):
    async with streamable_http_client(daemon.url) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            return structured(await s.call_tool(name, args))


async def test_a_thread_moves_between_daemons_and_validation_is_tracked(tmp_path, mock_llm, database):
    env = dict(KIMI_API_KEY=KEY, KIMI_API_URL=mock_llm, GLM_API_KEY=KEY, GLM_API_URL=mock_llm,
               EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path), EXAI_DATABASE_URL=database, EXAI_EMBED_BACKEND="none")
    homes = {name: tmp_path / name for name in ("a", "b", "ops")}
    for h in homes.values():
        h.mkdir()
    a = start_daemon(homes["a"], **env)
    b = start_daemon(homes["b"], **env)
    try:
        first = await call(a, "chat", {"prompt": "What is a monad?", "model": "glm-4.6"})
        assert "(2 messages)" in first["content"]
        cid = first["continuation_id"]
        # Daemon B has never seen this thread in memory: it reads it from the database.
        second = await call(b, "chat", {"prompt": "And a functor?", "model": "glm-4.6", "continuation_id": cid})
        assert "(4 messages)" in second["content"], "B sent A's history to the model"
        assert second["continuation_id"] == cid and second["remaining_turns"] == 16
        listed = (await call(b, "list_threads", {}))["threads"]
        assert [(t["continuation_id"], t["turns"]) for t in listed] == [(cid, 4)]
        # A restarted A still has it, with B's turns.
        a.stop()
        a = start_daemon(homes["a"], **env)
        third = await call(a, "chat", {"prompt": "Still there?", "model": "kimi-k2-0905-preview",
                                       "continuation_id": cid})
        assert "(6 messages)" in third["content"], "the thread survived the restart"

        # An index job of A is visible on B, which never ran it.
        docs = tmp_path / "docs"
        docs.mkdir()
        for i in range(3):
            (docs / f"page{i}.md").write_text(f"# Page {i}\n\nSome words about topic {i}.\n")
        job = await call(a, "index_path", {"path": str(docs), "source": "docs", "wait_secs": 30})
        assert job["state"] == "done", job
        seen = await call(b, "job_status", {"job_id": job["job_id"]})
        assert seen["state"] == "done" and seen["source"] == "docs" and seen["files_total"] == 3, seen
        assert seen["owner"] == job["owner"] and seen["report"]["files_seen"] == 3
    finally:
        for d in (a, b):
            d.stop()
    rows = pg.psql(database, f"SELECT turns, tool FROM threads WHERE id = '{cid}'").split()
    assert rows == ["6|chat"]
    roles = pg.psql(database, f"SELECT string_agg(role, ',' ORDER BY idx) FROM thread_turns WHERE thread_id = '{cid}'")
    assert roles.strip() == "user,assistant,user,assistant,user,assistant"
    for home in (homes["a"], homes["b"]):
        state = home / "state.sqlite"
        if state.exists():
            with sqlite3.connect(state) as db:
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                assert "threads" not in tables or not db.execute("SELECT count(*) FROM threads").fetchone()[0]

    # Validation runs go to the same database; another data directory's history shows them.
    out = run_exai(homes["ops"], "validate", "--provider", "mock", "--tools", "chat", "--variations", "basic",
                   EXAI_DATABASE_URL=database)
    assert out.returncode == 0, out.stdout + out.stderr
    run = pg.psql(database, "SELECT provider, total, passed, finished_at IS NOT NULL FROM test_runs").split()
    assert run == ["mock|1|1|t"]
    result = pg.psql(database, "SELECT tool, variation, status FROM test_results").split()
    assert result == ["chat|basic|PASS"]
    fresh = tmp_path / "elsewhere"
    fresh.mkdir()
    history = run_exai(fresh, "validate", "history", "--json", EXAI_DATABASE_URL=database)
    assert history.returncode == 0, history.stderr
    [listed] = json.loads(history.stdout)["runs"]
    assert listed["provider"] == "mock" and listed["total"] == 1 and listed["pass_rate"] == 1.0
    assert not (fresh / "state.sqlite").exists()
