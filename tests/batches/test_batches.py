"""`/v1/messages/batches` through the real SDK: requests wait in the deferred queue for the
off-peak window, the drain sends them to the (fake) API at batch price, and the client
reads batch objects and results shaped like the API's."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tars_opt.accounting.pricing import PriceBook
from tars_opt.types import Usage
from tests.batches.conftest import NIGHT, NOON, Setup
from tests.drain_helpers import at

MODEL = "claude-sonnet-4-6"


def params(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def requests(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        {"custom_id": f"{prefix}{i}", "params": params(f"Name a prime above {i * 100}")}
        for i in range(n)
    ]


def counts(batch: Any) -> dict[str, int]:
    return batch.request_counts.model_dump()


def shape(value: Any) -> Any:
    """The keys and value types of a JSON value, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def results(setup: Setup, batch_id: str, client: Any = None) -> dict[str, Any]:
    lines = (client or setup.client).messages.batches.results(batch_id)
    return {line.custom_id: line.result for line in lines}


def test_waits_for_the_window_then_ends_with_results_shaped_like_the_apis(
    batches: Setup,
) -> None:
    bad = {"custom_id": "bad", "params": {"model": MODEL, "messages": []}}
    created = batches.client.messages.batches.create(requests=[*requests(3), bad])
    assert created.id.startswith("msgbatch_") and created.type == "message_batch"
    assert created.processing_status == "in_progress" and created.results_url is None
    assert counts(created) == {
        "processing": 3, "succeeded": 0, "errored": 1, "canceled": 0, "expired": 0
    }  # fmt: skip
    assert (created.expires_at - created.created_at).total_seconds() == 24 * 3600

    report = batches.drain()  # noon: outside the window, the deadline far off
    assert report.submitted == [] and report.due == 0
    assert batches.api.counters["batches_created"] == 0
    assert batches.client.messages.batches.retrieve(created.id).processing_status == "in_progress"
    with pytest.raises(anthropic.AnthropicError, match="results_url"):  # the SDK's own check
        batches.client.messages.batches.results(created.id)

    batches.clock.now = NIGHT
    report = batches.drain()
    assert len(report.submitted) == 1 and report.outcomes["done"] == 3
    assert batches.api.counters["batch_requests"] == 3  # the invalid one never went out

    ended = batches.client.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended"
    assert counts(ended) == {
        "processing": 0, "succeeded": 3, "errored": 1, "canceled": 0, "expired": 0
    }  # fmt: skip
    assert ended.results_url == f"http://testserver/v1/messages/batches/{created.id}/results"
    assert ended.ended_at is not None and ended.ended_at.timestamp() == NIGHT

    got = results(batches, created.id)
    assert list(got) == ["r0", "r1", "r2", "bad"]  # one line per custom_id, in order
    assert got["bad"].type == "errored"
    assert got["bad"].error.error.type == "invalid_request_error"
    assert "messages" in got["bad"].error.error.message
    assert {got[f"r{i}"].type for i in range(3)} == {"succeeded"}
    assert got["r0"].message.usage.service_tier == "batch"

    # The same requests sent to the API's batches directly: the same shapes, line by line.
    direct = anthropic.Anthropic(base_url=batches.api.url, api_key="k", max_retries=0)
    upstream = direct.messages.batches.create(requests=[*requests(3), bad])
    direct.messages.batches.retrieve(upstream.id)  # ends it (one poll)
    theirs = {line.custom_id: line for line in direct.messages.batches.results(upstream.id)}
    ours = {line.custom_id: line for line in batches.client.messages.batches.results(created.id)}
    for custom_id in theirs:
        mine_line, their_line = ours[custom_id].model_dump(), theirs[custom_id].model_dump()
        if "message" in mine_line["result"]:
            assert shape(mine_line["result"]["message"]["usage"]) == shape(
                their_line["result"]["message"]["usage"]
            )
        assert shape(mine_line) == shape(their_line)
    mine = batches.client.messages.batches.retrieve(created.id).model_dump()
    assert shape(mine) == shape(direct.messages.batches.retrieve(upstream.id).model_dump())


