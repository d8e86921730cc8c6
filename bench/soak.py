#!/usr/bin/env python3
"""Load and soak: 50 concurrent MCP sessions against one `exai daemon` for `--minutes`, then 1,000
idle half-open sockets while `/health` must keep answering.

Set-up: a small knowledge base (the Rust Book's HTML, keyword-only) indexed with `exai index`,
the built-in mock provider (`exai mock-llm`) configured as both Kimi and GLM, and `exai daemon`
(release build) on a free loopback port, all in a fresh data directory.

Load: every session is a client of the official MCP Python SDK over Streamable HTTP. It opens an
MCP session, makes 5–30 calls with 0–250 ms of think time between them, closes the session and
opens the next, until the time is up. A call is `search_docs` (60 %), `chat` against the mock
(30 %, a third of them continuing the session's last thread) or `index_path` of the session's
own folder of eight small Markdown files, one of which changes before each call (10 %; the job is
followed with `job_status` to its end; `index_job` in the table is that whole wait). `--mix`
changes the shares, e.g. to find which kind of call memory grows with. Recorded: calls by tool and outcome, every error other than
a deliberate OVER_CAPACITY (a tool refusing with OVER_CAPACITY, or HTTP 503 to a new session
over `server.max_sessions`), latency percentiles per tool (client-side, successful calls), the
daemon's VmRSS, open file descriptors, CPU time and the knowledge base's WAL size at the start,
every minute and at the end (with the machine's load average), and the daemon's own error log
lines.

Idle sockets: 1,000 TCP connections to the daemon, half sending nothing, half a partial request
line, held open for `--idle-seconds` (longer than the default header-read timeout) while a fresh
`GET /health` is timed every 250 ms. Recorded: how many connected, how many the daemon closed and
when, the daemon's side of them by TCP state (from /proc/net/tcp: a client can believe itself
connected while the daemon never accepted it), /health latency percentiles and failures, the
daemon's fds.

Prints a readable table and a JSON summary (`--json FILE` writes it too). Exit status 0 when no
unexpected error happened, the daemon stayed up and every /health probe answered within
`--health-ms`; 1 otherwise; 2 when the set-up failed.

Usage: bench/soak.py [--minutes 10] [--sessions 50] [--idle-sockets 1000] [--idle-seconds 40]
                     [--mix search=60,chat=30,index=10] [--exai PATH] [--env KEY=VALUE ...]
                     [--seed S] [--json FILE]
(EXAI_BIN names the binary too; otherwise `cargo build --release --bin exai` runs first.)
Needs the `mcp` package (the e2e venv: ~/.cache/exai-ci/venv/bin/python bench/soak.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import random
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
KEY = "soak-mock-key"
MODELS = ["glm-4.6", "kimi-k2-0905-preview"]
QUERIES = [
    "ownership and borrowing", "lifetime elision rules", "Rc and RefCell interior mutability",
    "pattern matching with match", "error handling with Result and the question mark operator",
    "traits and generics", "closures capturing the environment", "iterators and iterator adaptors",
    "threads and message passing with channels", "Mutex and Arc shared state", "smart pointers Box",
    "unsafe Rust raw pointers", "macros with macro_rules", "cargo workspaces", "testing with cargo test",
    "slices and strings", "structs and method syntax", "enums and Option", "modules and paths",
    "async await futures", "HashMap entry API", "Deref coercion", "Drop trait cleanup",
    "reference cycles memory leaks", "object safety trait objects dyn",
]
PROMPTS = [
    "Review this approach to error handling.", "What is the difference between Box and Rc?",
    "Suggest a name for a function that parses dates.", "Summarise the trade-offs of async Rust.",
    "Is this lock ordering safe?", "Explain lifetimes in one paragraph.",
]
CALLS_TIMEOUT_S = 120


# ---------------------------------------------------------------------------------------------
# measurements


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def summary_ms(values: list[float]) -> dict[str, float | int | None]:
    r = lambda x: None if x is None else round(x, 2)  # noqa: E731
    return {"n": len(values), "p50": r(pct(values, 50)), "p95": r(pct(values, 95)), "p99": r(pct(values, 99)),
            "max": r(max(values) if values else None)}


def proc_sample(pid: int, label: str, t0: float, home: Path | None = None) -> dict[str, object]:
    """VmRSS, VmHWM (peak), threads and open file descriptors of `pid`, from /proc; with `home`,
    the size of the knowledge base's WAL too (it grows when checkpoints cannot keep up)."""
    out: dict[str, object] = {"at": label, "t_s": round(time.monotonic() - t0, 1)}
    if home is not None:
        with contextlib.suppress(OSError):
            out["kb_wal_mb"] = round((home / "kb.sqlite-wal").stat().st_size / 1e6, 1)
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key.lower() + "_mb"] = round(int(value.split()[0]) / 1024, 1)
            elif key == "Threads":
                out["threads"] = int(value)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
        # utime + stime, fields 14 and 15 of /proc/PID/stat (after the command's parenthesis).
        ticks = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
        out["cpu_s"] = round(sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK"), 1)
    except OSError as e:
        out["error"] = f"cannot read /proc/{pid}: {e}"
    # The machine's load: on a shared machine, latencies mean little without it.
    with contextlib.suppress(OSError):
        out["loadavg_1m"] = float(Path("/proc/loadavg").read_text().split()[0])
    return out


@dataclass
class Stats:
    calls: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)
    error_first_at: dict[str, float] = field(default_factory=dict)
    t0: float = field(default_factory=time.monotonic)

    def ok(self, tool: str, ms: float) -> None:
        self.calls[tool]["ok"] += 1
        self.latency_ms[tool].append(ms)

    def over_capacity(self, tool: str) -> None:
        self.calls[tool]["over_capacity"] += 1

    def error(self, tool: str, message: str) -> None:
        self.calls[tool]["error"] += 1
        key = f"{tool}: {' '.join(message.split())[:300]}"
        self.errors[key] += 1
        self.error_first_at.setdefault(key, round(time.monotonic() - self.t0, 1))


