"""User feedback on answers: `tars-opt feedback REQUEST_ID good|bad`.

One verdict per request (a later one replaces it). Counts per source and tier show up in
metrics and reports. A bad verdict is handed to a `CacheEvictor` when one is given: the
response cache store (issue 3) implements it to remove the cached answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import sqlite_utils

VERDICTS = ("good", "bad")


class FeedbackError(ValueError):
    """Feedback that cannot be recorded (unknown request, bad verdict)."""


class CacheEvictor(Protocol):
    """Removes the cached answer behind a call (the one that served it or was stored from it)."""

    def evict_for_call(self, call: dict[str, Any]) -> bool: ...


@dataclass(frozen=True)
class FeedbackResult:
    request_id: str
    verdict: str
    source: str
    tier: str | None
    evicted: bool | None  # None: no cache store to evict from

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def record_feedback(
    db: sqlite_utils.Database,
    request_id: str,
    verdict: str,
    note: str | None = None,
    *,
    now: float,
    evictor: CacheEvictor | None = None,
) -> FeedbackResult:
    """Store a verdict on an answered request; on `bad`, evict its cached answer if possible."""
    if verdict not in VERDICTS:
        raise FeedbackError(f"verdict {verdict!r} is not good or bad")
    rows = list(db.query("SELECT * FROM calls WHERE request_id = ?", [request_id]))
    if not rows:
        raise FeedbackError(
            f"no call with request id {request_id!r} in the ledger: copy one from `tars-opt log`"
        )
    call = rows[0]
    if call.get("error"):
        raise FeedbackError(f"{request_id} failed ({call['error']}): there is no answer to rate")
    db.execute(
        """INSERT INTO feedback (request_id, ts, verdict, note) VALUES (?, ?, ?, ?)
           ON CONFLICT (request_id) DO UPDATE SET ts = excluded.ts,
           verdict = excluded.verdict, note = excluded.note""",
        [request_id, now, verdict, note],
    )
    evicted = None
    if verdict == "bad" and evictor is not None:
        evicted = evictor.evict_for_call(call)
    return FeedbackResult(request_id, verdict, call["source"], call.get("tier"), evicted)
