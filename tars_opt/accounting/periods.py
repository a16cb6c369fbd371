"""UTC periods: whole days, ISO weeks, the month's pace, rollout phases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from tars_opt.accounting.ledger import Periods
from tars_opt.config.schema import PhaseConfig, PhaseTargets

DAY = 86_400.0


def month_pace(month_cost: float, now: float) -> float:
    """The month's spend projected to its end at the pace so far."""
    p = Periods.at(now)
    elapsed = max(now - p.month, 3600.0)  # an hour at least: no wild pace on the 1st at 00:01
    return month_cost * (p.next_month - p.month) / elapsed


def day_start(d: date) -> float:
    """Epoch seconds of 00:00 UTC on a date."""
    return datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()


def date_range(first: date, last: date) -> tuple[float, float]:
    """[00:00 of first, 00:00 after last): an inclusive range of whole UTC days."""
    return day_start(first), day_start(last + timedelta(days=1))


def last_full_iso_week(now: float) -> tuple[date, date, str]:
    """Monday and Sunday of the last ISO week that has ended, and its label YYYY-WW."""
    today = datetime.fromtimestamp(now, UTC).date()
    monday = today - timedelta(days=today.weekday() + 7)
    year, week, _ = monday.isocalendar()
    return monday, monday + timedelta(days=6), f"{year}-{week:02d}"


@dataclass(frozen=True)
class PhaseWindow:
    """One rollout phase placed on the calendar: its days (None while it cannot be placed
    yet) and why it has them."""

    number: int
    name: str
    first: date | None
    last: date | None
    targets: PhaseTargets
    why: str


def phase_windows(
    phases: list[PhaseConfig], start: date | None, start_why: str
) -> list[PhaseWindow]:
    """Place `phases` on the calendar: each one with fixed dates keeps them, each other one
    lasts its `days` from the day after the one before ends (phase 1 from `start`, which is
    None when not known yet, e.g. an empty ledger). `start_why` says where `start` came from.
    """
    out: list[PhaseWindow] = []
    cursor, origin = start, start
    for n, p in enumerate(phases, 1):
        if p.start is not None:
            first: date | None = p.start
            last = p.end or p.start + timedelta(days=p.days - 1)
            why = f"given fixed dates in the config (phases[{n - 1}])"
            origin = None  # phases after it count from its end
        elif cursor is None:
            first = last = None
            why = start_why
        else:
            first, last = cursor, cursor + timedelta(days=p.days - 1)
            if origin is not None:
                a, b = (first - origin).days + 1, (last - origin).days + 1
                why = f"days {a}-{b} counted from {origin} ({start_why})"
            else:
                why = f"the {p.days} days after phase {n - 1} ends"
        out.append(PhaseWindow(n, p.name, first, last, p.targets, why))
        cursor = last + timedelta(days=1) if last is not None else None
    return out
