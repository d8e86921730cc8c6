"""Configuration reload (`exai daemon reload`, SIGHUP) under live MCP sessions, with the official
Python SDK: a rotated provider key and rotated bearer tokens take effect in the session that was
already open; an invalid configuration is refused and the daemon keeps serving with the one it
had; settings that need a restart are named, not applied."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import (MOCK_KEY, Daemon, base_env, exai_bin, free_port, http_get, run_exai, start_daemon, structured,
                      wait_ready)
from test_ai import mock_requests

pytestmark = pytest.mark.anyio

OLD_KEY = "revoked-provider-key"


def write_env(home: Path, **settings: str) -> None:
    """The data directory's `.env`: what a reload reads again (the daemon's own environment
    cannot change under it)."""
    (home / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))


def provider_settings(url: str, key: str) -> dict[str, str]:
    return dict(KIMI_API_KEY=key, KIMI_API_URL=url, GLM_API_KEY=key, GLM_API_URL=url)


def reload(home: Path):
    return run_exai(home, "daemon", "reload", timeout=60)


def health(d) -> dict:
    status, body = http_get(f"{d.base}/health", d.headers)
    assert status == 200, body
    return body


def wait_for_reload(d, attempt: int, limit: float = 15) -> dict:
    """/health once the daemon has answered its `attempt`-th reload."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, body = http_get(f"{d.base}/health", d.headers)
        if status == 200 and body.get("last_reload", {}).get("attempt", 0) >= attempt:
            return body
        time.sleep(0.05)
    raise TimeoutError(f"no answer to reload {attempt}")


