"""exai serve: MCP over stdio, driven by the official Python SDK and by raw JSON-RPC lines."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from conftest import AI_TOOLS, CORE_TOOLS, KB_TOOLS, activity, base_env, exai_bin, structured

pytestmark = pytest.mark.anyio


def params(home, **env) -> StdioServerParameters:
    return StdioServerParameters(command=exai_bin(), args=["serve"], env=base_env(home, **env))


async def test_initialize_list_and_call(home):
    async with stdio_client(params(home, KIMI_API_KEY="sk-test-SECRET-kimi")) as (r, w):
        async with ClientSession(r, w) as session:
            init = await session.initialize()
            assert init.server_info.name == "exai"
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == CORE_TOOLS | KB_TOOLS | AI_TOOLS
            version = structured(await session.call_tool("version", {}))
            assert version["name"] == "exai" and version["transport"] == "stdio"
            health = structured(await session.call_tool("health", {}))
            assert health["status"] == "ok"
            assert health["data_dir"] == str(home)
            assert health["providers"]["kimi"] is True
            assert health["timeouts"]["daemon_secs"] == 69.0
    records = activity(home)
    assert [r["tool"] for r in records] == ["version", "health"]
    assert all(r["outcome"] == "ok" and r["session"] == "stdio" and r["duration_ms"] >= 0 for r in records)
    # The key reached the server (health says so) but no log or record holds it.
    for f in (home / "logs").iterdir():
        assert "SECRET" not in f.read_text(), f


async def test_bad_calls_get_errors_and_server_keeps_serving(home):
    async with stdio_client(params(home, EXAI_TOOLS_DIAGNOSTICS="1")) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            with pytest.raises(MCPError) as err:
                await session.call_tool("no_such_tool", {})
            assert "not found" in str(err.value)
            wrong = await session.call_tool("ping", {"delay_ms": "soon"})
            assert wrong.is_error and "`delay_ms` must be an integer" in wrong.content[0].text
            unknown_arg = await session.call_tool("ping", {"delay": 5})
            assert unknown_arg.is_error and "`delay` is not an argument of `ping`" in unknown_arg.content[0].text
            assert structured(await session.call_tool("version", {}))["name"] == "exai"
    kinds = [(r["tool"], r["outcome"], r.get("error_kind")) for r in activity(home)]
    assert ("no_such_tool", "error", "unknown_tool") in kinds
    assert kinds[-1] == ("version", "ok", None)


async def test_progress_notifications(home):
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, total, message))

    async with stdio_client(params(home, EXAI_TOOLS_DIAGNOSTICS="1")) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            out = structured(await session.call_tool(
                "ping", {"delay_ms": 150, "progress_steps": 3, "message": "hi"}, progress_callback=on_progress))
            assert out["pong"] == "hi"
    assert [p for p, _, _ in seen] == [1, 2, 3]
    assert all(t == 3 for _, t, _ in seen)


async def test_tool_timeout_is_a_clear_tool_error(home):
    env = dict(EXAI_TOOLS_DIAGNOSTICS="1", SIMPLE_TOOL_TIMEOUT_SECS="0.5")
    async with stdio_client(params(home, **env)) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            t0 = time.monotonic()
            res = await session.call_tool("ping", {"delay_ms": 5000})
            assert time.monotonic() - t0 < 4
            assert res.is_error
            text = res.content[0].text
            assert "0.5 s timeout" in text and "timeouts.simple_tool_secs" in text
    assert activity(home)[-1]["outcome"] == "timeout"


async def test_disabled_tools_and_always_on(home):
    env = dict(EXAI_TOOLS_DIAGNOSTICS="1", DISABLED_TOOLS="ping,health,chat,search_docs")
    async with stdio_client(params(home, **env)) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == CORE_TOOLS | (KB_TOOLS - {"search_docs"}) | (AI_TOOLS - {"chat"})
    async with stdio_client(params(home, EXAI_TOOLS_DISABLED_FAMILIES="kb,ai")) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == CORE_TOOLS


class Raw:
    """A raw JSON-RPC line client, for what the SDK will not send."""

    def __init__(self, home, **env):
        self.proc = subprocess.Popen([exai_bin(), "serve"], env=base_env(home, **env), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(self, obj) -> None:
        line = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        if isinstance(line, str):
            line = line.encode()
        self.proc.stdin.write(line + b"\n")
        self.proc.stdin.flush()

    def recv(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read().decode(errors="replace")
        return json.loads(line)

    def initialize(self) -> None:
        self.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
        assert self.recv()["id"] == 0
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def close(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(10)


def test_malformed_and_oversized_lines_get_jsonrpc_errors(home):
    raw = Raw(home, EXAI_SERVER_MAX_BODY_BYTES="2048")
    raw.initialize()
    raw.send(b'{"jsonrpc": "2.0", "id": 1, "method": ')
    err = raw.recv()
    assert err["id"] is None and err["error"]["code"] == -32700
    raw.send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                         "params": {"name": "version", "arguments": {"pad": "x" * 5000}}}))
    err = raw.recv()
    assert err["error"]["code"] == -32600 and "2048" in err["error"]["message"]
    raw.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "version", "arguments": {}}})
    ok = raw.recv()
    assert ok["id"] == 3 and ok["result"]["structuredContent"]["name"] == "exai"
    assert raw.close() == 0


def test_cancellation_stops_the_call(home):
    raw = Raw(home, EXAI_TOOLS_DIAGNOSTICS="1")
    raw.initialize()
    raw.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "ping", "arguments": {"delay_ms": 20000}}})
    time.sleep(0.3)
    raw.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7, "reason": "user"}})
    t0 = time.monotonic()
    raw.send({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "version", "arguments": {}}})
    got = raw.recv()
    while got.get("id") != 8:
        got = raw.recv()
    assert time.monotonic() - t0 < 5
    assert raw.close() == 0
    outcomes = {(r["tool"], r["outcome"]) for r in activity(home)}
    assert ("ping", "cancelled") in outcomes


def test_stdout_carries_only_protocol(home):
    raw = Raw(home, RUST_LOG="debug")
    raw.initialize()
    raw.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "health", "arguments": {}}})
    assert raw.recv()["id"] == 1
    raw.proc.stdin.close()
    rest = raw.proc.stdout.read().decode()
    raw.proc.wait(10)
    for line in rest.splitlines():
        json.loads(line)
    assert "DEBUG" in raw.proc.stderr.read().decode()


STDIO_SESSION = [
    {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}},
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "version", "arguments": {}}},
]


def test_stdin_from_a_file_and_stdio_over_a_socket_pair(home, tmp_path):
    # stdin a regular file (read through tokio's blocking stdin), stdout shared with stderr
    # (2>&1 keeps stdout blocking): every request is answered, then exit 0 at end of input.
    script = tmp_path / "session.jsonl"
    script.write_text("".join(json.dumps(m) + "\n" for m in STDIO_SESSION))
    with open(script, "rb") as f:
        proc = subprocess.run([exai_bin(), "serve"], env=base_env(home), stdin=f,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    assert proc.returncode == 0
    answers = [json.loads(line) for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    assert [a.get("id") for a in answers] == [0, 1]
    assert answers[1]["result"]["structuredContent"]["name"] == "exai"
    # stdin and stdout one end of a socket pair, as Node's child_process starts servers.
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen([exai_bin(), "serve"], env=base_env(home), stdin=theirs.fileno(),
                            stdout=theirs.fileno(), stderr=subprocess.PIPE)
    theirs.close()
    try:
        ours.settimeout(20)
        reader = ours.makefile("rb")
        for message in STDIO_SESSION:
            ours.sendall(json.dumps(message).encode() + b"\n")
        got = [json.loads(reader.readline()) for _ in range(2)]
        assert [g["id"] for g in got] == [0, 1]
        ours.shutdown(socket.SHUT_WR)
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        ours.close()


def test_invalid_config_refuses_to_start(home):
    # A simple tool timeout above the workflow timeout (an expert-analysis timeout above it is
    # lowered with a notice instead, as the Python server's defaults need).
    proc = subprocess.run([exai_bin(), "serve"], env=base_env(home, SIMPLE_TOOL_TIMEOUT_SECS="50"),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    assert proc.returncode == 2
    err = proc.stderr.decode()
    assert "timeouts.simple_tool_secs" in err and "SIMPLE_TOOL_TIMEOUT_SECS" in err


async def test_long_output_is_truncated_with_a_note(home):
    env = dict(EXAI_TOOLS_DIAGNOSTICS="1", MAX_MCP_OUTPUT_TOKENS="1000")
    async with stdio_client(params(home, **env)) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            res = await session.call_tool("ping", {"message": "z" * 6000})
            assert not res.is_error
            text = "".join(c.text for c in res.content)
            assert "[output truncated: 4000 of" in text and "MAX_MCP_OUTPUT_TOKENS" in text
            assert len(text) < 4300
