"""The defer stage (each condition, the deadline rule) and the off-peak window."""

from __future__ import annotations

from pathlib import Path

import pytest

from tars_opt import Request, open_app
from tars_opt.accounting.ledger import CallRecord
from tars_opt.config.loader import load_config
from tars_opt.defer.queue import Queue
from tars_opt.defer.stage import DeferStage
from tars_opt.defer.window import Window, parse_duration
from tars_opt.errors import BudgetExceeded, ConfigError
from tars_opt.types import Reply
from tests.drain_helpers import Clock, at

NIGHT = at("2026-11-22T01:00")  # inside 00:00-06:00
EVENING = at("2026-11-21T20:00")  # window opens in 4 h


def optimizer(clock: Clock, policy: str = "warn", **defer: object):
    overrides = {f"defer.{k}": v for k, v in defer.items()}
    app = open_app(backend="offline", overrides={**overrides, "budget.policy": policy})
    opt = app.optimizer(clock=clock)
    opt.stages = [DeferStage(app.config, app.db, clock)]
    return app, opt


def defer_decision(reply: Reply):
    return next(d for d in reply.decisions if d.stage == "defer")


def test_asked_to_defer_queues_with_a_ticket_and_no_ledger_row(home: Path) -> None:
    app, opt = optimizer(Clock(EVENING))
    reply = opt.ask(Request.from_prompt("Summarise the Roman republic", defer=True))
    assert reply.source == "queued" and reply.ticket and reply.ticket.startswith("t_")
    d = defer_decision(reply)
    assert d.action == "queued" and "--defer" in d.reason
    assert d.data["window_opens_at"] == "2026-11-22T00:00Z"
    assert d.data["expected_at"] == "2026-11-22T01:00Z"
    task = Queue(app.db).require(reply.ticket)
    assert task["state"] == "queued" and task["custom_id"] == f"{reply.ticket}-1"
    assert task["request_id"] == reply.request_id and task["priority"] == 1
    assert app.ledger.get(reply.request_id) is None  # recorded when answered


@pytest.mark.parametrize(
    ("request_kw", "why"),
    [
        ({"urgent": True}, "urgent"),
        ({"priority": "high"}, "high priority"),
        ({"max_wait_s": 120.0}, "under the 5-minute minimum"),
        ({"stream": True}, "streamed"),
    ],
)
def test_never_deferred_even_when_asked(home: Path, request_kw: dict, why: str) -> None:
    app, opt = optimizer(Clock(NIGHT))
    reply = opt.ask(Request.from_prompt("hello", defer=True, **request_kw))
    assert reply.source == "api"
    assert why in defer_decision(reply).reason
    assert Queue(app.db).counts()["queued"] == 0


def test_low_priority_defers_only_when_configured(home: Path) -> None:
    _, opt = optimizer(Clock(NIGHT))  # off by default: opt in
    reply = opt.ask(Request.from_prompt("x", priority="low"))
    assert reply.source == "api" and "not asked to defer" in defer_decision(reply).reason
    _, opt = optimizer(Clock(NIGHT), defer_low_priority=True)
    reply = opt.ask(Request.from_prompt("x", priority="low"))
    assert reply.source == "queued"
    assert defer_decision(reply).reason == "low priority (defer.defer_low_priority)"
    # --no-defer is the caller's word: it beats the config.
    reply = opt.ask(Request.from_prompt("x", priority="low", defer=False))
    assert reply.source == "api" and "--no-defer" in defer_decision(reply).reason


def _spend(app, clock: Clock, dollars: float, ago: float = 3600) -> None:
    earlier = Request.from_prompt("earlier")
    reply = Reply(
        text="", model="claude-sonnet-5-5", source="api", request_id=earlier.request_id,
        cost=dollars,
    )  # fmt: skip
    app.ledger.record(CallRecord(earlier, reply, ts=clock() - ago))


def test_a_warn_budget_never_queues_anything(home: Path) -> None:
    clock = Clock(NIGHT)
    app, opt = optimizer(clock)
    _spend(app, clock, 170.0)  # 85% of $200
    assert opt.ask(Request.from_prompt("one")).source == "api"
    _spend(app, clock, 60.0)  # 115%: over, and still answered
    reply = opt.ask(Request.from_prompt("two"))
    assert reply.source == "api" and "not asked to defer" in defer_decision(reply).reason
    assert Queue(app.db).counts()["queued"] == 0


def test_a_defer_budget_queues_deferrable_work_once_spent(home: Path) -> None:
    clock = Clock(NIGHT)
    app, opt = optimizer(clock, policy="defer")
    _spend(app, clock, 170.0)  # 85%: under the default threshold (100%)
    reply = opt.ask(Request.from_prompt("one"))
    assert reply.source == "api" and "budget under 100%" in defer_decision(reply).reason
    _spend(app, clock, 40.0)  # 105%
    reply = opt.ask(Request.from_prompt("two"))
    assert reply.source == "queued"
    assert "budget: 105% of $200.00 used this month" in defer_decision(reply).reason
    for never in ({"urgent": True}, {"priority": "high"}, {"defer": False}):
        assert opt.ask(Request.from_prompt("three", **never)).source == "api", never


