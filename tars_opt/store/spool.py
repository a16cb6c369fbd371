"""A local stand-in for a database server that cannot be reached (`database_unreachable:
spool`): calls are answered and recorded in an SQLite file in the data dir, whose rows are
copied into the server the next time a command reaches it - none lost, none doubled (the
copy matches rows by natural key, see store/admin.py).

The spool file is kept after copying (a long-running process may still have it open and
write to it); it is copied again whenever its row counts changed since the last copy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tars_opt.errors import DatabaseUnreachable
from tars_opt.store.admin import TABLES, copy_database
from tars_opt.store.database import Database
from tars_opt.store.files import atomic_write_text

log = logging.getLogger("tars_opt.store")


def open_or_spool(location: str, spool: Path | None) -> Database:
    """Open the server at `location`; when it cannot be reached and `spool` is given, the
    spool file instead (one warning). On a successful open, copy in what a spool holds."""
    from tars_opt.store import connect, describe
    from tars_opt.store.sqlite import open_sqlite

    try:
        db = connect(location)
    except DatabaseUnreachable as exc:
        if spool is None:
            raise
        log.warning(
            "database unreachable: answering from the local spool, copied in once it is back",
            extra={"database": describe(location), "spool": str(spool), "error": str(exc)},
        )
        return open_sqlite(spool)
    if spool is not None and spool.exists():
        copy_spool(spool, db)
    return db


def _counts(db: Database) -> dict[str, int]:
    return {t.name: int(db.scalar(f"SELECT COUNT(*) FROM {t.name}") or 0) for t in TABLES}


def copy_spool(spool: Path, db: Database) -> bool:
    """Copy the spool's rows into `db` unless nothing changed since the last copy; True
    when it copied."""
    from tars_opt.store.sqlite import open_sqlite

    marker = spool.with_name(spool.name + ".copied")
    source = open_sqlite(spool)
    try:
        counts = _counts(source)
        try:
            if json.loads(marker.read_text()) == {"to": db.location, "counts": counts}:
                return False
        except (OSError, ValueError):
            pass
        report = copy_database(source, db)
        # The server's drains send the queued work now: the spool must never send it too
        # (in a later outage), or it would be paid twice.
        handed = source.execute(
            "UPDATE tasks SET state = 'canceled', error = ? WHERE state = 'queued'",
            [f"copied to {db.location}: its drains send it"],
        ).rowcount
    finally:
        source.close()
    atomic_write_text(marker, json.dumps({"to": db.location, "counts": counts}))
    log.info(
        "spool copied in",
        extra={"spool": str(spool), "database": db.location,
               "rows": sum(r.written for r in report), "tasks_handed_over": handed},
    )  # fmt: skip
    return True
