"""The database interface table owners use: connections, transactions, migrations, files.

`connect` opens the configured database; nothing outside this package imports sqlite3.
"""

from __future__ import annotations

from pathlib import Path

from tars_opt.store.database import Database


def connect(location: str | Path) -> Database:
    """Open the database at `location` (an SQLite file path), migrated to the current schema."""
    from tars_opt.store.sqlite import open_sqlite

    return open_sqlite(location)


__all__ = ["Database", "connect"]
