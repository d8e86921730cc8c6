"""Fixtures for end-to-end tests: the exai binary, isolated data directories, daemons on free
ports, and the official MCP Python SDK as the client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def exai_bin() -> str:
    path = os.environ.get("EXAI_BIN")
    if path:
        return path
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug" / "exai")


# Variables a developer's shell may hold that would change what the server does.
_SCRUB_PREFIXES = ("EXAI_",)
_SCRUB = {
    "KIMI_API_KEY", "MOONSHOT_API_KEY", "KIMI_API_URL", "GLM_API_KEY", "ZHIPUAI_API_KEY",
    "GLM_API_URL", "OPENAI_API_KEY", "DEFAULT_MODEL", "WORKFLOW_TOOL_TIMEOUT_SECS",
    "SIMPLE_TOOL_TIMEOUT_SECS", "EXPERT_ANALYSIS_TIMEOUT_SECS", "MAX_MCP_OUTPUT_TOKENS",
    "DISABLED_TOOLS", "RUST_LOG", "LOG_LEVEL", "KIMI_BASE_URL", "GLM_BASE_URL", "ZHIPUAI_API_URL",
    "ZHIPUAI_BASE_URL", "CONVERSATION_TIMEOUT_HOURS",
}


def base_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith(_SCRUB_PREFIXES)}
    env["EXAI_HOME"] = str(home)
    env.update(extra)
    # The suite checks every tool, so it lists every tool; test_profiles.py covers the default
    # (lean) and the other profiles.
    env.setdefault("EXAI_TOOLS_PROFILE", "full")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body or b"{}")
        except json.JSONDecodeError:
            return e.code, {"raw": body.decode(errors="replace")}


def http_post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    h.update(headers or {})
    req = urllib.request.Request(url, data=body, headers=h, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(base: str, headers: dict[str, str] | None = None, limit: float = 15) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            status, _ = http_get(f"{base}/ready", headers, timeout=1)
            if status == 200:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{base}/ready did not answer")


class Daemon:
    def __init__(self, home: Path, port: int, proc: subprocess.Popen, token: str | None = None):
        self.home, self.port, self.proc, self.token = home, port, proc, token
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/mcp"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def start_daemon(home: Path, port: int | None = None, listen: str | None = None, token: str | None = None,
                 **env: str) -> Daemon:
    port = port or free_port()
    listen = listen or f"127.0.0.1:{port}"
    if token:
        env["EXAI_AUTH_TOKEN"] = token
    proc = subprocess.Popen(
        [exai_bin(), "daemon", "--listen", listen],
        env=base_env(home, **env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    d = Daemon(home, port, proc, token)
    try:
        wait_ready(d.base, d.headers)
    except TimeoutError:
        proc.kill()
        out, err = proc.communicate()
        raise RuntimeError(f"daemon did not start: {err.decode(errors='replace')}")
    return d


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "exai-home"
    h.mkdir()
    return h


@pytest.fixture
def daemon(home: Path):
    d = start_daemon(home, EXAI_TOOLS_DIAGNOSTICS="1")
    yield d
    if d.proc.poll() is None:
        d.proc.kill()
        d.proc.wait()


MOCK_KEY = "mock-key"


@pytest.fixture
def mock_llm(tmp_path):
    """The built-in mock provider (`exai mock-llm`, a real OpenAI-compatible HTTP server)
    requiring MOCK_KEY; yields its base URL."""
    proc = subprocess.Popen([exai_bin(), "mock-llm", "--api-key", MOCK_KEY], env=base_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = json.loads(proc.stdout.readline())["url"]
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def anyio_backend():
    return "asyncio"


KB_TOOLS = {"search_docs", "get_chunk", "get_document", "list_sources", "get_technologies", "get_categories", "resolve_library",
            "index_path", "job_status", "cancel_job", "remove_source"}
CORE_TOOLS = {"version", "health", "listmodels"}
AI_TOOLS = {"chat", "thinkdeep", "consensus", "challenge", "planner", "analyze", "codereview", "debug", "precommit",
            "refactor", "secaudit", "testgen", "tracer", "docgen", "list_threads", "glm_web_search",
            "kimi_chat_with_files"}


def structured(result) -> dict:
    """The structured JSON of a successful tool result."""
    assert not result.is_error, result
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


def run_exai(home: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run one exai command on the data directory `home`."""
    return subprocess.run([exai_bin(), *args], env=base_env(home, **env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def state_rows(home: Path, sql: str, *params) -> list[sqlite3.Row]:
    """Rows of a query on the data directory's state database (threads, validation runs)."""
    with contextlib.closing(sqlite3.connect(home / "state.sqlite")) as db:
        db.row_factory = sqlite3.Row
        return db.execute(sql, params).fetchall()


def activity(home: Path) -> list[dict]:
    path = home / "logs" / "activity.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


sys.path.insert(0, str(Path(__file__).parent))
