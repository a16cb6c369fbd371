"""Metrics on a hand-made ledger: every figure checked against numbers chosen by hand."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from tars_opt import open_app
from tars_opt.defer.queue import Queue
from tars_opt.monitor.metrics import (
    date_range,
    last_full_iso_week,
    percentile,
    period_metrics,
    queue_status,
    session_metrics,
)
from tars_opt.types import Request
from tests.handmade import add_call, cache_hit, haiku, ts


@pytest.fixture
def db(home: Path):
    return open_app().db


def test_period_metrics_on_a_handmade_ledger(db) -> None:
    day = "2026-02-17T10:00"
    add_call(db, day, session="s1")  # sonnet api, $0.004
    add_call(db, day, **haiku(session="s1"))
    add_call(
        db,
        day,
        **haiku(
            decisions=[
                {"stage": "escalate", "action": "strong", "reason": "empty answer", "data": {}}
            ]
        ),
    )
    add_call(db, day, **cache_hit("exact"))
    add_call(db, "2026-02-18T09:00", **cache_hit("semantic"))
    add_call(
        db,
        "2026-02-18T09:00",
        source="batch",
        service_tier="batch",
        cost=0.002,
        saved_batching=0.002,
        decisions=[{"stage": "defer", "action": "queued", "reason": "off-peak", "data": {}}],
    )
    add_call(db, "2026-02-18T09:00", error="overloaded_error: busy", cost=0, baseline_cost=0)
    add_call(db, "2026-02-19T09:00")  # outside the period
    start, end = date_range(date(2026, 2, 17), date(2026, 2, 18))
    m = period_metrics(db, start, end, cheap_tier="cheap")
    assert m.calls == 7 and m.errors == 1 and m.answered == 6
    assert m.error_rate == pytest.approx(1 / 7)
    assert m.model_calls == 4 and m.cache_hits == 2
    assert (m.exact_hits, m.semantic_hits) == (1, 1)
    assert m.cache_hit_rate == pytest.approx(2 / 6)
    assert m.batch_share == pytest.approx(1 / 6) and m.deferred_share == pytest.approx(1 / 6)
    assert m.escalation_rate == pytest.approx(1 / 4)
    assert m.cheap_share == pytest.approx(2 / 4)
    assert m.cost == pytest.approx(0.004 + 0.0002 * 2 + 0.002)
    assert m.baseline_cost == pytest.approx(0.004 * 6)
    assert m.saved_by_strategy["routing"] == pytest.approx(0.0076)
    assert m.saved_by_strategy["response_cache"] == pytest.approx(0.008)
    assert m.saved_by_strategy["batching"] == pytest.approx(0.002)
    assert m.tokens["input_tokens"] == 4000 and m.tokens["output_tokens"] == 800
    assert m.days == 2
    assert m.summary()["daily_cost_usd"] == pytest.approx(m.cost / 2)
    assert m.summary()["calls_per_day"] == 2
    assert [d["day"] for d in m.per_day] == ["2026-02-17", "2026-02-18"]
    assert m.per_day[1]["errors"] == 1
    assert {x["model"]: x["calls"] for x in m.model_mix} == {
        "claude-haiku-5-5": 2,
        "claude-sonnet-5-5": 2,
    }
    assert m.latency_ms["cache"]["p50"] == 5.0
    assert m.latency_ms["api"]["n"] == 3
    assert m.per_session == [
        {
            "session": "s1",
            "calls": 2,
            "cost": pytest.approx(0.0042),
            "baseline_cost": pytest.approx(0.008),
        }
    ]
    data = m.to_dict()
    assert data["summary"]["cache_hit_rate"] == pytest.approx(1 / 3)


def test_cheap_share_falls_back_to_the_model_when_rows_have_no_tier(db) -> None:
    add_call(db, "2026-02-17T10:00", **haiku(tier=None))
    add_call(db, "2026-02-17T10:00", tier=None)
    m = period_metrics(
        db,
        ts("2026-02-17T00:00"),
        ts("2026-02-18T00:00"),
        cheap_models=frozenset({"claude-haiku-5-5"}),
    )
    assert m.cheap_share == 0.5


def test_empty_period_gives_unknown_rates_not_zero(db) -> None:
    m = period_metrics(db, 0, 86400)
    assert m.calls == 0 and m.cache_hit_rate is None and m.error_rate is None
    # No day had calls: per-day figures are unknown too, not $0/day.
    assert m.latency_s is None and m.data_days == 0
    assert m.summary()["daily_cost_usd"] is None and m.summary()["calls_per_day"] is None


def test_per_day_figures_are_over_days_with_calls(db) -> None:
    add_call(db, "2026-02-17T10:00", cost=0.01)
    add_call(db, "2026-02-17T11:00", cost=0.01)
    add_call(db, "2026-02-20T10:00", cost=0.04)
    start, end = date_range(date(2026, 2, 16), date(2026, 2, 22))
    m = period_metrics(db, start, end)
    assert m.days == 7 and m.data_days == 2
    assert m.summary()["daily_cost_usd"] == pytest.approx(0.03)
    assert m.summary()["calls_per_day"] == 1.5
    # A 24-hour window across midnight touches two days but is one day long.
    add_call(db, "2026-02-18T09:00", cost=0.02)
    window = period_metrics(db, ts("2026-02-17T10:30"), ts("2026-02-18T10:30"))
    assert len(window.per_day) == 2 and window.data_days == 1
    assert window.summary()["daily_cost_usd"] == pytest.approx(0.03)


def test_holdout_arms_and_feedback_counts(db) -> None:
    when = "2026-02-17T10:00"
    a = add_call(db, when, **haiku())
    add_call(db, when, **cache_hit())
    b = add_call(db, when, holdout=1)
    add_call(db, when, holdout=1)
    db.execute("INSERT INTO feedback (request_id, ts, verdict) VALUES (?, 0, 'bad')", [a])
    db.execute("INSERT INTO feedback (request_id, ts, verdict) VALUES (?, 0, 'good')", [b])
    m = period_metrics(db, ts("2026-02-17T00:00"), ts("2026-02-18T00:00"))
    opt, hold = m.arms["optimized"], m.arms["holdout"]
    assert opt.requests == 2 and hold.requests == 2
    assert opt.cost_per_request == pytest.approx(0.0001)
    assert hold.cost_per_request == pytest.approx(0.004)
    assert opt.bad_rate == 1.0 and hold.bad_rate == 0.0
    assert m.feedback == {"api/cheap": {"good": 0, "bad": 1}, "api/strong": {"good": 1, "bad": 0}}


def test_session_metrics(db) -> None:
    add_call(db, "2026-02-17T10:00", session="task-7", cost=0.01, baseline_cost=0.03)
    add_call(db, "2026-02-17T11:00", session="task-7", cost=0.02, baseline_cost=0.03)
    s = session_metrics(db, "task-7")
    assert s["calls"] == 2 and s["saved"] == pytest.approx(0.03)


def test_percentile_and_weeks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 95) == 5
    monday, sunday, label = last_full_iso_week(ts("2026-02-18T12:00"))  # a Wednesday
    assert (str(monday), str(sunday), label) == ("2026-02-09", "2026-02-15", "2026-07")


def test_queue_status_counts_open_tasks_and_stuck_ones(db) -> None:
    assert queue_status(db, 1000.0, 60)["open"] == 0
    for t in (100.0, 990.0, 10.0):
        Queue(db, clock=lambda t=t: t).enqueue(
            Request.from_prompt(f"at {t}"), reason="test", max_wait_s=None, deadline=None,
            expected_at=None,
        )  # fmt: skip
    db.execute("UPDATE tasks SET state = 'done' WHERE created_at = 10")
    q = queue_status(db, 1000.0, stuck_after_s=60)
    assert q["by_state"] == {"queued": 2, "done": 1}
    assert q["open"] == 2 and q["stuck"] == 1 and q["oldest_age_s"] == 900


def test_rows_of_queued_requests_count_as_deferred_without_the_decision(db) -> None:
    # Ledger rows written by drains of earlier versions carry no defer decision: the task
    # that queued the request is what says it was deferred.
    task = Queue(db, clock=lambda: ts("2026-02-17T09:00")).enqueue(
        Request.from_prompt("later", request_id="req_from_queue"),
        reason="asked to defer (--defer)", max_wait_s=None, deadline=None, expected_at=None,
    )  # fmt: skip
    add_call(db, "2026-02-17T10:00", request_id=task["request_id"], source="batch",
             service_tier="batch", cost=0.002, saved_batching=0.002)  # fmt: skip
    add_call(db, "2026-02-17T10:00")  # sent at once
    m = period_metrics(db, ts("2026-02-17T00:00"), ts("2026-02-18T00:00"))
    assert (m.batch_calls, m.deferred, m.answered) == (1, 1, 2)
    assert m.deferred_share == 0.5
