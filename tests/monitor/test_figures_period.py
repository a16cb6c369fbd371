"""The period a figures command covers and the offline calls its footer says it left out,
as library functions (the CLI's `metrics`, `costs` and `budget` call them)."""

from __future__ import annotations

from datetime import date

from tars_opt import open_app
from tars_opt.monitor.metrics import days_period, offline_left_out
from tests.handmade import add_call, ts

NOW = ts("2026-02-20T15:30")


def test_the_last_days_end_now_and_start_at_midnight() -> None:
    assert days_period(NOW, 1) == (ts("2026-02-20T00:00"), NOW)
    assert days_period(NOW, 7) == (ts("2026-02-14T00:00"), NOW)


def test_named_days_are_whole_days_but_never_past_now() -> None:
    assert days_period(NOW, 7, date(2026, 2, 10), date(2026, 2, 11)) == (
        ts("2026-02-10T00:00"),
        ts("2026-02-12T00:00"),
    )
    assert days_period(NOW, 7, date(2026, 2, 19), date(2026, 2, 25)) == (
        ts("2026-02-19T00:00"),
        NOW,
    )


def test_offline_calls_are_left_out_unless_the_config_counts_them() -> None:
    db = open_app().db
    add_call(db, "2026-02-20T10:00", backend="offline")
    add_call(db, "2026-02-20T11:00", backend="offline")
    add_call(db, "2026-02-20T12:00")
    add_call(db, "2026-02-21T10:00", backend="offline")  # after the period
    start, end = ts("2026-02-20T00:00"), ts("2026-02-21T00:00")
    real = open_app(backend="anthropic", overrides={"ledger.include_offline": False})
    assert offline_left_out(real.ledger, real.config, start, end) == 2
    counted = open_app(backend="anthropic", overrides={"ledger.include_offline": True})
    assert offline_left_out(counted.ledger, counted.config, start, end) == 0
