"""The live dashboard: one frame of spend, savings, model mix, hit rates, queue, recent
calls and active alerts, redrawn every few seconds with rich Live."""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlite_utils
from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tars_opt.alerts import alerts_between
from tars_opt.budget import Budget, BudgetState
from tars_opt.config import Config
from tars_opt.ledger import Ledger, Periods, source_label
from tars_opt.metrics import PeriodMetrics, measure, queue_status
from tars_opt.types import STRATEGIES


@dataclass
class Frame:
    """What one dashboard frame shows, read at `now`."""

    now: float
    today: PeriodMetrics
    month: PeriodMetrics
    budget: BudgetState
    daily_budget: float
    month_budget_to_date: float
    queue: dict[str, Any] | None
    recent: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


def read_frame(db: sqlite_utils.Database, config: Config, now: float) -> Frame:
    p = Periods.at(now)
    moment = datetime.fromtimestamp(now, UTC)
    month_days = calendar.monthrange(moment.year, moment.month)[1]
    monthly = config.budget.monthly_usd
    return Frame(
        now=now,
        today=measure(db, config, p.day, now + 1),
        month=measure(db, config, p.month, now + 1),
        budget=Budget(config, db, clock=lambda: now).state(),
        daily_budget=monthly / month_days,
        month_budget_to_date=monthly * (now - p.month) / (p.next_month - p.month),
        queue=queue_status(db, now, config.heartbeat.stuck_after_h * 3600),
        recent=Ledger(db).recent(8),
        alerts=alerts_between(db, now - 86_400, now + 1)[-6:],
    )


def _usd(v: float) -> str:
    return f"${v:,.2f}" if abs(v) >= 1 else f"${v:.4f}"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def render(f: Frame) -> RenderableType:
    """One frame as rich renderables."""
    b = f.budget
    style = "red" if b.over or b.pace_usd > b.budget_usd else "green"
    spend = Table.grid(padding=(0, 2))
    spend.add_row("today", f"{_usd(f.today.cost)} of {_usd(f.daily_budget)}/day budget")
    spend.add_row("month", f"{_usd(b.spent_usd)} of {_usd(b.budget_usd)} "
                           f"(budget to date {_usd(f.month_budget_to_date)})")  # fmt: skip
    spend.add_row("in flight", _usd(b.reserved_usd))
    spend.add_row("month-end pace", Text(_usd(b.pace_usd), style=style))
    spend.add_row("policy at 100%", b.policy)
    savings = Table("strategy", "today", "month", box=None, padding=(0, 1))
    for k in STRATEGIES:
        savings.add_row(k.replace("_", " "), _usd(f.today.saved_by_strategy.get(k, 0.0)),
                        _usd(f.month.saved_by_strategy.get(k, 0.0)))  # fmt: skip
    savings.add_row("[b]total[/b]", _usd(f.today.saved), _usd(f.month.saved))
    mix = Table("model", "calls", "share", box=None, padding=(0, 1))
    for x in f.today.model_mix or f.month.model_mix:
        mix.add_row(x["model"].removeprefix("claude-"), str(x["calls"]), _pct(x["share"]))
    rates = Table.grid(padding=(0, 2))
    for label, m in (("today", f.today), ("month", f.month)):
        rates.add_row(label, f"cache {_pct(m.cache_hit_rate)} "
                             f"({m.exact_hits} exact / {m.semantic_hits} semantic)")  # fmt: skip
        rates.add_row(
            "",
            f"cheap {_pct(m.cheap_share)}  batch {_pct(m.batch_share)}  "
            f"escalated {_pct(m.escalation_rate)}  errors {_pct(m.error_rate)}",
        )
    mix_body: RenderableType = mix if mix.row_count else Text("no model calls", style="dim")
    top = [
        Panel(spend, title="spend vs budget", border_style=style),
        Panel(savings, title="saved by strategy"),
        Panel(mix_body, title="model mix (today)" if f.today.model_mix else "model mix (month)"),
        Panel(rates, title="hit rates"),
    ]
    if f.queue is not None:
        q = Table.grid(padding=(0, 2))
        for state, n in sorted(f.queue["by_state"].items()):
            q.add_row(state, str(n))
        if f.queue.get("oldest_age_s") is not None:
            q.add_row("oldest waiting", f"{f.queue['oldest_age_s'] / 3600:.1f} h")
        top.append(Panel(q, title="queue"))
    recent = Table("time", "source", "model", "cost", "saved", "ms", "request", box=None,
                   padding=(0, 1), title="recent calls")  # fmt: skip
    for r in f.recent:
        recent.add_row(r["ts_iso"][11:19], source_label(r["source"], r.get("backend")),
                       (r["model"] or "-").removeprefix("claude-"),
                       _usd(r["cost"]), _usd(r["baseline_cost"] - r["cost"]),
                       f"{r['latency_ms'] or 0:.0f}", r["request_id"])  # fmt: skip
    alerts = Table("time", "level", "alert", box=None, padding=(0, 1), title="alerts (24 h)")
    for a in f.alerts:
        color = {"critical": "red", "warning": "yellow"}.get(a["level"], "")
        alerts.add_row(a["ts_iso"][11:16], Text(a["level"].upper(), style=color), a["message"])
    stamp = datetime.fromtimestamp(f.now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts: list[RenderableType] = [Text(f"tars-opt dashboard  {stamp}", style="bold"),
                                   Columns(top), recent]  # fmt: skip
    parts.append(alerts if f.alerts else Text("no alerts in the last 24 h", style="dim"))
    return Group(*parts)


def run_live(
    read: Callable[[], Frame],
    console: Console,
    *,
    interval_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    frames: int | None = None,
) -> None:
    """Redraw every `interval_s` until interrupted (or `frames` frames, for tests)."""
    from rich.live import Live

    shown = 0
    with Live(render(read()), console=console, refresh_per_second=1, screen=False) as live:
        shown = 1
        while frames is None or shown < frames:
            sleep(interval_s)
            live.update(render(read()))
            shown += 1
