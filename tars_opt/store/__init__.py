"""The database interface table owners use: connections, transactions, migrations, files.

`connect` opens the configured database: an SQLite file (the embedded default) or a
PostgreSQL server named by a `postgresql://` URL (a team's shared ledger, budget, queue and
cache). Nothing outside this package imports sqlite3 or psycopg, or knows which engine
it runs on.
"""

from __future__ import annotations

from pathlib import Path

from tars_opt.store.database import Database


def is_server(location: str | Path | None) -> bool:
    """Whether `location` names a database server (a `postgresql://` URL), not a file."""
    from tars_opt.store.postgres import is_url

    return is_url(location)


def describe(location: str | Path) -> str:
    """`location` as it may be shown or logged: a URL without its password."""
    from tars_opt.store.postgres import redact

    return redact(str(location)) if is_server(location) else str(location)


def connect(location: str | Path, *, migrate: bool = True) -> Database:
    """Open the database at `location` (an SQLite file path or a `postgresql://` URL),
    migrated to the current schema unless `migrate` is False."""
    if is_server(location):
        from tars_opt.store.postgres import open_postgres

        return open_postgres(str(location), migrate=migrate)
    from tars_opt.store.sqlite import open_sqlite

    return open_sqlite(location, migrate=migrate)


__all__ = ["Database", "connect", "describe", "is_server"]
