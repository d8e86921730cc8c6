"""Limits on the HTTP listener and principals, end to end against the real daemon: the header-read
timeout and the connection cap (raw sockets), the MCP session cap and idle expiry (raw JSON-RPC
over HTTP, which the SDK will not misbehave enough to test), and named tokens keeping each
principal's conversation threads and index jobs to itself (the official MCP Python SDK)."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import MOCK_KEY, base_env, exai_bin, http_get, start_daemon, structured

pytestmark = pytest.mark.anyio

KEY = MOCK_KEY
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789abc"
OPERATOR = "operator-token-0123456789"




def provider_env(url: str, root: Path) -> dict[str, str]:
    return dict(KIMI_API_KEY=KEY, KIMI_API_URL=url, GLM_API_KEY=KEY, GLM_API_URL=url,
                EXAI_TOOLS_ALLOWED_ROOTS=str(root), EXAI_EMBED_BACKEND="none")


def post(url: str, message: dict, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One JSON-RPC message over HTTP; status, headers (lower-case names) and body."""
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream",
         "mcp-protocol-version": "2025-06-18"}
    h.update(headers or {})
    req = urllib.request.Request(url, data=json.dumps(message).encode(), headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def open_session(url: str, headers: dict[str, str] | None = None) -> str:
    status, h, body = post(url, INIT, headers)
    assert status == 200, body
    session = h["mcp-session-id"]
    status, _, _ = post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                        {**(headers or {}), "mcp-session-id": session})
    assert status in (200, 202, 204)
    return session


def tools_list(url: str, session: str, headers: dict[str, str] | None = None) -> int:
    status, _, _ = post(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                        {**(headers or {}), "mcp-session-id": session})
    return status


def timed_health(base: str, headers: dict[str, str] | None = None) -> float:
    """Seconds `GET /health` took; fails unless it answered 200."""
    started = time.monotonic()
    status, body = http_get(f"{base}/health", headers, timeout=10)
    assert status == 200 and body["status"] == "ok", body
    return time.monotonic() - started


def closed_by_peer(sock: socket.socket, limit: float) -> bool:
    """Whether the server closes the connection within `limit` seconds."""
    sock.settimeout(limit)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_a_slow_header_sender_is_cut_off_while_health_answers(home):
    d = start_daemon(home, EXAI_SERVER_HEADER_READ_TIMEOUT_SECS="1")
    try:
        slow = socket.create_connection(("127.0.0.1", d.port))
        sent: list[int] = []

        def trickle():
            # One byte every 0.2 s: the headers would take 8 s; the timeout is 1 s.
            for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: yes\r\n\r\n":
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    return
                sent.append(byte)
                time.sleep(0.2)

        started = time.monotonic()
        writer = threading.Thread(target=trickle)
        writer.start()
        assert timed_health(d.base) < 0.5
        assert closed_by_peer(slow, 5)
        cut_after = time.monotonic() - started
        writer.join()
        assert 0.9 <= cut_after < 4, cut_after
        assert len(sent) < 30, "the connection stayed open for the whole request head"
        # A body trickled after a complete head is cut off the same way, with 408.
        body = json.dumps(INIT).encode()
        slow_body = socket.create_connection(("127.0.0.1", d.port))
        slow_body.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          b"Accept: application/json, text/event-stream\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
        started = time.monotonic()
        answer = b""
        slow_body.settimeout(0.2)
        for byte in body:
            try:
                slow_body.send(bytes([byte]))
                answer += slow_body.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert "server.header_read_timeout_secs" in answer.decode(errors="replace")
        assert time.monotonic() - started < 4
        slow_body.close()
        # Idle sockets that never send a byte are cut the same way; /health never waits for them.
        idle = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(200)]
        assert timed_health(d.base) < 0.5
        assert all(closed_by_peer(s, 5) for s in idle[:5])
        for s in idle + [slow]:
            s.close()
        assert http_get(f"{d.base}/ready")[0] == 200
    finally:
        assert d.stop() == 0


