"""The baseline (what the unoptimized system did) and regression detection against it.

A baseline is either stated in the config's `baseline:` block (the plan's numbers, with
their source) or measured from the ledger by `tars-opt baseline capture`; the newest capture
wins. Regressions compare the last 7 days with the baseline and with the 7 days before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlite_utils

from tars_opt.alerts import Alert, Alerter, week_period
from tars_opt.config import Config
from tars_opt.metrics import DAY, PeriodMetrics, date_range, measure


@dataclass(frozen=True)
class MetricInfo:
    label: str
    higher_is_better: bool
    kind: str  # usd | count | share | seconds


# The headline metrics, named as the config's baseline and phase targets name them.
METRICS: dict[str, MetricInfo] = {
    "daily_cost_usd": MetricInfo("Daily cost", False, "usd"),
    "calls_per_day": MetricInfo("API calls / day", False, "count"),
    "tokens_per_day": MetricInfo("Tokens / day", False, "count"),
    "cheap_share": MetricInfo("Cheap-tier share", True, "share"),
    "cache_hit_rate": MetricInfo("Cache hit rate", True, "share"),
    "batch_share": MetricInfo("Batch share", True, "share"),
    "latency_s": MetricInfo("Response time (mean, interactive)", False, "seconds"),
    "error_rate": MetricInfo("Error rate", False, "share"),
}
# Compared week on week: rates and per-request figures, not volumes (a busier week is not
# a regression of the optimizer).
REGRESSION_METRICS: dict[str, MetricInfo] = {
    "cost_per_request": MetricInfo("Cost per request", False, "usd"),
    "latency_s": METRICS["latency_s"],
    "error_rate": METRICS["error_rate"],
    "cache_hit_rate": METRICS["cache_hit_rate"],
    "cheap_share": METRICS["cheap_share"],
}


@dataclass(frozen=True)
class Baseline:
    """Headline figures of the unoptimized system and where they come from."""

    metrics: dict[str, float | None]
    source: str
    start: str | None = None
    end: str | None = None

    def regression_view(self) -> dict[str, float | None]:
        calls, cost = self.metrics.get("calls_per_day"), self.metrics.get("daily_cost_usd")
        return {
            **{k: self.metrics.get(k) for k in REGRESSION_METRICS},
            "cost_per_request": cost / calls if cost is not None and calls else None,
        }


def config_baseline(config: Config) -> Baseline:
    data = config.baseline.model_dump()
    source = data.pop("source")
    return Baseline(metrics=data, source=source)


def capture_baseline(
    db: sqlite_utils.Database, config: Config, first: date, last: date, now: float
) -> Baseline:
    """Measure a baseline over whole UTC days first..last from the ledger and store it."""
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    start, end = date_range(first, last)
    m = measure(db, config, start, end)
    if m.calls == 0:
        raise ValueError(f"the ledger has no calls from {first} to {last}: pick other dates")
    base = Baseline(
        metrics=m.summary(),
        source=f"ledger {first}..{last} ({m.calls} calls)",
        start=str(first),
        end=str(last),
    )
    db.execute(
        'INSERT INTO baselines (ts, start, "end", source, metrics) VALUES (?, ?, ?, ?, ?)',
        [now, base.start, base.end, base.source, json.dumps(base.metrics)],
    )
    return base


def current_baseline(db: sqlite_utils.Database, config: Config) -> Baseline:
    """The newest captured baseline, else the config's."""
    row = db.execute(
        'SELECT start, "end", source, metrics FROM baselines ORDER BY ts DESC, id DESC LIMIT 1'
    ).fetchone()
    if row is None:
        return config_baseline(config)
    return Baseline(metrics=json.loads(row[3]), source=row[2], start=row[0], end=row[1])


def regression_view(m: PeriodMetrics) -> dict[str, float | None]:
    """The figures compared week on week, from measured metrics."""
    s = m.summary()
    return {
        **{k: s.get(k) for k in REGRESSION_METRICS if k != "cost_per_request"},
        "cost_per_request": m.cost / m.answered if m.answered else None,
    }


@dataclass(frozen=True)
class Regression:
    metric: str
    label: str
    current: float
    reference: float
    against: str  # "baseline" | "previous week"
    worse_by: float  # relative, e.g. 0.12 = 12% worse
    level: str  # warning | critical

    def message(self) -> str:
        return (
            f"{self.label} is {self.worse_by:.0%} worse than the {self.against} "
            f"({_fmt(self.metric, self.current)} vs {_fmt(self.metric, self.reference)})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "message": self.message()}


def _fmt(metric: str, value: float) -> str:
    kind = REGRESSION_METRICS[metric].kind
    if kind == "share":
        return f"{value:.1%}"
    if kind == "usd":
        return f"${value:.4f}"
    return f"{value:.2f} s"


def compare(
    current: dict[str, float | None],
    reference: dict[str, float | None],
    against: str,
    warning: float,
    critical: float,
) -> list[Regression]:
    """Metrics of `current` worse than `reference` by more than `warning` (relative)."""
    found = []
    for name, info in REGRESSION_METRICS.items():
        cur, ref = current.get(name), reference.get(name)
        if cur is None or ref is None or ref <= 0:
            continue  # no reference to be relative to (e.g. a 0% cache hit baseline)
        worse = (ref - cur) / ref if info.higher_is_better else (cur - ref) / ref
        if worse > warning:
            level = "critical" if worse > critical else "warning"
            found.append(Regression(name, info.label, cur, ref, against, worse, level))
    return found


def weekly_regressions(db: sqlite_utils.Database, config: Config, now: float) -> list[Regression]:
    """The last 7 days against the baseline and the 7 days before (enough calls only)."""
    cfg = config.regression
    week = measure(db, config, now - 7 * DAY, now)
    if week.calls < cfg.min_calls:
        return []
    current = regression_view(week)
    found = compare(
        current,
        current_baseline(db, config).regression_view(),
        "baseline",
        cfg.warning,
        cfg.critical,
    )
    previous = measure(db, config, now - 14 * DAY, now - 7 * DAY)
    if previous.calls >= cfg.min_calls:
        found += compare(
            current, regression_view(previous), "previous week", cfg.warning, cfg.critical
        )
    return found


def raise_regression_alerts(
    found: list[Regression], alerter: Alerter, now: float | Callable[[], float]
) -> int:
    """One alert per regression (metric, reference, level) per ISO week; how many were new."""
    moment = now() if callable(now) else now
    sent = 0
    for r in found:
        alert = Alert(
            key=f"regression:{r.metric}:{r.against}:{r.level}",
            level=r.level,
            message=r.message(),
            period=week_period(moment),
            data=r.to_dict(),
        )
        sent += alerter.raise_once(alert)
    return sent
