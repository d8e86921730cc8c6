"""Throwaway databases on the test PostgreSQL server that scripts/postgres.sh starts.

scripts/test.sh starts one server for the whole run and exports its URL as
EXAI_TEST_DATABASE_URL (postgres://postgres@127.0.0.1:PORT/postgres) with
EXAI_REQUIRE_POSTGRES=1. Each test takes a database of its own:

    import pg

    def test_something():
        url = pg.fresh_database(pg.base_url_or_skip())
        try:
            ...  # run exai against url
        finally:
            pg.drop_database(url)

Databases are made from template1, where scripts/postgres.sh created the pgvector extension,
so each one has it already. SQL is sent with the psql that pgserver ships (no Python driver).
"""

from __future__ import annotations

import functools
import os
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def base_url_or_skip() -> str:
    """The server's URL; skips the test when there is none, or fails it under
    EXAI_REQUIRE_POSTGRES=1 (as in scripts/test.sh), so CI never skips PostgreSQL silently."""
    url = os.environ.get("EXAI_TEST_DATABASE_URL")
    if url:
        return url
    if os.environ.get("EXAI_REQUIRE_POSTGRES") == "1":
        pytest.fail("EXAI_REQUIRE_POSTGRES=1 but EXAI_TEST_DATABASE_URL is not set")
    pytest.skip("no PostgreSQL: set EXAI_TEST_DATABASE_URL (scripts/postgres.sh start prints it)")


@functools.cache
def psql_bin() -> str:
    """pgserver's psql (`scripts/postgres.sh install` prints the bin dir, installing if needed)."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "postgres.sh"), "install"],
        check=True, capture_output=True, text=True,
    ).stdout
    return str(Path(out.strip().splitlines()[-1]) / "psql")


def psql(url: str, sql: str) -> str:
    """Runs SQL on the database at url; returns psql's unaligned, tuples-only output."""
    proc = subprocess.run(
        [psql_bin(), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True, text=True, timeout=60,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed ({proc.returncode}) on {sql!r}: {proc.stderr.strip()}")
    return proc.stdout


def _with_database(url: str, name: str) -> str:
    return urllib.parse.urlunsplit(urllib.parse.urlsplit(url)._replace(path="/" + name))


def fresh_database(base_url: str) -> str:
    """Creates a database with a unique name on base_url's server; returns its URL."""
    name = f"exai_test_{uuid.uuid4().hex[:16]}"
    psql(base_url, f'CREATE DATABASE "{name}"')
    return _with_database(base_url, name)


def drop_database(url: str) -> None:
    """Drops the database of url (made by fresh_database), closing its open connections first."""
    name = urllib.parse.urlsplit(url).path.lstrip("/")
    if not name.startswith("exai_test_"):
        raise ValueError(f"not a database made by fresh_database: {url}")
    psql(_with_database(url, "postgres"), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
