"""The drain: submit, collect, retries, outcomes, grouping, half-price ledger rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt import Request, open_app
from tars_opt.accounting.pricing import PriceBook
from tars_opt.cli.main import app as cli_app
from tars_opt.defer.queue import Queue
from tars_opt.defer.stage import DeferStage
from tars_opt.drain.runner import Drainer
from tars_opt.errors import BackendError
from tars_opt.types import Usage
from tests.drain_helpers import Clock, ScriptedBatches, at

NIGHT = at("2026-11-22T01:00")
NOON = at("2026-11-22T12:00")


def setup(clock: Clock, n: int = 3, *, hold: bool = False, **defer: object):
    app = open_app(backend="offline", overrides={f"defer.{k}": v for k, v in defer.items()})
    opt = app.optimizer(clock=clock)
    opt.stages = [DeferStage(app.config, app.db, clock)]
    tickets = [opt.ask(Request.from_prompt(f"question {i}", defer=True)).ticket for i in range(n)]
    backend = ScriptedBatches(clock, hold=hold)
    return app, backend, tickets


def drainer(app, backend, clock: Clock, **kw) -> Drainer:
    return Drainer(app.config, app.db, backend=backend, clock=clock, sleep=clock.sleep, **kw)


def states(app) -> dict[str, str]:
    return {t["ticket"]: t["state"] for t in Queue(app.db).tasks(limit=100_000)}


def test_outside_the_window_nothing_is_submitted(home: Path) -> None:
    clock = Clock(NOON)
    app, backend, tickets = setup(clock)
    report = drainer(app, backend, clock).run()
    assert not report.in_window and report.opens_at == at("2026-11-23T00:00")
    assert report.claimed == 0 and backend.submits == 0
    assert set(states(app).values()) == {"queued"}


@pytest.mark.parametrize("collect_only", [False, True])
def test_outside_the_window_work_near_its_deadline_is_sent(home: Path, collect_only) -> None:
    clock = Clock(NOON)
    app, backend, tickets = setup(clock, n=1)  # the default max wait: due tomorrow noon
    q = Queue(app.db, clock)

    def task(deadline_in_s: float) -> str:
        return q.enqueue(
            Request.from_prompt(f"due in {deadline_in_s}"),
            reason="test", max_wait_s=deadline_in_s, deadline=NOON + deadline_in_s,
            expected_at=None,
        )["ticket"]  # fmt: skip

    # Sent early: its deadline is within a batch's turnaround (60 min) plus one collect
    # interval (10 min). Not yet: the others.
    soon, later = task(60 * 60), task(3 * 3600)
    report = drainer(app, backend, clock).run(collect_only=collect_only)
    assert report.due == 1 and len(report.submitted) == 1 and backend.submits == 1
    assert set(backend.sent) == {q.require(soon)["custom_id"]}
    assert states(app)[later] == states(app)[tickets[0]] == "queued"
    clock.now += 2 * 3600  # `later` is due now
    report = drainer(app, backend, clock).run(collect_only=collect_only)
    assert report.due == 1 and states(app)[later] == "done"
    assert states(app)[tickets[0]] == "queued"  # it waits for the window


def test_drain_now_answers_every_task_once_at_half_price(home: Path) -> None:
    clock = Clock(NOON)
    app, backend, tickets = setup(clock)
    report = drainer(app, backend, clock).run(now=True)
    assert report.claimed == 3 and len(report.submitted) == 1
    assert report.outcomes["done"] == 3 and report.in_flight == 0
    assert set(states(app).values()) == {"done"}
    assert all(n == 1 for n in backend.sent.values()) and len(backend.sent) == 3
    prices = PriceBook(app.config.pricing)
    for ticket in tickets:
        task = Queue(app.db).require(ticket)
        result = json.loads(task["result"])
        assert result["source"] == "batch" and result["answer"].startswith("[offline")
        row = app.ledger.get(task["request_id"])
        assert row["source"] == "batch" and row["service_tier"] == "batch"
        usage = Usage(input_tokens=row["input_tokens"], output_tokens=row["output_tokens"])
        full = prices.cost(usage, row["model"])
        assert row["cost"] == pytest.approx(full / 2)
        assert row["saved_batching"] == pytest.approx(full / 2)
    # A second run finds nothing to do and records nothing twice.
    again = drainer(app, backend, clock).run(now=True)
    assert again.claimed == 0 and sum(again.outcomes.values()) == 0
    assert app.db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 3


def test_drained_rows_carry_their_defer_decision_and_count_as_deferred(
    home: Path, runner: CliRunner
) -> None:
    clock = Clock(NOON)
    app, backend, tickets = setup(clock)
    drainer(app, backend, clock).run(now=True)
    for ticket in tickets:
        task = Queue(app.db).require(ticket)
        first = app.ledger.get(task["request_id"])["decisions"][0]
        assert (first["stage"], first["action"]) == ("defer", "queued")
        assert first["reason"] == "asked to defer (--defer)"
        assert first["data"]["ticket"] == ticket
        assert first["data"]["queued_at"] == "2026-11-22T12:00Z"
    result = runner.invoke(
        cli_app,
        ["metrics", "--from", "2026-11-22", "--to", "2026-11-22", "--json", "--include-offline"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["batch_calls"] == 3 and data["deferred"] == 3 and data["deferred_share"] == 1.0


def test_inside_the_window_drains_without_now(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, _ = setup(clock)
    assert drainer(app, backend, clock).run().outcomes["done"] == 3


def test_in_progress_batches_are_collected_by_a_later_run(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, _ = setup(clock, hold=True)
    first = drainer(app, backend, clock).run()
    assert len(first.submitted) == 1 and first.in_flight == 1
    assert set(states(app).values()) == {"submitted"}
    batch_id = first.submitted[0]["batch_id"]
    assert Queue(app.db).batches(["in_progress"])[0]["batch_id"] == batch_id
    clock.now += 600
    assert drainer(app, backend, clock).run().in_flight == 1  # still running
    backend.end_all()
    later = drainer(app, backend, clock).run()
    assert later.outcomes["done"] == 3 and later.in_flight == 0
    assert Queue(app.db).batches(["collected"])[0]["batch_id"] == batch_id


def test_wait_polls_until_batches_end(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, _ = setup(clock, hold=True)
    seen: list[tuple[int, int]] = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.slept) == 2:
            backend.end_all()

    d = Drainer(app.config, app.db, backend=backend, clock=clock, sleep=sleep)
    report = d.run(wait=True, on_progress=lambda done, total: seen.append((done, total)))
    assert report.outcomes["done"] == 3 and report.in_flight == 0
    assert clock.slept == [30.0, 30.0]
    assert seen[0] == (0, 3) and seen[-1] == (3, 3)


def test_errored_requests_are_retried_then_fail(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, (t0, t1, t2) = setup(clock, max_retries=1)
    backend.outcomes = {f"{t0}-1": "errored", f"{t1}-1": "errored", f"{t1}-2": "errored"}
    report = drainer(app, backend, clock).run(wait=True)
    assert report.outcomes == {"done": 2, "retried": 2, "failed": 1}
    s = states(app)
    assert s == {t0: "done", t1: "failed", t2: "done"}
    assert backend.sent[f"{t0}-1"] == backend.sent[f"{t0}-2"] == 1
    failed = Queue(app.db).require(t1)
    assert failed["attempts"] == 2 and "api_error" in failed["error"]
    row = app.ledger.get(failed["request_id"])
    assert row["source"] == "batch" and row["cost"] == 0 and "batch_failed" in row["error"]


def test_expired_and_canceled_results(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, (t0, t1, t2) = setup(clock)
    backend.outcomes = {f"{t0}-1": "expired", f"{t1}-1": "canceled"}
    report = drainer(app, backend, clock).run()
    assert report.outcomes == {"expired": 1, "canceled": 1, "done": 1}
    assert states(app) == {t0: "expired", t1: "canceled", t2: "done"}
    q = Queue(app.db)
    assert "batch_expired" in app.ledger.get(q.require(t0)["request_id"])["error"]
    assert app.ledger.get(q.require(t1)["request_id"]) is None  # nothing answered, nothing paid
    # A user retry queues a new attempt with a fresh request id; the drain answers it.
    before = q.require(t0)["request_id"]
    retried = q.retry(t0)
    assert retried["state"] == "queued" and retried["custom_id"] == f"{t0}-2"
    assert retried["request_id"] != before
    drainer(app, backend, clock).run()
    assert states(app)[t0] == "done"


def test_refused_submission_puts_tasks_back(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, _ = setup(clock, wave_size=1)
    backend.refuse = BackendError("API error 400 invalid_request_error", kind="x", status=400)
    report = drainer(app, backend, clock).run()
    assert report.submit_errors and set(states(app).values()) == {"queued"}
    assert len(report.submit_errors) == 1 and report.claimed == 1  # no further waves
    backend.refuse = None
    assert drainer(app, backend, clock).run().outcomes["done"] == 3


def test_unknown_submission_outcome_is_resolved_by_listing(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, _ = setup(clock)
    backend.refuse = BackendError("cannot reach the API", kind="connection_error")
    drainer(app, backend, clock).run()
    assert set(states(app).values()) == {"claimed"}  # maybe sent: not requeued blindly
    backend.refuse = None
    report = drainer(app, backend, clock).run()
    assert report.abandoned == 1 and report.outcomes["done"] == 3
    assert all(n == 1 for n in backend.sent.values())


def test_waves_bound_what_is_held_at_once(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, _ = setup(clock, n=5, wave_size=2)
    report = drainer(app, backend, clock).run()
    assert [b["requests"] for b in report.submitted] == [2, 2, 1]
    assert report.outcomes["done"] == 5


def test_grouping_respects_request_and_byte_limits(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, _ = setup(clock, n=7, max_batch_requests=3)
    report = drainer(app, backend, clock).run()
    assert [b["requests"] for b in report.submitted] == [3, 3, 1]
    app2 = open_app(
        backend="offline",
        db=home / "two.db",
        overrides={"defer.max_batch_bytes": 2500},
    )
    q = Queue(app2.db, clock)
    for i in range(5):
        q.enqueue(
            Request.from_prompt(f"p{i} " + "x" * 600),
            reason="t",
            max_wait_s=None,
            deadline=None,
            expected_at=None,
        )
    report = drainer(app2, ScriptedBatches(clock), clock).run()
    sizes = [b["bytes"] for b in report.submitted]
    assert len(report.submitted) >= 3 and max(sizes) <= 2500 - 1024
    assert sum(b["requests"] for b in report.submitted) == 5


def test_one_batch_per_model_and_shared_prefix_gets_a_1h_breakpoint(home: Path) -> None:
    clock = Clock(NIGHT)
    app = open_app(backend="offline")
    q = Queue(app.db, clock)
    # Long enough for every model's minimum cacheable prefix (haiku: 4,096 tokens).
    system = "You are a careful analyst. " * 800
    for i, model in enumerate(["claude-haiku-5-5", "claude-sonnet-5-5"] * 3):
        q.enqueue(
            Request.from_prompt(f"task {i}", model=model, system=system),
            reason="t",
            max_wait_s=None,
            deadline=None,
            expected_at=None,
        )
    q.enqueue(
        Request.from_prompt("alone", model="claude-haiku-5-5", system="short"),
        reason="t",
        max_wait_s=None,
        deadline=None,
        expected_at=None,
    )
    report = drainer(app, ScriptedBatches(clock), clock).run()
    assert sorted((b["model"], b["requests"]) for b in report.submitted) == [
        ("claude-haiku-5-5", 4),
        ("claude-sonnet-5-5", 3),
    ]
    rows = list(app.db.query("SELECT * FROM calls WHERE source = 'batch' ORDER BY id"))
    marked = [
        r for r in rows if any(d["stage"] == "prompt_cache" for d in json.loads(r["decisions"]))
    ]
    assert len(marked) == 6  # the long shared system prompt, not the short one
    assert sum(r["cache_write_1h"] > 0 for r in rows) == 2  # one write per model
    assert sum(r["cache_read"] > 0 for r in rows) == 4


def test_a_batch_the_api_no_longer_knows_is_requeued(home: Path) -> None:
    # The in-memory offline backend across two processes: the second cannot see the batch.
    clock = Clock(NIGHT)
    app, first_api, tickets = setup(clock, hold=True)
    drainer(app, first_api, clock).run()
    report = drainer(app, ScriptedBatches(clock), clock).run()
    assert report.outcomes["requeued (batch lost)"] == 3
    assert report.outcomes["done"] == 3 and len(report.submitted) == 1  # sent again
    q = Queue(app.db)
    assert {q.require(t)["custom_id"] for t in tickets} == {f"{t}-2" for t in tickets}
    assert q.batches(["abandoned"])[0]["note"].startswith("no batch")


def test_store_prompts_off_keeps_no_prompt_in_finished_tasks(home: Path) -> None:
    clock = Clock(NIGHT)
    app, backend, tickets = setup(clock)
    app.config.ledger.store_prompts = False
    drainer(app, backend, clock).run()
    for ticket in tickets:
        task = Queue(app.db).require(ticket)
        request = json.loads(task["request"])
        assert task["state"] == "done" and request["messages"] == []
        assert request.get("system") is None and "question" not in task["request"]
        assert task["prepared"] is None
        assert json.loads(task["result"])["answer"]  # the answer is what the user waits for


def test_a_spent_blocking_budget_submits_nothing(home: Path) -> None:
    from tests.handmade import add_call

    clock = Clock(NIGHT)
    app, backend, _ = setup(clock)
    add_call(app.db, NIGHT - 60, cost=250.0)
    blocked = open_app(backend="offline", overrides={"budget.policy": "block"})
    report = drainer(blocked, backend, clock).run()
    assert report.claimed == 0 and backend.submits == 0
    assert report.submit_errors[0].startswith("budget spent (125% of $200.00) and budget.policy")
    assert set(states(app).values()) == {"queued"}
    # Money as every budget message writes it: a small trial budget keeps its digits.
    tiny = open_app(backend="offline", overrides={"budget.policy": "block",
                                                  "budget.monthly_usd": 0.0001})  # fmt: skip
    report = drainer(tiny, backend, clock).run()
    assert "of $0.00010) and budget.policy is block" in report.submit_errors[0]