# ---------------------------------------------------------------------------------------------
# processes


def scrubbed_env(home: Path, **extra: str) -> dict[str, str]:
    drop = {"KIMI_API_KEY", "MOONSHOT_API_KEY", "KIMI_API_URL", "GLM_API_KEY", "ZHIPUAI_API_KEY", "GLM_API_URL",
            "OPENAI_API_KEY", "OPENROUTER_API_KEY", "DEFAULT_MODEL", "RUST_LOG"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("EXAI_")}
    env["EXAI_HOME"] = str(home)
    env["EXAI_EMBED_BACKEND"] = "none"  # keyword-only: no model to find or download
    # The load calls index_path and job_status, which the lean default does not list (the SDK
    # would warn on every call that it cannot check their structured answers).
    env["EXAI_TOOLS_PROFILE"] = "full"
    env.update(extra)
    return env


def find_exe(given: str | None) -> str:
    exe = given or os.environ.get("EXAI_BIN")
    if exe:
        return exe
    print("building: cargo build --release --bin exai", flush=True)
    subprocess.run(["cargo", "build", "--release", "--bin", "exai"], cwd=ROOT, check=True)
    return str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "exai")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float) -> tuple[int | None, float, str]:
    """One fresh connection, one request: (status or None, milliseconds, error)."""
    t = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.001, timeout - (time.perf_counter() - t)))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        ms = (time.perf_counter() - t) * 1000
        parts = data.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return None, ms, f"no HTTP status line: {data[:80]!r}"
        return int(parts[1]), ms, ""
    except OSError as e:
        return None, (time.perf_counter() - t) * 1000, f"{type(e).__name__}: {e}"


class SetupError(Exception):
    pass