def test_ledger_rows_name_the_clients_batch_and_custom_id_at_batch_price(
    batches: Setup,
) -> None:
    created = batches.client.messages.batches.create(requests=requests(2))
    batches.clock.now = NIGHT
    batches.drain()
    rows = batches.app.db.query(
        "SELECT * FROM calls WHERE client_batch_id = ? ORDER BY client_custom_id", [created.id]
    )
    rows = list(rows)
    assert [r["client_custom_id"] for r in rows] == ["r0", "r1"]
    prices = PriceBook(batches.app.config.pricing)
    for row in rows:
        assert row["source"] == "batch" and row["service_tier"] == "batch"
        full = prices.cost(
            Usage(input_tokens=row["input_tokens"], output_tokens=row["output_tokens"]),
            row["model"],
        )
        assert row["cost"] == pytest.approx(full / 2)
        assert row["baseline_cost"] > row["cost"]  # routed down and batched
    answered = results(batches, created.id)
    assert {r["request_id"] for r in rows} == {
        t["request_id"]
        for t in batches.app.db.query("SELECT * FROM tasks WHERE client_batch = ?", [created.id])
    }
    assert answered["r0"].message.model == rows[0]["model"]


def test_list_pages_newest_first_and_keys_see_only_their_own_batches(batches: Setup) -> None:
    made = []
    for i in range(5):
        batches.clock.now = NOON + i
        made.append(batches.client.messages.batches.create(requests=requests(1)).id)
    page = batches.client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == made[::-1][:2] and page.has_more
    assert [b.id for b in batches.client.messages.batches.list(limit=2)] == made[::-1]
    back = batches.client.messages.batches.list(limit=2, before_id=made[1])
    assert [b.id for b in back.data] == [made[3], made[2]]

    other = batches.make_client("someone-elses-key")
    assert list(other.messages.batches.list()) == []
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.retrieve(made[0])
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.cancel(made[0])


def test_delete_only_once_ended(batches: Setup) -> None:
    created = batches.client.messages.batches.create(requests=requests(2))
    with pytest.raises(anthropic.BadRequestError, match="cancel it first"):
        batches.client.messages.batches.delete(created.id)
    batches.clock.now = NIGHT
    batches.drain()
    deleted = batches.client.messages.batches.delete(created.id)
    assert deleted.id == created.id and deleted.type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        batches.client.messages.batches.retrieve(created.id)
    assert list(batches.client.messages.batches.list()) == []
    # What it cost stays in the ledger; the requests' text is gone from the queue.
    assert (
        batches.app.db.scalar("SELECT COUNT(*) FROM calls WHERE client_batch_id = ?", [created.id])
        == 2
    )
    left = batches.app.db.query("SELECT request, result FROM tasks WHERE client_batch = ?",
                                [created.id])  # fmt: skip
    assert all("Name a prime" not in r["request"] and r["result"] is None for r in left)


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ({"model": None}, "model"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"messages": "hi"}, "messages"),
        ({"tools": {"name": "x"}}, "tools"),
        ({"system": 5}, "system"),
        ({"stream": True}, "stream"),
    ],
)
def test_params_that_cannot_be_sent_are_errored_results(
    batches: Setup, broken: dict[str, Any], named: str
) -> None:
    created = batches.client.messages.batches.create(
        requests=[{"custom_id": "x", "params": {**params("hi"), **broken}}, *requests(1)]
    )
    assert counts(created)["errored"] == 1 and counts(created)["processing"] == 1
    batches.clock.now = NIGHT
    batches.drain()
    got = results(batches, created.id)
    assert got["x"].type == "errored" and got["x"].error.error.message.startswith(named)
    assert got["r0"].type == "succeeded"


def test_bad_envelopes_are_refused_like_the_api(batches: Setup) -> None:
    create = batches.client.messages.batches.create
    with pytest.raises(anthropic.BadRequestError, match="at least 1 item"):
        create(requests=[])
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        create(requests=requests(1) + requests(1))
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        create(requests=[{"custom_id": "not ok!", "params": params("x")}])
    assert batches.app.db.scalar("SELECT COUNT(*) FROM client_batches") == 0
    with pytest.raises(anthropic.NotFoundError):
        batches.client.messages.batches.retrieve("msgbatch_nope")


