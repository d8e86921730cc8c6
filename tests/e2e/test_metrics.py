"""`GET /metrics` end to end: a daemon with the knowledge base and the mock provider serves MCP
calls, and its exposition, read by the Prometheus project's own Python parser, counts them."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, start_daemon, structured
from test_ai import KEY, provider_env

pytestmark = pytest.mark.anyio


def fetch(base: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(f"{base}/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type", ""), e.read().decode(errors="replace")


class Scrape:
    """One parsed exposition: families by name, and sample values by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for family in self.families.values():
            for s in family.samples:
                key = (s.name, frozenset(s.labels.items()))
                assert key not in self.samples, f"duplicate sample {key}"
                self.samples[key] = s.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, frozenset(labels.items()))]

    def get(self, name: str, default: float = 0.0, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), default)


def scrape(daemon) -> Scrape:
    status, content_type, text = fetch(daemon.base, daemon.headers)
    assert status == 200, text
    assert content_type.startswith("text/plain") and "version=0.0.4" in content_type
    return Scrape(text)


def scrape_with_kb_size(daemon, limit: float = 15) -> Scrape:
    """A scrape that holds the knowledge base's size: while the daemon is still creating its
    database in the background, the size is unknown and the gauge has no sample (by design)."""
    deadline = time.monotonic() + limit
    while True:
        s = scrape(daemon)
        if s.families["exai_kb_documents"].samples or time.monotonic() > deadline:
            return s
        time.sleep(0.1)


