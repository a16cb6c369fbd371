"""Markdown benchmark reports (phase, week, final, any range) with PNG charts beside them.

A report states, for its period: baseline vs target vs actual with pass/fail per metric,
savings by strategy, cost per day against the budget, model mix, cache and routing quality
signals, alerts raised and the measured A/B holdout comparison. Every number comes from the
ledger; estimated figures are labelled as such, and the offline backend's placeholder calls
are counted as the config says and the report says how many were left out. Targets of the
plan's example are judged only as the same change on the user's own baseline.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tars_opt.accounting.alerts import alerts_between
from tars_opt.accounting.ledger import Ledger
from tars_opt.accounting.money import usd
from tars_opt.config.schema import Config, PhaseTargets
from tars_opt.errors import ReportError
from tars_opt.monitor import charts
from tars_opt.monitor.baseline import (
    METRICS,
    PLAN_BASELINE,
    Baseline,
    baseline_in_use,
    plan_example,
    resolve_phases,
    resolve_target,
)
from tars_opt.monitor.metrics import (
    PeriodMetrics,
    date_range,
    last_full_iso_week,
    measure,
    offline_left_out,
)
from tars_opt.plural import counted
from tars_opt.store.database import Database
from tars_opt.store.files import atomic_write_text
from tars_opt.types import STRATEGIES


@dataclass(frozen=True)
class ReportSpec:
    """What to report on: a titled range of whole UTC days, and targets if any."""

    kind: str  # phase | week | final | range
    title: str
    first: date
    last: date
    filename: str
    targets: PhaseTargets | None = None
    why: str | None = None  # why the period has these dates (phases)
    example: bool = False  # the targets are the plan's example (see baseline.plan_example)


@dataclass
class ReportResult:
    path: Path
    charts: list[Path] = field(default_factory=list)
    passed: int = 0
    judged: int = 0  # targets with a PASS or FAIL
    no_data: int = 0  # targets not judged: the metric had no data in the period
    # Plan-example targets not judged: no baseline of the user's to place them on.
    no_baseline: int = 0
    baseline: Baseline | None = None  # the one baseline the tables and both charts use
    offline_left_out: int = 0  # offline-backend calls in the period the figures leave out

    @property
    def targets(self) -> int:
        return self.judged + self.no_data

    def targets_line(self) -> str:
        """`4 of 6`, `0 of 3 (3 without data)`, or `1 of 1; 5 plan-example targets not
        judged: no baseline of yours`."""
        line = f"{self.passed} of {self.targets}"
        if self.no_data:
            line += f" ({self.no_data} without data)"
        if self.no_baseline:
            targets = counted(self.no_baseline, "plan-example target")
            line += f"; {targets} not judged: no baseline of yours"
        return line


def phase_spec(db: Database, config: Config, number: int) -> ReportSpec:
    """Phase `number` (1-based) of the config's `phases:`, placed on the calendar (see
    baseline.phases_start)."""
    if not 1 <= number <= len(config.phases):
        raise ReportError(
            f"--phase {number}: the config lists {len(config.phases)} phase(s); "
            "add it under `phases:` in performance-config.yaml"
        )
    p = resolve_phases(db, config)[number - 1]
    if p.first is None or p.last is None:
        raise ReportError(f"--phase {number} has no dates yet: {p.why}")
    why = f"phase {number} is {p.why}"
    return ReportSpec(
        "phase", f"Phase {number} benchmark: {p.name}", p.first, p.last,
        f"PHASE_{number}_BENCHMARK.md", p.targets, why, plan_example(p.targets),
    )  # fmt: skip


def week_spec(now: float) -> ReportSpec:
    """The last full ISO week (Monday to Sunday) before `now`."""
    monday, sunday, label = last_full_iso_week(now)
    return ReportSpec("week", f"Week {label}", monday, sunday, f"WEEK_{label}.md")


def final_spec(db: Database, config: Config) -> ReportSpec:
    """From the first phase's start to the last one's end, judged by the last targets."""
    if not config.phases:
        raise ReportError("--final needs `phases:` in performance-config.yaml")
    phases = resolve_phases(db, config)
    first, last = phases[0], phases[-1]
    if first.first is None or last.last is None:
        raise ReportError(f"--final has no dates yet: {last.why}")
    why = f"phase 1 is {first.why}; phase {last.number} is {last.why}"
    return ReportSpec("final", "Final benchmark", first.first, last.last, "FINAL_BENCHMARK.md",
                      last.targets, why, plan_example(last.targets))  # fmt: skip


def range_spec(first: date, last: date) -> ReportSpec:
    if last < first:
        raise ReportError(f"--to {last} is before --from {first}")
    return ReportSpec("range", f"Benchmark {first} to {last}", first, last,
                      f"REPORT_{first}_{last}.md")  # fmt: skip


# --- formatting -----------------------------------------------------------------------


def fmt(kind: str, value: float | None) -> str:
    if value is None:
        return "—"
    if kind == "usd":
        return usd(value)
    if kind == "share":
        return f"{value:.1%}"
    if kind == "seconds":
        return f"{value:.2f} s"
    return f"{value:,.0f}"


def _change(actual: float | None, base: float | None) -> str:
    if actual is None or base is None:
        return "—"
    if base == 0:
        return "—" if actual == 0 else "new"
    return f"{(actual - base) / base:+.1%}"


def judge(name: str, actual: float | None, target: float | None) -> str:
    """PASS / FAIL against a target in the metric's good direction; — when not judged."""
    if target is None:
        return "—"
    if actual is None:
        return "no data"
    ok = actual >= target if METRICS[name].higher_is_better else actual <= target
    return "PASS" if ok else "FAIL"


