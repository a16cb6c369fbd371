"""The baseline (what the unoptimized system did), regression detection against it, the
targets judged against it, and where the rollout phases start.

Which baseline applies is one rule, `baseline_in_use`: the newest capture (`tars-opt
baseline capture`, until `baseline reset` removes it), else `baseline:` figures the user
stated in the config, else - over a report's period - the ledger's own baseline column
(cost only), else the plan's example figures, which are someone else's system: shown for
reference, never judged against. Capturing refuses (unless forced) a period that is not
over or was already optimized. Regressions compare the last 7 days with the baseline and
with the 7 days before. Phases count from the day after the captured baseline, else from
the first counted call in the ledger, unless the config fixes `phases_start`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tars_opt.accounting.alerts import Alert, Alerter, week_period
from tars_opt.accounting.ledger import Ledger
from tars_opt.accounting.money import usd
from tars_opt.accounting.periods import PhaseWindow, phase_windows
from tars_opt.config.schema import BaselineConfig, Config, PhaseTargets, plan_phases
from tars_opt.errors import BaselineRefused
from tars_opt.monitor.metrics import DAY, PeriodMetrics, date_range, measure, offline_left_out
from tars_opt.plural import counted
from tars_opt.store.database import Database
from tars_opt.timefmt import iso


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
    """Headline figures of the unoptimized system and where they come from.

    `kind`: captured (measured by `baseline capture`; `id` is its row), config (`baseline:`
    figures the user stated), ledger (the ledger's per-call baseline column over a report's
    period: cost only) or plan (the shipped `baseline:` block: the plan's example figures).
    """

    metrics: dict[str, float | None]
    source: str
    start: str | None = None
    end: str | None = None
    kind: str = "config"
    id: int | None = None
    captured_at: str | None = None

    @property
    def judged(self) -> bool:
        """Whether targets and regressions are judged against it: not against the plan's
        example figures, which describe someone else's system."""
        return self.kind != "plan"

    def describe(self) -> str:
        """Which baseline this is, where its figures come from and why it applies."""
        if self.kind == "captured":
            return (
                f"captured baseline #{self.id}, {self.source} (measured by `tars-opt "
                "baseline capture`)"
            )
        if self.kind == "ledger":
            return (
                "the ledger's baseline column for this period: what the same calls would "
                "have cost as sent, without tars-opt (cost only; `tars-opt baseline capture` "
                "measures the other figures)"
            )
        if self.kind == "config":
            return (
                f"the `baseline:` figures stated in the config ({self.source}), not measured "
                "from this ledger (nothing was captured)"
            )
        return (
            f"the plan's example figures ({self.source}): someone else's system, shown for "
            "reference and not judged against; measure yours with `tars-opt baseline capture`"
        )

    def to_dict(self) -> dict[str, Any]:
        """What `--json` shows: the fields, why it applies and whether it is judged against."""
        return {**self.__dict__, "why": self.describe(), "judged": self.judged}

    def regression_view(self) -> dict[str, float | None]:
        calls, cost = self.metrics.get("calls_per_day"), self.metrics.get("daily_cost_usd")
        return {
            **{k: self.metrics.get(k) for k in REGRESSION_METRICS},
            "cost_per_request": cost / calls if cost is not None and calls else None,
        }


PLAN_BASELINE: dict[str, float] = {
    k: v for k, v in BaselineConfig().model_dump().items() if k in METRICS
}


def config_baseline(config: Config) -> Baseline:
    """The config's `baseline:` figures: kind `plan` while they are the shipped example
    (even when a config file repeats them), `config` once the user stated their own."""
    data = config.baseline.model_dump()
    metrics = {k: data[k] for k in METRICS}
    kind = "plan" if metrics == PLAN_BASELINE else "config"
    return Baseline(metrics=metrics, source=data["source"], kind=kind)


@dataclass(frozen=True)
class CaptureProblem:
    """Why a period is no baseline: `short` goes into the stored source when forced."""

    short: str
    detail: str


@dataclass(frozen=True)
class Captured:
    """A stored capture, the problems --force overrode (empty when none) and how many
    offline-backend calls of the period it left out."""

    baseline: Baseline
    forced: list[CaptureProblem] = field(default_factory=list)
    offline_left_out: int = 0


def capture_problems(
    m: PeriodMetrics, config: Config, last: date, now: float
) -> list[CaptureProblem]:
    """What makes the measured period `m` (ending on day `last`) a poor baseline: not over
    yet, too few days with calls, or already optimized (thresholds: `baseline.capture`)."""
    cfg = config.baseline.capture
    today = datetime.fromtimestamp(now, UTC).date()
    found: list[CaptureProblem] = []
    if last >= today:
        detail = f"it runs to {last}, which is not over yet (today is {today}, UTC)"
        found.append(CaptureProblem("not over yet", detail))
    days = len(m.per_day)
    if days < cfg.min_days:
        detail = (
            f"it has calls on {days} day(s), fewer than baseline.capture.min_days ({cfg.min_days})"
        )
        found.append(CaptureProblem(f"calls on {days} day(s)", detail))
    optimized = (
        (m.cheap_share, cfg.max_cheap_share, "of model calls on the cheapest tier",
         "max_cheap_share", "cheap tier"),
        (m.cache_hit_rate, cfg.max_cache_hit_rate, "of requests answered by the response cache",
         "max_cache_hit_rate", "cache hits"),
        (m.deferred_share, cfg.max_deferred_share, "of requests deferred",
         "max_deferred_share", "deferred"),
    )  # fmt: skip
    for value, limit, what, key, short in optimized:
        if value is not None and value > limit:
            detail = (
                f"{value:.1%} {what}, over baseline.capture.{key} ({limit:.0%}): it was "
                "already optimized"
            )
            found.append(CaptureProblem(f"{value:.0%} {short}", detail))
    return found


def capture_baseline(
    db: Database,
    config: Config,
    first: date,
    last: date,
    now: float,
    *,
    force: bool = False,
) -> Captured:
    """Measure a baseline over whole UTC days first..last from the ledger and store it; it
    becomes the active baseline.

    Raises BaselineRefused when the period is not over, has too few days with calls or was
    already optimized (see capture_problems), unless `force`: then it is stored with those
    problems named in its source and returned in `Captured.forced`.
    """
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    start, end = date_range(first, last)
    m = measure(db, config, start, min(end, now))
    offline = offline_left_out(Ledger(db), config, start, min(end, now))
    if m.calls == 0:
        if offline:
            raise ValueError(
                f"the ledger's only calls from {first} to {last} are "
                f"{counted(offline, 'offline-backend call')}, not counted: pick other dates "
                "(--include-offline counts them, but placeholder calls are no baseline)"
            )
        raise ValueError(f"the ledger has no calls from {first} to {last}: pick other dates")
    problems = capture_problems(m, config, last, now)
    if problems and not force:
        raise BaselineRefused(
            f"not capturing {first}..{last} as the baseline: "
            + "; ".join(p.detail for p in problems)
            + ". A baseline is finished days of the unoptimized system: pick other dates, or "
            "add --force to capture it anyway",
            problems,
        )
    source = f"ledger {first}..{last} ({counted(m.calls, 'call')})"
    if problems:
        source += " captured with --force despite: " + ", ".join(p.short for p in problems)
    metrics = m.summary()
    row = {"ts": now, "start": str(first), "end": str(last), "source": source,
           "metrics": json.dumps(metrics)}  # fmt: skip
    new_id = db.insert("baselines", row)
    base = Baseline(metrics, source, str(first), str(last), "captured", new_id, iso(now))
    return Captured(base, problems, offline)


def captured_baselines(db: Database) -> list[Baseline]:
    """Every captured baseline, newest (the active one) first."""
    rows = db.execute(
        'SELECT id, ts, start, "end", source, metrics FROM baselines ORDER BY ts DESC, id DESC'
    ).fetchall()
    return [Baseline(json.loads(r[5]), r[4], r[2], r[3], "captured", r[0], iso(r[1])) for r in rows]


def remove_baseline(db: Database, baseline_id: int | None = None) -> Baseline | None:
    """Remove a captured baseline: `baseline_id`, else the active (newest) one. Returns what
    was removed, None when there was nothing to remove (ValueError for an unknown id). The
    next newest capture, else the config's figures, then applies."""
    captured = captured_baselines(db)
    gone: Baseline | None
    if baseline_id is None:
        if not captured:
            return None
        gone = captured[0]
    else:
        gone = next((b for b in captured if b.id == baseline_id), None)
        if gone is None:
            known = ", ".join(f"#{b.id}" for b in captured) or "none"
            raise ValueError(
                f"no captured baseline #{baseline_id} (captured: {known}): see `tars-opt "
                "baseline list`"
            )
    db.execute("DELETE FROM baselines WHERE id = ?", [gone.id])
    return gone


def baseline_in_use(db: Database, config: Config, period: PeriodMetrics | None = None) -> Baseline:
    """The baseline that applies (`describe()` says why); every command and report asks
    this one rule. In order: the newest captured baseline; the `baseline:` figures the user
    stated in the config; over a `period` (a report), the ledger's own baseline column
    (cost per day with calls: what the same calls would have cost as sent); the plan's
    example figures, which are not judged against (`Baseline.judged`)."""
    captured = captured_baselines(db)
    if captured:
        return captured[0]
    stated = config_baseline(config)
    if stated.kind == "config":
        return stated
    if period is not None:
        daily = period.per_day_of(period.baseline_cost)
        if period.answered and period.baseline_cost > 0 and daily is not None:
            metrics: dict[str, float | None] = dict.fromkeys(METRICS)
            metrics["daily_cost_usd"] = daily
            return Baseline(metrics, "ledger baseline column", kind="ledger")
    return stated


def plan_example(targets: PhaseTargets | None) -> bool:
    """Whether phase targets are the plan's example ones (the shipped `phases:`), stated for
    the plan's own system rather than by the user."""
    return targets is not None and targets in [p.targets for p in plan_phases()]


@dataclass(frozen=True)
class Target:
    """One phase target as reports and the heartbeat judge it.

    `stated` is the config's value; `value` what the actual is judged against (None: not
    judged). A user's own target is judged as stated. A target of the plan's example is
    the plan's change from its own baseline, so it is judged only as the same change on a
    baseline of this user's (relative for amounts and times, in points for shares that
    start at 0); without one it is shown, labelled, and not judged.
    """

    stated: float | None
    value: float | None
    example: bool = False
    note: str = ""


def resolve_target(name: str, stated: float | None, base: Baseline, example: bool) -> Target:
    """The target for metric `name` (see Target); `example`: the targets are the plan's."""
    if stated is None or not example:
        return Target(stated, stated, False)
    plan = PLAN_BASELINE[name]
    own = base.metrics.get(name) if base.judged else None
    if own is None:
        return Target(stated, None, True, "plan example")
    if plan > 0:
        value = own * stated / plan
        note = f"plan example: {stated / plan - 1:+.0%} on your baseline"
    else:
        value = min(max(own + stated - plan, 0.0), 1.0)
        note = f"plan example: {(stated - plan) * 100:+.0f} points on your baseline"
    return Target(stated, value, True, note)


def phases_start(db: Database, config: Config) -> tuple[date | None, str]:
    """The day phase 1 starts and why: `phases_start` when the config fixes it, else the day
    after the captured baseline in use, else the day of the first counted call in the
    ledger (offline-backend calls count as Config.counts_offline says; None while there is
    none)."""
    if config.phases_start != "auto":
        return config.phases_start, "`phases_start` in the config"
    captured = captured_baselines(db)
    if captured and captured[0].end:
        after = date.fromisoformat(captured[0].end) + timedelta(days=1)
        return (
            after,
            f"the day after the captured baseline {captured[0].start}..{captured[0].end}",
        )
    ledger = Ledger(db)
    first = ledger.first_ts(include_offline=config.counts_offline())
    if first is None:
        offline = 0 if config.counts_offline() else ledger.offline_calls()
        which = "which is" if offline == 1 else "which are"
        has = (
            f"has only {counted(offline, 'offline-backend call')}, {which} not counted "
            "(--include-offline counts them)"
            if offline
            else "has none yet"
        )
        return None, (
            f"phases count from the first call in the ledger and it {has} (set "
            "`phases_start: YYYY-MM-DD` in performance-config.yaml to fix the start)"
        )
    when = iso(first)[:16].replace("T", " ")
    return datetime.fromtimestamp(first, UTC).date(), f"the first call in the ledger, {when} UTC"


def resolve_phases(db: Database, config: Config) -> list[PhaseWindow]:
    """The config's phases on the calendar (see phases_start)."""
    start, why = phases_start(db, config)
    return phase_windows(config.phases, start, why)


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
        return usd(value)
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


def weekly_regressions(db: Database, config: Config, now: float) -> list[Regression]:
    """The last 7 days against the baseline and the 7 days before (enough calls only)."""
    cfg = config.regression
    week = measure(db, config, now - 7 * DAY, now)
    if week.calls < cfg.min_calls:
        return []
    current = regression_view(week)
    base = baseline_in_use(db, config)
    found = []
    if base.judged:
        found = compare(current, base.regression_view(), "baseline", cfg.warning, cfg.critical)
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
