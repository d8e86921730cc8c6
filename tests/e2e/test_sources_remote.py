"""Web sites as sources, end to end over stdio with the official MCP Python SDK: `index_path` with
a URL crawls a loopback site (allowed by EXAI_KB_FETCH_ALLOWED_HOSTS) into a source whose hits
carry the pages' URLs; without the allowed host the job fails naming kb.fetch_allowed_hosts;
`index_path` without a path and `exai refresh` re-fetch the site from its recorded origin. Two
tags of a git repository indexed from the CLI are two versions of one library, which `exai search
--version`, `resolve_library` and `search_docs {version}` tell apart."""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from conftest import base_env, exai_bin, run_exai, structured

pytestmark = pytest.mark.anyio

ANIMALS = {"index.html": "quetzal", "alpha.html": "axolotl", "beta.html": "binturong", "gamma.html": "caracal"}


def page(title: str, animal: str, links: list[str]) -> str:
    items = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    return (f"<!doctype html><html><head><title>{title}</title></head><body><main><h1>{title}</h1>"
            f"<p>The {animal} page of the test site.</p><ul>{items}</ul></main></body></html>")


def write_site(root: Path) -> None:
    for name, animal in ANIMALS.items():
        links = [n for n in ANIMALS if n != "index.html"] if name == "index.html" else []
        (root / name).write_text(page(name.removesuffix(".html").title(), animal, links))


class Site:
    """The generated site on 127.0.0.1 (Python's http.server: Last-Modified and 304s), in a thread,
    with the paths it was asked for."""

    def __init__(self, root: Path):
        self.requests: list[tuple[str, int]] = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_request(self, code="-", size="-"):
                site.requests.append((self.path, int(code) if str(code).isdigit() else 0))

        handler = functools.partial(Handler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    write_site(root)
    served = Site(root)
    yield served
    served.close()


def server_env(home: Path, **extra: str) -> dict[str, str]:
    return base_env(home, EXAI_EMBED_BACKEND="none", EXAI_KB_CRAWL_DELAY_MS="0", **extra)


async def test_a_site_indexed_searched_and_refreshed_over_mcp(home, tmp_path, site):
    params = StdioServerParameters(command=exai_bin(), args=["serve"],
                                   env=server_env(home, EXAI_KB_FETCH_ALLOWED_HOSTS=site.host))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            job = structured(await s.call_tool("index_path", {"path": site.url("/"), "source": "site",
                                                              "wait_secs": 30}))
            assert job["state"] == "done", job
            assert job["report"]["added"] == len(ANIMALS), job
            found = structured(await s.call_tool("search_docs", {"query": "axolotl", "source": "site"}))
            hits = found["hits"]
            assert hits and hits[0]["uri"] == site.url("/alpha.html"), found
            assert hits[0]["source"] == "site"

            # A changed page (a later modification time, so If-Modified-Since sees it).
            changed = tmp_path / "site" / "beta.html"
            changed.write_text(page("Beta", "bushbaby", []))
            later = changed.stat().st_mtime + 60
            os.utime(changed, (later, later))
            job = structured(await s.call_tool("index_path", {"source": "site", "wait_secs": 30}))
            assert job["state"] == "done", job
            report = job["report"]
            assert (report["updated"], report["added"], report["removed"], report["unchanged"]) == \
                (1, 0, 0, len(ANIMALS) - 1), report
            found = structured(await s.call_tool("search_docs", {"query": "bushbaby", "source": "site"}))
            assert [h["uri"] for h in found["hits"]][:1] == [site.url("/beta.html")], found
            gone = structured(await s.call_tool("search_docs", {"query": "binturong", "source": "site"}))
            assert gone["hits"] == [], gone

    # The CLI refreshes the same source from its recorded origin: nothing changed, each page
    # answered 304.
    site.requests.clear()
    cli = run_exai(home, "refresh", "site", "--json", EXAI_EMBED_BACKEND="none", EXAI_KB_CRAWL_DELAY_MS="0",
                   EXAI_KB_FETCH_ALLOWED_HOSTS=site.host)
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert (report["unchanged"], report["updated"], report["added"], report["removed"]) == \
        (len(ANIMALS), 0, 0, 0), report
    pages = {path: code for path, code in site.requests if path.endswith(".html") or path == "/"}
    assert pages == {"/": 304, "/alpha.html": 304, "/beta.html": 304, "/gamma.html": 304}, site.requests
    sources = json.loads(run_exai(home, "sources", "--json", EXAI_EMBED_BACKEND="none").stdout)["sources"]
    assert [(s["name"], s["origin"]["kind"], s["origin"]["url"]) for s in sources] == \
        [("site", "web", site.url("/"))], sources


async def test_a_loopback_site_is_refused_without_the_allowed_host(home, site):
    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=server_env(home))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            try:
                result = await s.call_tool("index_path", {"path": site.url("/"), "source": "site",
                                                          "wait_secs": 30})
                assert result.is_error, result
                message = result.content[0].text
            except MCPError as e:
                message = str(e)
            assert "kb.fetch_allowed_hosts" in message, message
            listed = structured(await s.call_tool("list_sources", {}))
            assert listed.get("sources", []) == [], listed
    assert site.requests == [], "refused before any request"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=exai test", "-c", "user.email=test@example.org",
                    "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", "-c", "init.defaultBranch=main",
                    "-C", str(repo), *args], check=True, capture_output=True)


