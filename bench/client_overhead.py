#!/usr/bin/env python3
"""Gateway overhead through the official MCP Python SDK: an MCP `chat` call through exai to the
built-in mock provider (`exai mock-llm`) against the same chat request sent to the mock
directly, and `version` for the protocol's own round trip, over Streamable HTTP (`exai daemon`)
and stdio (`exai serve`), at concurrency 1. Several exai binaries are measured side by side:
their paths are interleaved in rounds, so drift on a shared machine hits each alike.

For HTTP it also counts the TCP connections the client opened (sockets of the daemon's port
left in TIME-WAIT by the first `--probe` calls of each binary, read with `ss`): one per call
means the client could not keep its connection.

    ~/.cache/exai-ci/venv/bin/python bench/client_overhead.py \\
        --exai before=/path/to/old/exai --exai after=target/release/exai [--calls 2000] \\
        [--transport http,stdio]

Prints one JSON object per binary and transport (latencies in ms, p50 / p99, and the load
average at the start and end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

KEY = "k"
MODEL = "glm-4.6"


def env_for(home: Path, mock_url: str) -> dict[str, str]:
    """The settings the Rust benchmark (examples/gateway_overhead.rs) gives its servers."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "EXAI_HOME": str(home),
        "GLM_API_KEY": KEY,
        "GLM_API_URL": mock_url,
        "EXAI_PROVIDERS_MAX_CONCURRENT": "1000",
        "EXAI_PROVIDERS_MAX_CONCURRENT_PER_PROVIDER": "1000",
        "EXAI_PROVIDERS_MAX_CONCURRENT_PER_SESSION": "1000",
        "EXAI_THREADS_MAX_TURNS": "1000",
        "EXAI_EMBED_BACKEND": "none",
        # Every tool listed: the SDK lists the tools again before each call of one it has not
        # seen (to check its structured output), which would time `tools/list`, not `version`.
        "EXAI_TOOLS_PROFILE": "full",
    }


def prompt(i: int) -> str:
    return f"question number {i} about ownership and borrowing"


def percentile(sorted_ms: list[float], p: float) -> float:
    i = round((len(sorted_ms) - 1) * p)
    return sorted_ms[min(i, len(sorted_ms) - 1)]


def summary(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"p50": round(percentile(s, 0.5), 3), "p99": round(percentile(s, 0.99), 3)}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def time_wait(port: int) -> int:
    """Sockets of `port` in TIME-WAIT: each is a connection closed within the last minute."""
    out = subprocess.run(["ss", "-Htan", "state", "time-wait", f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Target:
    """One exai binary over one transport, with an open MCP session."""

    def __init__(self, label: str, exai: str, transport: str, home: Path, mock_url: str):
        self.label, self.exai, self.transport, self.home, self.mock_url = label, exai, transport, home, mock_url
        self.samples: dict[str, list[float]] = {"chat": [], "version": []}
        self.connections_per_call: float | None = None
        self.proc: subprocess.Popen | None = None
        self.stack = contextlib.AsyncExitStack()
        self.session: ClientSession | None = None
        self.port = 0

    async def open(self, probe: int) -> None:
        env = env_for(self.home, self.mock_url)
        if self.transport == "http":
            self.port = free_port()
            self.proc = subprocess.Popen([self.exai, "daemon", "--listen", f"127.0.0.1:{self.port}"], env=env,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=1) as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.exai} daemon not ready")
                await asyncio.sleep(0.05)
            streams = await self.stack.enter_async_context(
                streamable_http_client(f"http://127.0.0.1:{self.port}/mcp"))
        else:
            params = StdioServerParameters(command=self.exai, args=["serve"], env=env)
            streams = await self.stack.enter_async_context(stdio_client(params))
        read, write = streams[0], streams[1]
        self.session = await self.stack.enter_async_context(ClientSession(read, write))
        await self.session.initialize()
        if self.transport == "http":
            before = time_wait(self.port)
            for i in range(probe):
                await self.call("version", i)
            self.connections_per_call = round((time_wait(self.port) - before) / probe, 3)

    async def call(self, name: str, i: int) -> None:
        assert self.session is not None
        args = {"prompt": prompt(i), "model": MODEL} if name == "chat" else {}
        result = await self.session.call_tool(name, args)
        if result.is_error:
            raise RuntimeError(f"{name} failed: {result}")

    async def close(self) -> None:
        await self.stack.aclose()
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


async def direct(http: httpx2.AsyncClient, url: str, i: int) -> None:
    """The chat request exai sends to the provider for a call without a progress token (not
    streamed), sent to the mock directly; the system prompt is a stand-in of similar length."""
    body = {"model": MODEL, "stream": False,
            "messages": [{"role": "system", "content": "You are a careful assistant. " * 20},
                         {"role": "user", "content": prompt(i)}]}
    r = await http.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"})
    r.raise_for_status()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exai", action="append", required=True, help="LABEL=PATH, repeatable")
    ap.add_argument("--calls", type=int, default=2000, help="calls per path and binary")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--probe", type=int, default=200, help="calls counted for connections per call")
    ap.add_argument("--transport", default="http,stdio")
    args = ap.parse_args()
    binaries = [tuple(e.split("=", 1)) for e in args.exai]
    transports = [t.strip() for t in args.transport.split(",")]

    base = Path(tempfile.mkdtemp(prefix="exai-client-overhead-"))
    mock = subprocess.Popen([binaries[0][1], "mock-llm", "--api-key", KEY], env=env_for(base / "mock", ""),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    targets: list[Target] = []
    try:
        assert mock.stdout is not None
        mock_url = json.loads(mock.stdout.readline())["url"]
        targets += [Target(label, path, t, base / f"{label}-{t}", mock_url) for label, path in binaries for t in transports]
        for t in targets:
            t.home.mkdir(parents=True)
            await t.open(args.probe)
        direct_ms: list[float] = []
        load_start = loadavg()
        async with httpx2.AsyncClient() as http:
            url = f"{mock_url}/chat/completions"
            for i in range(200):  # warm every path
                await direct(http, url, i)
                for t in targets:
                    await t.call("chat", i)
                    await t.call("version", i)
            n = args.calls // args.rounds
            for r in range(args.rounds):
                for i in range(n):
                    t0 = time.perf_counter()
                    await direct(http, url, i)
                    direct_ms.append((time.perf_counter() - t0) * 1e3)
                for t in targets:
                    for name in ("chat", "version"):
                        for i in range(n):
                            t0 = time.perf_counter()
                            await t.call(name, r * n + i)
                            t.samples[name].append((time.perf_counter() - t0) * 1e3)
        load_end = loadavg()
        d = summary(direct_ms)
        for t in targets:
            chat, version = summary(t.samples["chat"]), summary(t.samples["version"])
            print(json.dumps({
                "client": "python mcp", "exai": t.label, "transport": t.transport, "calls": n * args.rounds,
                "direct_ms": d, "chat_ms": chat, "version_ms": version,
                "overhead_ms": {q: round(chat[q] - d[q], 3) for q in ("p50", "p99")},
                "connections_per_call": t.connections_per_call,
                "load_average": {"start": load_start, "end": load_end},
            }))
        # anyio's cancel scopes must be left in the reverse order of entering them.
        for t in reversed(targets):
            await t.close()
    finally:
        for t in targets:  # after a failure: no daemon is left behind
            if t.proc is not None and t.proc.poll() is None:
                t.proc.kill()
        mock.terminate()
        mock.wait(10)
        subprocess.run(["rm", "-rf", str(base)], check=False)


if __name__ == "__main__":
    asyncio.run(main())
