"""The operations toolkit against PostgreSQL: `exai db copy` SQLite → PostgreSQL → SQLite with
both verifications passing and the same search results on the two SQLite ends (and an
incremental re-index finding every document unchanged), `exai health` and `exai db
verify|stats|migrate` against the database, a password that never appears in any output, and
a server that does not answer failing health at once. Needs the test server of
scripts/postgres.sh (see pg.py); with EXAI_TEST_MODEL_DIR the corpus is embedded, so the
cross-backend verification compares semantic results too."""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from pathlib import Path

import pytest

import pg
from conftest import free_port, run_exai, start_daemon

SECRET = "s3cr3t-pw"


def with_password(url: str, password: str = SECRET) -> str:
    """The URL with a password (the test server trusts local connections, so any works)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or "postgres"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
def database():
    url = pg.fresh_database(pg.base_url_or_skip())
    yield with_password(url)
    pg.drop_database(url)


def embed_env() -> dict[str, str]:
    model = os.environ.get("EXAI_TEST_MODEL_DIR")
    if model:
        return dict(EXAI_EMBED_BACKEND="local", EXAI_EMBED_MODEL=model)
    return dict(EXAI_EMBED_BACKEND="none")


def corpus(root: Path) -> Path:
    docs = root / "docs"
    docs.mkdir()
    topics = ["ownership", "borrowing", "lifetimes", "traits", "generics", "closures", "iterators"]
    for i in range(36):
        sub = docs / f"part{i % 4}"
        sub.mkdir(exist_ok=True)
        topic = topics[i % len(topics)]
        (sub / f"page{i}.md").write_text(
            f"---\ntitle: {topic.title()} guide {i}\ntags: [{topic}, rust]\n---\n\n"
            f"# {topic.title()} guide {i}\n\n## Basics\n\n"
            + " ".join(f"{topic} rule{i}_{j} explains word{i}x{j}" for j in range(40))
            + f"\n\n## Details of {topics[(i + 2) % len(topics)]}\n\n"
            + " ".join(f"detail{i}_{j} about {topics[(i + j) % len(topics)]}" for j in range(40)) + "\n"
            + ("\n```rust\nfn main() { println!(\"hello\"); }\n```\n" if i % 3 == 0 else ""))
    return docs


class Outputs:
    """Every command's output, to check that the password never shows."""

    def __init__(self):
        self.seen: list[str] = []

    def run(self, home: Path, *args: str, **env: str):
        out = run_exai(home, *args, **{**embed_env(), **env})
        self.seen.append(f"exai {args[0]}:\n{out.stdout}\n{out.stderr}")
        return out

    def assert_no_password(self):
        for text in self.seen:
            assert SECRET not in text, text


def keyword_hits(outputs: Outputs, home: Path, query: str) -> list[tuple]:
    out = outputs.run(home, "search", query, "--mode", "keyword", "--limit", "10", "--json")
    assert out.returncode == 0, out.stderr
    return [(h["source"], h["path"], h["position"], h["section"]) for h in json.loads(out.stdout)["hits"]]


