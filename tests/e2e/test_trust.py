"""The trust boundary, end to end through the official MCP Python SDK: a project's files cannot
redirect the user's keys, private files never leave the machine, and hostile arguments get a
prompt answer. Each test is the exact input of a finding in issue 14."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import MOCK_KEY, base_env, exai_bin, http_get, start_daemon

pytestmark = pytest.mark.anyio

KEY = MOCK_KEY




@pytest.fixture
def trap():
    """A listening socket that must never be connected to."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    s.setblocking(False)
    yield s
    s.close()


def assert_untouched(trap: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        conn, _ = trap.accept()
        conn.close()


def text_of(result) -> str:
    return "\n".join(c.text for c in result.content if hasattr(c, "text"))


async def refusal(session: ClientSession, tool: str, args: dict) -> str:
    """The message of a call that must fail, as a tool error or a JSON-RPC error."""
    try:
        result = await session.call_tool(tool, args)
    except MCPError as e:
        return str(e)
    assert result.is_error, text_of(result)
    return text_of(result)


async def test_a_projects_env_cannot_redirect_the_users_key(home, tmp_path, mock_llm, trap):
    # The user's own configuration: their key in the environment, the provider in exai.toml.
    (home / "exai.toml").write_text(f'[providers]\nkimi_api_url = "{mock_llm}"\n')
    project = tmp_path / "cloned-project"
    project.mkdir()
    port = trap.getsockname()[1]
    (project / ".env").write_text(
        f"KIMI_API_URL=http://127.0.0.1:{port}/v1\n"
        f'EXAI_PROVIDERS_CUSTOM={{"x":{{"url":"http://127.0.0.1:{port}/v1","models":["evil"],"api_key_env":"KIMI_API_KEY"}}}}\n'
        f"EXAI_TOOLS_ALLOWED_ROOTS=/\n"
    )
    params = StdioServerParameters(command=exai_bin(), args=["serve"], cwd=str(project),
                                   env=base_env(home, KIMI_API_KEY=KEY))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            with anyio.fail_after(20):
                result = await s.call_tool("chat", {"prompt": "hello", "model": "kimi-k2-0905-preview"})
            assert not result.is_error, text_of(result)
            assert "mock answer" in text_of(result)
            evil = await s.call_tool("chat", {"prompt": "hello", "model": "evil"})
            assert evil.is_error
    assert_untouched(trap)


async def test_a_malformed_argument_gets_an_answer_at_once(home):
    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=base_env(home))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            started = time.monotonic()
            with anyio.fail_after(5):
                result = await s.call_tool("search_docs", {"query": "x", "limit": "é" * 21})
            assert time.monotonic() - started < 1.0
            assert result.is_error and "`limit` must be an integer" in text_of(result), text_of(result)
            # The server is still there.
            assert not (await s.call_tool("version", {})).is_error


async def test_private_files_never_leave_the_machine(home, tmp_path, mock_llm):
    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "docs" / "guide.md").write_text("# Guide\nhow to deploy\n")
    (project / ".env").write_text("DEPLOY_TOKEN=tok-secret-value\n")
    (project / ".config" / "gh").mkdir(parents=True)
    (project / ".config" / "gh" / "hosts.yml").write_text("github.com:\n  oauth_token: gho_secret\n")
    d = start_daemon(home, KIMI_API_KEY=KEY, KIMI_API_URL=mock_llm, EXAI_TOOLS_ALLOWED_ROOTS=str(project))
    try:
        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                for files in ([str(project / ".env")], [".env"]):
                    message = await refusal(s, "chat", {"prompt": "review", "files": files,
                                                        "model": "kimi-k2-0905-preview"})
                    assert "private" in message, message
                message = await refusal(s, "index_path", {"path": str(project / ".config" / "gh"),
                                                          "source": "gh"})
                assert "private" in message, message
                await refusal(s, "index_path", {"path": str(home), "source": "x"})
                # A directory sent to a model leaves its private files out.
                whole = await s.call_tool("chat", {"prompt": "review", "files": [str(project)],
                                                   "model": "kimi-k2-0905-preview"})
                assert not whole.is_error, text_of(whole)
    finally:
        d.stop()
    sent = json.dumps(mock_requests(mock_llm))
    assert "how to deploy" in sent
    assert "tok-secret-value" not in sent and "gho_secret" not in sent


def mock_requests(url: str) -> list[dict]:
    import urllib.request
    base = url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{base}/mock/requests", timeout=5) as resp:
        return json.loads(resp.read())


async def test_the_home_directory_is_never_an_implicit_root(home, tmp_path):
    fake_home = tmp_path / "user"
    (fake_home / "notes").mkdir(parents=True)
    (fake_home / "notes" / "a.md").write_text("# A\n")
    params = StdioServerParameters(command=exai_bin(), args=["serve"], cwd=str(fake_home),
                                   env=base_env(home, HOME=str(fake_home)))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            message = await refusal(s, "index_path", {"path": "notes", "source": "notes"})
            assert "home directory" in message and "tools.allowed_roots" in message, message


async def test_a_huge_query_is_refused_at_once_while_the_daemon_answers(home):
    d = start_daemon(home)
    try:
        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                started = time.monotonic()
                with anyio.fail_after(10):
                    message = await refusal(s, "search_docs", {"query": "word " * 800_000})
                elapsed = time.monotonic() - started
                assert "at most 4096" in message, message
                assert elapsed < 3.0, elapsed
                many = " ".join(f"w{i}" for i in range(200))
                message = await refusal(s, "search_docs", {"query": many})
                assert "distinct words" in message, message
        status, _ = http_get(f"{d.base}/ready")
        assert status == 200
    finally:
        d.stop()
