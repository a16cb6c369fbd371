"""Reading the ledger's decision trace (the JSON list of each stage's Decision).

Rows are matched by a decision's `stage` and `action` and the fields of its `data`, never by
its wording, which is for people. A row may be damaged or hand-edited, so each reader skips
what is not a decision object and treats a missing field as absent.
"""

from __future__ import annotations

from typing import Any


def _entries(decisions: Any) -> list[dict[str, Any]]:
    """The trace's decision objects; anything else (a damaged or hand-edited row) is skipped."""
    if not isinstance(decisions, list):
        return []
    return [d for d in decisions if isinstance(d, dict)]


def cache_hit_kind(decisions: list[dict[str, Any]]) -> str:
    """'semantic' or 'exact' for a cache-sourced row: the cache hit's `data.match`."""
    for d in _entries(decisions):
        if d.get("stage") == "cache" and d.get("action") == "hit":
            data = d.get("data")
            if isinstance(data, dict) and data.get("match") == "semantic":
                return "semantic"
    return "exact"


def was_escalated(row: dict[str, Any], decisions: list[dict[str, Any]]) -> bool:
    """True for a re-ask on a stronger tier: its row links the first ask, its trace holds the
    escalate stage's decision."""
    if row.get("escalated_from"):
        return True
    return any(d.get("stage") == "escalate" for d in _entries(decisions))


def was_deferred(decisions: list[dict[str, Any]]) -> bool:
    """True when the defer stage queued the request for later (off-peak or batch)."""
    return any(
        d.get("stage") == "defer" and d.get("action") == "queued" for d in _entries(decisions)
    )