def test_idle_sockets_over_the_connection_cap_do_not_lock_out_health(home):
    # Over the cap new connections wait; idle ones are closed to make room, long before the
    # header-read timeout would have closed them.
    d = start_daemon(home, EXAI_SERVER_MAX_CONNECTIONS="16", EXAI_SERVER_HEADER_READ_TIMEOUT_SECS="60")
    try:
        idle = [socket.create_connection(("127.0.0.1", d.port)) for _ in range(40)]
        took = [timed_health(d.base) for _ in range(3)]
        assert max(took) < 10, took
        for s in idle:
            s.close()
    finally:
        assert d.stop() == 0


def test_sessions_over_the_cap_get_503_with_retry_after(home):
    d = start_daemon(home, EXAI_SERVER_MAX_SESSIONS="2")
    try:
        first = open_session(d.url)
        open_session(d.url)
        status, headers, body = post(d.url, {**INIT, "id": 7})
        assert status == 503, body
        assert int(headers["retry-after"]) > 0
        error = json.loads(body)
        assert error["jsonrpc"] == "2.0" and error["id"] == 7
        assert "OVER_CAPACITY" in error["error"]["message"]
        assert "server.max_sessions" in error["error"]["message"]
        assert error["error"]["data"]["error"] == "OVER_CAPACITY"
        # Everything else keeps answering at the cap, including the open sessions.
        assert timed_health(d.base) < 1 and http_get(f"{d.base}/ready")[0] == 200
        # The operator sees it: in /health and in /metrics.
        load = http_get(f"{d.base}/health")[1]["http"]
        assert load["sessions_open"] == 2 and load["max_sessions"] == 2, load
        assert load["connections_open"] >= 1 and load["max_connections"] > 0, load
        with urllib.request.urlopen(f"{d.base}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert "exai_mcp_sessions_open 2\n" in metrics and "exai_mcp_sessions_refused_total 1\n" in metrics
        assert tools_list(d.url, first) == 200
        # Ending a session frees its slot.
        req = urllib.request.Request(d.url, method="DELETE", headers={"mcp-session-id": first,
                                                                      "mcp-protocol-version": "2025-06-18"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204
        open_session(d.url)
    finally:
        assert d.stop() == 0


def test_an_idle_session_expires_but_not_during_a_call(home):
    d = start_daemon(home, EXAI_SERVER_MAX_SESSIONS="2", EXAI_SERVER_SESSION_IDLE_SECS="10",
                     EXAI_TOOLS_DIAGNOSTICS="1")
    try:
        idle = open_session(d.url)
        busy = open_session(d.url)
        # A call that outlasts the idle limit keeps its session open.
        status, _, body = post(d.url, {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                                       "params": {"name": "ping", "arguments": {"delay_ms": 13000}}},
                               {"mcp-session-id": busy})
        assert status == 200 and b'"pong"' in body, body
        assert tools_list(d.url, busy) == 200
        # The other one asked nothing for 13 s: it is gone, and its slot with it.
        assert tools_list(d.url, idle) == 404
        open_session(d.url)
    finally:
        assert d.stop() == 0


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
        # A session opened by Alice is unknown to Bob, even with its id.
        session = open_session(d.url, {"Authorization": f"Bearer {ALICE}"})
        assert tools_list(d.url, session, {"Authorization": f"Bearer {BOB}"}) == 404
        assert tools_list(d.url, session, {"Authorization": f"Bearer {ALICE}"}) == 200
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
        # Nor can Bob remove the source under Alice's running job; he is told to wait, not to
        # cancel a job he cannot see.
        if state == "running":
            try:
                await call(d.url, BOB, "remove_source", {"source": "corpus"})
                removal = None
            except MCPError as e:
                removal = str(e)
            if removal is not None:
                assert "another client's job" in removal and job not in removal, removal
                assert "cancel" not in removal, removal
            else:
                after = structured(await call(d.url, ALICE, "job_status", {"job_id": job}))["state"]
                assert after == "done", "Bob removed a source under a running job"
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
