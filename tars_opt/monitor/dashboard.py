"""The live dashboard: one frame of spend, savings, model mix, hit rates, queue, recent
calls and active alerts, redrawn every few seconds with rich Live."""

from __future__ import annotations

import calendar
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tars_opt.accounting.alerts import alerts_between
from tars_opt.accounting.budget import BudgetState
from tars_opt.accounting.ledger import Ledger, Periods, source_label
from tars_opt.accounting.money import usd
from tars_opt.config.schema import Config
from tars_opt.defer.queue import queue_budget
from tars_opt.monitor.metrics import PeriodMetrics, measure, offline_left_out, queue_status
from tars_opt.store.database import Database
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
    # Offline-backend calls this month the figures leave out (Config.counts_offline).
    offline_left_out: int = 0


def read_frame(db: Database, config: Config, now: float) -> Frame:
    p = Periods.at(now)
    moment = datetime.fromtimestamp(now, UTC)
    month_days = calendar.monthrange(moment.year, moment.month)[1]
    monthly = config.budget.monthly_usd
    return Frame(
        now=now,
        today=measure(db, config, p.day, now + 1),
        month=measure(db, config, p.month, now + 1),
        budget=queue_budget(config, db, clock=lambda: now).state(),
        daily_budget=monthly / month_days,
        month_budget_to_date=monthly * (now - p.month) / (p.next_month - p.month),
        queue=queue_status(db, now, config.heartbeat.stuck_after_h * 3600),
        recent=Ledger(db).recent(8),
        alerts=alerts_between(db, now - 86_400, now + 1)[-6:],
        offline_left_out=offline_left_out(Ledger(db), config, p.month, now + 1),
    )


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


# Lines the frame takes besides the recent calls and alerts: the title line, the two rows
# of panels (6 and 5 lines inside their borders), the recent calls' title and header.
_FIXED_LINES = 1 + (6 + 2) + (5 + 2) + 2