def test_budget_threshold_is_configurable(home: Path) -> None:
    clock = Clock(NIGHT)
    app, opt = optimizer(clock, policy="defer", budget_threshold=0.5)
    _spend(app, clock, 120.0)
    assert opt.ask(Request.from_prompt("q")).source == "queued"
    _, warn = optimizer(clock, budget_threshold=0.5)  # read by the defer policy only
    assert warn.ask(Request.from_prompt("q")).source == "api"


def test_a_spent_block_budget_refuses_marked_work_instead_of_queueing(home: Path) -> None:
    clock = Clock(NIGHT)
    app, opt = optimizer(clock, policy="block", defer_low_priority=True)
    _spend(app, clock, 150.0)  # 75%: --defer still queues
    assert opt.ask(Request.from_prompt("q", defer=True)).source == "queued"
    _spend(app, clock, 60.0)  # 105%: the drain would submit nothing this month
    for marked in ({"defer": True}, {"priority": "low"}):
        with pytest.raises(BudgetExceeded, match="tars-opt monthly budget reached.*not queued"):
            opt.ask(Request.from_prompt("q", **marked))
    assert Queue(app.db).counts()["queued"] == 1


def test_last_months_spend_does_not_count(home: Path) -> None:
    clock = Clock(at("2026-12-01T01:00"))
    app, opt = optimizer(clock, policy="defer")
    _spend(app, clock, 210.0, ago=7200)  # 23:00 on 30 November
    assert opt.ask(Request.from_prompt("q")).source == "api"
    _spend(app, clock, 210.0, ago=60)  # this month's does
    assert opt.ask(Request.from_prompt("q")).source == "queued"


def test_deadline_before_the_window_sends_now(home: Path) -> None:
    _, opt = optimizer(Clock(EVENING))
    reply = opt.ask(Request.from_prompt("q", defer=True, max_wait_s=2 * 3600))
    d = defer_decision(reply)
    assert reply.source == "api" and d.action == "send"
    assert "ends before a batch would be back" in d.reason
    # Long enough: opens at 00:00, expected 01:00; 6 h from 20:00 is 02:00.
    assert opt.ask(Request.from_prompt("q2", defer=True, max_wait_s=6 * 3600)).source == "queued"


def test_deadline_fallback_queue_keeps_it_queued(home: Path) -> None:
    _, opt = optimizer(Clock(EVENING), deadline_fallback="queue")
    assert opt.ask(Request.from_prompt("q", defer=True, max_wait_s=600)).source == "queued"


def test_lazy_switched_off_never_queues(home: Path) -> None:
    _, opt = optimizer(Clock(NIGHT), enabled=False)
    assert opt.ask(Request.from_prompt("q", defer=True)).source == "api"


def test_default_stages_include_defer(home: Path) -> None:
    app = open_app(backend="offline")
    assert [s.name for s in app.optimizer().stages] == [
        "cache",
        "defer",
        "prune",
        "route",
        "tools",
        "prompt_cache",
    ]
    off = open_app(backend="offline", overrides={"defer.enabled": False})
    assert "defer" not in [s.name for s in off.optimizer().stages]


# ---- the window ---------------------------------------------------------------------------
def test_window_default_contains_and_next_open() -> None:
    w = Window.parse("00:00-06:00")
    assert w.contains(at("2026-11-22T00:00")) and w.contains(at("2026-11-22T05:59"))
    assert not w.contains(at("2026-11-22T06:00")) and not w.contains(at("2026-11-21T23:59"))
    assert w.next_open(at("2026-11-21T20:00")) == at("2026-11-22T00:00")
    assert w.next_open(at("2026-11-22T07:00")) == at("2026-11-23T00:00")
    assert w.next_open(at("2026-11-22T03:00")) == at("2026-11-22T03:00")
    assert w.hours() == [0, 1, 2, 3, 4, 5]


def test_window_across_midnight() -> None:
    w = Window.parse("22:30-04:15")
    assert w.crosses_midnight and str(w) == "22:30-04:15 UTC"
    assert w.contains(at("2026-11-21T23:00")) and w.contains(at("2026-11-22T04:14"))
    assert w.contains(at("2026-11-21T22:30"))
    assert not w.contains(at("2026-11-22T04:15")) and not w.contains(at("2026-11-21T22:29"))
    assert w.next_open(at("2026-11-22T12:00")) == at("2026-11-22T22:30")
    assert w.hours() == [0, 1, 2, 3, 4, 22, 23]


def test_window_at_year_end_and_leap_day() -> None:
    w = Window.parse("23:00-01:00")
    assert w.next_open(at("2026-12-31T12:00")) == at("2026-12-31T23:00")
    assert w.contains(at("2027-01-01T00:59")) and not w.contains(at("2027-01-01T01:00"))
    assert w.next_open(at("2028-02-28T23:30")) == at("2028-02-28T23:30")
    assert w.contains(at("2028-02-29T00:59")) and not w.contains(at("2028-02-29T01:00"))


@pytest.mark.parametrize("bad", ["0-6", "25:00-06:00", "06:00-06:00", "00:00"])
def test_bad_windows_are_config_errors(home: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="defer.window"):
        load_config(overrides={"defer.window": bad})


def test_parse_duration() -> None:
    assert parse_duration("30m") == 1800 and parse_duration("6h") == 21600
    assert parse_duration("2d") == 172800 and parse_duration("90s") == 90
    assert parse_duration("45") == 2700
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
