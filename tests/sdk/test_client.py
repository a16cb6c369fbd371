"""`tars_opt.Anthropic` / `AsyncAnthropic`: the SDK's own clients, answered in-process by
the chain - through the real SDK against the strict fake API."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

import tars_opt
from tars_opt import open_app
from tars_opt.accounting.pricing import PriceBook
from tars_opt.types import Usage
from tests.fake_anthropic import Fault
from tests.pipeline.test_agent_core import body, weather_agent


def loop(client: Any, city: str) -> list[Any]:
    """One agent tool loop: the question, the tool call, the tool's answer, the reply.
    Returns the raw responses of both calls."""
    first = [{"role": "user", "content": f"What's the weather in {city}?"}]
    raw = client.messages.with_raw_response.create(**body(first))
    call = raw.parse()
    assert isinstance(call, anthropic.types.Message) and call.stop_reason == "tool_use"
    (use,) = [b for b in call.content if b.type == "tool_use"]
    turns = [
        *first,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in call.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21C"}],
        },
    ]
    done = client.messages.with_raw_response.create(**body(turns))
    assert done.parse().content[0].text == "It is sunny in Paris, 21 C."
    return [raw, done]


def assert_ledger_matches(raws: list[Any]) -> None:
    """One ledger row per call, priced from the usage the fake reported."""
    opened = open_app()
    prices = PriceBook(opened.config.pricing)
    rows = {r["request_id"]: r for r in opened.db.query("SELECT * FROM calls")}
    assert len(rows) == len(raws)
    for raw in raws:
        message = raw.parse()
        row = rows[raw.headers["x-tars-opt-request-id"]]
        usage = Usage.from_api(message.usage.model_dump())
        assert row["source"] == "api" and row["error"] is None
        assert row["cost"] == pytest.approx(prices.cost(usage, message.model), rel=1e-12)
        assert row["input_tokens"] == usage.input_tokens > 0
        assert row["output_tokens"] == usage.output_tokens


def test_a_tool_loop_returns_the_sdks_types_and_is_recorded(fake_api_env, home: Path) -> None:
    fake_api_env.responder = weather_agent
    client = tars_opt.Anthropic()
    raws = loop(client, "Paris")
    # The tool_use answer came back whole and was not escalated: one upstream call each.
    assert len(fake_api_env.requests_to("/v1/messages")) == 2
    assert raws[0].headers["x-tars-opt-source"] == "api"
    assert raws[0].headers["request-id"].startswith("req_")  # the API's own headers
    assert_ledger_matches(raws)
    rows = list(open_app().db.query("SELECT conversation FROM calls"))
    assert rows[0]["conversation"] == rows[1]["conversation"]


def test_eight_threads_run_tool_loops_through_one_client(fake_api_env, home: Path) -> None:
    fake_api_env.responder = weather_agent
    client = tars_opt.Anthropic(max_retries=0)
    raws: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def agent(n: int) -> None:
        try:
            start.wait(timeout=30)
            raws.extend(loop(client, f"city {n}"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(raws) == 16
    assert len(fake_api_env.requests_to("/v1/messages")) == 16
    assert_ledger_matches(raws)
    conversations = {
        r["conversation"] for r in open_app().db.query("SELECT conversation FROM calls")
    }
    assert len(conversations) == 8  # each agent's two calls are one conversation


def test_async_tool_loops_run_at_once_through_one_client(fake_api_env, home: Path) -> None:
    fake_api_env.responder = weather_agent

    async def agent(client: tars_opt.AsyncAnthropic, n: int) -> list[Any]:
        first = [{"role": "user", "content": f"What's the weather in town {n}?"}]
        raw = await client.messages.with_raw_response.create(**body(first))
        call = await raw.parse()
        (use,) = [b for b in call.content if b.type == "tool_use"]
        turns = [
            *first,
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in call.content],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21C"}],
            },
        ]
        done = await client.messages.with_raw_response.create(**body(turns))
        return [raw, done]

    async def main() -> list[Any]:
        client = tars_opt.AsyncAnthropic(max_retries=0)
        runs = await asyncio.gather(*(agent(client, n) for n in range(8)))
        parsed = [[r, await r.parse()] for run in runs for r in run]
        await client.close()
        return parsed

    pairs = asyncio.run(main())
    assert len(pairs) == 16 and len(fake_api_env.requests_to("/v1/messages")) == 16
    opened = open_app()
    prices = PriceBook(opened.config.pricing)
    rows = {r["request_id"]: r for r in opened.db.query("SELECT * FROM calls")}
    assert len(rows) == 16
    for raw, message in pairs:
        row = rows[raw.headers["x-tars-opt-request-id"]]
        usage = Usage.from_api(message.usage.model_dump())
        assert row["cost"] == pytest.approx(prices.cost(usage, message.model), rel=1e-12)


def test_a_stream_is_relayed_live_and_a_cached_answer_streams_too(fake_api_env, home: Path) -> None:
    fake_api_env.responder = lambda b: {"text": "Paris is the capital of France."}
    client = tars_opt.Anthropic()
    ask = {
        "model": "claude-haiku-5-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }
    with client.messages.stream(**ask) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        headers = stream.response.headers
    assert len(texts) > 1  # relayed delta by delta, as the fake streamed it
    assert "".join(texts) == final.content[0].text == "Paris is the capital of France."
    # A live stream carries the API's headers, and the id of its ledger row.
    assert headers["request-id"].startswith("req_") and headers["x-tars-opt-source"] == "api"
    (sent,) = fake_api_env.requests_to("/v1/messages")
    assert sent.body["stream"] is True
    row = open_app().ledger.get(headers["x-tars-opt-request-id"])
    assert row["output_tokens"] == final.usage.output_tokens and row["cost"] > 0
    # The same question again: answered from the response cache, as a stream the SDK reads.
    with client.messages.stream(**ask) as stream:
        again = stream.get_final_message()
        assert stream.response.headers["x-tars-opt-source"] == "cache"
    assert again.content[0].text == final.content[0].text
    assert len(fake_api_env.requests_to("/v1/messages")) == 1
    created = client.messages.create(**ask, stream=True)
    assert [e.type for e in created][0] == "message_start"


def test_controls_come_from_the_constructor_and_per_call_headers(fake_api_env, home: Path) -> None:
    fake_api_env.responder = lambda b: {"text": "ok"}
    client = tars_opt.Anthropic(namespace="team-a")
    hard = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi there"}],
    }
    client.messages.create(**hard)
    client.messages.create(
        **hard,
        extra_headers={
            "x-tars-opt-namespace": "team-b",
            "x-tars-opt-cache": "off",
            "x-tars-opt-route": "off",
        },
    )
    client.with_options(timeout=30).messages.create(**hard)  # a copy keeps the controls
    sent = fake_api_env.requests_to("/v1/messages")
    assert sent[1].body["model"] == "claude-sonnet-5-5"  # routing off: the body's model
    assert not any(k.startswith("x-tars-opt") for r in sent for k in r.headers)
    rows = list(open_app().db.query("SELECT namespace, source FROM calls ORDER BY id"))
    assert [r["namespace"] for r in rows] == ["team-a", "team-b", "team-a"]
    assert rows[2]["source"] == "cache"
    with pytest.raises(
        anthropic.BadRequestError,
        match="x-tars-opt-cache 'sometimes' is not one of off, refresh, use",
    ):
        client.messages.create(**hard, extra_headers={"x-tars-opt-cache": "sometimes"})
    with pytest.raises(tars_opt.InputError, match="priority must be one of"):
        tars_opt.Anthropic(priority="urgent")


def test_other_paths_pass_through_unchanged(fake_api_env, home: Path) -> None:
    client = tars_opt.Anthropic()
    counted = client.messages.count_tokens(
        model="claude-haiku-5-5", messages=[{"role": "user", "content": "hello"}]
    )
    assert counted.input_tokens > 0
    assert any(m.id == "claude-haiku-5-5" for m in client.models.list())
    assert len(fake_api_env.requests_to("/v1/messages/count_tokens")) == 1
    assert open_app().db.scalar("SELECT COUNT(*) FROM calls") == 0


def test_unknown_fields_and_betas_arrive_unchanged(fake_api_env, home: Path) -> None:
    fake_api_env.responder = lambda b: {"text": "fine"}
    client = tars_opt.Anthropic()
    client.messages.create(
        model="claude-haiku-5-5",
        max_tokens=40,
        messages=[{"role": "user", "content": "hello"}],
        metadata={"user_id": "u-1"},
        extra_body={"some_future_field": {"nested": [1, None]}},
        extra_headers={"anthropic-beta": "future-beta-2027-01-01"},
    )
    (sent,) = fake_api_env.requests_to("/v1/messages")
    assert sent.body["some_future_field"] == {"nested": [1, None]}
    assert sent.body["metadata"] == {"user_id": "u-1"}
    assert sent.header("anthropic-beta") == "future-beta-2027-01-01"


def test_api_errors_are_the_sdks_own_and_retried_as_it_would(fake_api_env, home: Path) -> None:
    fake_api_env.responder = lambda b: {"text": "ok"}
    ask = {
        "model": "claude-haiku-5-5",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "hello"}],
    }
    fake_api_env.inject(Fault("overloaded", retry_after_ms=1), times=1, method="POST")
    client = tars_opt.Anthropic(max_retries=1, cache_mode="off")
    assert client.messages.create(**ask).content[0].text == "ok"
    assert len(fake_api_env.requests_to("/v1/messages")) == 2  # the SDK's one retry
    fake_api_env.inject(Fault("overloaded"), times=1, method="POST")
    with pytest.raises(anthropic.InternalServerError) as caught:
        tars_opt.Anthropic(max_retries=0, cache_mode="off").messages.create(**ask)
    assert caught.value.status_code == 529 and caught.value.body["error"]["message"] == "Overloaded"
    rows = list(open_app().db.query("SELECT error FROM calls ORDER BY id"))
    assert [r["error"] is not None for r in rows] == [True, False, True]
    fake_api_env.inject("connection_reset", times=1, method="POST")
    with pytest.raises(anthropic.APIConnectionError):
        tars_opt.Anthropic(max_retries=0, cache_mode="off").messages.create(**ask)


def test_the_api_key_goes_upstream_and_never_into_the_database(fake_api_env, home: Path) -> None:
    fake_api_env.responder = lambda b: {"text": "Paris."}
    fake_api_env.api_key = "sk-ant-client-secret"
    client = tars_opt.Anthropic(api_key="sk-ant-client-secret")
    ask = {
        "model": "claude-haiku-5-5",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    }
    assert client.messages.create(**ask).content[0].text == "Paris."
    db_bytes = b"".join(p.read_bytes() for p in home.glob("tars-opt.db*"))
    assert b"sk-ant-client-secret" not in db_bytes
    # Another key gets no answer the first key paid for.
    fake_api_env.api_key = None
    other = tars_opt.Anthropic(api_key="sk-ant-someone-else")
    other.messages.create(**ask)
    assert len(fake_api_env.requests_to("/v1/messages")) == 2


def test_a_broken_stage_sends_the_request_unoptimized(fake_api_env, home: Path) -> None:
    fake_api_env.responder = lambda b: {"text": "still answered"}
    client = tars_opt.Anthropic()

    class Broken:
        name = "broken"

        def apply(self, request: Any) -> Any:
            raise RuntimeError("stage bug")

    client.tars_optimizer.stages.insert(0, Broken())
    ask = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "hello"}],
    }
    assert client.messages.create(**ask).content[0].text == "still answered"
    (sent,) = fake_api_env.requests_to("/v1/messages")
    assert sent.body == ask  # as the caller sent it


def test_a_blocking_budget_refuses_with_an_error_the_sdk_does_not_retry(
    fake_api_env, home: Path
) -> None:
    app = open_app(overrides={"budget": {"monthly_usd": 0.000001, "policy": "block"}})
    fake_api_env.responder = lambda b: {"text": "ok"}
    client = tars_opt.Anthropic(app=app, cache_mode="off")
    ask = {
        "model": "claude-haiku-5-5",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "hello"}],
    }
    with pytest.raises(anthropic.PermissionDeniedError, match="tars-opt monthly budget"):
        client.messages.create(**ask)
    assert fake_api_env.requests_to("/v1/messages") == []


def test_a_stream_that_fails_midway_fails_for_the_caller_as_it_would(
    fake_api_env, home: Path
) -> None:
    fake_api_env.responder = lambda b: {"text": "A long answer " * 20}
    client = tars_opt.Anthropic(max_retries=0, cache_mode="off")
    ask = {
        "model": "claude-haiku-5-5",
        "max_tokens": 400,
        "messages": [{"role": "user", "content": "Tell me a story."}],
    }
    fake_api_env.inject(Fault("stream_error", after_events=4), method="POST")
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(**ask) as stream,
    ):
        list(stream.text_stream)
    fake_api_env.inject(Fault("stream_cut", after_events=4), method="POST")
    # A cut stream raises what the transport raises, as against the API.
    with pytest.raises(httpx2.RemoteProtocolError), client.messages.stream(**ask) as stream:
        list(stream.text_stream)
    # A caller that stops reading early: the upstream request is closed at its next
    # event, and the row is written by the time the stream is closed.
    fake_api_env.stream_event_delay = 0.05
    with client.messages.stream(**ask) as stream:
        next(iter(stream.text_stream))
    errors = [r["error"] for r in open_app().db.query("SELECT error FROM calls ORDER BY id")]
    assert len(errors) == 3
    assert "overloaded_error" in errors[0] and "RemoteProtocolError" in errors[1]
    assert "closed the stream" in errors[2]
