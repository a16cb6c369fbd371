"""Epoch seconds as UTC text: one format for rows, JSON, logs and messages.

At the bottom layer because the logs, the ledger, the queue and the reports all write times.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """`2026-11-22T13:45:00.123Z`: epoch seconds as ISO-8601 UTC text, to the millisecond."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_minute(ts: float) -> str:
    """`2026-11-22T13:45Z`: an epoch time for people, to the minute."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%MZ")
