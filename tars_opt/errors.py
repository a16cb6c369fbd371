"""The errors a user can cause or meet: one base class, one line each naming cause and fix.

Everything tars-opt raises on purpose derives from TarsOptError, so a front door (the CLI,
the gateway) handles them with one `except` and maps each kind to an exit code or status.
"""

from __future__ import annotations


class TarsOptError(Exception):
    """Base of every error tars-opt raises on purpose; the message is one line."""


class DatabaseError(TarsOptError):
    """The database cannot be used; the message says why and what to do."""
