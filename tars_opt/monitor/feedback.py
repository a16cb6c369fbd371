"""User feedback on answers: `tars-opt feedback REQUEST_ID good|bad`.

One verdict per request (a later one replaces it). Counts per source and tier show up in
metrics and reports. A bad verdict is handed to a `CacheEvictor` when one is given: the
response cache store implements it to remove the cached answer at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tars_opt.accounting.ledger import Ledger
from tars_opt.errors import FeedbackError
from tars_opt.store.database import Database

VERDICTS = ("good", "bad")


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
    db: Database,
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
    call = Ledger(db).get(request_id)
    if call is None:
        raise FeedbackError(
            f"no call with request id {request_id!r} in the ledger: copy one from `tars-opt log`"
        )
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


def verdicts(db: Database, request_ids: set[str]) -> dict[str, str]:
    """The verdict given on each of `request_ids` that has one."""
    out: dict[str, str] = {}
    ids = sorted(request_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" for _ in chunk)
        rows = db.execute(
            f"SELECT request_id, verdict FROM feedback WHERE request_id IN ({marks})", chunk
        ).fetchall()
        out.update({r[0]: r[1] for r in rows})
    return out