@dataclass
class Services:
    exe: str
    home: Path
    port: int
    daemon: subprocess.Popen
    mock: subprocess.Popen
    daemon_log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> int | None:
        """SIGTERM to both; the daemon's exit status."""
        for p in (self.daemon, self.mock):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        return self.daemon.returncode


def start(exe: str, work: Path, corpus: Path, jobs_dir: Path, extra_env: dict[str, str]) -> Services:
    home = work / "home"
    home.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    p = subprocess.run([exe, "index", str(corpus), "--source", "book", "--technology", "rust", "--include", "*.html",
                        "--no-embed", "--json"], env=scrubbed_env(home), capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise SetupError(f"exai index failed: {p.stderr.strip()[-800:]}")
    report = json.loads(p.stdout)
    print(f"knowledge base: {report['added']} documents, {report['chunks_written']} chunks of {corpus} "
          f"({time.monotonic() - t:.1f} s)")

    mock = subprocess.Popen([exe, "mock-llm", "--api-key", KEY], env=scrubbed_env(home), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=(work / "mock.log").open("wb"), text=True)
    line = mock.stdout.readline() if mock.stdout else ""
    try:
        mock_url = json.loads(line)["url"]
    except (json.JSONDecodeError, KeyError, TypeError):
        mock.kill()
        raise SetupError(f"exai mock-llm did not print its address (got {line!r})")
    # Nothing reads its stdout again; a full pipe must never stall it.
    if mock.stdout:
        mock.stdout.close()

    port = free_port()
    env = scrubbed_env(home, KIMI_API_KEY=KEY, KIMI_API_URL=mock_url, GLM_API_KEY=KEY, GLM_API_URL=mock_url,
                       EXAI_TOOLS_ALLOWED_ROOTS=str(jobs_dir), **extra_env)
    log = work / "daemon.log"
    daemon = subprocess.Popen([exe, "daemon", "--listen", f"127.0.0.1:{port}"], env=env, stdin=subprocess.DEVNULL,
                              stdout=log.open("wb"), stderr=subprocess.STDOUT)
    s = Services(exe, home, port, daemon, mock, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            break
        status, _, _ = http_get(port, "/ready", 1)
        if status == 200:
            return s
        time.sleep(0.05)
    s.stop()
    raise SetupError(f"exai daemon did not become ready: {log.read_text()[-800:]}")


# ---------------------------------------------------------------------------------------------
# the load


def tool_error(result) -> tuple[bool, str]:
    """(is OVER_CAPACITY, message) of a tool result flagged as an error."""
    text = " ".join(getattr(c, "text", "") for c in result.content)
    kind = (result.structured_content or {}).get("error") if isinstance(result.structured_content, dict) else None
    return kind == "OVER_CAPACITY" or text.startswith("OVER_CAPACITY"), text or str(result.structured_content)


def structured(result) -> dict:
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(result.content[0].text)


@dataclass
class Load:
    url: str
    jobs_dir: Path
    deadline: float
    stats: Stats
    seed: str
    mix: dict[str, float]
    sessions_opened: int = 0
    sessions_refused: int = 0
    jobs_ms: list[float] = field(default_factory=list)

    async def call(self, s: ClientSession, tool: str, args: dict) -> object | None:
        t = time.perf_counter()
        try:
            with anyio.fail_after(CALLS_TIMEOUT_S):
                result = await s.call_tool(tool, args)
        except TimeoutError:
            self.stats.error(tool, f"no answer within {CALLS_TIMEOUT_S} s")
            return None
        except MCPError as e:
            self.stats.error(tool, f"MCP error {e.code}: {e.message}")
            return None
        ms = (time.perf_counter() - t) * 1000
        if result.is_error:
            over, message = tool_error(result)
            if over:
                self.stats.over_capacity(tool)
            else:
                self.stats.error(tool, message)
            return None
        self.stats.ok(tool, ms)
        return result

    async def index_job(self, s: ClientSession, worker: int, rng: random.Random, n: int) -> None:
        folder = self.jobs_dir / f"w{worker:02d}"
        page = folder / f"page-{n % 8}.md"
        page.write_text(f"# Page {n % 8} of worker {worker}\n\nRevision {n}: {rng.choice(QUERIES)}.\n\n"
                        + "\n".join(f"- {rng.choice(QUERIES)}" for _ in range(rng.randint(3, 30))) + "\n")
        t = time.perf_counter()
        result = await self.call(s, "index_path", {"path": str(folder), "source": f"soak-w{worker:02d}",
                                                   "wait_secs": 20})
        if result is None:
            return
        status = structured(result)
        job_deadline = time.monotonic() + CALLS_TIMEOUT_S
        while status.get("state") == "running" and time.monotonic() < job_deadline:
            await anyio.sleep(0.5)
            polled = await self.call(s, "job_status", {"job_id": status["job_id"]})
            if polled is None:
                return
            status = structured(polled)
        if status.get("state") != "done":
            self.stats.error("index_job", f"job ended {status.get('state')}: {status.get('error', '')}")
        else:
            self.jobs_ms.append((time.perf_counter() - t) * 1000)

    async def session(self, worker: int, rng: random.Random, calls: int, counter: list[int]) -> None:
        statuses: list[int] = []

        async def on_response(response: httpx2.Response) -> None:
            statuses.append(response.status_code)

        async with httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=300),
                                      event_hooks={"response": [on_response]}) as http:
            async with streamable_http_client(self.url, http_client=http) as (read, write):
                async with ClientSession(read, write) as s:
                    t = time.perf_counter()
                    try:
                        with anyio.fail_after(30):
                            await s.initialize()
                    except (MCPError, TimeoutError) as e:
                        if 503 in statuses:
                            self.sessions_refused += 1
                            self.stats.over_capacity("initialize")
                            await anyio.sleep(rng.uniform(0.5, 1.5))
                        else:
                            self.stats.error("initialize", f"{type(e).__name__}: {e} (HTTP {statuses})")
                        return
                    self.sessions_opened += 1
                    self.stats.ok("initialize", (time.perf_counter() - t) * 1000)
                    thread: tuple[str, int] | None = None
                    for _ in range(calls):
                        if time.monotonic() >= self.deadline:
                            return
                        kind = rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
                        if kind == "search":
                            await self.call(s, "search_docs", {"query": rng.choice(QUERIES),
                                                               "limit": rng.randint(3, 10)})
                        elif kind == "chat":
                            args = {"prompt": f"{rng.choice(PROMPTS)} (worker {worker})", "model": rng.choice(MODELS)}
                            if thread and thread[1] < 4 and rng.random() < 1 / 3:
                                args["continuation_id"] = thread[0]
                            result = await self.call(s, "chat", args)
                            if result is not None:
                                cid = structured(result).get("continuation_id")
                                thread = (cid, (thread[1] + 1) if thread and thread[0] == cid else 1)
                        else:
                            counter[0] += 1
                            await self.index_job(s, worker, rng, counter[0])
                        await anyio.sleep(rng.uniform(0, 0.25))

    async def worker(self, worker: int) -> None:
        rng = random.Random(f"{self.seed}:{worker}")
        folder = self.jobs_dir / f"w{worker:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(8):
            (folder / f"page-{n}.md").write_text(f"# Page {n} of worker {worker}\n\n{rng.choice(QUERIES)}\n")
        counter = [0]
        # Start staggered over a second, as clients connecting independently would.
        await anyio.sleep(rng.uniform(0, 1))
        while time.monotonic() < self.deadline:
            try:
                await self.session(worker, rng, rng.randint(5, 30), counter)
            except Exception as e:  # noqa: BLE001 — any failure of a session is a finding, recorded
                self.stats.error("session", f"{type(e).__name__}: {e}")
                await anyio.sleep(1)