def test_copy_sqlite_to_postgres_and_back(tmp_path, database):
    outputs = Outputs()
    docs = corpus(tmp_path)
    first, second, ops = tmp_path / "first", tmp_path / "second", tmp_path / "ops"
    for h in (first, second, ops):
        h.mkdir()
    indexed = outputs.run(first, "index", str(docs), "--source", "guide", "--json")
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["added"] == 36
    embedded = "EXAI_TEST_MODEL_DIR" in os.environ

    there = outputs.run(first, "db", "copy", "--from", f"sqlite:{first / 'kb.sqlite'}", "--to", database, "--json")
    assert there.returncode == 0, there.stdout + there.stderr
    report = json.loads(there.stdout)
    v = report["verification"]
    assert v["ok"] and v["counts_equal"] and v["content_equal"] and v["vectors_equal"] and v["model_equal"], v
    assert v["to"]["documents"] == 36 and v["to"]["chunks"] >= 72, v
    assert report["to_backend"] == "postgres" and ":***@" in report["to"]
    # Across backends keyword ranking is only reported; semantic results must agree.
    assert v["keyword"]["required"] is None and v["keyword"]["queries"] >= 10
    if embedded:
        assert v["to"]["vectors"] > 0 and v["semantic"]["passed"], v
        assert v["semantic"]["mean_overlap"] >= 0.9 and v["semantic"]["queries"] >= 10
    # Progress goes to stderr as plain lines when it is not a terminal.
    assert "documents: 36/36" in there.stderr and "verify:" in there.stderr

    refused = outputs.run(first, "db", "copy", "--from", str(first / "kb.sqlite"), "--to", database)
    assert refused.returncode == 1 and "--force" in refused.stderr, refused.stderr

    back = outputs.run(second, "db", "copy", "--from", database, "--to", f"sqlite:{second / 'kb.sqlite'}")
    assert back.returncode == 0, back.stdout + back.stderr
    assert "verified:" in back.stdout and "FAIL" not in back.stdout, back.stdout

    # The two SQLite ends: same keyword hits, and an incremental re-index finds nothing to do.
    for q in ("ownership rules", "word7x3", "detail12_5 traits", "closures guide 5", "println hello"):
        hits = keyword_hits(outputs, first, q)
        assert hits, q
        assert hits == keyword_hits(outputs, second, q), q
    again = outputs.run(second, "index", str(docs), "--source", "guide", "--json")
    assert again.returncode == 0, again.stderr
    again = json.loads(again.stdout)
    assert (again["unchanged"], again["added"], again["updated"]) == (36, 0, 0), again

    # A copy between two SQLite files must rank identically.
    third = outputs.run(second, "db", "copy", "--from", str(second / "kb.sqlite"), "--to", str(tmp_path / "third.sqlite"),
                        "--json")
    assert third.returncode == 0, third.stderr
    k = json.loads(third.stdout)["verification"]["keyword"]
    assert k["required"] == "identical" and k["identical"] == k["queries"], k

    # --force replaces the PostgreSQL copy.
    forced = outputs.run(second, "db", "copy", "--from", str(second / "kb.sqlite"), "--to", "database", "--force",
                         "--json", EXAI_DATABASE_URL=database)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["replaced"]["documents"] == 36

    # The operations commands against the configured database.
    env = dict(EXAI_DATABASE_URL=database)
    verify = outputs.run(ops, "db", "verify", "--json", **env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    checked = json.loads(verify.stdout)["postgres"]
    assert checked["problems"] == [] and checked["kb"]["documents"] == 36, checked
    if embedded:
        assert checked["kb"]["hnsw_valid"] is True and checked["kb"]["expected_dim"] == checked["kb"]["column_dim"]
    assert "ok    postgres" in outputs.run(ops, "db", "verify", **env).stdout

    migrate = outputs.run(ops, "db", "migrate", **env)
    assert migrate.returncode == 0, migrate.stderr
    assert "kb (postgres): schema 3 (current)" in migrate.stdout
    assert "threads (postgres): migrated schema 0 -> 3" in migrate.stdout, migrate.stdout
    assert "jobs (postgres)" in migrate.stdout

    stats = outputs.run(ops, "db", "stats", "--json", **env)
    assert stats.returncode == 0, stats.stderr
    entry = next(s for s in json.loads(stats.stdout) if s["name"] == "postgres")
    assert entry["kb"]["documents"] == 36 and entry["server"]["components"]["threads"] == 3, entry
    assert entry["tables"]["kb_documents"]["rows"] == 36
    text = outputs.run(ops, "db", "stats", **env)
    assert text.returncode == 0 and "pgvector" in text.stdout, text.stdout

    backup = outputs.run(ops, "db", "backup", **env)
    assert backup.returncode == 0 and "pg_dump" in backup.stderr, backup.stderr
    reindex = outputs.run(ops, "db", "reindex", **env)
    assert reindex.returncode == 0 and "PostgreSQL" in reindex.stdout

    # health with a daemon on the database and a provider configured: everything ok.
    daemon = start_daemon(ops, **{**embed_env(), **env, "GLM_API_KEY": "not-used"})
    try:
        health = outputs.run(ops, "health", "--json", GLM_API_KEY="not-used", **env)
    finally:
        daemon.stop()
    report = json.loads(health.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["postgres"]["status"] == "ok", checks["postgres"]
    assert checks["postgres"]["data"]["backend"] == "postgres"
    assert "pgvector" in checks["postgres"]["detail"] and "kb 3" in checks["postgres"]["detail"]
    assert checks["kb_postgres"]["status"] == "ok", checks["kb_postgres"]
    assert "36 documents" in checks["kb_postgres"]["detail"]
    # Only the machine itself (a nearly full disk) may warn here.
    others = {n: c["status"] for n, c in checks.items() if c["status"] != "ok"}
    assert set(others) <= {"disk"}, others
    assert health.returncode == (1 if others else 0), health.stdout
    text = outputs.run(ops, "health", **env)
    assert "kb_postgres" in text.stdout and ":***@" in text.stdout, text.stdout
    if embedded:
        assert "HNSW index valid" in text.stdout, text.stdout

    outputs.assert_no_password()


def test_health_fails_at_once_when_the_database_does_not_answer(tmp_path):
    pg.base_url_or_skip()
    outputs = Outputs()
    url = f"postgres://exai:{SECRET}@127.0.0.1:{free_port()}/exai"
    started = time.monotonic()
    health = outputs.run(tmp_path, "health", EXAI_DATABASE_URL=url)
    assert time.monotonic() - started < 10
    assert health.returncode == 2, health.stdout
    line = next(line for line in health.stdout.splitlines() if line.startswith("FAIL") and "postgres" in line)
    assert "cannot connect to PostgreSQL at postgres://exai:***@127.0.0.1" in line, line
    assert "refused" in line.lower(), line
    verify = outputs.run(tmp_path, "db", "verify", EXAI_DATABASE_URL=url)
    assert verify.returncode == 2 and "cannot connect" in verify.stdout, verify.stdout
    copy = outputs.run(tmp_path, "db", "copy", "--from", url, "--to", str(tmp_path / "x.sqlite"))
    assert copy.returncode == 1 and "cannot connect" in copy.stderr, copy.stderr
    outputs.assert_no_password()
