"""Numbers about spend, savings and quality for any period, read from the ledger.

Reads only: the `calls` table (and `feedback`, `tasks` when they exist). Columns and
decision shapes that later stages add are read when present and skipped when not, so the
numbers degrade to "unknown" rather than to wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tars_opt.accounting.ledger import Ledger, Periods
from tars_opt.accounting.periods import (  # noqa: F401 - re-exported: callers read periods from here
    DAY,
    date_range,
    day_start,
    last_full_iso_week,
    month_pace,
)
from tars_opt.config.schema import Config
from tars_opt.defer.queue import Queue
from tars_opt.monitor.feedback import verdicts
from tars_opt.pipeline.trace import cache_hit_kind, was_deferred, was_escalated
from tars_opt.store.database import Database
from tars_opt.types import STRATEGIES

MODEL_SOURCES = ("api", "batch")  # sources where a model was paid to answer
INTERACTIVE_SOURCES = ("api", "cache")  # answered while the caller waited
TOKEN_BUCKETS = ("input_tokens", "cache_write_5m", "cache_write_1h", "cache_read", "output_tokens")
# Columns read for metrics (prompt and answer texts are never loaded).
_WANTED = (
    "request_id", "ts", "ts_iso", "session", "query_type", "priority", "source", "model",
    "tier", "service_tier", *TOKEN_BUCKETS, "removed_tokens", "cost", "baseline_cost",
    *(f"saved_{s}" for s in STRATEGIES), "latency_ms", "error", "decisions", "holdout",
    "escalated_from", "tokens_estimated",
)  # fmt: skip


@dataclass(frozen=True)
class SpendSummary:
    """Spend today, this week and this month against the monthly budget."""

    periods: dict[str, dict[str, Any]]
    budget_usd: float
    month_used_share: float
    month_pace_usd: float
    by_model: list[dict[str, Any]]
    by_source: list[dict[str, Any]]
    # Calls `serve --shadow` forwarded unchanged this month and what they would have saved.
    shadow: dict[str, Any] = field(default_factory=lambda: {"calls": 0, "would_save": 0.0})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def spend_summary(
    ledger: Ledger, now: float, budget_usd: float, *, include_offline: bool = True
) -> SpendSummary:
    """Spend for today / this week / this month, the month's pace, and this month by model
    and by source (without the offline backend's rows unless `include_offline`)."""
    p = Periods.at(now)
    real = {"include_offline": include_offline}
    periods = {
        "today": ledger.spend(p.day, now + 1, **real),
        "week": ledger.spend(p.week, now + 1, **real),
        "month": ledger.spend(p.month, now + 1, **real),
    }
    month_cost = periods["month"]["cost"]
    return SpendSummary(
        periods=periods,
        budget_usd=budget_usd,
        month_used_share=month_cost / budget_usd,
        month_pace_usd=month_pace(month_cost, now),
        by_model=ledger.breakdown("model", p.month, now + 1, **real),
        by_source=ledger.breakdown("source", p.month, now + 1, **real),
        shadow=ledger.would_have_saved(p.month, now + 1, **real),
    )


def offline_left_out(
    ledger: Ledger,
    config: Config,
    start: float = 0.0,
    end: float = float("inf"),
    *,
    session: str | None = None,
) -> int:
    """How many offline-backend calls in [start, end) (of one session id, if given) the
    figures leave out: 0 when the config counts them (ledger.include_offline)."""
    if config.counts_offline():
        return 0
    return ledger.offline_calls(start, end, session=session)


def days_period(
    now: float, days: int = 7, first: date | None = None, last: date | None = None
) -> tuple[float, float]:
    """[start, end) of the whole UTC days first..last (inclusive) when both are given,
    else of the last `days` days with today; never reaching past `now`."""
    if first is None or last is None:
        today = datetime.fromtimestamp(now, UTC).date()
        first, last = today - timedelta(days=days - 1), today
    start, end = date_range(first, last)
    return start, min(end, now)


# --- the period metrics ---------------------------------------------------------------


@dataclass
class ArmStats:
    """Measured figures of one arm of the A/B holdout (or of any group of requests)."""

    requests: int = 0
    cost: float = 0.0
    baseline_cost: float = 0.0
    model_calls: int = 0
    escalations: int = 0
    good: int = 0
    bad: int = 0

    @property
    def cost_per_request(self) -> float | None:
        return self.cost / self.requests if self.requests else None

    @property
    def baseline_per_request(self) -> float | None:
        return self.baseline_cost / self.requests if self.requests else None

    @property
    def escalation_rate(self) -> float | None:
        return self.escalations / self.model_calls if self.model_calls else None

    @property
    def bad_rate(self) -> float | None:
        rated = self.good + self.bad
        return self.bad / rated if rated else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "cost_per_request": self.cost_per_request,
            "baseline_per_request": self.baseline_per_request,
            "escalation_rate": self.escalation_rate,
            "bad_rate": self.bad_rate,
        }