def test_refused_without_a_key_for_the_drain(batches: Setup, monkeypatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(anthropic.PermissionDeniedError, match="ANTHROPIC_API_KEY is not set"):
        batches.client.messages.batches.create(requests=requests(1))


def test_cancel_before_submission_cancels_at_once(batches: Setup) -> None:
    created = batches.client.messages.batches.create(requests=requests(3))
    canceled = batches.client.messages.batches.cancel(created.id)
    assert canceled.processing_status == "ended" and canceled.cancel_initiated_at is not None
    assert counts(canceled)["canceled"] == 3
    assert {r.type for r in results(batches, created.id).values()} == {"canceled"}
    batches.clock.now = NIGHT
    batches.drain()
    assert batches.api.counters["batches_created"] == 0  # nothing sent, nothing billed
    with pytest.raises(anthropic.BadRequestError, match="already ended"):
        batches.client.messages.batches.cancel(created.id)


def test_cancel_after_submission_cancels_upstream_and_keeps_what_was_processed(
    batches: Setup,
) -> None:
    batches.api.batch_mode = "manual"
    created = batches.client.messages.batches.create(requests=requests(3))
    batches.clock.now = NIGHT
    report = batches.drain()
    assert len(report.submitted) == 1
    upstream = report.submitted[0]["batch_id"]
    # The API had processed one request when the cancel reached it.
    first = batches.app.db.scalar(
        "SELECT custom_id FROM tasks WHERE client_batch = ? AND client_custom_id = 'r0'",
        [created.id],
    )
    batches.api.batch_outcome = lambda custom_id, _params: (
        "succeeded" if custom_id == first else None
    )
    canceling = batches.client.messages.batches.cancel(created.id)
    assert canceling.processing_status == "canceling" and counts(canceling)["processing"] == 3

    report = batches.drain()
    assert report.canceled_upstream == [upstream]
    assert batches.api.counters["batches_canceled"] == 1
    batches.api.end_batch(upstream)
    report = batches.drain()
    assert report.outcomes == {"done": 1, "canceled": 2}
    ended = batches.client.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended"
    assert counts(ended) == {
        "processing": 0, "succeeded": 1, "errored": 0, "canceled": 2, "expired": 0
    }  # fmt: skip
    got = results(batches, created.id)
    assert got["r0"].type == "succeeded" and got["r1"].type == got["r2"].type == "canceled"
    billed = batches.app.db.query("SELECT client_custom_id, cost FROM calls")
    assert [(r["client_custom_id"], r["cost"] > 0) for r in billed] == [("r0", True)]


def test_an_upstream_batch_holding_other_work_is_not_canceled(batches: Setup) -> None:
    from tars_opt import Request
    from tars_opt.defer.queue import Queue

    batches.api.batch_mode = "manual"
    mine = batches.client.messages.batches.create(requests=requests(2)).id
    theirs = batches.client.messages.batches.create(requests=requests(2)).id
    ticket = Queue(batches.app.db, batches.clock).enqueue(
        Request.from_body(params("a task queued by ask --defer")),
        reason="test", max_wait_s=None, deadline=None, expected_at=None,
    )["ticket"]  # fmt: skip
    batches.clock.now = NIGHT
    report = batches.drain()
    # One upstream batch per client batch; the defer stage's task in one of its own.
    assert len(report.submitted) == 3
    batches.client.messages.batches.cancel(mine)
    report = batches.drain()
    assert len(report.canceled_upstream) == 1
    rows = batches.app.db.query("SELECT batch_row, client_batch FROM tasks")
    canceled_row = batches.app.db.scalar(
        "SELECT id FROM batches WHERE batch_id = ?", [report.canceled_upstream[0]]
    )
    assert {r["client_batch"] for r in rows if r["batch_row"] == canceled_row} == {mine}
    assert batches.client.messages.batches.retrieve(theirs).processing_status == "in_progress"
    assert Queue(batches.app.db).require(ticket)["state"] == "submitted"


@pytest.mark.parametrize("window", ["05:00-05:30"])
def test_a_batch_ends_within_24_hours_whatever_the_window(make_batches, window: str) -> None:
    setup = make_batches(window=window)
    setup.clock.now = at("2026-11-23T05:31")  # just after the window closed
    created = setup.client.messages.batches.create(requests=requests(2))
    deadline = created.expires_at.timestamp()
    # The window opens again at 05:00 tomorrow: too late to meet the deadline with the
    # expected turnaround, so the drain sends it early (a run every 10 minutes, all day).
    lead = (60 + 10) * 60
    sent_at = None
    while setup.clock.now < deadline:
        report = setup.drain(collect_only=True)  # the daemon's collector outside the window
        if report.submitted:
            sent_at = setup.clock.now
            assert report.due == 2
            break
        setup.clock.now += 600
    assert sent_at is not None and deadline - lead <= sent_at < deadline - lead + 600
    assert not setup.app.config.defer.window.startswith("00")  # the window was never open
    setup.drain(collect_only=True)
    ended = setup.client.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended" and counts(ended)["succeeded"] == 2
    assert ended.ended_at < ended.expires_at


def test_requests_never_sent_by_the_deadline_expire(batches: Setup) -> None:
    created = batches.client.messages.batches.create(requests=requests(2))
    batches.clock.now = NOON + 24 * 3600  # no drain ran all day
    ended = batches.client.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended" and counts(ended)["expired"] == 2
    assert ended.ended_at == ended.expires_at
    assert {r.type for r in results(batches, created.id).values()} == {"expired"}
    report = batches.drain(now=True)
    assert report.closed == 2 and report.claimed == 0
    assert batches.api.counters["batches_created"] == 0


def test_an_upstream_batch_still_running_at_the_deadline_is_canceled_and_expires(
    batches: Setup,
) -> None:
    batches.api.batch_mode = "manual"
    created = batches.client.messages.batches.create(requests=requests(2))
    batches.clock.now = NIGHT
    upstream = batches.drain().submitted[0]["batch_id"]
    batches.clock.now = NOON + 24 * 3600
    ended = batches.client.messages.batches.retrieve(created.id)
    assert ended.processing_status == "ended" and counts(ended)["expired"] == 2
    report = batches.drain()
    assert report.canceled_upstream == [upstream]  # stop paying for what nobody reads
    batches.api.end_batch(upstream)
    batches.drain()
    # Collected after the deadline: recorded in the ledger if billed, but the client's
    # results were final at the deadline.
    assert {r.type for r in results(batches, created.id).values()} == {"expired"}


def test_errors_use_the_apis_shape_and_headers(batches: Setup) -> None:
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from tars_opt.gateway.batches import batch_routes

    http = TestClient(
        Starlette(routes=batch_routes(batches.facade)), headers={"x-api-key": "client-key"}
    )
    created = batches.client.messages.batches.create(requests=requests(1))
    answer = http.get(f"/v1/messages/batches/{created.id}/results")
    assert answer.status_code == 400
    body = answer.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "has not ended yet" in body["error"]["message"]
    assert answer.headers["request-id"] == body["request_id"]
    assert answer.headers["x-tars-opt-request-id"] == body["request_id"]
    bad = http.post("/v1/messages/batches", content=b"{not json")
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    assert http.get("/v1/messages/batches?limit=0").status_code == 400


def test_control_headers_apply_to_every_request(batches: Setup) -> None:
    import json

    created = batches.client.messages.batches.create(
        requests=requests(2),
        extra_headers={"x-tars-opt-namespace": "nightly", "x-tars-opt-priority": "low",
                       "x-tars-opt-route": "off"},
    )  # fmt: skip
    rows = list(batches.app.db.query("SELECT * FROM tasks WHERE client_batch = ?", [created.id]))
    assert {r["namespace"] for r in rows} == {"nightly"} and {r["priority"] for r in rows} == {2}
    assert all(json.loads(r["request"])["route"] is False for r in rows)
    batches.clock.now = NIGHT
    batches.drain()
    assert {line.message.model for line in results(batches, created.id).values()} == {MODEL}
    with pytest.raises(anthropic.BadRequestError, match="x-tars-opt-priority"):
        batches.client.messages.batches.create(
            requests=requests(1), extra_headers={"x-tars-opt-priority": "urgent"}
        )
