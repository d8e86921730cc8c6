"""Sources and where they come from, end to end: the origin recorded with a source, `exai
refresh` (one source or all) and `index_path` without a path re-index from it (changed files
updated, new ones added, deleted ones removed), over stdio with the official MCP Python SDK."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from conftest import base_env, exai_bin, run_exai, structured

pytestmark = pytest.mark.anyio


def write_docs(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Alpha\n\nThe aardvark page.\n")
    (docs / "b.md").write_text("# Beta\n\nThe badger page.\n")
    (docs / "skip.txt").write_text("left out by the include glob\n")
    return docs


def change(docs: Path) -> None:
    (docs / "a.md").write_text("# Alpha\n\nThe armadillo page now.\n")
    (docs / "b.md").unlink()
    (docs / "c.md").write_text("# Gamma\n\nThe capybara page.\n")


def cli(home: Path, *args: str):
    return run_exai(home, *args, EXAI_EMBED_BACKEND="none")


def test_refresh_from_the_recorded_origin_on_the_command_line(home, tmp_path):
    docs = write_docs(tmp_path)
    first = cli(home, "index", str(docs), "--source", "zoo", "--include", "*.md", "--json")
    assert first.returncode == 0, first.stderr
    source = json.loads(cli(home, "sources", "--json").stdout)["sources"][0]
    assert source["origin"] == {"kind": "paths", "roots": [str(docs.resolve())], "include": ["*.md"], "exclude": []}
    change(docs)
    # From another working directory, with no arguments but the source: the same files and globs.
    again = subprocess.run([exai_bin(), "refresh", "zoo", "--json"], env=base_env(home, EXAI_EMBED_BACKEND="none"),
                           cwd="/", stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert (report["added"], report["updated"], report["removed"], report["files_seen"]) == (1, 1, 1, 2), report
    hits = json.loads(cli(home, "search", "capybara", "--json").stdout)["hits"]
    assert [h["path"] for h in hits] == ["c.md"]
    assert json.loads(cli(home, "search", "badger", "--json").stdout)["hits"] == []
    # Every source; an unknown one is an error naming the known ones.
    assert cli(home, "refresh").returncode == 0
    unknown = cli(home, "refresh", "nope")
    assert unknown.returncode == 1 and "valid: zoo" in unknown.stderr


async def test_index_path_without_a_path_refreshes_the_source(home, tmp_path):
    docs = write_docs(tmp_path)
    env = base_env(home, EXAI_EMBED_BACKEND="none", EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path))
    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=env)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            job = structured(await s.call_tool("index_path", {"path": str(docs), "source": "zoo",
                                                              "include": ["*.md"], "wait_secs": 30}))
            assert job["state"] == "done" and job["report"]["added"] == 2, job
            change(docs)
            job = structured(await s.call_tool("index_path", {"source": "zoo", "wait_secs": 30}))
            assert job["state"] == "done", job
            assert (job["report"]["added"], job["report"]["updated"], job["report"]["removed"]) == (1, 1, 1)
            with pytest.raises(MCPError) as err:
                await s.call_tool("index_path", {"source": "nope", "wait_secs": 5})
            assert "unknown source `nope`" in str(err.value)


async def test_refresh_over_mcp_reads_only_allowed_roots(home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    docs = write_docs(outside)
    assert cli(home, "index", str(docs), "--source", "zoo").returncode == 0
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    env = base_env(home, EXAI_EMBED_BACKEND="none", EXAI_TOOLS_ALLOWED_ROOTS=str(allowed))
    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=env)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            with pytest.raises(MCPError) as err:
                await s.call_tool("index_path", {"source": "zoo", "wait_secs": 5})
            assert "outside the allowed roots" in str(err.value) and "exai refresh zoo" in str(err.value)


def serve_site(root: Path):
    """A static site on loopback (Python's http.server: Last-Modified and 304s), in a thread."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_daemon_refreshes_fetched_sources_on_a_schedule(home, tmp_path):
    import time

    from conftest import start_daemon

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text('<html><head><title>Home</title></head><body><main><h1>Home</h1>'
                                     '<p>The okapi lives here.</p><a href="guide.html">guide</a></main></body></html>')
    (site / "guide.html").write_text("<html><head><title>Guide</title></head><body><main><h1>Guide</h1>"
                                     "<p>The pangolin guide.</p></main></body></html>")
    server = serve_site(site)
    host = f"127.0.0.1:{server.server_address[1]}"
    env = {"EXAI_EMBED_BACKEND": "none", "EXAI_KB_FETCH_ALLOWED_HOSTS": host, "EXAI_KB_CRAWL_DELAY_MS": "0"}
    try:
        first = run_exai(home, "index", f"http://{host}/", "--source", "site", "--json", **env)
        assert first.returncode == 0, first.stderr
        assert json.loads(first.stdout)["added"] == 2
        time.sleep(1.1)  # a new Last-Modified second for the changed page
        (site / "guide.html").write_text("<html><head><title>Guide</title></head><body><main><h1>Guide</h1>"
                                         "<p>The tapir guide now.</p></main></body></html>")
        d = start_daemon(home, EXAI_KB_REFRESH_INTERVAL_HOURS="0.0005", **env)  # every 1.8 s
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                hits = json.loads(run_exai(home, "search", "tapir", "--json", **env).stdout)["hits"]
                if hits:
                    break
                time.sleep(0.5)
            assert hits and hits[0]["path"] == "guide.html", hits
            assert json.loads(run_exai(home, "search", "pangolin", "--json", **env).stdout)["hits"] == []
        finally:
            d.stop()
    finally:
        server.shutdown()


async def test_a_local_repository_outside_the_allowed_roots_is_refused_over_mcp(home, tmp_path):
    repo = tmp_path / "outside" / "repo"
    repo.mkdir(parents=True)
    (repo / "a.md").write_text("# A\n\nsecret-ish notes\n")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    env = base_env(home, EXAI_EMBED_BACKEND="none", EXAI_TOOLS_ALLOWED_ROOTS=str(allowed))
    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=env)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            with pytest.raises(MCPError) as err:
                await s.call_tool("index_path", {"path": f"{repo}#HEAD", "source": "repo", "wait_secs": 5})
            assert "outside the allowed roots" in str(err.value)
