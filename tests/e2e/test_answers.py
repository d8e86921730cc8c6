"""Answers sized for a model, with the official Python SDK over stdio and Streamable HTTP:
`search_docs`' structured content validates against the `outputSchema` it declares, its text is
a short ranked list, and `max_tokens` keeps whole hits within the budget, saying how many were
left out (the exact cl100k_base count is checked in crates/exai-server/tests/tool_tokens.rs)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from conftest import base_env, exai_bin, run_exai, start_daemon

pytestmark = pytest.mark.anyio

DOCS = Path(__file__).resolve().parents[2] / "docs"
QUERY = "restore a backup of the databases"


def index_docs(home: Path) -> None:
    out = run_exai(home, "index", str(DOCS), "--source", "exai-docs", "--no-embed", EXAI_EMBED_BACKEND="none")
    assert out.returncode == 0, out.stderr


async def check_answers(session: ClientSession) -> None:
    await session.initialize()
    [tool] = [t for t in (await session.list_tools()).tools if t.name == "search_docs"]
    schema = tool.output_schema
    assert schema and schema["type"] == "object", tool
    jsonschema.Draft202012Validator.check_schema(schema)

    sizes = {}
    for budget in (200, 700, 2000, 20000):
        res = await session.call_tool("search_docs", {"query": QUERY, "limit": 10, "mode": "keyword",
                                                      "max_tokens": budget})
        assert not res.is_error, res
        data = res.structured_content
        jsonschema.validate(data, schema)
        text = res.content[0].text
        kept = len(data["hits"])
        assert kept + data["omitted"] == 10, data
        sizes[budget] = (kept, len(text))
        # The model's text: a header with the count, then each hit ranked with where it came from.
        assert text.startswith(f"{kept} hits for \"{QUERY}\""), text[:200]
        for rank, hit in enumerate(data["hits"], 1):
            assert f"\n{rank}. " in text and hit["path"] in text, (rank, hit["path"])
        if data["omitted"]:
            assert f"; {data['omitted']} more left out to stay within max_tokens" in text
        # Far below the budget in characters (a token is at least one character).
        assert len(text) <= budget * 4, (budget, len(text))
    kept = [sizes[b][0] for b in (200, 700, 2000, 20000)]
    assert kept == sorted(kept) and kept[0] < kept[-1] == 10, sizes


async def test_search_answers_over_stdio(home):
    index_docs(home)
    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=base_env(home, EXAI_EMBED_BACKEND="none"))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as session:
            await check_answers(session)


async def test_search_answers_over_http(home):
    index_docs(home)
    d = start_daemon(home, EXAI_EMBED_BACKEND="none")
    try:
        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w) as session:
                await check_answers(session)
    finally:
        assert d.stop() == 0