def _target_cell(kind: str, value: float | None, stated: float | None, note: str) -> str:
    if stated is None:
        return "—"
    if not note:
        return fmt(kind, value)
    shown = value if value is not None else stated
    return f"{fmt(kind, shown)} ({note})"


def _n_days(n: float) -> str:
    if n == 1:
        return "1 day"
    return f"{n:.0f} days" if n == round(n) else f"{n:.1f} days"


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """The lines of a Markdown (GitHub) table; cells are used as given."""
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# --- the report ----------------------------------------------------------------------


def _full_days(m: PeriodMetrics, first: date, last: date) -> list[dict[str, Any]]:
    """One entry per day of the period (zeros where no call was made)."""
    by_day = {d["day"]: d for d in m.per_day}
    out, day = [], first
    while day <= last:
        out.append(by_day.get(str(day), {"day": str(day), "calls": 0, "errors": 0, "cost": 0.0,
                                         "baseline_cost": 0.0}))  # fmt: skip
        day += timedelta(days=1)
    return out


def write_report(
    db: Database,
    config: Config,
    spec: ReportSpec,
    *,
    now: float,
    out: Path | None = None,
    config_label: str | None = None,
) -> ReportResult:
    """Measure the period, write the Markdown and its charts; return where they went.
    `config_label` names the config file read (the report says so)."""
    start, end = date_range(spec.first, spec.last)
    if start > now:
        raise ReportError(f"{spec.title} starts {spec.first}: nothing to report yet")
    in_progress = end > now
    last_day = spec.last
    if in_progress:
        end = now
        last_day = datetime.fromtimestamp(now, UTC).date()
    m = measure(db, config, start, end)
    # One baseline for the whole report: its tables and both charts. The charts draw only
    # what the tables judge against: never the plan's example figures (someone else's $8.50).
    base = baseline_in_use(db, config, m)
    baseline_daily = base.metrics.get("daily_cost_usd") if base.judged else None
    path = out if out is not None else Path(config.reports.dir) / spec.filename
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create {path.parent}: {exc.strerror}; use --out") from None
    days = _full_days(m, spec.first, last_day)
    stem = path.with_suffix("")
    savings_png = charts.savings_chart(
        days, Path(f"{stem}_savings.png"), f"{spec.title}: cost and savings by strategy",
        baseline_daily=baseline_daily,
    )  # fmt: skip
    month_days = calendar.monthrange(spec.first.year, spec.first.month)[1]
    daily_budget = config.budget.monthly_usd / month_days
    stated = spec.targets.daily_cost_usd if spec.targets else None
    target_daily = resolve_target("daily_cost_usd", stated, base, spec.example).value
    cost_png = charts.cost_vs_budget_chart(
        days, daily_budget, Path(f"{stem}_cost.png"), f"{spec.title}: cost per day vs budget",
        baseline_daily=baseline_daily, target_daily=target_daily,
    )  # fmt: skip
    result = ReportResult(path, [savings_png, cost_png], baseline=base)
    result.offline_left_out = offline_left_out(Ledger(db), config, start, end)
    alerts = alerts_between(db, start, end)
    lines = _render(spec, m, base, days, daily_budget, alerts, result, now, in_progress, config,
                    config_label)  # fmt: skip
    atomic_write_text(path, "\n".join(lines) + "\n")
    return result