def start_with_token_in_env_file(home: Path, token: str, **env: str) -> Daemon:
    """A daemon whose bearer token is in the data directory's `.env` (so a reload can rotate it)
    rather than in its environment, as `start_daemon(token=…)` puts it."""
    port = free_port()
    proc = subprocess.Popen([exai_bin(), "daemon", "--listen", f"127.0.0.1:{port}"], env=base_env(home, **env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    d = Daemon(home, port, proc, token)
    try:
        wait_ready(d.base, d.headers)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"daemon did not start: {proc.communicate()[1].decode(errors='replace')}")
    return d


def log_text(home: Path) -> str:
    return (home / "logs" / "exai.log").read_text()


async def chat(session: ClientSession, prompt: str):
    return await session.call_tool("chat", {"prompt": prompt, "model": "glm-4.6"})


async def test_reload_rotates_the_provider_key_in_a_live_session(home, mock_llm):
    write_env(home, **provider_settings(mock_llm, OLD_KEY))
    d = start_daemon(home)
    try:
        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                refused = await chat(session, "with the revoked key")
                assert refused.is_error, refused
                assert mock_requests(mock_llm)[-1]["authorized"] is False

                write_env(home, **provider_settings(mock_llm, MOCK_KEY))
                done = reload(home)
                assert done.returncode == 0, done.stderr
                assert "providers.glm_api_key" in done.stdout and "providers.kimi_api_key" in done.stdout
                assert "restart" not in done.stdout

                answer = structured(await chat(session, "with the new key"))
                assert answer["content"].startswith("mock answer from glm-4.6")
                assert mock_requests(mock_llm)[-1]["authorized"] is True

                # A setting of the listener is named as needing a restart, and not applied.
                write_env(home, **provider_settings(mock_llm, MOCK_KEY), EXAI_SERVER_MAX_SESSIONS="10")
                done = reload(home)
                assert done.returncode == 0, done.stderr
                assert "needs a restart" in done.stdout and "server.max_sessions" in done.stdout
                as_json = json.loads(run_exai(home, "daemon", "reload", "--json").stdout)
                assert as_json["accepted"] and as_json["restart_needed"] == ["server.max_sessions"]
                assert as_json["applied"] == []
                h = health(d)
                assert h["http"]["max_sessions"] == 256
                assert h["last_reload"]["restart_needed"] == ["server.max_sessions"]
                assert structured(await chat(session, "still here"))["provider"] == "glm"
        log = log_text(home)
        assert "configuration reloaded" in log and "server.max_sessions" in log
        assert MOCK_KEY not in log and OLD_KEY not in log
        assert MOCK_KEY not in (home / "reload.json").read_text()
    finally:
        assert d.stop() == 0


async def test_an_invalid_configuration_is_refused_and_the_old_one_kept(home, mock_llm):
    write_env(home, **provider_settings(mock_llm, MOCK_KEY))
    d = start_daemon(home)
    try:
        async with streamable_http_client(d.url) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                assert not (await chat(session, "before")).is_error
                # One bad value refuses the whole file, the rotated key with it.
                write_env(home, **provider_settings(mock_llm, OLD_KEY), EXAI_SERVER_MAX_SESSIONS="0")
                refused = reload(home)
                assert refused.returncode == 2, (refused.stdout, refused.stderr)
                assert "refused" in refused.stderr and "server.max_sessions" in refused.stderr
                assert d.proc.poll() is None
                answer = structured(await chat(session, "after the refused reload"))
                assert answer["content"].startswith("mock answer from glm-4.6")
                assert mock_requests(mock_llm)[-1]["authorized"] is True
        h = health(d)
        assert h["last_reload"]["accepted"] is False and "server.max_sessions" in h["last_reload"]["error"]
        assert "configuration reload refused" in log_text(home)
        # `exai daemon reload` reported a configuration it could not load itself, where every
        # other command stops at it.
        assert run_exai(home, "config", "check").returncode == 2
        write_env(home, **provider_settings(mock_llm, MOCK_KEY))
        checks = json.loads(run_exai(home, "health", "--json").stdout)["checks"]
        reload_check = next(c for c in checks if c["name"] == "config_reload")
        assert reload_check["status"] == "warn" and "refused" in reload_check["detail"]
    finally:
        assert d.stop() == 0


async def test_sighup_rotates_tokens_without_dropping_the_session(home):
    alice_old, alice_new = "alice-token-old-0123456789", "alice-token-new-0123456789"
    write_env(home, EXAI_SERVER_TOKENS=f"'{json.dumps({'alice': alice_old})}'")
    d = start_with_token_in_env_file(home, alice_old, EXAI_TOOLS_DIAGNOSTICS="1")
    async with create_mcp_http_client(headers=d.headers) as http:
        async with streamable_http_client(d.url, http_client=http) as (r, w):
            async with ClientSession(r, w) as session:
                await session.initialize()
                assert structured(await session.call_tool("ping", {"message": "one"}))["pong"] == "one"

                write_env(home, EXAI_SERVER_TOKENS=f"'{json.dumps({'alice': alice_new})}'")
                os.kill(d.proc.pid, signal.SIGHUP)
                d.token = alice_new
                h = wait_for_reload(d, 1)
                assert h["last_reload"]["accepted"] and h["last_reload"]["applied"] == ["server.tokens"]
                assert http_get(f"{d.base}/health", {"Authorization": f"Bearer {alice_old}"})[0] == 401

                # The same session, now with alice's new token: its principal is still alice.
                http.headers["Authorization"] = f"Bearer {alice_new}"
                assert structured(await session.call_tool("ping", {"message": "two"}))["pong"] == "two"

                # SIGHUP with an invalid file: refused, the daemon and the session carry on.
                write_env(home, EXAI_SERVER_TOKENS="'not json'")
                os.kill(d.proc.pid, signal.SIGHUP)
                h = wait_for_reload(d, 2)
                assert h["last_reload"]["accepted"] is False and "server.tokens" in h["last_reload"]["error"]
                assert structured(await session.call_tool("ping", {"message": "three"}))["pong"] == "three"
    try:
        assert d.proc.poll() is None
        log = log_text(home)
        assert "SIGHUP received" in log and "configuration reload refused" in log
        assert alice_old not in log and alice_new not in log
    finally:
        assert d.stop() == 0


def test_reload_without_a_daemon_says_so(home):
    out = reload(home)
    assert out.returncode == 1 and "no exai daemon is running" in out.stderr
