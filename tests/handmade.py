"""A hand-made ledger: rows written straight into `calls`, every number chosen by the test."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tars_opt.store.database import Database
from tars_opt.timefmt import iso


def ts(text: str) -> float:
    """'2026-02-17T10:00' (UTC) as epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


_n = [0]


def add_call(db: Database, when: str | float, **kw: Any) -> str:
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
        "decisions": [{"stage": "cache", "action": "hit", "reason": f"{kind} match of entry 1",
                       "data": {"match": kind}}],
    }  # fmt: skip
    return {**base, **kw}


def phase_week(db: Database, first_day: str = "2026-02-17", days: int = 7) -> None:
    """A fixed, varied week: 40 requests a day of every kind, chosen by index, no randomness."""
    from datetime import date, timedelta

    start = date.fromisoformat(first_day)
    for d in range(days):
        day = start + timedelta(days=d)
        for i in range(40):
            when = f"{day}T{(i % 20) + 2:02d}:{(i * 7) % 60:02d}"
            rid = f"req_{day}_{i:02d}"
            k = (i + d) % 10
            if i == 39 and d % 3 == 0:
                add_call(db, when, request_id=rid, error="overloaded_error: busy", cost=0,
                         baseline_cost=0)  # fmt: skip
            elif i % 20 == 7:
                add_call(db, when, request_id=rid, holdout=1, cost=0.0045, baseline_cost=0.0045,
                         latency_ms=2400.0)  # fmt: skip
            elif k < 3:
                add_call(db, when, request_id=rid, cost=0.0041, baseline_cost=0.0045,
                         saved_pruning=0.0004, latency_ms=2100.0 + i)  # fmt: skip
            elif k < 7:
                esc = [{"stage": "escalate", "action": "strong", "reason": "x", "data": {}}]
                add_call(db, when, **haiku(request_id=rid, decisions=esc if k == 6 else [],
                                           latency_ms=700.0 + 10 * i))  # fmt: skip
            elif k < 9:
                add_call(db, when, **cache_hit("semantic" if k == 8 else "exact",
                                               request_id=rid))  # fmt: skip
            else:
                add_call(db, when, request_id=rid, source="batch", service_tier="batch",
                         cost=0.002, saved_batching=0.002, latency_ms=60_000.0,
                         decisions=[{"stage": "defer", "action": "queued",
                                     "reason": "off-peak", "data": {}}])  # fmt: skip
    db.execute("INSERT INTO feedback (request_id, ts, verdict) VALUES "
               f"('req_{start}_03', 0, 'bad'), ('req_{start}_07', 0, 'good')")  # fmt: skip
