"""The drain through the real SDK against the local fake API's Message Batches."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tests.fake_anthropic")

from tars_opt import Request, open_app  # noqa: E402
from tars_opt.accounting.pricing import PriceBook  # noqa: E402
from tars_opt.defer.queue import Queue  # noqa: E402
from tars_opt.drain.runner import Drainer  # noqa: E402
from tars_opt.types import Usage  # noqa: E402


class Crash(Exception):
    pass


def queued(fake_api_env, n: int, **defer: object):
    app = open_app(overrides={f"defer.{k}": v for k, v in defer.items()})
    q = Queue(app.db)
    tickets = [
        q.enqueue(
            Request.from_prompt(f"Name a prime above {i * 100}"),
            reason="test",
            max_wait_s=None,
            deadline=None,
            expected_at=None,
        )["ticket"]
        for i in range(n)
    ]
    return app, tickets


def test_batches_polled_then_collected_at_half_price(fake_api_env, home: Path) -> None:
    fake_api_env.batch_mode = "polls"
    app, tickets = queued(fake_api_env, 4)
    first = Drainer(app.config, app.db).run(now=True)
    assert len(first.submitted) == 1 and first.in_flight == 1
    assert fake_api_env.counters["batch_requests"] == 4
    second = Drainer(app.config, app.db).run(now=True)
    assert second.outcomes["done"] == 4 and second.in_flight == 0
    prices = PriceBook(app.config.pricing)
    for ticket in tickets:
        row = app.ledger.get(Queue(app.db).require(ticket)["request_id"])
        assert row["source"] == "batch" and row["service_tier"] == "batch"
        assert not row["tokens_estimated"]  # usage reported by the API
        full = prices.cost(
            Usage(input_tokens=row["input_tokens"], output_tokens=row["output_tokens"]),
            row["model"],
        )
        assert row["cost"] == pytest.approx(full / 2)
    assert fake_api_env.counters["batch_requests"] == 4  # nothing sent twice


def test_outcomes_from_the_api(fake_api_env, home: Path) -> None:
    app, (t0, t1, t2, t3) = queued(fake_api_env, 4, max_retries=1)
    script = {f"{t0}-1": "errored", f"{t1}-1": "expired", f"{t2}-1": "canceled"}
    fake_api_env.batch_outcome = lambda custom_id, params: script.get(custom_id)
    report = Drainer(app.config, app.db).run(now=True, wait=True)
    assert report.outcomes == {"retried": 1, "expired": 1, "canceled": 1, "done": 2}
    states = {t: Queue(app.db).require(t)["state"] for t in (t0, t1, t2, t3)}
    assert states == {t0: "done", t1: "expired", t2: "canceled", t3: "done"}


def test_crash_after_submit_is_found_by_listing_batches(fake_api_env, home: Path) -> None:
    app, tickets = queued(fake_api_env, 3)

    def crash(name: str) -> None:
        if name == "submitted":
            raise Crash

    with pytest.raises(Crash):
        Drainer(app.config, app.db, owner="gone-host:1:x", checkpoint=crash).run(now=True)
    app.db.execute("UPDATE batches SET lease_until = 0")  # the dead drain's lease ran out
    report = Drainer(app.config, app.db).run(now=True)
    assert len(report.adopted) == 1 and report.outcomes["done"] == 3
    assert fake_api_env.counters["batches_created"] == 1
    assert fake_api_env.counters["batch_lists"] >= 1