@dataclass
class PeriodMetrics:
    """Everything the reports, the dashboard and the heartbeat say about one period."""

    start: float
    end: float
    calls: int = 0  # ledger rows: answered requests and failures
    answered: int = 0
    errors: int = 0
    model_calls: int = 0  # answered by a model (api or batch)
    cache_hits: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    batch_calls: int = 0
    deferred: int = 0
    escalations: int = 0
    cheap_calls: int = 0
    holdout_requests: int = 0
    estimated: int = 0  # answered rows whose token counts are local estimates
    tokens: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    baseline_cost: float = 0.0
    saved_by_strategy: dict[str, float] = field(default_factory=dict)
    model_mix: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    per_day: list[dict[str, Any]] = field(default_factory=list)
    per_session: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, dict[str, int]] = field(default_factory=dict)
    arms: dict[str, ArmStats] = field(default_factory=dict)

    @property
    def days(self) -> float:
        """The period's length in days."""
        return max((self.end - self.start) / DAY, 1e-9)

    @property
    def data_days(self) -> float:
        """The days per-day figures are taken over: the UTC days with at least one call,
        or the period's length when that is shorter (a 24-hour window across midnight
        touches two days). 0 when nothing was recorded."""
        return min(float(len(self.per_day)), self.days)

    @property
    def saved(self) -> float:
        return self.baseline_cost - self.cost

    @property
    def saved_share(self) -> float | None:
        return self.saved / self.baseline_cost if self.baseline_cost else None

    def _rate(self, part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def error_rate(self) -> float | None:
        return self._rate(self.errors, self.calls)

    @property
    def cache_hit_rate(self) -> float | None:
        return self._rate(self.cache_hits, self.answered)

    @property
    def batch_share(self) -> float | None:
        return self._rate(self.batch_calls, self.answered)

    @property
    def deferred_share(self) -> float | None:
        return self._rate(self.deferred, self.answered)

    @property
    def escalation_rate(self) -> float | None:
        return self._rate(self.escalations, self.model_calls)

    @property
    def cheap_share(self) -> float | None:
        return self._rate(self.cheap_calls, self.model_calls)

    @property
    def model_tokens(self) -> int:
        """Tokens a model processed (every prompt bucket plus output)."""
        return sum(self.tokens.get(b, 0) for b in TOKEN_BUCKETS)

    @property
    def latency_s(self) -> float | None:
        """Mean latency of interactive answers (api and cache hits), seconds; deferred
        batch work is left out, since nobody waited for it."""
        every = self.latency_ms.get("interactive")
        return every["mean"] / 1000.0 if every else None

    def per_day_of(self, value: float) -> float | None:
        """`value` per day with calls; None (no data) when the period has none."""
        return value / self.data_days if self.data_days else None

    def summary(self) -> dict[str, float | None]:
        """The headline figures, named as phase targets and baselines name them."""
        return {
            "daily_cost_usd": self.per_day_of(self.cost),
            "calls_per_day": self.per_day_of(self.model_calls),
            "tokens_per_day": self.per_day_of(self.model_tokens),
            "cheap_share": self.cheap_share,
            "cache_hit_rate": self.cache_hit_rate,
            "batch_share": self.batch_share,
            "latency_s": self.latency_s,
            "error_rate": self.error_rate,
        }

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["arms"] = {k: v.to_dict() for k, v in self.arms.items()}
        for name in (
            "days", "data_days", "saved", "saved_share", "error_rate", "cache_hit_rate",
            "batch_share", "deferred_share", "escalation_rate", "cheap_share", "model_tokens",
            "latency_s",
        ):  # fmt: skip
            out[name] = getattr(self, name)
        out["summary"] = self.summary()
        return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; values must be non-empty."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _latency(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
    }