def render(f: Frame, height: int | None = None, hint: str = "") -> RenderableType:
    """One frame as rich renderables, laid out for 80 columns. With `height` (a live
    screen's rows) the recent calls and alerts are cut to fit, so the queue and the newest
    calls stay on an 80x24 terminal."""
    b = f.budget
    style = "red" if b.over or b.pace_usd > b.budget_usd else "green"
    spend = Table.grid(padding=(0, 1))
    spend.add_row("today", f"{usd(f.today.cost)} of {usd(f.daily_budget)}/day")
    spend.add_row("month", f"{usd(b.spent_usd)} of {usd(b.budget_usd)}")
    spend.add_row("budget to date", usd(f.month_budget_to_date))
    spend.add_row("in flight", usd(b.reserved_usd))
    spend.add_row("month-end pace", Text(usd(b.pace_usd), style=style))
    spend.add_row("policy", b.policy_text())
    savings = Table.grid(padding=(0, 1))
    for k in STRATEGIES:
        savings.add_row(k.replace("_", " "), usd(f.today.saved_by_strategy.get(k, 0.0)),
                        usd(f.month.saved_by_strategy.get(k, 0.0)))  # fmt: skip
    savings.add_row("[b]total[/b]", usd(f.today.saved), usd(f.month.saved))
    rates = Table.grid(padding=(0, 1))
    for label, name in (("cache", "cache_hit_rate"), ("cheap", "cheap_share"),
                        ("batch", "batch_share"), ("escalated", "escalation_rate"),
                        ("errors", "error_rate")):  # fmt: skip
        rates.add_row(label, _pct(getattr(f.today, name)), _pct(getattr(f.month, name)))
    mix = Table.grid(padding=(0, 1))
    models = f.today.model_mix or f.month.model_mix
    for x in models[:4]:
        mix.add_row(x["model"].removeprefix("claude-"), str(x["calls"]), _pct(x["share"]))
    if len(models) > 4:
        mix.add_row(f"+{len(models) - 4} more", "", "")
    queue = Table.grid(padding=(0, 1))
    if f.queue is not None:
        states = sorted(f.queue["by_state"].items())
        for state, n in states[:4]:
            queue.add_row(state, str(n))
        if f.queue.get("oldest_age_s") is not None:
            queue.add_row("oldest", f"{f.queue['oldest_age_s'] / 3600:.1f} h")
    row_a = Table.grid(expand=True)
    row_a.add_column(ratio=1)
    row_a.add_column(ratio=1)
    row_a.add_row(
        Panel(spend, title="spend vs budget", border_style=style, height=8),
        Panel(savings, title="saved by strategy (today, month)", height=8),
    )
    row_b = Table.grid(expand=True)
    for ratio in (4, 3, 3):
        row_b.add_column(ratio=ratio)
    row_b.add_row(
        Panel(rates, title="hit rates (today, month)", height=7),
        Panel(mix if mix.row_count else Text("no model calls", style="dim"), height=7,
              title="model mix (today)" if f.today.model_mix else "model mix (month)"),
        Panel(queue if queue.row_count else Text("empty", style="dim"), title="queue",
              height=7),
    )  # fmt: skip
    alerts = f.alerts
    rows = f.recent
    if height is not None:
        room = max(height - _FIXED_LINES, 3)
        alerts = alerts[-min(len(alerts), max(room // 3, 1)) :] if alerts else []
        rows = rows[: max(room - max(len(alerts), 1), 2)]
    # Fits 80 columns with an offline mark and a full request id (what a user copies into
    # `feedback`, never cut); `tars-opt log` has the latencies and tokens.
    recent = Table(box=None, padding=(0, 1, 0, 0), title="recent calls", title_justify="left")
    for name in ("time", "source", "model", "cost", "saved"):
        recent.add_column(name, no_wrap=True, overflow="ellipsis")
    recent.add_column("request", no_wrap=True, min_width=24)
    for r in rows:
        recent.add_row(r["ts_iso"][11:19], source_label(r["source"], r.get("backend")),
                       (r["model"] or "-").removeprefix("claude-"),
                       usd(r["cost"]), usd(r["baseline_cost"] - r["cost"]),
                       r["request_id"])  # fmt: skip
    stamp = datetime.fromtimestamp(f.now, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    title = Text(f"tars-opt dashboard  {stamp}", style="bold", no_wrap=True, overflow="ellipsis")
    if f.offline_left_out:  # before the hint: an 80-column title cuts its end
        title.append(f"  not counted: {f.offline_left_out} offline", style="dim")
    if hint:
        title.append(f"  {hint}", style="dim")
    parts: list[RenderableType] = [title, row_a, row_b, recent]
    if not alerts:
        parts.append(Text("no alerts in the last 24 h", style="dim"))
    for a in alerts:
        color = {"critical": "red", "warning": "yellow"}.get(a["level"], "")
        line = Text(f"{a['ts_iso'][11:16]} ", no_wrap=True, overflow="ellipsis")
        line.append(a["level"].upper(), style=color)
        line.append(f" {a['message']}")
        parts.append(line)
    return Group(*parts)


class KeyReader:
    """Single key presses from a terminal, without Enter (cbreak mode while open). Inactive
    (`wait` just sleeps) when stdin is not a terminal or the platform has no termios."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self.active = False
        self._saved: Any = None

    def __enter__(self) -> KeyReader:
        try:
            import termios
            import tty

            fd = self.stream.fileno()
            if os.isatty(fd):
                self._saved = termios.tcgetattr(fd)
                tty.setcbreak(fd)
                self.active = True
        except (ImportError, OSError, ValueError):
            self.active = False
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active:
            import termios

            termios.tcsetattr(self.stream.fileno(), termios.TCSADRAIN, self._saved)
            self.active = False

    def wait(self, timeout_s: float) -> str | None:
        """The key pressed within `timeout_s`, or None when none was."""
        if not self.active:
            time.sleep(timeout_s)
            return None
        import select

        fd = self.stream.fileno()
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return None
        return os.read(fd, 1).decode(errors="ignore") or None


QUIT_KEYS = ("q", "Q")


def run_live(
    read: Callable[[], Frame],
    console: Console,
    *,
    interval_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    frames: int | None = None,
    keys: Callable[[float], str | None] | None = None,
    note: str = "",
) -> None:
    """Redraw every `interval_s` until `q` (read through `keys`, which waits up to a timeout
    for a key), an interrupt, or `frames` frames (for tests). Each frame fits the console's
    height; on a terminal it takes the whole screen. `note` joins the title line."""
    from rich.live import Live

    hint = ("q quits" if keys is not None else "Ctrl-C quits") + (f"  {note}" if note else "")

    def frame() -> RenderableType:
        return render(read(), height=console.size.height, hint=hint)

    shown = 0
    with Live(frame(), console=console, refresh_per_second=1,
              screen=console.is_terminal) as live:  # fmt: skip
        shown = 1
        while frames is None or shown < frames:
            if keys is not None:
                if keys(interval_s) in QUIT_KEYS:
                    return
            else:
                sleep(interval_s)
            live.update(frame())
            shown += 1
