"""Monitoring over time end to end: a daemon sampling every second records its resources in
`state.sqlite`, serves them on `/metrics` under the standard `process_*` names, and the operator's
commands read them back (`stats --resources`, `db stats --history`, `health`); the service targets
hold on a healthy run and are reported missed once the mock provider makes calls fail; slow
searches are logged, and their text is kept only with `logging.log_queries`."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import activity, run_exai, start_daemon, state_rows, structured
from test_ai import provider_env
from test_metrics import scrape

pytestmark = pytest.mark.anyio

FAST = dict(EXAI_OPS_SAMPLE_INTERVAL_SECS="1", EXAI_EMBED_BACKEND="none")


def exai_json(home: Path, *args: str, ok: tuple[int, ...] = (0,), **env: str):
    out = run_exai(home, *args, "--json", **{**FAST, **env})
    assert out.returncode in ok, (out.returncode, out.stdout, out.stderr)
    return out.returncode, json.loads(out.stdout)


def wait_samples(home: Path, n: int, limit: float = 20) -> int:
    deadline = time.monotonic() + limit
    while True:
        count = 0
        if (home / "state.sqlite").exists():
            try:
                count = state_rows(home, "SELECT count(*) AS n FROM resource_samples")[0]["n"]
            except Exception:  # the table appears with the first sample
                count = 0
        if count >= n or time.monotonic() > deadline:
            return count
        time.sleep(0.2)


async def calls(url: str, *calls: tuple[str, dict]) -> list:
    async with streamable_http_client(url) as (r, w, *_):
        async with ClientSession(r, w) as s:
            await s.initialize()
            return [await s.call_tool(name, args) for name, args in calls]


async def test_samples_metrics_resources_history_and_slo(home, mock_llm, tmp_path):
    d = start_daemon(home, **FAST, **provider_env(mock_llm, tmp_path))
    try:
        assert wait_samples(home, 3) >= 3
        row = state_rows(home, "SELECT * FROM resource_samples ORDER BY id DESC LIMIT 1")[0]
        assert row["pid"] == d.proc.pid and row["interval_secs"] == 1.0
        assert row["rss_bytes"] > 1 << 20 and row["open_fds"] > 3 and row["disk_free_bytes"] > 0
        assert "state" in json.loads(row["db_bytes"])

        s = scrape(d)
        rss = s.value("process_resident_memory_bytes")
        assert 1 << 20 < rss < 4 << 30
        assert s.families["process_cpu_seconds"].type == "counter"  # the parser drops "_total"
        assert s.value("process_cpu_seconds_total") > 0
        assert 3 < s.value("process_open_fds") <= s.value("process_max_fds")
        assert abs(s.value("process_start_time_seconds") - time.time()) < 120
        assert s.value("exai_db_size_bytes", db="state") > 0
        assert s.value("exai_disk_free_bytes") > 0

        _, res = exai_json(home, "stats", "--resources")
        [own] = res["instances"]
        assert own["own"] and own["samples"] >= 3
        series = {x["name"]: x for x in own["series"]}
        for name in ("rss_bytes", "cpu_percent", "open_fds", "host_memory_used_percent",
                     "disk_free_bytes", "db_bytes.state"):
            assert name in series, series.keys()
        r = series["rss_bytes"]
        assert r["min"] <= r["latest"] <= r["max"] and r["trend_per_hour"] is not None
        text = run_exai(home, "stats", "--resources", **FAST)
        assert text.returncode == 0 and "rss_bytes" in text.stdout and "trend" in text.stdout

        _, days = exai_json(home, "db", "stats", "--history")
        today = datetime.now(timezone.utc).date().isoformat()
        assert any(x["date"] == today and x["db"] == "state" and x["bytes"] > 0 for x in days), days

        # A healthy run: every target met, the health check agrees.
        done = await calls(d.url, ("version", {}), ("chat", {"prompt": "hello", "model": "glm-4.6"}))
        assert not any(c.is_error for c in done)
        code, slo = exai_json(home, "stats", "--slo")
        assert code == 0 and slo["met"], slo
        objectives = {o["name"]: o for o in slo["objectives"]}
        assert objectives["uptime"]["actual"] > 99 and objectives["error_rate"]["actual"] == 0
        # `version` is a simple tool, `chat` runs under the workflow timeout.
        assert objectives["simple_p95"]["count"] == 1 and objectives["workflow_p95"]["count"] == 1
        _, health = exai_json(home, "health", ok=(0, 1))
        checks = {c["name"]: c for c in health["checks"]}
        assert checks["slo_24h"]["status"] == "ok", checks["slo_24h"]
        assert "in " in checks["daemon"]["detail"] and checks["daemon"]["data"]["health_latency_ms"] > 0
        assert checks["daemon_memory"]["data"]["host_memory_used_percent"] > 0
        assert "not judged yet" in checks["memory_trend"]["detail"]
        assert checks["disk"]["data"]["warn_percent"] == 85

        # Calls failing at the provider: the error rate misses its 1 % target.
        failed = await calls(d.url, *[("chat", {"prompt": f"huge {i} [[mock:context_length]]",
                                                "model": "glm-4.6"}) for i in range(2)])
        assert all(c.is_error for c in failed)
        code, slo = exai_json(home, "stats", "--slo", ok=(1,))
        missed = [o["name"] for o in slo["objectives"] if o["met"] is False]
        assert missed == ["error_rate"], slo
        assert slo["objectives"][3]["actual"] == pytest.approx(50.0)
        text = run_exai(home, "stats", "--slo", **FAST)
        assert text.returncode == 1 and "MISSED" in text.stdout and "ops.slo_error_rate_percent" in text.stdout
        _, health = exai_json(home, "health", ok=(1,))
        slo_check = next(c for c in health["checks"] if c["name"] == "slo_24h")
        assert slo_check["status"] == "warn" and "error_rate" in slo_check["detail"], slo_check
        # A laxer target is met again.
        code, _ = exai_json(home, "stats", "--slo", EXAI_OPS_SLO_ERROR_RATE_PERCENT="60")
        assert code == 0
    finally:
        d.stop()

    # Stopped: no more samples, and the down time counts against the uptime.
    count = wait_samples(home, 0)
    time.sleep(3)
    assert wait_samples(home, 0) == count
    _, slo = exai_json(home, "stats", "--slo", ok=(0, 1))
    assert slo["objectives"][0]["actual"] < 100


async def test_slow_searches_are_logged_and_their_text_kept_only_when_asked(home, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"page{i}.md").write_text(f"# Page {i}\n\nzebra crossing number {i} and giraffes\n")
    assert run_exai(home, "index", str(docs), "--source", "zoo", **FAST).returncode == 0
    query = "zebra crossing"

    d = start_daemon(home, **FAST, EXAI_KB_SLOW_QUERY_MS="0")
    try:
        [res] = await calls(d.url, ("search_docs", {"query": query}))
        assert structured(res)["hits"]
    finally:
        d.stop()
    log = (home / "logs" / "exai.log").read_text()
    slow = [line for line in log.splitlines() if "slow search" in line]
    assert slow and "mode=" in slow[-1] and "hits=5" in slow[-1] and "duration_ms=" in slow[-1], slow
    assert query not in log
    [rec] = [r for r in activity(home) if r["tool"] == "search_docs"]
    assert rec["search"] == {"mode": "keyword", "hits": 5}
    out = run_exai(home, "stats", "--queries", **FAST)
    assert out.returncode == 0 and "logging.log_queries" in out.stdout and query not in out.stdout

    # With log_queries on, and the default threshold: no warning, the text is recorded.
    d = start_daemon(home, **FAST, EXAI_LOGGING_LOG_QUERIES="true")
    try:
        await calls(d.url, ("search_docs", {"query": query}), ("search_docs", {"query": "Zebra  Crossing"}),
                    ("search_docs", {"query": "giraffes"}), ("search_docs", {"query": "unicorns"}))
    finally:
        d.stop()
    log = (home / "logs" / "exai.log").read_text()
    assert len([line for line in log.splitlines() if "slow search" in line]) == len(slow)
    _, rep = exai_json(home, "stats", "--queries")
    assert rep["searches"] == 5 and rep["with_text"] == 4
    top = rep["most_frequent"][0]
    assert top["query"] == query and top["count"] == 2
    assert next(f for f in rep["most_frequent"] if f["query"] == "unicorns")["no_hits"] == 1
    assert len(rep["slowest"]) == 4

    # Slow and recorded: the warning carries the text.
    d = start_daemon(home, **FAST, EXAI_LOGGING_LOG_QUERIES="1", EXAI_KB_SLOW_QUERY_MS="0")
    try:
        await calls(d.url, ("search_docs", {"query": "giraffes"}))
    finally:
        d.stop()
    slow = [line for line in (home / "logs" / "exai.log").read_text().splitlines() if "slow search" in line]
    assert "giraffes" in slow[-1]


def test_samples_go_to_postgresql_when_state_is_shared(home, tmp_path):
    import pg

    url = pg.fresh_database(pg.base_url_or_skip())
    try:
        env = dict(FAST, EXAI_DATABASE_URL=url)
        d = start_daemon(home, **env)
        try:
            deadline = time.monotonic() + 20
            while True:
                n = pg.psql(url, "SELECT count(*) FROM resource_samples").strip() \
                    if "resource_samples" in pg.psql(url, "SELECT tablename FROM pg_tables") else "0"
                if int(n) >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert int(n) >= 2
            s = scrape(d)
            assert s.value("exai_db_size_bytes", db="postgres") > 0
            _, res = exai_json(home, "stats", "--resources", **env)
            [own] = res["instances"]
            series = {x["name"] for x in own["series"]}
            assert own["own"] and "db_bytes.postgres" in series, series
        finally:
            d.stop()
        assert not (home / "state.sqlite").exists() or not state_has_samples(home)
        migrate = run_exai(home, "db", "migrate", **env)
        assert migrate.returncode == 0 and "resources (postgres)" in migrate.stdout, migrate.stdout
    finally:
        pg.drop_database(url)


def state_has_samples(home: Path) -> bool:
    rows = state_rows(home, "SELECT name FROM sqlite_master WHERE name = 'resource_samples'")
    return bool(rows)
