"""A hand-made ledger: rows written straight into `calls`, every number chosen by the test."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlite_utils

from tars_opt.ledger import iso


def ts(text: str) -> float:
    """'2026-02-17T10:00' (UTC) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


_n = [0]


def add_call(db: sqlite_utils.Database, when: str | float, **kw: Any) -> str:
    """Insert one ledger row; unnamed columns get plain defaults (a Sonnet API call)."""
    _n[0] += 1
    moment = ts(when) if isinstance(when, str) else when
    row: dict[str, Any] = {
        "request_id": kw.pop("request_id", f"req_hand_{_n[0]:06d}"),
        "ts": moment,
        "ts_iso": iso(moment),
        "source": "api",
        "model": "claude-sonnet-5-5",
        "tier": "strong",
        "input_tokens": 1000,
        "output_tokens": 200,
        "cost": 0.004,
        "baseline_cost": 0.004,
        "latency_ms": 2000.0,
        "decisions": [],
    }
    row.update(kw)
    row["decisions"] = json.dumps(row["decisions"])
    cols = ", ".join(row)
    db.execute(
        f"INSERT INTO calls ({cols}) VALUES ({', '.join('?' for _ in row)})", list(row.values())
    )
    return row["request_id"]


def haiku(**kw: Any) -> dict[str, Any]:
    """A routed call on the cheap tier that saved money by routing."""
    base = {"model": "claude-haiku-5-5", "tier": "cheap", "cost": 0.0002,
            "baseline_cost": 0.004, "saved_routing": 0.0038, "latency_ms": 800.0}  # fmt: skip
    return {**base, **kw}


def cache_hit(kind: str = "exact", **kw: Any) -> dict[str, Any]:
    base = {
        "source": "cache", "model": "claude-sonnet-5-5", "input_tokens": 0, "output_tokens": 0,
        "cost": 0.0, "baseline_cost": 0.004, "saved_response_cache": 0.004, "latency_ms": 5.0,
        "decisions": [{"stage": "cache", "action": "hit", "reason": kind,
                       "data": {"kind": kind}}],
    }  # fmt: skip
    return {**base, **kw}