async def run_load(svc: Services, args, stats: Stats, samples: list[dict]) -> Load:
    load = Load(svc.url, svc.home.parent / "jobs", time.monotonic() + args.minutes * 60, stats, args.seed, args.mix)

    async def sampler() -> None:
        minute = 0
        while time.monotonic() < load.deadline:
            await anyio.sleep(min(60.0, max(0.0, load.deadline - time.monotonic())))
            if time.monotonic() >= load.deadline:
                break
            minute += 1
            sample = proc_sample(svc.daemon.pid, f"minute {minute}", stats.t0, svc.home)
            calls = sum(sum(c.values()) for c in stats.calls.values())
            sample["calls_so_far"] = calls
            samples.append(sample)
            print(f"  minute {minute}: {calls} calls, {sum(stats.errors.values())} errors, "
                  f"RSS {sample.get('vmrss_mb')} MB, {sample.get('fds')} fds, "
                  f"WAL {sample.get('kb_wal_mb')} MB", flush=True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(sampler)
        for w in range(args.sessions):
            tg.start_soon(load.worker, w)
    return load


# ---------------------------------------------------------------------------------------------
# idle half-open sockets


TCP_STATES = {"01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1", "05": "fin_wait2",
              "06": "time_wait", "07": "close", "08": "close_wait", "09": "last_ack", "0A": "listen", "0B": "closing"}


def server_tcp_states(port: int) -> dict[str, int]:
    """The daemon's side of the connections to `port`, by TCP state, from /proc/net/tcp: what
    the kernel holds for it, whatever the clients believe (a client's socket can read as
    connected while the server side never left SYN_RECV, or is already gone)."""
    states: Counter = Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 3 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    states[TCP_STATES.get(fields[3], fields[3])] += 1
    states.pop("listen", None)
    return dict(states)


def idle_sockets(port: int, pid: int, n: int, seconds: float, health_ms: float, t0: float) -> dict[str, object]:
    """Hold `n` connections that never finish a request while /health is timed."""
    sel = selectors.DefaultSelector()
    connect_failed: Counter = Counter()
    opened_at = time.monotonic()
    pending: dict[int, socket.socket] = {}
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            connect_failed[errno.errorcode.get(err, str(err))] += 1
            s.close()
            continue
        pending[i] = s
        sel.register(s, selectors.EVENT_WRITE, i)
    # Wait for the handshakes; then half of them send the start of a request and stop there.
    connected: dict[int, socket.socket] = {}
    deadline = time.monotonic() + 10
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = pending.pop(key.data)
            sel.unregister(s)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                connect_failed[errno.errorcode.get(err, str(err))] += 1
                s.close()
                continue
            connected[key.data] = s
            if key.data % 2 == 1:
                with contextlib.suppress(OSError):
                    s.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1")
    for s in pending.values():
        connect_failed["handshake not completed in 10 s"] += 1
        sel.unregister(s)
        s.close()
    # From here on a socket turning readable means the daemon answered or closed it.
    for i, s in connected.items():
        sel.register(s, selectors.EVENT_READ, i)
    ready_s = time.monotonic() - opened_at
    server_side_at_open = server_tcp_states(port)
    print(f"  {len(connected)} idle connections open ({ready_s:.1f} s to open); probing /health for {seconds:.0f} s",
          flush=True)

    closed_by_server: list[float] = []
    answered: Counter = Counter()
    probes: list[float] = []
    failures: Counter = Counter()
    slow = 0
    fds_peak = 0
    start = time.monotonic()
    next_sample = start
    while time.monotonic() - start < seconds:
        status, ms, err = http_get(port, "/health", max(5.0, health_ms / 1000 * 10))
        if status == 200:
            probes.append(ms)
            if ms > health_ms:
                slow += 1
        else:
            failures[err or f"HTTP {status}"] += 1
        if time.monotonic() >= next_sample:
            fds_peak = max(fds_peak, int(proc_sample(pid, "", t0).get("fds", 0)))
            next_sample += 2
        # Connections the daemon gave up on read as end-of-file (or a reset).
        end = time.monotonic() + 0.25
        while (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(timeout=left):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if data:
                    # An answer to a request that never finished (e.g. 408): noted, then the
                    # socket is watched for its close as before.
                    answered[data.split(b"\r\n", 1)[0].decode(errors="replace")[:60]] += 1
                    continue
                closed_by_server.append(time.monotonic() - start)
                sel.unregister(s)
                s.close()
    still_open = len(sel.get_map())
    server_side_at_end = server_tcp_states(port)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return {
        "requested": n,
        "connected": len(connected),
        "connect_failures": dict(connect_failed),
        "held_seconds": round(seconds, 1),
        "closed_by_daemon": len(closed_by_server),
        "answers_to_partial_requests": dict(answered),
        "closed_by_daemon_after_ms": summary_ms([x * 1000 for x in closed_by_server]) if closed_by_server else None,
        "still_open_at_end": still_open,
        "server_side_tcp_states_after_opening": server_side_at_open,
        "server_side_tcp_states_at_end": server_side_at_end,
        "daemon_fds_peak": fds_peak,
        "health_probes": len(probes) + sum(failures.values()),
        "health_ok": len(probes),
        "health_failures": dict(failures),
        "health_slower_than_ms": {"threshold": health_ms, "count": slow},
        "health_latency_ms": summary_ms(probes),
    }


# ---------------------------------------------------------------------------------------------
# report


def daemon_error_lines(svc: Services) -> list[str]:
    p = subprocess.run([svc.exe, "logs", "--errors", "--log", "--json", "-n", "100000"],
                       env=scrubbed_env(svc.home), capture_output=True, text=True, timeout=120)
    lines = []
    for line in p.stdout.splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            e = json.loads(line)
            lines.append(" ".join(str(e.get(k, "")) for k in ("level", "message", "fields") if e.get(k))[:300])
    return lines


def print_table(summary: dict) -> None:
    print("\n== calls (latency: successful calls, client-side, ms)")
    print(f"{'tool':<14}{'calls':>8}{'ok':>8}{'over cap':>10}{'errors':>8}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for tool, row in summary["tools"].items():
        lat = row["latency_ms"]
        f = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
        print(f"{tool:<14}{row['calls']:>8}{row['ok']:>8}{row['over_capacity']:>10}{row['error']:>8}"
              f"{f(lat['p50']):>9}{f(lat['p95']):>9}{f(lat['p99']):>9}{f(lat['max']):>9}")
    print(f"sessions opened {summary['sessions_opened']}, refused over the cap {summary['sessions_refused']}; "
          f"{summary['calls_per_second']:.1f} calls/s over {summary['load_seconds']:.0f} s")
    if summary["unexpected_errors"]:
        print("\n== unexpected errors (count, first seen at s)")
        for e in summary["unexpected_errors"]:
            print(f"  {e['count']:>6}  {e['first_at_s']:>7}  {e['message']}")
    print(f"\ndaemon error log lines: {summary['daemon_error_log_lines']}")
    for line in summary["daemon_error_log_sample"]:
        print(f"  {line}")
    print("\n== daemon process")
    print(f"{'at':<16}{'t (s)':>8}{'RSS MB':>9}{'peak MB':>9}{'fds':>6}{'threads':>9}{'WAL MB':>8}{'CPU s':>8}"
          f"{'load 1m':>9}")
    for s in summary["daemon_samples"]:
        print(f"{s['at']:<16}{s['t_s']:>8}{s.get('vmrss_mb', '-'):>9}{s.get('vmhwm_mb', '-'):>9}"
              f"{s.get('fds', '-'):>6}{s.get('threads', '-'):>9}{s.get('kb_wal_mb', '-'):>8}{s.get('cpu_s', '-'):>8}"
              f"{s.get('loadavg_1m', '-'):>9}")
    idle = summary.get("idle_sockets")
    if idle:
        lat = idle["health_latency_ms"]
        print("\n== idle half-open sockets")
        print(f"connected {idle['connected']}/{idle['requested']} (failures {idle['connect_failures'] or 'none'}), "
              f"held {idle['held_seconds']} s; closed by the daemon: {idle['closed_by_daemon']}, "
              f"still open at the end (client's view): {idle['still_open_at_end']}; daemon fds peak "
              f"{idle['daemon_fds_peak']}")
        print(f"daemon side, by TCP state: after opening {idle['server_side_tcp_states_after_opening']}, "
              f"at the end {idle['server_side_tcp_states_at_end']}")
        print(f"/health: {idle['health_ok']}/{idle['health_probes']} answered 200; latency ms p50 {lat['p50']} "
              f"p95 {lat['p95']} p99 {lat['p99']} max {lat['max']}; slower than "
              f"{idle['health_slower_than_ms']['threshold']:.0f} ms: {idle['health_slower_than_ms']['count']}; "
              f"failures {idle['health_failures'] or 'none'}")
    print(f"\ndaemon exit status after SIGTERM: {summary['daemon_exit']}")
    print(f"verdict: {'PASS' if summary['pass'] else 'FAIL'} ({'; '.join(summary['verdict']) or 'all checks held'})")


def measure(svc: Services, args, stats: Stats, samples: list[dict]):
    """The load, then the idle sockets, then the daemon's own account."""
    load_started = time.monotonic()
    load = anyio.run(run_load, svc, args, stats, samples)
    load_seconds = time.monotonic() - load_started
    time.sleep(2)  # sessions closing
    samples.append(proc_sample(svc.daemon.pid, "end of load", stats.t0, svc.home))
    alive_after_load = svc.daemon.poll() is None
    idle = None
    if args.idle_sockets > 0 and alive_after_load:
        idle = idle_sockets(svc.port, svc.daemon.pid, args.idle_sockets, args.idle_seconds, args.health_ms, stats.t0)
        time.sleep(1)
        samples.append(proc_sample(svc.daemon.pid, "after idle", stats.t0, svc.home))
    alive_at_end = svc.daemon.poll() is None
    ready_status, _, _ = http_get(svc.port, "/ready", 5) if alive_at_end else (None, 0, "")
    return load, load_seconds, idle, alive_after_load, alive_at_end, ready_status, daemon_error_lines(svc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--idle-sockets", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=40)
    ap.add_argument("--health-ms", type=float, default=1000, help="a /health answer slower than this fails the run")
    ap.add_argument("--exai", help="exai binary (default: EXAI_BIN, else a fresh release build)")
    ap.add_argument("--corpus", help="HTML docs to search (default: the toolchain's Rust Book)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the daemon, e.g. EXAI_SERVER_MAX_SESSIONS=40")
    ap.add_argument("--mix", default="search=60,chat=30,index=10",
                    help="relative weights of search_docs, chat and index_path calls")
    ap.add_argument("--seed", default=None)
    ap.add_argument("--work", help="working directory (default: a new temporary one, removed at the end)")
    ap.add_argument("--json", dest="json_out", help="also write the JSON summary to this file")
    args = ap.parse_args()
    args.seed = args.seed or f"{random.SystemRandom().randrange(10**9):09d}"
    extra_env = dict(e.split("=", 1) for e in args.env)
    try:
        args.mix = {k.strip(): float(v) for k, v in (part.split("=", 1) for part in args.mix.split(","))}
    except ValueError:
        ap.error("--mix takes weights like search=60,chat=30,index=10")
    if not set(args.mix) <= {"search", "chat", "index"} or sum(args.mix.values()) <= 0:
        ap.error("--mix names search, chat and index, with a positive total weight")

    # Each idle socket is a descriptor here and one in the daemon (which inherits this limit).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.idle_sockets + 4 * args.sessions + 512
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    try:
        exe = find_exe(args.exai)
        corpus = Path(args.corpus) if args.corpus else Path(subprocess.run(
            ["rustc", "--print", "sysroot"], capture_output=True, text=True, check=True).stdout.strip()
        ) / "share" / "doc" / "rust" / "html" / "book"
        if not corpus.is_dir():
            raise SetupError(f"{corpus} is missing (rustup component add rust-docs, or --corpus DIR)")
        work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="exai-soak-"))
        jobs_dir = work / "jobs"
        jobs_dir.mkdir(parents=True, exist_ok=True)
        print(f"exai: {exe}\nseed: {args.seed}\nwork: {work}")
        svc = start(exe, work, corpus, jobs_dir, extra_env)
    except (SetupError, subprocess.CalledProcessError, OSError) as e:
        print(f"set-up failed: {e}", file=sys.stderr)
        return 2

    stats = Stats()
    samples = [proc_sample(svc.daemon.pid, "start", stats.t0, svc.home)]
    print(f"daemon pid {svc.daemon.pid} on port {svc.port}; {args.sessions} sessions for {args.minutes:g} min",
          flush=True)
    try:
        measured = measure(svc, args, stats, samples)
    except KeyboardInterrupt:
        return 1
    finally:
        # Whatever happened, the daemon and the mock end with this script.
        daemon_exit = svc.stop()
    load, load_seconds, idle, alive_after_load, alive_at_end, ready_status, error_lines = measured

    tools = {}
    for tool in sorted(stats.calls):
        c = stats.calls[tool]
        tools[tool] = {"calls": sum(c.values()), "ok": c["ok"], "over_capacity": c["over_capacity"],
                       "error": c["error"], "latency_ms": summary_ms(stats.latency_ms[tool])}
    if load.jobs_ms:
        tools.setdefault("index_job", {"calls": 0, "ok": 0, "over_capacity": 0, "error": 0})
        tools["index_job"].update(calls=tools["index_job"]["calls"] + len(load.jobs_ms),
                                  ok=tools["index_job"]["ok"] + len(load.jobs_ms),
                                  latency_ms=summary_ms(load.jobs_ms))
    unexpected = [{"message": m, "count": n, "first_at_s": stats.error_first_at[m]}
                  for m, n in stats.errors.most_common()]
    total_calls = sum(t["calls"] for name, t in tools.items() if name not in ("index_job",))
    verdict = []
    if unexpected:
        verdict.append(f"{sum(stats.errors.values())} unexpected errors")
    if not alive_after_load or not alive_at_end:
        verdict.append("the daemon died")
    elif ready_status != 200:
        verdict.append(f"/ready answered {ready_status} at the end")
    if idle and (idle["health_failures"] or idle["health_slower_than_ms"]["count"]):
        verdict.append(f"/health failed {sum(idle['health_failures'].values())} times and was slower than "
                       f"{args.health_ms:.0f} ms {idle['health_slower_than_ms']['count']} times under idle sockets")
    summary = {
        "seed": args.seed,
        "exai": exe,
        "sessions": args.sessions,
        "minutes": args.minutes,
        "mix": args.mix,
        "daemon_env": extra_env,
        "load_seconds": round(load_seconds, 1),
        "calls_per_second": total_calls / load_seconds if load_seconds else 0,
        "sessions_opened": load.sessions_opened,
        "sessions_refused": load.sessions_refused,
        "tools": tools,
        "unexpected_errors": unexpected,
        "daemon_error_log_lines": len(error_lines),
        "daemon_error_log_sample": error_lines[:10],
        "daemon_samples": samples,
        "idle_sockets": idle,
        "daemon_exit": daemon_exit,
        "verdict": verdict,
        "pass": not verdict,
    }
    print_table(summary)
    print("\n" + json.dumps(summary, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2) + "\n")
    if summary["pass"] and not args.work:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"\nkept: {work} (daemon log: {svc.daemon_log})")
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
