"""Settings of one database (table `settings`): values every process using it shares."""

from __future__ import annotations

import secrets

from tars_opt.store.database import Database


def setting(db: Database, name: str) -> str | None:
    """The value of `name`, or None."""
    value = db.scalar("SELECT value FROM settings WHERE name = ?", [name])
    return None if value is None else str(value)


def secret(db: Database, name: str) -> str:
    """A random secret kept under `name`, made once: every process (and host) on this
    database gets the same one."""
    found = setting(db, name)
    if found is not None:
        return found
    db.insert("settings", {"name": name, "value": secrets.token_hex(32)}, on_conflict="ignore")
    made = setting(db, name)
    assert made is not None
    return made
