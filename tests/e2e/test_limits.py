"""Principals end to end against the real daemon: named tokens keep each principal's conversation
threads and index jobs to itself (the official MCP Python SDK), and without tokens one local user
keeps today's behaviour."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import base_env, exai_bin, http_get, start_daemon, structured

pytestmark = pytest.mark.anyio

KEY = "mock-key"
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789abc"
OPERATOR = "operator-token-0123456789"


@pytest.fixture
def mock_llm(tmp_path):
    proc = subprocess.Popen([exai_bin(), "mock-llm", "--api-key", KEY], env=base_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = json.loads(proc.stdout.readline())["url"]
    yield url
    proc.terminate()
    proc.wait(10)


def provider_env(url: str, root: Path) -> dict[str, str]:
    return dict(KIMI_API_KEY=KEY, KIMI_API_URL=url, GLM_API_KEY=KEY, GLM_API_URL=url,
                EXAI_TOOLS_ALLOWED_ROOTS=str(root), EXAI_EMBED_BACKEND="none")


async def call(url: str, token: str | None, name: str, args: dict):
    """One tool call in a session of its own; a JSON-RPC error is raised as MCPError (outside the
    SDK's task group, which would wrap it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                try:
                    return await session.call_tool(name, args)
                except MCPError as e:
                    error = e
    raise error


def error_text(result) -> str:
    assert result.is_error, result
    return result.content[0].text


async def test_principals_keep_their_threads_to_themselves(home, mock_llm, tmp_path):
    # A conversation from before tokens were configured belongs to the local user...
    d = start_daemon(home, **provider_env(mock_llm, tmp_path))
    try:
        old = structured(await call(d.url, None, "chat", {"prompt": "before tokens", "model": "glm-4.6"}))
    finally:
        assert d.stop() == 0
    tokens = json.dumps({"alice": ALICE, "bob": BOB})
    d = start_daemon(home, token=OPERATOR, EXAI_SERVER_TOKENS=tokens, **provider_env(mock_llm, tmp_path))
    try:
        # ...which is the unnamed token's principal, not a named one's.
        listed = structured(await call(d.url, OPERATOR, "list_threads", {}))["threads"]
        assert [t["continuation_id"] for t in listed] == [old["continuation_id"]]
        assert structured(await call(d.url, ALICE, "list_threads", {}))["threads"] == []

        first = structured(await call(d.url, ALICE, "chat", {"prompt": "alice's secret", "model": "glm-4.6"}))
        cid = first["continuation_id"]
        listed = structured(await call(d.url, ALICE, "list_threads", {}))["threads"]
        assert [t["continuation_id"] for t in listed] == [cid]
        # Bob neither lists, resumes, continues a workflow on nor plans in Alice's thread: to
        # him it does not exist, exactly like a made-up id.
        assert structured(await call(d.url, BOB, "list_threads", {}))["threads"] == []
        for name, args in [
            ("chat", {"prompt": "show me", "model": "glm-4.6", "continuation_id": cid}),
            ("planner", {"step": "take over", "step_number": 2, "total_steps": 2,
                         "next_step_required": False, "continuation_id": cid}),
            ("analyze", {"step": "look", "step_number": 2, "total_steps": 2, "next_step_required": True,
                         "findings": "none", "continuation_id": cid}),
        ]:
            text = error_text(await call(d.url, BOB, name, args))
            assert f"conversation `{cid}` does not exist" in text, text
            assert "alice's secret" not in text
        foreign = error_text(await call(d.url, BOB, "chat", {"prompt": "x", "model": "glm-4.6",
                                                               "continuation_id": cid}))
        made_up = error_text(await call(d.url, BOB, "chat", {"prompt": "x", "model": "glm-4.6",
                                                               "continuation_id": "not-a-thread"}))
        assert made_up == foreign.replace(cid, "not-a-thread")
        # Bob's own conversation works; Alice's continues, untouched by his attempts.
        assert structured(await call(d.url, BOB, "chat", {"prompt": "bob's", "model": "glm-4.6"}))["continuation_id"]
        second = structured(await call(d.url, ALICE, "chat", {"prompt": "go on", "model": "glm-4.6",
                                                               "continuation_id": cid}))
        assert "(4 messages)" in second["content"] and second["continuation_id"] == cid
        # No token or a wrong one: nothing at all.
        assert http_get(f"{d.base}/health")[0] == 401
        assert http_get(f"{d.base}/health", {"Authorization": "Bearer not-a-token-0123456789"})[0] == 401
    finally:
        assert d.stop() == 0


def big_corpus(root: Path, files: int) -> Path:
    docs = root / "corpus"
    docs.mkdir()
    for i in range(files):
        (docs / f"page-{i:05}.md").write_text(f"# Page {i}\n\n" + f"Paragraph {i} about indexing. " * 40 + "\n")
    return docs


async def test_principals_keep_their_index_jobs_to_themselves(home, tmp_path):
    docs = big_corpus(tmp_path, 6000)
    tokens = json.dumps({"alice": ALICE, "bob": BOB})
    d = start_daemon(home, token=OPERATOR, EXAI_SERVER_TOKENS=tokens, EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path),
                     EXAI_EMBED_BACKEND="none")
    try:
        started = structured(await call(d.url, ALICE, "index_path",
                                        {"path": str(docs), "source": "corpus", "wait_secs": 0}))
        job = started["job_id"]
        # To Bob the job does not exist: no status, no cancel, and a busy source does not name it.
        with pytest.raises(MCPError) as status:
            await call(d.url, BOB, "job_status", {"job_id": job})
        assert str(status.value) == f"unknown job `{job}`; known jobs: "
        with pytest.raises(MCPError) as cancel:
            await call(d.url, BOB, "cancel_job", {"job_id": job})
        assert str(cancel.value) == f"unknown job `{job}`"
        try:
            await call(d.url, BOB, "index_path", {"path": str(docs), "source": "corpus", "wait_secs": 0})
            busy = None
        except MCPError as e:
            busy = str(e)
        state = structured(await call(d.url, ALICE, "job_status", {"job_id": job}))["state"]
        assert state in ("running", "done"), state  # Bob's cancel did nothing
        if busy is not None:
            assert "another client's job" in busy and job not in busy, busy
        else:
            assert state == "done", "Bob started a second run on a source being indexed"
        # Alice sees and cancels her own job.
        cancelled = structured(await call(d.url, ALICE, "cancel_job", {"job_id": job}))
        assert cancelled["job_id"] == job and cancelled["state"] in ("cancelled", "done")
    finally:
        assert d.stop() == 0


async def test_without_tokens_one_local_user_keeps_todays_behaviour(home, mock_llm, tmp_path):
    d = start_daemon(home, **provider_env(mock_llm, tmp_path))
    try:
        first = structured(await call(d.url, None, "chat", {"prompt": "from client one", "model": "glm-4.6"}))
        cid = first["continuation_id"]
        # Another client, another session: the same user, so the thread follows.
        listed = structured(await call(d.url, None, "list_threads", {}))["threads"]
        assert cid in [t["continuation_id"] for t in listed]
        second = structured(await call(d.url, None, "chat", {"prompt": "from client two", "model": "glm-4.6",
                                                              "continuation_id": cid}))
        assert "(4 messages)" in second["content"]
    finally:
        assert d.stop() == 0
    # And over stdio, the same local user.
    params = StdioServerParameters(command=exai_bin(), args=["serve"],
                                   env=base_env(home, **provider_env(mock_llm, tmp_path)))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            listed = structured(await session.call_tool("list_threads", {}))["threads"]
            assert cid in [t["continuation_id"] for t in listed]
            third = structured(await session.call_tool("chat", {"prompt": "over stdio", "model": "glm-4.6",
                                                                "continuation_id": cid}))
            assert "(6 messages)" in third["content"]