async def test_two_tags_of_a_repository_are_versions_of_one_library(home, tmp_path):
    repo = tmp_path / "handbook"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "guide.md").write_text("# Guide\n\nThe guide tells of the oryx.\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "one")
    git(repo, "tag", "v1.0")
    (repo / "guide.md").write_text("# Guide\n\nThe guide tells of the gazelle.\n")
    git(repo, "commit", "--quiet", "-am", "two")
    git(repo, "tag", "v2.0")
    for tag in ("v1.0", "v2.0"):
        done = run_exai(home, "index", f"{repo}#{tag}", "--json", EXAI_EMBED_BACKEND="none")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["source"] == f"handbook@{tag}"
    newest = json.loads(run_exai(home, "search", "guide", "--source", "handbook", "--json",
                                 EXAI_EMBED_BACKEND="none").stdout)
    assert {h["source"] for h in newest["hits"]} == {"handbook@v2.0"}, newest
    older = json.loads(run_exai(home, "search", "guide", "--source", "handbook", "--version", "1", "--json",
                                EXAI_EMBED_BACKEND="none").stdout)
    assert {h["source"] for h in older["hits"]} == {"handbook@v1.0"}, older

    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=server_env(home))
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            resolved = structured(await s.call_tool("resolve_library", {"library": "handbook", "version": "1"}))
            assert resolved["source"] == "handbook@v1.0", resolved
            found = structured(await s.call_tool("search_docs", {"query": "oryx", "source": "handbook",
                                                                 "version": "1"}))
            assert [h["source"] for h in found["hits"]][:1] == ["handbook@v1.0"], found
            found = structured(await s.call_tool("search_docs", {"query": "oryx", "source": "handbook"}))
            assert found["hits"] == [], "the newest version no longer has it"


async def test_a_url_without_a_source_name_is_filed_under_its_host(home, site, tmp_path):
    env = server_env(home, EXAI_KB_FETCH_ALLOWED_HOSTS=site.host, EXAI_TOOLS_ALLOWED_ROOTS=str(tmp_path))
    params = StdioServerParameters(command=exai_bin(), args=["serve"], env=env)
    async with stdio_client(params) as (r, w):
        async with ClientSession(r, w) as s:
            await s.initialize()
            job = structured(await s.call_tool("index_path", {"path": site.url("/"), "wait_secs": 30}))
            expected = site.host.replace(":", "-")
            assert job["state"] == "done" and job["source"] == expected, job
            hits = structured(await s.call_tool("search_docs", {"query": "binturong", "source": expected}))["hits"]
            assert hits and hits[0]["uri"] == site.url("/beta.html"), hits
            # A local directory still needs a name.
            with pytest.raises(MCPError) as err:
                await s.call_tool("index_path", {"path": str(tmp_path), "wait_secs": 5})
            assert "give `source`" in str(err.value)
