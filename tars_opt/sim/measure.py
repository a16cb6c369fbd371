"""Reading a replay back from the ledger: per-call outcomes, totals and quality.

Quality: a labelled call's answer counts as its serving tier's label (a cache hit: the
label of the prompt whose answer it served, for the tier that answered that prompt; an
escalated call: the final tier), compared with the baseline tier's label on the same call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.cache.store import CacheStore
from tars_opt.config.schema import Config
from tars_opt.pipeline.trace import cache_hit_kind
from tars_opt.sim.workload import Call
from tars_opt.store.database import Database
from tars_opt.types import STRATEGIES


def hit_origin(db: Database, decisions: list[Any]) -> str | None:
    """The request id whose answer a cache hit served (from its entry), if known."""
    hit = next((d for d in decisions if d.stage == "cache" and d.action == "hit"), None)
    entry = hit.data.get("entry_id") if hit is not None else None
    if entry is None:
        return None
    return CacheStore(db).request_id_of(int(entry))


@dataclass
class Outcome:
    """What became of one call of the workload."""

    request_id: str
    source: str | None = None  # api | batch | cache; None = not answered
    cost: float = 0.0  # its own row plus any escalation re-ask
    baseline_cost: float = 0.0
    tier: str | None = None  # the tier whose answer the caller got (a hit: the origin's)
    labels: dict[str, float] = field(default_factory=dict)  # the served answer's labels
    hit: str | None = None  # exact | semantic
    escalated: bool = False

    def quality(self) -> float | None:
        """The served answer's label, or None when it is not known."""
        return self.labels.get(self.tier) if self.tier is not None else None


def call_outcomes(
    db: Database,
    by_id: dict[str, Call],
    served_by: dict[str, str],
    first_row: int,
) -> tuple[dict[str, Outcome], list[dict[str, Any]]]:
    """Per-call outcomes of a replay, and every ledger row it wrote. `served_by` maps a
    cache hit to the request whose answer it served."""
    rows = Ledger(db).rows_after(first_row)
    out = {rid: Outcome(rid) for rid in by_id}
    escalated_to: dict[str, str] = {}  # a re-ask's id -> the original's id
    for r in rows:
        origin = r["escalated_from"]
        if origin and origin in out:
            escalated_to[r["request_id"]] = origin
            o = out[origin]
            o.cost += r["cost"] or 0.0
            o.escalated = True
            if r["error"] is None:
                o.tier = r["tier"]
        elif r["request_id"] in out:
            o = out[r["request_id"]]
            o.cost += r["cost"] or 0.0
            o.baseline_cost += r["baseline_cost"] or 0.0
            if r["error"] is None:
                o.source = r["source"]
                if o.tier is None:
                    o.tier = r["tier"]
                o.labels = by_id[r["request_id"]].labels
                if r["source"] == "cache":
                    o.hit = cache_hit_kind(r["decisions"])
    for o in out.values():
        if o.source != "cache":
            continue
        origin = served_by.get(o.request_id)
        origin = escalated_to.get(origin, origin) if origin is not None else None
        served = out.get(origin) if origin is not None else None
        # Served from outside this replay (an earlier run in --db): its label is unknown.
        o.tier = served.tier if served is not None else None
        o.labels = served.labels if served is not None else {}
    return out, rows


def measure_run(
    db: Database,
    config: Config,
    by_id: dict[str, Call],
    queued: set[str],
    served_by: dict[str, str],
    first_row: int,
) -> dict[str, Any]:
    """Cost, savings, mix, hits and quality of the ledger rows a replay wrote."""
    outcomes, rows = call_outcomes(db, by_id, served_by, first_row)
    saved = {s: sum(r[f"saved_{s}"] or 0.0 for r in rows) for s in STRATEGIES}
    mix: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["source"] in ("api", "batch") and r["error"] is None:
            m = mix.setdefault(r["model"], {"model": r["model"], "calls": 0, "cost": 0.0})
            m["calls"] += 1
            m["cost"] += r["cost"] or 0.0
    got, base, labelled = quality_sums(config, by_id, outcomes)
    hits = Counter(o.hit for o in outcomes.values() if o.hit)
    return {
        "answered": sum(1 for o in outcomes.values() if o.source is not None),
        "ledger_rows": len(rows),
        "baseline_cost": sum(r["baseline_cost"] or 0.0 for r in rows),
        "cost": sum(r["cost"] or 0.0 for r in rows),
        "saved_by_strategy": saved,
        "model_mix": sorted(mix.values(), key=lambda m: -m["calls"]),
        "sources": dict(Counter(o.source for o in outcomes.values() if o.source)),
        "exact_hits": hits["exact"],
        "semantic_hits": hits["semantic"],
        "deferred": len(queued),
        "escalations": sum(1 for r in rows if r["escalated_from"]),
        "escalation_cost": sum(r["cost"] or 0.0 for r in rows if r["escalated_from"]),
        "holdout": sum(1 for r in rows if r["holdout"]),
        "errors": sum(1 for r in rows if r["error"] is not None),
        "labelled": labelled,
        "quality": got / labelled if labelled else None,
        "quality_baseline": base / labelled if labelled else None,
        "outcomes": outcomes,
    }


def baseline_tier(config: Config) -> str | None:
    """The tier whose model is the baseline model (the all-baseline answers' labels)."""
    return next((t for t, m in config.models.tiers.items() if m == config.models.baseline), None)


def quality_sums(
    config: Config, by_id: dict[str, Call], outcomes: dict[str, Outcome]
) -> tuple[float, float, int]:
    """Summed quality of the served answers, of the baseline tier's answers, and how many
    calls both are known for (labelled, answered, the serving tier labelled)."""
    base_tier = baseline_tier(config)
    got = base = 0.0
    n = 0
    for rid, call in by_id.items():
        if base_tier is None or base_tier not in call.labels:
            continue
        q = outcomes[rid].quality()
        if q is None:
            continue
        n += 1
        got += q
        base += call.labels[base_tier]
    return got, base, n