def _render(
    spec: ReportSpec,
    m: PeriodMetrics,
    base: Baseline,
    days: list[dict[str, Any]],
    daily_budget: float,
    alerts: list[dict[str, Any]],
    result: ReportResult,
    now: float,
    in_progress: bool,
    config: Config,
    config_label: str | None = None,
) -> list[str]:
    generated = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M UTC")
    through = f" (in progress: through {generated})" if in_progress else ""
    s = m.summary()
    L: list[str] = [f"# {spec.title}", ""]
    why = f": {spec.why}" if spec.why else ""
    read = f" (config: {config_label})" if config_label else ""
    L.append(f"Period: {spec.first} to {spec.last} (UTC, inclusive){through}{why}. "
             f"Generated {generated} from the tars-opt ledger{read}.")  # fmt: skip
    L.append("")
    L.append(f"Baseline: {base.describe()}.")
    L.append("")
    offline = result.offline_left_out
    calls = counted(offline, "offline-backend call")
    if offline:
        L += [
            f"Not counted: {calls} (placeholder answers, no money spent; `--include-offline` "
            "or `ledger.include_offline: true` counts them).",
            "",
        ]
    if m.calls == 0 and offline:
        L += [f"**This period has only {calls}, left out: no target can be judged.**", ""]
    elif m.calls == 0:
        L += ["**No calls were recorded in this period: no target can be judged.**", ""]
    if not m.data_days:
        L.append("Per-day figures need days with calls: none had any.")
    elif m.data_days < m.days:
        L.append(f"Per-day figures are over the {_n_days(m.data_days)} with calls, not the "
                 f"period's {_n_days(m.days)}.")  # fmt: skip
    else:
        L.append(f"Per-day figures are over the {_n_days(m.data_days)} with calls (all of the "
                 "period).")  # fmt: skip
    L += ["", "## Summary", ""]
    bd = base.metrics.get("daily_cost_usd")
    # The plan's example figures are shown, never compared with.
    vs_bd = _change(s["daily_cost_usd"], bd) if base.judged else "not compared"
    example = "" if base.judged else " plan example"
    rows = [
        ["Requests answered", f"{m.answered:,} ({m.errors:,} failed)"],
        ["Cost per day with calls", f"{fmt('usd', s['daily_cost_usd'])} (baseline{example} "
                                    f"{fmt('usd', bd)}, {vs_bd})"],
        ["Saved (estimated per call, ledger attribution)",
         f"{fmt('usd', m.saved)} = {fmt('share', m.saved_share)} of what the same calls "
         f"would have cost as sent ({fmt('usd', m.baseline_cost)})"],
    ]  # fmt: skip
    opt, hold = m.arms.get("optimized"), m.arms.get("holdout")
    if opt and hold and opt.cost_per_request is not None and hold.cost_per_request:
        measured = 1 - opt.cost_per_request / hold.cost_per_request
        rows.append(
            [
                "Saved (measured, A/B holdout)",
                f"{measured:.1%} per request ({hold.requests} holdout requests)",
            ]
        )
    L += markdown_table(["", ""], rows)
    # Targets
    L += ["", "## Baseline vs target vs actual", ""]
    trows = []
    for name, info in METRICS.items():
        stated = getattr(spec.targets, name) if spec.targets else None
        target = resolve_target(name, stated, base, spec.example)
        if stated is not None and s[name] is not None and target.value is None:
            verdict = "no baseline"
            result.no_baseline += 1
        else:
            verdict = judge(name, s[name], stated if target.value is None else target.value)
        if verdict in ("PASS", "FAIL"):
            result.judged += 1
            result.passed += verdict == "PASS"
        elif verdict == "no data":
            result.no_data += 1
        b = base.metrics.get(name)
        b_cell = fmt(info.kind, b) + (" (plan example)" if b is not None and not base.judged
                                      else "")  # fmt: skip
        trows.append([info.label, b_cell,
                      _target_cell(info.kind, target.value, stated, target.note),
                      fmt(info.kind, s[name]), _change(s[name], b) if base.judged else "—",
                      f"**{verdict}**" if verdict in ("PASS", "FAIL") else verdict])  # fmt: skip
    L += markdown_table(["metric", "baseline", "target", "actual", "vs baseline", "result"], trows)
    if spec.targets:
        unjudged = " A metric without data in the period is not judged." if result.no_data else ""
        L += ["", f"Targets met: **{result.targets_line()}**.{unjudged}"]
    else:
        L += ["", "No targets for this period: actuals against the baseline only."]
    if spec.targets and spec.example:
        L += [
            "",
            "These targets are the plan's example: its own system's figures (from "
            f"{fmt('usd', PLAN_BASELINE['daily_cost_usd'])}/day, "
            f"{fmt('count', PLAN_BASELINE['calls_per_day'])}"
            " calls/day), not yours. Each is judged as the same change on a baseline of "
            "yours (relative for amounts and times, in points for shares) and shows `no "
            "baseline` without one: capture yours with `tars-opt baseline capture --from DAY "
            "--to DAY`, or state your own `targets:` under `phases:` in the config.",
        ]
    L += [
        "",
        "API calls and tokens count calls a model answered (api and batch); cache hits "
        "count as answered requests. Response time is the mean over interactive answers (api "
        "and cache hits; deferred batch work is left out).",
    ]
    # Savings
    L += ["", "## Savings by strategy", ""]
    srows = []
    for k in STRATEGIES:
        v = m.saved_by_strategy.get(k, 0.0)
        srows.append([k.replace("_", " "), fmt("usd", v),
                      fmt("share", v / m.baseline_cost if m.baseline_cost else None),
                      fmt("usd", m.per_day_of(v))])  # fmt: skip
    srows.append(["**total**", f"**{fmt('usd', m.saved)}**", fmt("share", m.saved_share),
                  fmt("usd", m.per_day_of(m.saved))])  # fmt: skip
    L += markdown_table(["strategy", "saved", "of the cost as sent", "per day with calls"], srows)
    L += [
        "",
        "Savings are estimated per call against the request as the client sent it (its "
        "model, no response cache, unpruned history): the chart's bars stack each "
        "strategy's saving on the actual cost, so a bar's height is what the day's calls "
        "would have cost as sent; its dashed line is the report's baseline. Attribution is "
        "fixed-order (pruning, routing, prompt caching, batching, response cache) so the "
        "parts add up to the cost as sent minus the actual cost; a negative figure is a step "
        "that cost more (an escalation, an unread cache write).",
    ]
    if m.estimated:
        L.append(
            f"{m.estimated:,} of {m.answered:,} answered requests have token counts "
            "estimated locally rather than reported by the API."
        )
    L += ["", f"![Cost and savings by strategy per day]({result.charts[0].name})"]
    # Cost per day vs budget
    L += ["", "## Cost per day vs budget", ""]
    L.append(
        f"Budget {usd(config.budget.monthly_usd)}/month = {fmt('usd', daily_budget)}/day; "
        f"{sum(d['cost'] > daily_budget for d in days)} of {counted(len(days), 'day')} over it."
    )
    L += [""]
    drows = [[d["day"], f"{d['calls']:,}", fmt("usd", d["cost"]), fmt("usd", d["baseline_cost"]),
              fmt("usd", d["baseline_cost"] - d["cost"]), "over" if d["cost"] > daily_budget
              else "ok"] for d in days]  # fmt: skip
    L += markdown_table(["day", "calls", "cost", "cost as sent", "saved", "budget"], drows)
    L += ["", f"![Cost per day vs budget]({result.charts[1].name})"]
    # Model mix
    L += ["", "## Model mix", ""]
    if m.model_mix:
        L += markdown_table(["model", "calls", "share", "cost"],
                            [[x["model"], f"{x['calls']:,}", fmt("share", x["share"]),
                              fmt("usd", x["cost"])] for x in m.model_mix])  # fmt: skip
    else:
        L.append("No model calls.")
    # Quality signals
    L += ["", "## Cache and routing quality", ""]
    qrows = [
        ["Cache hits (exact / semantic)", f"{m.exact_hits:,} / {m.semantic_hits:,}"],
        ["Cache hit rate", fmt("share", m.cache_hit_rate)],
        ["Cheap-tier share of model calls", fmt("share", m.cheap_share)],
        ["Escalations to a stronger model", f"{m.escalations:,} "
                                            f"({fmt('share', m.escalation_rate)} of model calls)"],
        ["Deferred (queued for later)", f"{m.deferred:,} ({fmt('share', m.deferred_share)})"],
        ["Batch share", fmt("share", m.batch_share)],
        ["Errors", f"{m.errors:,} ({fmt('share', m.error_rate)})"],
    ]  # fmt: skip
    L += markdown_table(["signal", "value"], qrows)
    L += ["", "Latency by source (ms):", ""]
    L += markdown_table(["source", "requests", "p50", "p95"],
                        [[k, f"{v['n']:,}", f"{v['p50']:,.0f}", f"{v['p95']:,.0f}"]
                         for k, v in m.latency_ms.items()])  # fmt: skip
    L += ["", "User feedback (`tars-opt feedback`), by source / tier:", ""]
    if m.feedback:
        L += markdown_table(
            ["source / tier", "good", "bad"],
            [[k, str(v["good"]), str(v["bad"])] for k, v in sorted(m.feedback.items())],
        )
    else:
        L.append("No feedback recorded for calls in this period.")
    # Alerts
    L += ["", "## Alerts raised", ""]
    if alerts:
        L += markdown_table(["time (UTC)", "level", "alert"],
                            [[a["ts_iso"][:16].replace("T", " "), a["level"].upper(),
                              a["message"]] for a in alerts])  # fmt: skip
    else:
        L.append("None.")
    # A/B
    L += ["", "## A/B holdout: measured, not estimated", ""]
    held = hold.requests if hold else 0
    L.append(f"Held out: {held:,} of {m.answered:,} answered requests "
             f"({fmt('share', held / m.answered if m.answered else None)}; "
             f"`experiment.holdout` is now {config.experiment.holdout:.0%}), chosen by a hash "
             "of the request id and sent unoptimized: baseline model, no cache, pruning, "
             "routing or batching.")  # fmt: skip
    L += [""]
    arow = []
    for name in ("optimized", "holdout"):
        a = m.arms.get(name)
        if a is None:
            continue
        arow.append([name, f"{a.requests:,}", fmt("usd", a.cost_per_request),
                     fmt("usd", a.baseline_per_request), fmt("share", a.escalation_rate),
                     f"{a.bad}/{a.good + a.bad}" if a.good + a.bad else "—"])  # fmt: skip
    L += markdown_table(["arm", "requests", "measured cost / request",
                         "baseline estimate / request", "escalation rate", "bad feedback"],
                        arow)  # fmt: skip
    if (hold is None or not hold.requests) and config.experiment.holdout == 0:
        L += [
            "",
            "The holdout is off (`experiment.holdout: 0`, the default: every held-out call "
            "is paid at the unoptimized price), so the savings above are the ledger's "
            "per-call attribution. To measure them, set e.g. `experiment.holdout: 0.05` for "
            "two weeks.",
        ]
    elif hold is None or hold.requests < 30:
        L += [
            "",
            f"Only {hold.requests if hold else 0} holdout requests: too few for a firm "
            "measured figure (30 or more wanted).",
        ]
    return L
