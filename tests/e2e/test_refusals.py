"""Refused requests are logged with the client's address and the reason (never the offered
token) and counted in `/health`, `exai health` and `/metrics`; `exai stats --by-client` shows the
calls of each MCP client (the official Python SDK names itself in `initialize`) and principal."""

from __future__ import annotations

import json
import re

import pytest
from mcp import ClientSession
from mcp.client.session import DEFAULT_CLIENT_INFO
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from prometheus_client.parser import text_string_to_metric_families

from conftest import http_get, http_post, run_exai, start_daemon, structured
from test_metrics import fetch

pytestmark = pytest.mark.anyio

OPERATOR = "operator-token-0123456789abcdef"
ALICE = "alice-token-0123456789abcdef"
WRONG = "guessed-token-0123456789abcdef"

INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}).encode()


def refused_metric(text: str) -> dict[str, float]:
    family = {f.name: f for f in text_string_to_metric_families(text)}["exai_http_refused"]
    assert family.type == "counter"
    return {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}


def test_refusals_are_logged_with_the_address_and_counted(home):
    d = start_daemon(home, token=OPERATOR, EXAI_SERVER_MAX_BODY_BYTES="4096")
    try:
        assert http_get(f"{d.base}/health")[0] == 401
        assert http_post(d.url, INIT, {"Authorization": f"Bearer {WRONG}"})[0] == 401
        assert http_post(d.url, b'{"pad": "' + b"x" * 10000 + b'"}', d.headers)[0] == 413
        assert http_post(d.url, INIT, {**d.headers, "Origin": "https://evil.example"})[0] == 403
        assert http_post(d.url, INIT, {**d.headers, "Host": "evil.example"})[0] == 403
        assert http_post(d.url, INIT, d.headers)[0] == 200

        status, body = http_get(f"{d.base}/health", d.headers)
        assert status == 200
        assert body["http"]["refused"] == {"host": 1, "origin": 1, "token": 2, "body_too_large": 1,
                                           "body_timeout": 0, "sessions_full": 0}
        status, _, text = fetch(d.base, d.headers)
        assert status == 200
        assert refused_metric(text) == {"host": 1.0, "origin": 1.0, "token": 2.0, "body_too_large": 1.0,
                                        "body_timeout": 0.0, "sessions_full": 0.0}

        report = run_exai(home, "health", "--json", EXAI_AUTH_TOKEN=OPERATOR)
        checks = {c["name"]: c for c in json.loads(report.stdout)["checks"]}
        assert checks["http_refused"]["data"]["total"] == 5, checks["http_refused"]
        assert "token 2" in checks["http_refused"]["detail"]

        log = (home / "logs" / "exai.log").read_text()
        refusals = [line for line in log.splitlines() if "refused request from" in line]
        assert len(refusals) == 5, refusals
        for reason in ("token", "body_too_large", "origin", "host"):
            pattern = rf'refused request from 127\.0\.0\.1:\d+: .*reason="?{reason}\b'
            assert any(re.search(pattern, line) for line in refusals), (reason, refusals)
        assert WRONG not in log and OPERATOR not in log
    finally:
        assert d.stop() == 0


async def test_stats_by_client_names_the_sdk_and_the_principal(home):
    d = start_daemon(home, token=OPERATOR, EXAI_SERVER_TOKENS=json.dumps({"alice": ALICE}))
    try:
        for token, calls in ((ALICE, 3), (OPERATOR, 1)):
            async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
                async with streamable_http_client(d.url, http_client=http) as (r, w):
                    async with ClientSession(r, w) as session:
                        await session.initialize()
                        for _ in range(calls):
                            assert structured(await session.call_tool("version", {}))["name"] == "exai"
    finally:
        assert d.stop() == 0
    out = run_exai(home, "stats", "--by-client", "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    sdk = f"{DEFAULT_CLIENT_INFO.name} {DEFAULT_CLIENT_INFO.version}"
    assert [(r["name"], r["calls"], r["errors"]) for r in stats["by_client"]] == [(sdk, 4, 0)]
    assert [(r["name"], r["calls"]) for r in stats["by_principal"]] == [("alice", 3), ("local", 1)]
    table = run_exai(home, "stats", "--by-client")
    assert table.returncode == 0 and sdk in table.stdout and "alice" in table.stdout