def period_metrics(
    db: Database,
    start: float,
    end: float,
    *,
    cheap_tier: str = "cheap",
    cheap_models: frozenset[str] = frozenset(),
    sessions: int = 10,
    include_offline: bool = True,
) -> PeriodMetrics:
    """Metrics of the ledger rows with start <= ts < end (epoch seconds, UTC), without the
    offline backend's rows unless `include_offline`.

    A model call counts as cheap when its tier is `cheap_tier` or its model is one of
    `cheap_models` (rows written before routing existed carry no tier).
    """
    rows = Ledger(db).rows_between(start, end, include_offline=include_offline, columns=_WANTED)
    feedback = verdicts(db, {r["request_id"] for r in rows})
    queued = Queue(db).request_ids_queued_before(end)
    m = PeriodMetrics(start=start, end=end)
    m.tokens = dict.fromkeys((*TOKEN_BUCKETS, "removed_tokens"), 0)
    m.saved_by_strategy = dict.fromkeys(STRATEGIES, 0.0)
    mix: dict[str, dict[str, Any]] = {}
    days: dict[str, dict[str, Any]] = {}
    sess: dict[str, dict[str, Any]] = {}
    lat: dict[str, list[float]] = {}
    m.arms = {"optimized": ArmStats(), "holdout": ArmStats()}
    for r in rows:
        decisions = json.loads(r.get("decisions") or "[]")
        source, error = r["source"], r.get("error")
        m.calls += 1
        day = days.setdefault(
            str(r["ts_iso"])[:10],
            {"calls": 0, "errors": 0, "cost": 0.0, "baseline_cost": 0.0,
             **{f"saved_{s}": 0.0 for s in STRATEGIES}},
        )  # fmt: skip
        day["calls"] += 1
        if error:
            m.errors += 1
            day["errors"] += 1
            continue
        m.answered += 1
        m.estimated += int(bool(r.get("tokens_estimated")))
        arm = m.arms["holdout" if r.get("holdout") else "optimized"]
        m.holdout_requests += int(bool(r.get("holdout")))
        arm.requests += 1
        cost, base = float(r["cost"] or 0), float(r["baseline_cost"] or 0)
        m.cost += cost
        m.baseline_cost += base
        arm.cost += cost
        arm.baseline_cost += base
        day["cost"] += cost
        day["baseline_cost"] += base
        for s in STRATEGIES:
            v = float(r.get(f"saved_{s}") or 0)
            m.saved_by_strategy[s] += v
            day[f"saved_{s}"] += v
        for b in (*TOKEN_BUCKETS, "removed_tokens"):
            m.tokens[b] += int(r.get(b) or 0)
        if r.get("latency_ms") is not None:
            lat.setdefault(source, []).append(float(r["latency_ms"]))
            if source in INTERACTIVE_SOURCES:
                lat.setdefault("interactive", []).append(float(r["latency_ms"]))
        verdict = feedback.get(r["request_id"])
        if verdict:
            arm.good += verdict == "good"
            arm.bad += verdict == "bad"
            key = f"{source}/{r.get('tier') or '-'}"
            m.feedback.setdefault(key, {"good": 0, "bad": 0})[verdict] += 1
        if r.get("session"):
            per = sess.setdefault(r["session"], {"calls": 0, "cost": 0.0, "baseline_cost": 0.0})
            per["calls"] += 1
            per["cost"] += cost
            per["baseline_cost"] += base
        if was_deferred(decisions) or r["request_id"] in queued:
            m.deferred += 1
        if source == "cache":
            m.cache_hits += 1
            if cache_hit_kind(decisions) == "semantic":
                m.semantic_hits += 1
            else:
                m.exact_hits += 1
            continue
        if source not in MODEL_SOURCES:
            continue
        m.model_calls += 1
        arm.model_calls += 1
        if source == "batch" or r.get("service_tier") == "batch":
            m.batch_calls += 1
        if was_escalated(r, decisions):
            m.escalations += 1
            arm.escalations += 1
        if r.get("tier") == cheap_tier or r.get("model") in cheap_models:
            m.cheap_calls += 1
        entry = mix.setdefault(r.get("model") or "-", {"calls": 0, "cost": 0.0})
        entry["calls"] += 1
        entry["cost"] += cost
    m.model_mix = [
        {"model": k, "calls": v["calls"], "share": v["calls"] / m.model_calls, "cost": v["cost"]}
        for k, v in sorted(mix.items(), key=lambda kv: -kv[1]["calls"])
    ]
    m.latency_ms = {k: _latency(v) for k, v in sorted(lat.items())}
    m.per_day = [{"day": k, **v} for k, v in sorted(days.items())]
    m.per_session = [
        {"session": k, **v}
        for k, v in sorted(sess.items(), key=lambda kv: -kv[1]["cost"])[:sessions]
    ]
    return m


def session_metrics(db: Database, session: str, *, include_offline: bool = True) -> dict[str, Any]:
    """Calls, cost, baseline and savings of one `ask --session` id, over all time, and how
    many of its offline-backend calls were left out (`offline_left_out`)."""
    ledger = Ledger(db)
    totals = ledger.session_totals(session, include_offline=include_offline)
    totals["offline_left_out"] = 0 if include_offline else ledger.offline_calls(session=session)
    return totals


def queue_status(db: Database, now: float, stuck_after_s: float) -> dict[str, Any]:
    """The deferred queue: tasks by state, how many are open, the oldest open one's age
    and how many have not moved for `stuck_after_s`."""
    return Queue(db).status(now, stuck_after_s)


def measure(db: Database, config: Config, start: float, end: float) -> PeriodMetrics:
    """period_metrics with the config's cheapest tier (the first one listed) as "cheap",
    counting offline-backend rows as the config says (Config.counts_offline)."""
    cheap = next(iter(config.models.tiers))
    models = frozenset({config.models.tiers[cheap]}) - {config.models.baseline}
    return period_metrics(db, start, end, cheap_tier=cheap, cheap_models=models,
                          include_offline=config.counts_offline())  # fmt: skip
