"""Hostile input through the daemon: a page of 100,000 nested <div>s used to overflow the stack
of the thread indexing it and abort the whole daemon (every retry of the folder did it again).
It must be indexed like any page, or skipped with a reason, while the daemon keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import http_get, start_daemon, structured

pytestmark = pytest.mark.anyio

DEPTH = 100_000


def write_pages(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "deep.html").write_text(
        "<html><body>" + "<div>" * DEPTH + "abyssal marker" + "</div>" * DEPTH + "</body></html>")
    (docs / "normal.html").write_text(
        "<html><head><title>Lighthouse</title></head><body><main><h1>Lighthouse keeping</h1>"
        "<p>The lighthouse keeper trims the wick every evening.</p></main></body></html>")
    return docs


@pytest.fixture
def hostile_daemon(home: Path, tmp_path: Path):
    d = start_daemon(home, EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path), EXAI_EMBED_BACKEND="none")
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


async def wait_for_job(session: ClientSession, job: dict, limit: float = 120) -> dict:
    deadline = time.monotonic() + limit
    while job["state"] == "running":
        assert time.monotonic() < deadline, job
        await anyio.sleep(0.5)
        job = structured(await session.call_tool("job_status", {"job_id": job["job_id"]}))
    return job


async def test_deeply_nested_page_does_not_take_the_daemon_down(hostile_daemon, tmp_path):
    d = hostile_daemon
    docs = write_pages(tmp_path)
    assert (docs / "deep.html").stat().st_size > 1_000_000
    async with streamable_http_client(d.url) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            for attempt in range(2):
                job = structured(await session.call_tool(
                    "index_path", {"path": str(docs), "source": "hostile", "wait_secs": 30}))
                job = await wait_for_job(session, job)
                assert d.proc.poll() is None, "the daemon died"
                assert http_get(f"{d.base}/ready") == (200, {"ready": True})
                assert job["state"] == "done", job
                report = job["report"]
                assert report["files_seen"] == 2, report
                if attempt == 0:
                    # Indexed (the nesting flattened), or skipped with its reason counted.
                    assert report["added"] + sum(report["skipped"].values()) == 2, report
                    assert report["added"] >= 1, report
                else:
                    assert report["added"] == 0, report

            found = structured(await session.call_tool("search_docs", {"query": "lighthouse keeper wick"}))
            assert found["hits"] and found["hits"][0]["path"] == "normal.html", found
            deep = structured(await session.call_tool("search_docs", {"query": "abyssal marker"}))
            assert [h["path"] for h in deep["hits"]] == ["deep.html"], deep
    assert d.proc.poll() is None
