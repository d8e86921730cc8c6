"""The knowledge base over MCP with the official Python SDK: index_path as a job with progress,
search_docs with filters, exact retrieval, listings, errors that name the valid values."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from conftest import base_env, exai_bin, structured

pytestmark = pytest.mark.anyio

KB_TOOLS = {"search_docs", "get_chunk", "get_document", "list_sources", "get_technologies", "get_categories", "resolve_library",
            "index_path", "job_status", "cancel_job", "remove_source"}


def write_corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "guides").mkdir(parents=True)
    (docs / "api").mkdir()
    (docs / "guides" / "state.md").write_text(textwrap.dedent("""\
        ---
        title: Managing State
        technology: react
        ---
        # Managing State

        ## useState

        The useState hook adds a state variable to a component. Call it at the top level.

        ```js
        const [count, setCount] = useState(0);
        ```

        ## Reducers

        A reducer consolidates state update logic outside the component in a single function.
        """))
    (docs / "getting-started.md").write_text("# Quick start\n\nInstall the package with npm and render your first component.\n")
    (docs / "api" / "router.html").write_text(textwrap.dedent("""\
        <html><head><title>Router API</title></head><body>
        <nav class="sidebar"><a>Home</a><a>SIDEBAR-ONLY-WORD</a></nav>
        <main><h1>Router</h1><p>The Router component keeps the UI in sync with the URL.</p>
        <h2>Nested routes</h2><p>Nested routes render inside an Outlet element of their parent route.</p></main>
        </body></html>"""))
    (docs / "example.py").write_text("def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n")
    return docs


def params(home, docs_root, **env) -> StdioServerParameters:
    env.setdefault("EXAI_EMBED_BACKEND", "none")
    return StdioServerParameters(command=exai_bin(), args=["serve"],
                                 env=base_env(home, EXAI_TOOLS_ALLOWED_ROOTS=str(docs_root), **env))


async def index(session, docs, source="web", **extra):
    progress = []

    async def on_progress(p, total, message):
        progress.append((p, total, message))

    res = await session.call_tool("index_path", {"path": str(docs), "source": source, "wait_secs": 30, **extra},
                                  progress_callback=on_progress)
    return structured(res), progress


async def test_index_search_retrieve_and_list(home, tmp_path):
    docs = write_corpus(tmp_path)
    async with stdio_client(params(home, tmp_path)) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            tools = {t.name for t in (await session.list_tools()).tools}
            assert KB_TOOLS <= tools
            job, progress = await index(session, docs)
            assert job["state"] == "done", job
            report = job["report"]
            assert report["added"] == 4 and report["chunks_written"] >= 5
            assert progress and progress[-1][0] == progress[-1][1]

            found = structured(await session.call_tool("search_docs", {"query": "useState hook state variable"}))
            assert found["mode"] == "keyword"  # no embedder configured: said plainly
            assert any("keyword" in n for n in found["notes"])
            top = found["hits"][0]
            assert top["path"] == "guides/state.md" and top["title"] == "Managing State"
            assert top["section"] == "useState" and "useState" in top["snippet"]
            assert top["technology"] == "react"  # from front matter

            html = structured(await session.call_tool("search_docs", {"query": "Outlet nested routes"}))
            assert html["hits"][0]["path"] == "api/router.html"
            assert html["hits"][0]["category"] == "api_reference"
            nav = structured(await session.call_tool("search_docs", {"query": "SIDEBAR-ONLY-WORD"}))
            assert nav["hits"] == []  # navigation is not content

            code = structured(await session.call_tool("search_docs", {"query": "fibonacci", "doc_type": "code"}))
            assert code["hits"][0]["path"] == "example.py"
            assert structured(await session.call_tool(
                "search_docs", {"query": "fibonacci", "doc_type": "text"}))["hits"] == []
            prefixed = structured(await session.call_tool("search_docs", {"query": "component", "path_prefix": "guides/"}))
            assert prefixed["hits"] and all(h["path"].startswith("guides/") for h in prefixed["hits"])

            chunk = structured(await session.call_tool("get_chunk", {"chunk_id": top["chunk_id"], "context": 1}))
            assert "const [count, setCount]" in chunk["chunk"]["text"]
            doc = structured(await session.call_tool("get_document", {"doc_id": top["doc_id"]}))
            assert doc["document"]["path"] == "guides/state.md" and len(doc["chunks"]) >= 2
            by_path = structured(await session.call_tool("get_document", {"path": "guides/state.md", "source": "web"}))
            assert by_path["document"]["id"] == top["doc_id"]

            sources = structured(await session.call_tool("list_sources", {}))
            assert [s["name"] for s in sources["sources"]] == ["web"]
            assert sources["status"]["search_modes"] == ["keyword"]
            techs = {t["name"] for t in structured(await session.call_tool("get_technologies", {}))["technologies"]}
            assert techs == {"react", "web"}
            cats = structured(await session.call_tool("get_categories", {}))
            assert "api_reference" in {c["name"] for c in cats["categories"]} and "troubleshooting" in cats["known"]

            again, _ = await index(session, docs)
            assert again["report"]["unchanged"] == 4 and again["report"]["added"] == 0


async def test_errors_name_the_valid_values(home, tmp_path):
    docs = write_corpus(tmp_path)
    outside = tmp_path.parent / (tmp_path.name + "-outside")
    outside.mkdir()
    async with stdio_client(params(home, tmp_path)) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            await index(session, docs, source="react-docs")
            with pytest.raises(MCPError) as err:
                await session.call_tool("search_docs", {"query": "state", "source": "react"})
            assert "unknown source `react`" in str(err.value) and "did you mean `react-docs`" in str(err.value)
            with pytest.raises(MCPError) as err:
                await session.call_tool("search_docs", {"query": "state", "category": "nope"})
            assert "valid:" in str(err.value)
            bad = await session.call_tool("search_docs", {"query": "state", "limit": 500})
            assert bad.is_error and "`limit`" in bad.content[0].text
            with pytest.raises(MCPError) as err:
                await session.call_tool("index_path", {"path": str(outside), "source": "x"})
            assert "outside the allowed roots" in str(err.value)
            with pytest.raises(MCPError) as err:
                await session.call_tool("index_path", {"path": str(docs / ".." / ".." / outside.name), "source": "x"})
            assert "outside the allowed roots" in str(err.value)
            with pytest.raises(MCPError) as err:
                await session.call_tool("get_chunk", {"chunk_id": 999999})
            assert "not found" in str(err.value)
            with pytest.raises(MCPError):
                await session.call_tool("job_status", {"job_id": "job-nope"})
            removed = structured(await session.call_tool("remove_source", {"source": "react-docs"}))
            assert removed["documents_removed"] == 4
            assert structured(await session.call_tool("list_sources", {}))["sources"] == []


@pytest.mark.skipif(not os.environ.get("EXAI_TEST_MODEL_DIR") and not os.environ.get("CI"), reason="set EXAI_TEST_MODEL_DIR (scripts/test.sh does)")
async def test_hybrid_search_with_the_local_model(home, tmp_path):
    docs = write_corpus(tmp_path)
    env = dict(EXAI_EMBED_BACKEND="local", EXAI_EMBED_MODEL=os.environ["EXAI_TEST_MODEL_DIR"])
    async with stdio_client(params(home, tmp_path, **env)) as (r, w):
        async with ClientSession(r, w) as session:
            await session.initialize()
            job, progress = await index(session, docs)
            assert job["state"] == "done" and job["report"]["texts_without_vectors"] == 0
            assert job["report"]["embedding_model"].startswith("sentence-transformers/all-MiniLM-L6-v2:384")
            assert job["report"]["texts_embedded"] >= 5
            # Words that appear nowhere in the corpus: only meaning can find the page.
            sem = structured(await session.call_tool("search_docs", {"query": "how do I keep a counter that changes over time", "mode": "semantic"}))
            assert sem["mode"] == "semantic" and sem["hits"][0]["path"] == "guides/state.md"
            assert 0 < sem["hits"][0]["cosine"] <= 1
            hybrid = structured(await session.call_tool("search_docs", {"query": "URL routing UI sync", "group_by_document": True}))
            assert hybrid["mode"] == "hybrid" and hybrid["hits"][0]["path"] == "api/router.html"
            assert hybrid["chunks_without_vectors"] == 0
            status = structured(await session.call_tool("list_sources", {}))["status"]
            assert status["search_modes"] == ["hybrid", "keyword", "semantic"]
