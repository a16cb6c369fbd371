"""UTC periods: whole days, ISO weeks, the month's pace."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from tars_opt.ledger import Periods

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
