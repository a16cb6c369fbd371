"""pytest fixtures for PostgreSQL: one throwaway server per test session (tests/pgserver.py)
and a fresh, migrated database per test.

    def test_x(pg_url): ...              # a postgresql:// URL of an empty, migrated database
    def test_y(db_location): ...         # run once on an SQLite file, once on PostgreSQL

Without PostgreSQL binaries the PostgreSQL tests skip with the reason; with CI=true they
fail instead, so CI never passes by skipping them. TARS_OPT_TEST_ENGINE=postgresql runs
the whole suite with TARS_OPT_DB pointing at a fresh PostgreSQL database per test.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import pgserver

TEMPLATE = "tars_template"
_names = itertools.count(1)


class PostgresForTests:
    """A started throwaway server with a migrated template database to copy."""

    def __init__(self, server: pgserver.Server) -> None:
        import psycopg

        from tars_opt.store.postgres import open_postgres

        self.server = server
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        open_postgres(server.url_for(TEMPLATE)).close()

    def fresh(self) -> str:
        """The URL of a new database, migrated (a copy of the template)."""
        import psycopg

        name = f"t{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.server.url_for(name)

    def empty(self) -> str:
        """The URL of a new database without tars-opt's schema."""
        import psycopg

        name = f"e{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.server.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.server.url_for(name)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL is required in CI and did not start: {reason}")
    pytest.skip(f"no PostgreSQL for tests: {reason}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    """The session's throwaway PostgreSQL server (fsync off: tests need no crash safety)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'tars-opt[postgres]')")
    try:
        server = pgserver.start(fsync=False)
    except pgserver.ServerUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield PostgresForTests(server)
    finally:
        server.stop()


@pytest.fixture
def pg_url(postgres: PostgresForTests) -> str:
    """A fresh migrated PostgreSQL database for this test."""
    return postgres.fresh()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's database lives: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "engine.db")
    return request.getfixturevalue("postgres").fresh()
