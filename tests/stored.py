"""What a test sees of its database on either engine: where it is, everything it holds,
and a lock that holds every write off (SQLite's BEGIN EXCLUSIVE; on PostgreSQL an
EXCLUSIVE lock on every table, which lets reads through as SQLite's WAL does)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tars_opt.store import connect, is_server


def database_at(home: Path) -> str:
    """Where a process with TARS_OPT_HOME=`home` keeps its data: TARS_OPT_DB when the suite
    runs on PostgreSQL (child processes inherit it), else the file in `home`."""
    return os.environ.get("TARS_OPT_DB") or str(home / "tars-opt.db")


def stored_bytes(location: str | Path) -> bytes:
    """Every byte the database keeps: the SQLite file with its WAL, or (on a server) every
    row of every table as JSON."""
    if not is_server(location):
        path = Path(location)
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    db = connect(location)
    try:
        tables = [r["tablename"] for r in db.query(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]  # fmt: skip
        dump = {t: list(db.query(f"SELECT * FROM {t}")) for t in tables}
    finally:
        db.close()
    return json.dumps(dump, default=str).encode()


@contextmanager
def writes_held(location: str | Path) -> Iterator[None]:
    """No process can write to the database until the block ends; reads go on."""
    if not is_server(location):
        lock = sqlite3.connect(location, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    import psycopg

    with psycopg.connect(str(location)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]  # fmt: skip
        conn.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()
