"""Reading the ledger's decision trace (the JSON list of each stage's Decision).

Stages of later issues name their decisions; these readers accept the plain shapes
(stage/action/reason/data) and fall back safely when a field is missing.
"""

from __future__ import annotations

from typing import Any


def _entries(decisions: Any) -> list[dict[str, Any]]:
    """The trace's decision objects; anything else (a damaged or hand-edited row) is skipped."""
    if not isinstance(decisions, list):
        return []
    return [d for d in decisions if isinstance(d, dict)]


def cache_hit_kind(decisions: list[dict[str, Any]]) -> str:
    """'semantic' or 'exact' for a cache-sourced row (exact unless the trace says semantic)."""
    for d in _entries(decisions):
        if d.get("stage") != "cache":
            continue
        data = d.get("data") if isinstance(d.get("data"), dict) else {}
        kind = data.get("kind") or data.get("match")
        if kind in ("exact", "semantic"):
            return str(kind)
        if "semantic" in f"{d.get('action', '')} {d.get('reason', '')}".lower():
            return "semantic"
    return "exact"


def was_escalated(row: dict[str, Any], decisions: list[dict[str, Any]]) -> bool:
    """True when the router (or a retry) moved the request up to a stronger model."""
    if row.get("escalated"):
        return True
    return any(
        "escalat" in f"{d.get('stage', '')} {d.get('action', '')}".lower()
        for d in _entries(decisions)
    )


def was_deferred(decisions: list[dict[str, Any]]) -> bool:
    """True when the defer stage queued the request for later (off-peak or batch)."""
    return any(
        d.get("stage") == "defer" and str(d.get("action", "")).startswith(("defer", "queue"))
        for d in _entries(decisions)
    )
