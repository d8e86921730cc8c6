"""Whole backups and log archives end to end on real data directories: `exai db backup` takes the
configuration (`exai.toml`, the data directory's `.env`, `ops.backup_extra` files) with the
databases, 0600 and with checksums; `exai db restore latest` brings back the databases, and with
`--with-config` a changed `exai.toml`; a corrupted configuration file in a backup is refused;
`exai logs archive` compresses rotated logs, keeps the live one, expires old archives, and
changes nothing on a dry run."""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import time
from pathlib import Path

from conftest import run_exai


def ops(home: Path, *args: str) -> "subprocess.CompletedProcess":  # noqa: F821
    return run_exai(home, *args, EXAI_EMBED_BACKEND="none")


def corpus(root: Path, name: str, word: str) -> Path:
    docs = root / name
    docs.mkdir()
    for i in range(5):
        (docs / f"{name}{i}.md").write_text(f"# {name} {i}\n\n{word} {name} page {i}\n")
    return docs


def hits(home: Path, query: str) -> int:
    out = ops(home, "search", query, "--mode", "keyword", "--json")
    assert out.returncode == 0, out.stderr
    return len(json.loads(out.stdout)["hits"])


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def configured_home(home: Path, tmp_path: Path) -> tuple[str, Path]:
    extra = tmp_path / "etc" / "extra.env"
    extra.parent.mkdir()
    extra.write_text("OTHER_TOOL_KEY=kept-with-exai\n")
    toml = f'[ops]\nbackup_keep = 3\nbackup_extra = ["{extra}"]\n'
    (home / "exai.toml").write_text(toml)
    (home / ".env").write_text("EXAI_LOGGING_LEVEL=warn\n")
    return toml, extra


def test_backup_holds_the_configuration_and_restore_latest_brings_it_back(home, tmp_path):
    toml, extra = configured_home(home, tmp_path)
    assert ops(home, "index", str(corpus(tmp_path, "alpha", "alphaterm")), "--source", "alpha").returncode == 0

    out = ops(home, "db", "backup", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    backup = Path(report["path"])
    entries = {c["kind"]: c for c in report["manifest"]["config"]}
    assert set(entries) == {"config", "env", "extra"}, entries
    assert entries["config"]["original"] == str(home / "exai.toml")
    assert entries["env"]["original"] == str(home / ".env")
    assert entries["extra"]["original"] == str(extra)
    for c in entries.values():
        copy = backup / c["file"]
        assert copy.read_bytes() == Path(c["original"]).read_bytes()
        assert mode(copy) == 0o600, copy
        assert c["bytes"] == copy.stat().st_size
        assert re.fullmatch(r"[0-9a-f]{64}", c["blake3"]), c
    assert json.loads((backup / "manifest.json").read_text())["config"] == report["manifest"]["config"]

    listing = ops(home, "db", "backups")
    assert listing.returncode == 0, listing.stderr
    assert f"config: exai.toml, .env, {extra}" in listing.stdout, listing.stdout

    # After the backup: another source indexed, the configuration changed.
    assert ops(home, "index", str(corpus(tmp_path, "beta", "betaterm")), "--source", "beta").returncode == 0
    assert hits(home, "betaterm") > 0
    changed = toml.replace("backup_keep = 3", "backup_keep = 4")
    (home / "exai.toml").write_text(changed)

    out = ops(home, "db", "restore", "latest")
    assert out.returncode == 0, out.stderr
    assert f"latest backup: {backup}" in out.stdout
    assert "--with-config" in out.stdout, out.stdout
    assert hits(home, "betaterm") == 0 and hits(home, "alphaterm") > 0
    assert (home / "exai.toml").read_text() == changed

    extra.write_text("OTHER_TOOL_KEY=changed\n")
    out = ops(home, "db", "restore", "latest", "--with-config")
    assert out.returncode == 0, out.stdout + out.stderr
    assert (home / "exai.toml").read_text() == toml
    assert extra.read_text() == "OTHER_TOOL_KEY=kept-with-exai\n"
    for path in (home / "exai.toml", home / ".env", extra):
        assert mode(path) == 0o600, path
    kept = [p for p in home.iterdir() if p.name.startswith("exai.toml.replaced-")]
    assert len(kept) == 1 and kept[0].read_text() == changed, kept
    assert mode(kept[0]) == 0o600
    assert ".env: unchanged" in out.stdout, out.stdout


def test_a_corrupted_configuration_file_in_a_backup_is_refused(home, tmp_path):
    configured_home(home, tmp_path)
    assert ops(home, "index", str(corpus(tmp_path, "alpha", "alphaterm")), "--source", "alpha").returncode == 0
    out = ops(home, "db", "backup", "--json")
    assert out.returncode == 0, out.stderr
    backup = Path(json.loads(out.stdout)["path"])
    # Same size, other content: only the checksum can tell.
    copy = backup / "exai.toml"
    copy.write_text(copy.read_text().replace("backup_keep = 3", "backup_keep = 8"))
    (home / "exai.toml").write_text("[ops]\nbackup_keep = 5\n")

    check = ops(home, "db", "restore", "--check", "latest")
    assert check.returncode != 0
    assert "checksum mismatch" in check.stderr, check.stderr
    out = ops(home, "db", "restore", "latest", "--with-config")
    assert out.returncode != 0
    assert "checksum mismatch" in out.stderr, out.stderr
    assert (home / "exai.toml").read_text() == "[ops]\nbackup_keep = 5\n"


def test_a_wrong_backup_extra_is_refused_naming_the_setting(home, tmp_path):
    (home / "exai.toml").write_text(f'[ops]\nbackup_extra = ["{tmp_path / "missing.env"}"]\n')
    assert ops(home, "index", str(corpus(tmp_path, "alpha", "alphaterm")), "--source", "alpha").returncode == 0
    out = ops(home, "db", "backup")
    assert out.returncode != 0
    assert "ops.backup_extra" in out.stderr and "does not exist" in out.stderr, out.stderr
    assert not list((home / "backups").iterdir())


def log_lines(day: str, *words: str) -> str:
    return "".join(f"2026-{day}T10:00:0{i}.000000Z  INFO exai: {w}\n" for i, w in enumerate(words))


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in sorted(root.rglob("*")) if p.is_file()}


