"""exai daemon: Streamable HTTP at /mcp plus /health and /ready, with the official Python SDK."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request

import anyio
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from conftest import (AI_TOOLS, CORE_TOOLS, KB_TOOLS, activity, base_env, exai_bin, free_port, http_get, http_post, start_daemon,
                      structured)

pytestmark = pytest.mark.anyio

INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}).encode()


async def call_version(url: str, headers: dict[str, str] | None = None) -> dict:
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                return structured(await session.call_tool("version", {}))


async def test_initialize_list_call_and_health(daemon):
    async with streamable_http_client(daemon.url) as (r, w):
        async with ClientSession(r, w) as session:
            init = await session.initialize()
            assert init.server_info.name == "exai"
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == CORE_TOOLS | KB_TOOLS | AI_TOOLS | {"ping"}
            assert structured(await session.call_tool("version", {}))["transport"] == "http"
            health = structured(await session.call_tool("health", {}))
            assert health["status"] == "ok" and health["listen"] == f"127.0.0.1:{daemon.port}"
    status, body = http_get(f"{daemon.base}/health")
    assert status == 200
    assert body["status"] == "ok" and body["pid"] == daemon.proc.pid and body["data_dir"] == str(daemon.home)
    assert set(body["tools"]) == CORE_TOOLS | KB_TOOLS | AI_TOOLS | {"ping"} and body["uptime_secs"] >= 0
    assert body["knowledge"]["database"] == str(daemon.home / "kb.sqlite")
    assert http_get(f"{daemon.base}/ready") == (200, {"ready": True})
    sessions = {r["session"] for r in activity(daemon.home)}
    assert len(sessions) == 1 and "http" not in sessions  # the MCP session id is recorded


async def test_bad_calls_and_server_keeps_serving(daemon):
    async with streamable_http_client(daemon.url) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            with pytest.raises(MCPError):
                await session.call_tool("no_such_tool", {})
            wrong = await session.call_tool("ping", {"delay_ms": -1})
            assert wrong.is_error and "`delay_ms`" in wrong.content[0].text
    status, body = http_post(daemon.url, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert status == 400
    err = json.loads(body)
    assert err["error"]["code"] == -32700 and err["id"] is None
    assert (await call_version(daemon.url))["name"] == "exai"


async def test_many_sessions_at_once(daemon):
    results = []
    most_in_flight = 0
    done = anyio.Event()

    async def one(i):
        async with streamable_http_client(daemon.url) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                out = structured(await session.call_tool("ping", {"delay_ms": 6000, "message": f"c{i}"}))
                results.append(out["pong"])

    async def watch():
        # The daemon's own count, not a stopwatch: all twelve calls are in flight at once.
        nonlocal most_in_flight
        while not done.is_set() and most_in_flight < 12:
            _, health = await anyio.to_thread.run_sync(http_get, f"{daemon.base}/health")
            most_in_flight = max(most_in_flight, health.get("inflight_calls", 0))
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        async with anyio.create_task_group() as calls:
            for i in range(12):
                calls.start_soon(one, i)
        done.set()
    assert sorted(results) == sorted(f"c{i}" for i in range(12))
    assert most_in_flight == 12
    assert len({r["session"] for r in activity(daemon.home)}) == 12


async def test_progress_over_http(daemon):
    seen = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    async with streamable_http_client(daemon.url) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            await session.call_tool("ping", {"delay_ms": 100, "progress_steps": 4}, progress_callback=on_progress)
    assert seen == [1, 2, 3, 4]


def raw_post(url: str, message: dict, session: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2025-06-18"}
    if session:
        headers["mcp-session-id"] = session
    req = urllib.request.Request(url, data=json.dumps(message).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()


def sse_messages(body: bytes) -> list[dict]:
    return [json.loads(line[5:]) for line in body.decode().splitlines() if line.startswith("data:") and line[5:].strip()]


def test_quick_answers_are_json_and_progress_still_streams(daemon):
    # Streamable HTTP lets a server answer a request with one application/json body; exai does
    # when the answer is the call's first message, and streams when progress comes first.
    status, h, body = raw_post(daemon.url, json.loads(INIT))
    assert status == 200 and h["content-type"] == "application/json"
    session = h["mcp-session-id"]
    assert json.loads(body)["result"]["serverInfo"]["name"] == "exai"
    assert raw_post(daemon.url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)[0] == 202
    status, h, body = raw_post(daemon.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                                            "params": {"name": "version", "arguments": {}}}, session)
    assert status == 200 and h["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["id"] == 2 and answer["result"]["structuredContent"]["transport"] == "http"
    status, h, body = raw_post(daemon.url, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "ping", "arguments": {"delay_ms": 50, "progress_steps": 2}, "_meta": {"progressToken": "p"}}}, session)
    assert status == 200 and h["content-type"] == "text/event-stream"
    messages = sse_messages(body)
    assert [m.get("method") for m in messages] == ["notifications/progress"] * 2 + [None]
    assert messages[-1]["id"] == 3 and "result" in messages[-1]
    # An answer that takes longer than a moment is streamed, as before (headers at once, then
    # the SDK's keep-alives), without progress too.
    status, h, body = raw_post(daemon.url, {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                                            "params": {"name": "ping", "arguments": {"delay_ms": 1500}}}, session)
    assert status == 200 and h["content-type"] == "text/event-stream"
    assert [m["id"] for m in sse_messages(body)] == [4]


def accepted_connections(daemon) -> int:
    with urllib.request.urlopen(f"{daemon.base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return int(next(line.split()[1] for line in text.splitlines()
                    if line.startswith("exai_http_connections_accepted_total ")))


async def test_official_client_keeps_its_connection(daemon):
    before = accepted_connections(daemon)
    async with streamable_http_client(daemon.url) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            for _ in range(30):
                assert structured(await session.call_tool("version", {}))["transport"] == "http"
    # The session's POSTs share a connection (the SDK drops one whose stream it did not read to
    # the end); the listening GET stream, the DELETE and the two scrapes may take their own.
    assert accepted_connections(daemon) - before <= 6


def test_deleting_a_session_ends_it_with_204(daemon):
    # The official Python SDK sends DELETE when a client closes and warns unless it gets 200/204.
    req = urllib.request.Request(daemon.url, data=INIT, method="POST", headers={
        "content-type": "application/json", "accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        session = resp.headers["mcp-session-id"]
        resp.read()
    headers = {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
    req = urllib.request.Request(daemon.url, method="DELETE", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204 and resp.read() == b""
    listing = json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).encode()
    assert http_post(daemon.url, listing, headers)[0] == 404


def test_oversized_body_gets_413(home):
    d = start_daemon(home, EXAI_SERVER_MAX_BODY_BYTES="4096")
    try:
        status, body = http_post(d.url, b'{"pad": "' + b"x" * 10000 + b'"}')
        assert status == 413 and b"4096" in body
        status, _ = http_post(d.url, INIT)
        assert status == 200
    finally:
        assert d.stop() == 0


def test_foreign_origin_and_host_are_refused(daemon):
    status, body = http_post(daemon.url, INIT, {"Origin": "https://evil.example"})
    assert status == 403 and "Origin" in body.decode()
    assert http_get(f"{daemon.base}/health", {"Origin": "https://evil.example"})[0] == 403
    assert http_post(daemon.url, INIT, {"Origin": f"http://localhost:{daemon.port}"})[0] == 200
    status, body = http_post(daemon.url, INIT, {"Host": "evil.example"})
    assert status == 403 and "Host" in body.decode()
    assert http_get(f"{daemon.base}/ready")[0] == 200


def test_configured_origin_is_allowed(home):
    d = start_daemon(home, EXAI_SERVER_ALLOWED_ORIGINS="https://app.example.com")
    try:
        assert http_post(d.url, INIT, {"Origin": "https://app.example.com"})[0] == 200
        assert http_post(d.url, INIT, {"Origin": "https://app.example.com.evil"})[0] == 403
    finally:
        d.stop()


def test_non_loopback_bind_requires_a_token(home):
    proc = subprocess.run([exai_bin(), "daemon", "--listen", f"0.0.0.0:{free_port()}"], env=base_env(home),
                          capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "EXAI_AUTH_TOKEN" in err and "--listen" in err


async def test_bearer_token_on_non_loopback_bind(home):
    token = "test-token-0123456789abcdef"
    port = free_port()
    d = start_daemon(home, port=port, listen=f"0.0.0.0:{port}", token=token)
    try:
        assert http_get(f"{d.base}/health")[0] == 401
        assert http_get(f"{d.base}/health", {"Authorization": "Bearer wrong-token-0123456789abcd"})[0] == 401
        status, _ = http_post(d.url, INIT)
        assert status == 401
        assert http_get(f"{d.base}/health", d.headers)[0] == 200
        assert (await call_version(d.url, d.headers))["transport"] == "http"
        log = (home / "logs" / "exai.log").read_text()
        assert token not in log
    finally:
        assert d.stop() == 0


async def test_sigterm_lets_the_slow_call_finish(home):
    d = start_daemon(home, EXAI_TOOLS_DIAGNOSTICS="1")
    pid_file = home / "exai.pid"
    assert json.loads(pid_file.read_text())["pid"] == d.proc.pid
    outcome = {}
    try:
        async with streamable_http_client(d.url, terminate_on_close=False) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                # The SDK checks results against the tool's output schema; list the tools now, so
                # it need not ask a daemon that has exited by the time the answer arrives.
                await session.list_tools()

                async def stop_soon():
                    await anyio.sleep(0.5)
                    d.proc.send_signal(signal.SIGTERM)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(stop_soon)
                    outcome["result"] = await session.call_tool("ping", {"delay_ms": 2000, "message": "finished"})
    except BaseException:  # noqa: BLE001
        # Closing the client against a daemon that has exited may fail; the answer is what counts.
        if "result" not in outcome:
            raise
    assert structured(outcome["result"])["pong"] == "finished"
    assert d.proc.wait(20) == 0
    assert not pid_file.exists()
    assert "exai daemon stopped" in d.proc.stderr.read().decode()


def test_port_in_use_and_already_running(home, tmp_path):
    d = start_daemon(home)
    try:
        other = tmp_path / "other-home"
        other.mkdir()
        proc = subprocess.run([exai_bin(), "daemon", "--listen", f"127.0.0.1:{d.port}"], env=base_env(other),
                              capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        assert proc.returncode == 1
        assert "already in use" in proc.stderr.decode()
        proc = subprocess.run([exai_bin(), "daemon", "--listen", f"127.0.0.1:{free_port()}"], env=base_env(home),
                              capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
        assert proc.returncode == 1
        assert f"already running (pid {d.proc.pid}" in proc.stderr.decode()
    finally:
        d.stop()


def test_daemon_status_stop_start_restart(home):
    run = lambda *a: subprocess.run([exai_bin(), "daemon", *a], env=base_env(home), capture_output=True,
                                    timeout=60, stdin=subprocess.DEVNULL, text=True)
    assert run("status").returncode == 1
    port = free_port()
    started = run("start", "--listen", f"127.0.0.1:{port}")
    assert started.returncode == 0, started.stderr
    status = run("status", "--json")
    info = json.loads(status.stdout)
    assert status.returncode == 0 and info["running"] and info["health"]["status"] == "ok"
    first_pid = info["pid"]
    restarted = run("restart")
    assert restarted.returncode == 0, restarted.stderr
    info = json.loads(run("status", "--json").stdout)
    assert info["pid"] != first_pid and info["listen"] == f"127.0.0.1:{port}"
    stopped = run("stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run("status").returncode == 1
    assert run("stop").returncode == 1


def test_stale_pid_file_is_cleaned(home):
    (home / "exai.pid").write_text(json.dumps({"pid": 999999, "listen": "127.0.0.1:1", "started_at": "x", "version": "0"}))
    d = start_daemon(home)
    try:
        assert json.loads((home / "exai.pid").read_text())["pid"] == d.proc.pid
    finally:
        d.stop()