def check_histograms(s: Scrape) -> None:
    """Every histogram: cumulative buckets, a +Inf bucket equal to _count, and a _sum."""
    for family in s.families.values():
        if family.type != "histogram":
            continue
        series: dict[frozenset, dict] = {}
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            entry = series.setdefault(frozenset(labels.items()), {"buckets": []})
            if sample.name.endswith("_bucket"):
                entry["buckets"].append((float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
            elif sample.name.endswith("_sum"):
                entry["sum"] = sample.value
        for labels, entry in series.items():
            bounds = [b for b, _ in entry["buckets"]]
            counts = [c for _, c in entry["buckets"]]
            assert bounds == sorted(bounds) and math.isinf(bounds[-1]), (family.name, labels)
            assert counts == sorted(counts), f"{family.name} {labels}: buckets not cumulative"
            assert counts[-1] == entry["count"] and entry["sum"] >= 0, (family.name, labels)


def write_docs(root):
    docs = root / "docs"
    docs.mkdir()
    (docs / "state.md").write_text("# Managing State\n\n## useState\n\nThe useState hook adds a state variable.\n")
    (docs / "router.md").write_text("# Router\n\nThe Router component keeps the UI in sync with the URL.\n")
    (docs / "install.md").write_text("# Install\n\nInstall the package with npm.\n")
    return docs


async def test_metrics_count_calls_searches_and_provider_requests(home, mock_llm, tmp_path):
    docs = write_docs(tmp_path)
    d = start_daemon(home, EXAI_EMBED_BACKEND="none", **provider_env(mock_llm, tmp_path))
    try:
        before = scrape_with_kb_size(d)
        assert before.families["exai_tool_calls"].type == "counter"
        assert before.families["exai_tool_call_duration_seconds"].type == "histogram"
        assert before.families["exai_tool_call_duration_seconds"].samples == [], "histograms start with a call"
        assert before.value("exai_tool_calls_total", tool="version", outcome="ok") == 0
        assert before.value("exai_tool_calls_in_flight") == 0
        assert before.value("exai_kb_documents") == 0
        # The AI service starts on first use: provider families are declared, still empty.
        assert before.families["exai_provider_requests"].samples == []
        check_histograms(before)

        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                version = structured(await s.call_tool("version", {}))
                job = structured(await s.call_tool("index_path", {"path": str(docs), "source": "web",
                                                                  "wait_secs": 30}))
                assert job["state"] == "done", job
                found = structured(await s.call_tool("search_docs", {"query": "useState hook"}))
                assert found["mode"] == "keyword" and found["hits"]
                busy = structured(await s.call_tool("chat", {"prompt": "busy [[mock:rate_limit=1]]",
                                                             "model": "glm-4.6"}))
                assert busy["attempts"] == 2
                first = structured(await s.call_tool("chat", {"prompt": "What is a monad?",
                                                              "model": "kimi-k2-0905-preview"}))
                second = structured(await s.call_tool("chat", {"prompt": "And a functor?",
                                                               "model": "kimi-k2-0905-preview",
                                                               "continuation_id": first["continuation_id"]}))
                assert second["provider"] == "kimi"
                unknown_failed = False
                try:
                    unknown = await s.call_tool("no_such_tool", {})
                    unknown_failed = unknown.is_error
                except Exception:  # the SDK raises on a JSON-RPC error
                    unknown_failed = True
                assert unknown_failed

        after = scrape(d)
        check_histograms(after)
        calls = lambda tool, outcome="ok": after.value("exai_tool_calls_total", tool=tool, outcome=outcome)  # noqa: E731
        assert calls("version") == 1 and calls("index_path") == 1 and calls("search_docs") == 1
        assert calls("chat") == 3 and calls("chat", "error") == 0
        assert calls("other", "error") == 1
        assert "no_such_tool" not in after.text, "unknown names never become label values"
        assert after.value("exai_tool_call_duration_seconds_count", tool="chat") == 3
        assert after.value("exai_tool_call_duration_seconds_sum", tool="chat") > 0
        assert after.value("exai_tool_calls_in_flight") == 0

        assert after.value("exai_kb_search_duration_seconds_count", mode="keyword") == 1
        assert after.value("exai_kb_search_duration_seconds_count", mode="hybrid") == 0
        assert after.value("exai_kb_documents") == 3 and after.value("exai_kb_chunks") >= 3

        req = lambda provider, status: after.get(  # noqa: E731
            "exai_provider_requests_total", provider=provider, operation="chat", status=status)
        assert req("glm", "rate_limited") == 1 and req("glm", "ok") == 1
        assert req("kimi", "ok") == 2 and req("kimi", "rate_limited") == 0
        assert after.value("exai_provider_request_duration_seconds_count", provider="glm", operation="chat") == 2
        assert after.value("exai_provider_retries_total", provider="glm") == 1
        assert after.value("exai_provider_retries_total", provider="kimi") == 0
        assert after.value("exai_provider_context_cache_misses_total", provider="kimi") == 1
        assert after.value("exai_provider_context_cache_hits_total", provider="kimi") == 1
        tokens_in = first["usage"]["prompt_tokens"] + second["usage"]["prompt_tokens"]
        assert after.value("exai_provider_tokens_total", provider="kimi", direction="in") == tokens_in
        assert after.value("exai_provider_tokens_total", provider="kimi", direction="out") == (
            first["usage"]["completion_tokens"] + second["usage"]["completion_tokens"])
        cost = first["cost_usd"] + second["cost_usd"]
        assert after.value("exai_provider_cost_usd_total", provider="kimi") == pytest.approx(cost, rel=1e-9)
        assert cost > 0
        assert after.value("exai_provider_requests_in_flight") == 0

        assert after.value("exai_uptime_seconds") > before.value("exai_uptime_seconds") > 0
        assert after.value("exai_start_time_seconds") == before.value("exai_start_time_seconds")
        build = [s for s in after.families["exai_build_info"].samples if s.value == 1]
        assert len(build) == 1 and build[0].labels["version"] == version["version"]
        assert build[0].labels["transport"] == "http"
        assert KEY not in after.text, "API keys never reach the exposition"
    finally:
        d.stop()


def test_metrics_sit_behind_the_bearer_token(home):
    token = "metrics-token-0123456789abcdef"
    port = free_port()
    d = start_daemon(home, port=port, listen=f"0.0.0.0:{port}", token=token)
    try:
        status, _, _ = fetch(d.base)
        assert status == 401
        status, _, text = fetch(d.base, d.headers)
        assert status == 200 and token not in text
        Scrape(text)
    finally:
        d.stop()