def test_logs_archive_compresses_rotated_logs_and_expires_old_archives(home):
    logs = home / "logs"
    archives = logs / "archives"
    archives.mkdir(parents=True)
    live = logs / "exai.log"
    live.write_text(log_lines("12-03", "live line"))
    (logs / "exai.log.2").write_text(log_lines("11-20", "oldest rotated"))
    (logs / "exai.log.1").write_text(log_lines("11-25", "newer rotated"))
    (logs / "activity.jsonl.1").write_text(json.dumps({
        "time": "2026-11-21T10:00:00Z", "tool": "version", "session": "stdio", "request_id": "1",
        "duration_ms": 1.0, "outcome": "ok"}) + "\n")
    old = archives / "exai.log.20250101-20250102.gz"
    recent = archives / "exai.log.20261101-20261102.gz"
    for path, days in ((old, 100), (recent, 10)):
        path.write_bytes(gzip.compress(log_lines("01-01", f"archived {days}").encode()))
        t = time.time() - days * 86400
        os.utime(path, (t, t))

    before = snapshot(home)
    dry = ops(home, "logs", "archive", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would archive" in dry.stdout and f"would delete {old}" in dry.stdout, dry.stdout
    assert "nothing was changed" in dry.stdout
    assert snapshot(home) == before

    out = ops(home, "logs", "archive")
    assert out.returncode == 0, out.stderr
    assert not (logs / "exai.log.1").exists() and not (logs / "exai.log.2").exists()
    assert not (logs / "activity.jsonl.1").exists()
    assert live.read_text() == log_lines("12-03", "live line")
    assert not old.exists() and recent.exists()
    new = sorted(p.name for p in archives.iterdir() if p != recent)
    assert len(new) == 2 and new[0].startswith("activity.jsonl.20261121-"), new
    assert new[1].startswith("exai.log.20261120-") and new[1].endswith(".gz"), new
    text = gzip.decompress((archives / new[1]).read_bytes()).decode()
    assert text == log_lines("11-20", "oldest rotated") + log_lines("11-25", "newer rotated")
    for name in new:
        assert mode(archives / name) == 0o600

    plain = ops(home, "logs", "--log")
    assert "oldest rotated" not in plain.stdout and "live line" in plain.stdout
    assert "--archived" in plain.stderr, plain.stderr
    both = ops(home, "logs", "--log", "--archived")
    assert both.returncode == 0, both.stderr
    lines = both.stdout.splitlines()
    assert [l for l in lines if "rotated" in l or "live" in l] == [
        l for l in (log_lines("11-20", "oldest rotated") + log_lines("11-25", "newer rotated")
                    + log_lines("12-03", "live line")).splitlines()]
    assert "archived 10" in both.stdout

    # A shorter retention expires the archive kept before.
    out = ops(home, "logs", "archive", "--keep-days", "5")
    assert out.returncode == 0, out.stderr
    assert not recent.exists()
