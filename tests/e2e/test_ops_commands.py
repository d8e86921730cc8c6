"""Operator commands end to end on real data directories: `daemon stop --force` on a hung daemon
and on a pid file naming another process, `models --json` against the `listmodels` tool,
`service install --user` checked by `systemd-analyze verify`, and `upgrade` to a binary whose
daemon cannot start (rolled back) and to a good one (kept, then `--rollback`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import base_env, exai_bin, free_port, http_get, run_exai, start_daemon, structured

pytestmark = pytest.mark.anyio


def pid_record(home: Path) -> dict | None:
    path = home / "exai.pid"
    return json.loads(path.read_text()) if path.exists() else None


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(") ", 1)[1].startswith("Z")


def test_stop_force_kills_a_daemon_that_ignores_sigterm(home):
    d = start_daemon(home, EXAI_EMBED_BACKEND="none")
    try:
        assert pid_record(home)["pid"] == d.proc.pid
        # A stopped process takes no signal but SIGKILL: a daemon hung for good.
        os.kill(d.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        out = run_exai(home, "daemon", "stop", "--force")
        assert out.returncode == 0, out.stderr
        assert "SIGKILL" in out.stdout and str(d.proc.pid) in out.stdout, out.stdout
        assert time.monotonic() - started < 15
        assert d.proc.wait(10) == -signal.SIGKILL
        assert pid_record(home) is None
        assert run_exai(home, "daemon", "status").returncode == 1
    finally:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def test_stop_force_on_a_live_daemon_stops_it_gracefully(home):
    d = start_daemon(home, EXAI_EMBED_BACKEND="none")
    out = run_exai(home, "daemon", "stop", "--force")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"stopped daemon pid {d.proc.pid}"), out.stdout
    assert d.proc.wait(10) == 0
    assert pid_record(home) is None


@pytest.mark.parametrize("started_at", ["2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z"])
def test_a_pid_file_naming_another_process_is_refused_and_the_process_survives(home, started_at):
    other = subprocess.Popen(["sleep", "300"])
    try:
        (home / "exai.pid").write_text(json.dumps(
            {"pid": other.pid, "listen": "127.0.0.1:1", "started_at": started_at, "version": "0.1.0"}))
        out = run_exai(home, "daemon", "stop", "--force")
        assert out.returncode == 1
        assert "not signalled" in out.stderr and "sleep 300" in out.stderr, out.stderr
        time.sleep(0.3)
        assert other.poll() is None, "the other process was killed"
        assert pid_record(home) is None, "the stale pid file stays"
    finally:
        other.kill()
        other.wait()


def test_a_pid_file_recycled_to_a_later_exai_daemon_is_refused(home, tmp_path):
    """The same binary running `daemon` for another data directory, started after the record."""
    other_home = tmp_path / "other"
    other_home.mkdir()
    other = start_daemon(other_home, EXAI_EMBED_BACKEND="none")
    try:
        record = pid_record(other_home)
        record["started_at"] = "2020-01-01T00:00:00Z"
        (home / "exai.pid").write_text(json.dumps(record))
        out = run_exai(home, "daemon", "stop", "--force")
        assert out.returncode == 1 and "after the daemon that wrote the pid file" in out.stderr, out.stderr
        assert other.proc.poll() is None
    finally:
        other.stop()


async def test_models_json_is_what_listmodels_shows(home):
    env = {"GLM_API_KEY": "test-key", "EXAI_EMBED_BACKEND": "none"}
    out = run_exai(home, "models", "--json", **env)
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    providers = {p["id"]: p for p in listing["providers"]}
    assert providers["glm"]["configured"] is True
    assert providers["kimi"]["configured"] is False and "KIMI_API_KEY" in providers["kimi"]["key_variables"]
    glm = [m for m in listing["models"] if m["provider"] == "glm"]
    assert glm and all(m["available"] and m["context_window"] > 0 for m in glm)
    assert all("KIMI_API_KEY" in m["unavailable_reason"] for m in listing["models"] if m["provider"] == "kimi")
    assert listing["available"] == len(glm)

    d = start_daemon(home, **env)
    try:
        async with streamable_http_client(d.url) as (r, w, *_):
            async with ClientSession(r, w) as session:
                await session.initialize()
                tool = structured(await session.call_tool("listmodels", {}))
    finally:
        d.stop()
    assert tool == listing

    text = run_exai(home, "models", **env)
    assert text.returncode == 0, text.stderr
    assert "glm" in text.stdout and "configured" in text.stdout and "no key: set KIMI_API_KEY" in text.stdout


def test_service_install_user_unit_passes_systemd_analyze(home, tmp_path):
    out = run_exai(home, "service", "install", "--user", "--dry-run", HOME=str(tmp_path),
                   XDG_CONFIG_HOME=str(tmp_path / "config"))
    assert out.returncode == 0, out.stderr
    unit = out.stdout
    assert "nothing written" in out.stderr and not (tmp_path / "config").exists()
    exe = str(Path(exai_bin()).resolve())
    for line in (f'ExecStart="{exe}" daemon', f'Environment="EXAI_HOME={home}"', "Restart=on-failure",
                 "NoNewPrivileges=yes", "ProtectSystem=strict", f'ReadWritePaths="{home}"',
                 f"EnvironmentFile=-{home}/.env", "WantedBy=default.target"):
        assert line in unit.splitlines(), f"{line} missing:\n{unit}"
    path = tmp_path / "exai.service"
    path.write_text(unit)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package `systemd`); the unit was not verified")
    check = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    about_unit = [l for l in (check.stdout + check.stderr).splitlines() if "exai.service" in l]
    assert check.returncode == 0 and not about_unit, check.stdout + check.stderr


def test_service_install_and_uninstall_user_unit(home, tmp_path):
    env = dict(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"), PATH="/nonexistent")
    unit = tmp_path / "config" / "systemd" / "user" / "exai.service"
    out = run_exai(home, "service", "install", "--user", **env)
    assert out.returncode == 0, out.stderr
    assert unit.read_text() == run_exai(home, "service", "install", "--user", "--dry-run", **env).stdout
    assert "systemctl --user enable --now exai.service" in out.stdout, out.stdout
    # Without systemctl, asking to run it is a clear error, not a silent skip.
    reload = run_exai(home, "service", "install", "--user", "--systemctl", **env)
    assert reload.returncode == 1 and "systemctl is not on the PATH" in reload.stderr, reload.stderr
    out = run_exai(home, "service", "uninstall", "--user", **env)
    assert out.returncode == 0 and f"removed {unit}" in out.stdout, out.stdout + out.stderr
    assert not unit.exists()
    # A unit someone else wrote is left alone.
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    out = run_exai(home, "service", "uninstall", "--user", **env)
    assert out.returncode == 1 and "not written by `exai service install`" in out.stderr, out.stderr
    assert unit.exists()


# ---------------------------------------------------------------------------------------------
# upgrade


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A copy of exai installed in its own directory, as an operator's /usr/local/bin/exai."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "exai"
    shutil.copy2(exai_bin(), exe)
    return exe


def installed_run(exe: Path, home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *args], env=base_env(home, EXAI_EMBED_BACKEND="none"),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def indexed(home: Path, exe: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Upgrade guide\n\nThe zanzibarword survives upgrades.\n")
    out = installed_run(exe, home, "index", str(docs), "--source", "guide")
    assert out.returncode == 0, out.stderr


def hits(home: Path, exe: Path) -> list[str]:
    out = installed_run(exe, home, "search", "zanzibarword", "--mode", "keyword", "--json")
    assert out.returncode == 0, out.stderr
    return [h["path"] for h in json.loads(out.stdout)["hits"]]


def health(home: Path) -> dict:
    record = pid_record(home)
    assert record, "no daemon"
    status, body = http_get(f"http://{record['listen']}/health")
    assert status == 200
    return body


def stop_daemon(exe: Path, home: Path) -> None:
    if pid_record(home):
        installed_run(exe, home, "daemon", "stop", "--force")


def test_upgrade_to_a_binary_whose_daemon_fails_rolls_back(home, installed, tmp_path):
    indexed(home, installed, tmp_path)
    before = hits(home, installed)
    assert before
    listen = f"127.0.0.1:{free_port()}"
    assert installed_run(installed, home, "daemon", "start", "--listen", listen).returncode == 0
    try:
        old_pid = health(home)["pid"]
        # A release that runs, reads the configuration and the databases like this one, but
        # whose daemon cannot start.
        broken = tmp_path / "exai-broken"
        broken.write_text(
            "#!/bin/sh\n"
            'if [ "$1" = "--version" ]; then echo "exai 99.0.0"; exit 0; fi\n'
            'if [ "$1" = "daemon" ] && { [ "$#" -eq 1 ] || [ "$2" = "--listen" ]; }; then\n'
            '  echo "this release cannot serve" >&2; exit 1\n'
            "fi\n"
            f'exec "{exai_bin()}" "$@"\n')
        broken.chmod(0o755)
        original = digest(installed)
        out = installed_run(installed, home, "upgrade", str(broken))
        assert out.returncode == 1, out.stdout + out.stderr
        said = out.stdout
        for step in ("it runs: exai 99.0.0", "backing up the databases", "installing the new binary",
                     "FAILED: the daemon", "rolling back", "the previous binary is back",
                     "restoring the databases", "rolled back"):
            assert step in said, f"{step!r} not said:\n{said}"
        assert digest(installed) == original
        assert not (installed.parent / "exai.previous").exists()
        assert sorted(p.name for p in installed.parent.iterdir()) == ["exai"]
        h = health(home)
        assert h["status"] == "ok" and h["pid"] != old_pid and pid_record(home)["listen"] == listen
        assert hits(home, installed) == before
    finally:
        stop_daemon(installed, home)


def test_upgrade_to_a_good_binary_keeps_it_and_rollback_puts_the_previous_back(home, installed, tmp_path):
    indexed(home, installed, tmp_path)
    listen = f"127.0.0.1:{free_port()}"
    assert installed_run(installed, home, "daemon", "start", "--listen", listen).returncode == 0
    try:
        # Another build of the same release: the same program, different bytes (an ELF file
        # runs the same with data after its end).
        new = tmp_path / "exai-new"
        new.write_bytes(Path(exai_bin()).read_bytes() + b"\0another build\n")
        new.chmod(0o755)
        old, fresh = digest(installed), digest(new)
        old_pid = health(home)["pid"]

        out = installed_run(installed, home, "upgrade", str(new))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "is healthy" in out.stdout and "done:" in out.stdout, out.stdout
        previous = installed.parent / "exai.previous"
        assert digest(installed) == fresh and digest(previous) == old
        h = health(home)
        assert h["status"] == "ok" and h["pid"] != old_pid
        assert Path(f"/proc/{h['pid']}/exe").resolve() == installed
        assert any(home.joinpath("backups").iterdir()), "no backup taken"
        assert hits(home, installed)

        out = installed_run(installed, home, "upgrade", "--rollback")
        assert out.returncode == 0, out.stdout + out.stderr
        assert digest(installed) == old and digest(previous) == fresh
        assert health(home)["status"] == "ok"
        assert Path(f"/proc/{health(home)['pid']}/exe").resolve() == installed
    finally:
        stop_daemon(installed, home)


def test_upgrade_refuses_a_file_that_is_not_exai_and_changes_nothing(home, installed, tmp_path):
    fake = tmp_path / "not-exai"
    fake.write_text("#!/bin/sh\necho 'something else 1.0'\n")
    fake.chmod(0o755)
    original = digest(installed)
    out = installed_run(installed, home, "upgrade", str(fake))
    assert out.returncode == 1 and "did not answer `exai VERSION`" in out.stderr, out.stdout + out.stderr
    assert digest(installed) == original and sorted(p.name for p in installed.parent.iterdir()) == ["exai"]
    out = installed_run(installed, home, "upgrade", "--rollback")
    assert out.returncode == 1 and "no previous binary" in out.stderr, out.stderr


def test_the_documented_launchd_plist_is_valid():
    """docs/OPERATIONS.md's macOS plist parses and runs the foreground daemon, restarting only
    after a failure."""
    import plistlib
    import re
    doc = (Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md").read_text()
    block = re.search(r"```xml\n(.*?)```", doc, re.S)
    assert block, "no plist in docs/OPERATIONS.md"
    plist = plistlib.loads(block.group(1).encode())
    assert plist["ProgramArguments"][1:] == ["daemon"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["RunAtLoad"] is True
    assert plist["Umask"] == 0o077 and "EXAI_HOME" in plist["EnvironmentVariables"]
