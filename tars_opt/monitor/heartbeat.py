"""The checks behind `tars-opt heartbeat` (and scripts/heartbeat.sh): cache hit rate,
routing share, budget pace, queue backlog and stuck tasks, error rate, regressions. Each run
stores a metric snapshot and raises alerts (once a day per check and level). Exit status:
0 ok, 1 warning, 2 critical.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tars_opt.accounting.alerts import Alert, Alerter, day_period
from tars_opt.accounting.ledger import Ledger
from tars_opt.accounting.money import usd
from tars_opt.accounting.periods import PhaseWindow
from tars_opt.config.schema import Config
from tars_opt.defer.queue import queue_budget
from tars_opt.monitor.baseline import (
    Baseline,
    Target,
    baseline_in_use,
    plan_example,
    raise_regression_alerts,
    resolve_phases,
    resolve_target,
    weekly_regressions,
)
from tars_opt.monitor.metrics import measure, offline_left_out, queue_status
from tars_opt.plural import counted
from tars_opt.store.database import Database
from tars_opt.timefmt import iso

EXIT = {"ok": 0, "skipped": 0, "warning": 1, "critical": 2}
# Given the time, drain the queue if there is work and say what it did, as (status, detail);
# None when nothing was open.
DrainHook = Callable[[float], tuple[str, str] | None]


def drain_hook(config: Config, db: Database) -> DrainHook:
    """The heartbeat's drain: one `tars-opt drain` run when tasks are open or batches are in
    flight (it submits only inside the off-peak window, and always collects)."""

    def run(now: float) -> tuple[str, str] | None:
        from tars_opt.drain.runner import Drainer

        open_tasks = queue_status(db, now, float("inf"))["open"]
        if not open_tasks:
            return None
        try:
            report = Drainer(config, db, clock=lambda: now).run()
        except Exception as exc:  # the heartbeat reports; it must not die on a drain problem
            return "warning", f"drain failed: {exc}"
        sent = sum(b["requests"] for b in report.submitted)
        done = sum(report.outcomes.values())
        where = "in" if report.in_window else "outside"
        return "ok", f"{where} the window: submitted {sent}, collected {done}"

    return run


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | skipped | warning | critical
    value: str
    detail: str


@dataclass
class HeartbeatResult:
    ts: float
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        worst = max((c.status for c in self.checks), key=EXIT.__getitem__, default="ok")
        return "ok" if worst == "skipped" else worst

    @property
    def exit_code(self) -> int:
        return EXIT[self.status]

    def summary_line(self) -> str:
        bad = [c for c in self.checks if c.status in ("warning", "critical")]
        if not bad:
            parts = "; ".join(f"{c.name} {c.value}" for c in self.checks if c.status == "ok")
            return f"tars-opt heartbeat OK: {parts}"
        return f"tars-opt heartbeat {self.status.upper()}: " + "; ".join(
            f"{c.name}: {c.detail}" for c in bad
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": iso(self.ts),
            "status": self.status,
            "exit_code": self.exit_code,
            "summary": self.summary_line(),
            "checks": [c.__dict__ for c in self.checks],
            "metrics": self.metrics,
        }


def active_phase(db: Database, config: Config, now: float) -> PhaseWindow | None:
    """The phase running today (see baseline.resolve_phases), if any."""
    today = datetime.fromtimestamp(now, UTC).date()
    for p in resolve_phases(db, config):
        if p.first is not None and p.last is not None and p.first <= today <= p.last:
            return p
    return None


def _target_check(name: str, actual: float | None, target: Target, where: str) -> Check:
    if actual is None:
        return Check(name, "skipped", "-", "no requests in the window")
    value = f"{actual:.1%}"
    if target.stated is None:
        return Check(name, "ok", value, "no target set for now")
    if target.value is None:
        return Check(name, "ok", value, f"the {target.stated:.0%} target ({where}) is the "
                     "plan's example: not judged without a baseline of yours (`tars-opt "
                     "baseline capture`)")  # fmt: skip
    note = f"; {target.note}" if target.note else ""
    goal = f"the {target.value:.0%} target ({where}{note})"
    if actual < target.value:
        return Check(name, "warning", value, f"{value} is below {goal}")
    return Check(name, "ok", value, f"meets {goal}")


def run_heartbeat(
    db: Database,
    config: Config,
    *,
    now: float,
    alerter: Alerter,
    drain_if_off_peak: DrainHook | None = None,
) -> HeartbeatResult:
    """Run every check, store a snapshot, raise alerts; the caller exits with `exit_code`."""
    hb = config.heartbeat
    result = HeartbeatResult(ts=now)
    window = measure(db, config, now - hb.window_h * 3600, now)
    base = baseline_in_use(db, config)
    phase = active_phase(db, config, now)
    targets = phase.targets if phase else None
    where = f"phase {phase.number}" if phase else "no active phase"

    def target(metric: str) -> Target:
        stated = getattr(targets, metric) if targets else None
        return resolve_target(metric, stated, base, plan_example(targets))

    result.checks.append(
        _target_check("cache hit rate", window.cache_hit_rate, target("cache_hit_rate"), where)
    )
    result.checks.append(
        _target_check("routing share", window.cheap_share, target("cheap_share"), where)
    )
    tracker = queue_budget(config, db, clock=lambda: now)
    tracker.check_alerts(alerter)  # thresholds crossed by work that did not pass `ask`
    budget = tracker.state()
    result.checks.append(_budget_check(budget.used_share, budget.pace_usd, budget.budget_usd))
    queue = queue_status(db, now, hb.stuck_after_h * 3600)
    result.checks.append(_queue_check(queue, hb.max_backlog, hb.stuck_after_h))
    result.checks.append(_error_check(window.error_rate, window.calls, base, config))
    found = weekly_regressions(db, config, now)
    raise_regression_alerts(found, alerter, now)
    if found:
        worst = max(found, key=lambda r: r.worse_by)
        status = "critical" if any(r.level == "critical" for r in found) else "warning"
        result.checks.append(Check("regressions", status, str(len(found)), worst.message()))
    else:
        result.checks.append(Check("regressions", "ok", "0", "none against baseline or last week"))
    if drain_if_off_peak is not None:
        did = drain_if_off_peak(now)
        if did is None:
            result.checks.append(Check("drain", "ok", "idle", "nothing due"))
        else:
            status, detail = did
            value = "failed" if status != "ok" else "ran"
            result.checks.append(Check("drain", status, value, detail))
    result.metrics = {
        "window_h": hb.window_h,
        "window": window.summary(),
        "cost": window.cost,
        "saved": window.saved,
        "budget": budget.to_dict(),
        "queue": queue,
        "phase": phase.number if phase else None,
        "baseline": base.describe(),
        "offline_left_out": offline_left_out(Ledger(db), config, window.start, window.end),
    }
    for c in result.checks:
        if c.status in ("warning", "critical") and c.name != "regressions":
            alerter.raise_once(Alert(f"heartbeat:{c.name}:{c.status}", c.status,
                                     f"{c.name}: {c.detail}", day_period(now)))  # fmt: skip
    db.execute(
        "INSERT INTO metric_snapshots (ts, ts_iso, kind, status, metrics) VALUES (?, ?, ?, ?, ?)",
        [now, iso(now), "heartbeat", result.status,
         json.dumps({**result.metrics, "checks": [c.__dict__ for c in result.checks]},
                    default=str)],
    )  # fmt: skip
    return result


def _budget_check(used: float, pace: float, budget: float) -> Check:
    value = f"{used:.0%} used, pace {usd(pace)}/{usd(budget)}"
    if used >= 1.0:
        return Check("budget", "critical", value, f"the monthly budget is spent ({value})")
    if pace > budget:
        return Check("budget", "warning", value, f"on pace to pass the budget ({value})")
    if used >= 0.8:
        return Check("budget", "warning", value, f"80% of the budget spent ({value})")
    return Check("budget", "ok", value, "within budget and pace")


def _queue_check(queue: dict[str, Any] | None, max_backlog: int, stuck_h: float) -> Check:
    if queue is None:
        return Check("queue", "skipped", "-", "no deferral queue in this database")
    value = f"{queue['open']} waiting"
    problems = []
    if queue["open"] > max_backlog:
        problems.append(f"backlog {queue['open']} > {max_backlog}")
    if queue.get("stuck"):
        problems.append(f"{queue['stuck']} task(s) waiting over {stuck_h:g} h")
    if problems:
        return Check("queue", "warning", value, "; ".join(problems))
    return Check("queue", "ok", value, "no backlog, nothing stuck")


def _error_check(rate: float | None, calls: int, baseline: Baseline, config: Config) -> Check:
    if rate is None:
        return Check("error rate", "skipped", "-", "no requests in the window")
    value = f"{rate:.1%}"
    base = baseline.metrics.get("error_rate")
    if not baseline.judged:
        return Check("error rate", "ok", value, "not compared: the only baseline is the plan's "
                     "example, someone else's system (`tars-opt baseline capture`)")  # fmt: skip
    if calls < config.regression.min_calls or not base:
        return Check("error rate", "ok", value, f"{counted(calls, 'call')}: too few to judge")
    worse = (rate - base) / base
    detail = f"{value} vs baseline {base:.1%}"
    if worse > config.regression.critical:
        return Check("error rate", "critical", value, detail)
    if worse > config.regression.warning:
        return Check("error rate", "warning", value, detail)
    return Check("error rate", "ok", value, detail)
