"""Tool profiles with the official Python SDK: the lean default over stdio and HTTP, `enable_tools`
and the `tools/list_changed` notification, the daemon's `/mcp/PROFILE` paths, and the shim's
`--profile`."""

from __future__ import annotations

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

import pytest

from conftest import AI_TOOLS, CORE_TOOLS, KB_TOOLS, base_env, exai_bin, start_daemon, structured

pytestmark = pytest.mark.anyio

LEAN = {"search_docs", "get_document", "chat", "consensus", "enable_tools"}


class ListChanges:
    """Counts the `notifications/tools/list_changed` a session receives."""

    def __init__(self):
        self.count = 0
        self.seen = anyio.Event()

    async def __call__(self, message):
        if type(getattr(message, "root", message)).__name__ == "ToolListChangedNotification":
            self.count += 1
            self.seen.set()


async def names(session: ClientSession) -> set[str]:
    return {t.name for t in (await session.list_tools()).tools}


async def enable_and_see(session: ClientSession, changes: ListChanges):
    catalogue = await session.call_tool("enable_tools", {})
    text = catalogue.content[0].text
    assert "- codereview (ai):" in text and "- index_path (kb):" in text, text
    assert "- search_docs" not in text, text  # listed already
    out = await session.call_tool("enable_tools", {"enable": ["codereview", "kb"]})
    assert out.content[0].text.startswith("Listed from now on: "), out.content[0].text
    with anyio.fail_after(10):
        await changes.seen.wait()
    assert changes.count == 1
    now = await names(session)
    assert now == LEAN | KB_TOOLS | {"codereview"}, now
    # Asking again changes nothing and sends no notification.
    again = await session.call_tool("enable_tools", {"enable": ["codereview"]})
    assert again.content[0].text == "Those tools are listed already."
    with pytest.raises(MCPError) as unknown:
        await session.call_tool("enable_tools", {"enable": ["no_such_tool"]})
    assert "unknown tool `no_such_tool`" in str(unknown.value)


async def test_stdio_lists_lean_by_default_and_more_on_request(home):
    params = StdioServerParameters(command=exai_bin(), args=["serve"],
                                   env=base_env(home, EXAI_TOOLS_PROFILE="lean"))
    changes = ListChanges()
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w, message_handler=changes) as session:
            init = await session.initialize()
            assert init.capabilities.tools.list_changed is True
            assert await names(session) == LEAN
            # What is not listed is callable all the same.
            assert structured(await session.call_tool("version", {}))["name"] == "exai"
            await enable_and_see(session, changes)


async def test_serve_profile_flag_wins_over_the_configuration(home):
    params = StdioServerParameters(command=exai_bin(), args=["serve", "--profile", "kb"],
                                   env=base_env(home, EXAI_TOOLS_PROFILE="full"))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            assert await names(session) == KB_TOOLS | CORE_TOOLS | {"enable_tools"}


async def test_daemon_paths_choose_the_profile_and_sessions_keep_their_own(home):
    d = start_daemon(home, EXAI_TOOLS_PROFILE="lean")
    try:
        for path, expected in [("/mcp", LEAN), ("/mcp/lean", LEAN),
                               ("/mcp/kb", KB_TOOLS | CORE_TOOLS | {"enable_tools"}),
                               ("/mcp/ai", AI_TOOLS | CORE_TOOLS | {"enable_tools"}),
                               ("/mcp/full", KB_TOOLS | CORE_TOOLS | AI_TOOLS)]:
            async with streamable_http_client(d.base + path) as (r, w):
                async with ClientSession(r, w) as session:
                    await session.initialize()
                    assert await names(session) == expected, path
        # Enabling tools is one session's choice: another session still sees the lean list.
        changes = ListChanges()
        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w, message_handler=changes) as first:
                await first.initialize()
                await enable_and_see(first, changes)
                async with streamable_http_client(d.url) as (r2, w2):
                    async with ClientSession(r2, w2) as second:
                        await second.initialize()
                        assert await names(second) == LEAN
    finally:
        assert d.stop() == 0


async def test_shim_profile_reaches_the_daemons_path(home, tmp_path):
    d = start_daemon(home, EXAI_TOOLS_PROFILE="lean")
    shim_home = tmp_path / "shim-home"
    shim_home.mkdir()
    try:
        params = StdioServerParameters(command=exai_bin(),
                                       args=["shim", "--url", d.url, "--no-autostart", "--profile", "kb"],
                                       env=base_env(shim_home))
        changes = ListChanges()
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w, message_handler=changes) as session:
                await session.initialize()
                assert await names(session) == KB_TOOLS | CORE_TOOLS | {"enable_tools"}
                # The daemon's list_changed comes through the shim.
                await session.call_tool("enable_tools", {"enable": ["chat"]})
                with anyio.fail_after(10):
                    await changes.seen.wait()
                assert "chat" in await names(session)
    finally:
        assert d.stop() == 0
