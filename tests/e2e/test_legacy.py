"""An operator of the Python Kimi/GLM server brings their `.env` as it is: the daemon starts on the
address it names, serves MCP, and a shim finds it there without being told."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import base_env, exai_bin, free_port, http_get, wait_ready

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).resolve().parents[2] / "crates/exai-core/tests/fixtures/python-server.env"


def legacy_home(home: Path, port: int) -> None:
    """The Python server's `.env.example` as the data directory's `.env`, on a free port."""
    text = FIXTURE.read_text(encoding="utf-8-sig").replace("EXAI_WS_PORT=8079", f"EXAI_WS_PORT={port}")
    assert f"EXAI_WS_PORT={port}" in text
    home.mkdir(parents=True, exist_ok=True)
    (home / ".env").write_text(text, encoding="utf-8")


async def test_the_python_servers_env_starts_and_serves(home, tmp_path):
    port = free_port()
    legacy_home(home, port)
    check = subprocess.run([exai_bin(), "config", "check"], env=base_env(home), capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    # Its expert-analysis timeout (60 s) above the workflow timeout (45 s) is clamped, with a word.
    assert "notice" in check.stderr and "EXPERT_ANALYSIS_TIMEOUT_SECS" in check.stderr, check.stderr
    proc = subprocess.Popen([exai_bin(), "daemon"], env=base_env(home), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base)
        status, health = http_get(f"{base}/health")
        assert status == 200 and health["listen"] == f"127.0.0.1:{port}", health
        assert health["timeouts"]["workflow_tool_secs"] == 45
        async with streamable_http_client(f"{base}/mcp") as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                assert "search_docs" in {t.name for t in (await session.list_tools()).tools}
        # A shim with the same data directory finds the daemon at that address by itself.
        params = StdioServerParameters(command=exai_bin(), args=["shim", "--no-autostart"], env=base_env(home))
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                out = await session.call_tool("version", {})
                assert not out.is_error and out.structured_content["transport"] == "http"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
