"""exai shim: a stdio MCP server forwarding to the daemon, driven by the official Python SDK."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from conftest import AI_TOOLS, CORE_TOOLS, KB_TOOLS, base_env, exai_bin, free_port, start_daemon, structured, wait_ready

pytestmark = pytest.mark.anyio


def shim(home, url, *extra, **env) -> StdioServerParameters:
    return StdioServerParameters(command=exai_bin(), args=["shim", "--url", url, *extra], env=base_env(home, **env))


async def test_forwards_tools_and_progress(daemon, tmp_path):
    shim_home = tmp_path / "shim-home"
    shim_home.mkdir()
    seen = []

    async def on_progress(progress, total, message):
        seen.append(progress)

    async with stdio_client(shim(shim_home, daemon.url)) as (r, w):
        async with ClientSession(r, w) as session:
            init = await session.initialize()
            assert init.server_info.name == "exai"
            tools = {t.name for t in (await session.list_tools()).tools}
            assert tools == CORE_TOOLS | KB_TOOLS | AI_TOOLS | {"ping"}  # the daemon's list, diagnostics included
            assert structured(await session.call_tool("version", {}))["transport"] == "http"
            health = structured(await session.call_tool("health", {}))
            assert health["pid"] == daemon.proc.pid
            out = await session.call_tool("ping", {"delay_ms": 100, "progress_steps": 3}, progress_callback=on_progress)
            assert structured(out)["pong"] == "pong"
            wrong = await session.call_tool("ping", {"delay_ms": "x"})
            assert wrong.is_error and "`delay_ms`" in wrong.content[0].text
    assert seen == [1, 2, 3]


async def test_starts_a_daemon_when_none_answers(home):
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with stdio_client(shim(home, url)) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                health = structured(await session.call_tool("health", {}))
                assert health["transport"] == "http" and health["listen"] == f"127.0.0.1:{port}"
                daemon_pid = health["pid"]
        # The daemon outlives the shim that started it, for the next client.
        wait_ready(f"http://127.0.0.1:{port}")
    finally:
        stop = subprocess.run([exai_bin(), "daemon", "stop"], env=base_env(home), capture_output=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert str(daemon_pid) in stop.stdout.decode()


async def test_without_autostart_a_clear_error(home):
    url = f"http://127.0.0.1:{free_port()}/mcp"
    async with stdio_client(shim(home, url, "--no-autostart")) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            with pytest.raises(Exception) as err:
                await session.call_tool("version", {})
            assert "exai daemon" in str(err.value) and url in str(err.value)


async def test_reconnects_when_the_daemon_restarts(home, tmp_path):
    daemon_home = tmp_path / "daemon-home"
    daemon_home.mkdir()
    first = start_daemon(daemon_home)
    port = first.port
    try:
        async with stdio_client(shim(home, first.url, "--no-autostart")) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                pid1 = structured(await session.call_tool("health", {}))["pid"]
                assert first.stop() == 0
                second = start_daemon(daemon_home, port=port)
                try:
                    pid2 = structured(await session.call_tool("health", {}))["pid"]
                finally:
                    second.stop()
        assert pid1 != pid2 == second.proc.pid
    finally:
        if first.proc.poll() is None:
            first.proc.kill()


async def test_shim_timeout_when_the_daemon_hangs(home, tmp_path):
    daemon_home = tmp_path / "daemon-home"
    daemon_home.mkdir()
    d = start_daemon(daemon_home)
    # T = 2 s gives a 4 s shim timeout; a stopped (SIGSTOP) daemon never answers.
    env = dict(WORKFLOW_TOOL_TIMEOUT_SECS="2", SIMPLE_TOOL_TIMEOUT_SECS="1", EXPERT_ANALYSIS_TIMEOUT_SECS="1")
    try:
        async with stdio_client(shim(home, d.url, "--no-autostart", **env)) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                assert structured(await session.call_tool("version", {}))["name"] == "exai"
                os.kill(d.proc.pid, signal.SIGSTOP)
                t0 = time.monotonic()
                with pytest.raises(Exception) as err:
                    await session.call_tool("version", {})
                elapsed = time.monotonic() - t0
                os.kill(d.proc.pid, signal.SIGCONT)
                assert "shim timeout of 4 s" in str(err.value)
                assert 3.5 < elapsed < 10
                # The daemon answers again: the shim still serves.
                assert structured(await session.call_tool("version", {}))["name"] == "exai"
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
        d.stop()
