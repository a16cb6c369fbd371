"""`tars-opt serve` through the real SDK to the strict fake API: JSON, streams, tool loops,
pass-through of what the gateway does not own, errors mirrored, keys never kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import anthropic
import httpx2
import pytest

from tars_opt.accounting.pricing import PriceBook
from tars_opt.config.schema import Config
from tars_opt.types import Usage
from tests.fake_anthropic.server import FakeAnthropic
from tests.gateway.harness import serve

KEY = "sk-ant-test-secret-0123456789"
MODEL = "claude-sonnet-4-6"


def client(url: str, **kw: object) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, **kw)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_json_answer_headers_and_row(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        raw = client(gw.url).messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=ask("What is the capital of Peru?")
        )
        message = raw.parse()
        assert message.content[0].type == "text" and message.content[0].text
        rid = raw.headers["x-tars-opt-request-id"]
        assert raw.headers["x-tars-opt-source"] == "api"
        assert raw.headers["request-id"].startswith("req_")  # the API's own, relayed
        cost = float(raw.headers["x-tars-opt-cost"])
        rows = gw.rows()
    assert len(rows) == 1 and rows[0]["request_id"] == rid
    row = rows[0]
    usage = Usage.from_api(message.usage)
    assert row["cost"] == pytest.approx(PriceBook(Config().pricing).cost(usage, message.model))
    assert row["cost"] == pytest.approx(cost, abs=1e-8)
    assert row["api_request_id"] == raw.headers["request-id"]
    # The fake saw one request, sent by the gateway, with the client's key.
    (sent,) = fake_api.requests_to("/v1/messages")
    assert sent.header("x-api-key") == KEY or sent.header("authorization") == f"Bearer {KEY}"


def test_async_sdk(fake_api: FakeAnthropic) -> None:
    async def run(url: str) -> list[str]:
        async with anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0) as c:
            replies = await asyncio.gather(
                *(
                    c.messages.create(model=MODEL, max_tokens=32, messages=ask(f"Say {i}"))
                    for i in range(4)
                )
            )
        return [r.content[0].text for r in replies]

    with serve(fake_api.url) as gw:
        texts = asyncio.run(run(gw.url))
        assert len(texts) == 4 and all(texts)
        assert len(gw.rows()) == 4


def test_stream_relayed_and_recorded_from_its_usage(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        with client(gw.url).messages.stream(
            model=MODEL, max_tokens=64, messages=ask("Tell me about the Andes.")
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
            rid = stream.response.headers["x-tars-opt-request-id"]
            assert stream.response.headers["x-tars-opt-source"] == "api"
        assert text and text == final.content[0].text
        (row,) = gw.rows()
        with httpx2.Client() as http:
            seen = http.get(f"{gw.url}/tars-opt/requests/{rid}").json()
    assert row["request_id"] == rid and row["error"] is None
    assert row["output_tokens"] == final.usage.output_tokens
    assert row["input_tokens"] == final.usage.input_tokens and row["tokens_estimated"] == 0
    assert seen["cost"] == row["cost"] and seen["status"] == "recorded"
    assert fake_api.counters["streams"] == 1


def test_tool_loop(fake_api: FakeAnthropic) -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    fake_api.responder = lambda body: (
        {"tool_use": [{"name": "get_weather", "input": {"city": "Lima"}}]}
        if body["messages"][-1]["role"] == "user"
        and isinstance(body["messages"][-1]["content"], str)
        else "It is sunny in Lima."
    )
    with serve(fake_api.url) as gw:
        c = client(gw.url)
        messages = ask("Weather in Lima?")
        first = c.messages.create(model=MODEL, max_tokens=128, tools=tools, messages=messages)
        assert first.stop_reason == "tool_use"
        use = next(b for b in first.content if b.type == "tool_use")
        messages = [
            *messages,
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in first.content],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}],
            },
        ]
        second = c.messages.create(model=MODEL, max_tokens=128, tools=tools, messages=messages)
        assert second.content[0].text == "It is sunny in Lima."
        rows = gw.rows()
    assert [r["stop_reason"] for r in rows] == ["tool_use", "end_turn"]
    assert fake_api.handler_errors == []


def test_unknown_fields_betas_and_query_unchanged(fake_api: FakeAnthropic) -> None:
    future = {"mode": "x", "nested": [1, {"a": None}]}
    with serve(fake_api.url) as gw:
        c = client(gw.url)
        c.beta.messages.create(
            model=MODEL,
            max_tokens=32,
            messages=ask("hello"),
            betas=["some-beta-2099-01-01"],
            extra_body={"future_field": future},
            extra_query={"beta": "true"},  # as Claude Code sends it
            extra_headers={"x-custom-header": "kept", "x-tars-opt-namespace": "team-a"},
        )
        rows = gw.rows()
    (sent,) = fake_api.requests_to("/v1/messages")
    assert sent.body["future_field"] == future
    assert sent.query == {"beta": "true"}
    assert sent.header("anthropic-beta") == "some-beta-2099-01-01"
    assert sent.header("x-custom-header") == "kept"
    assert sent.header("x-tars-opt-namespace") is None  # the gateway's control, not the API's
    assert rows[0]["namespace"] == "team-a"


def test_other_paths_pass_through(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        c = client(gw.url)
        counted = c.messages.count_tokens(model=MODEL, messages=ask("count me please"))
        models = c.models.list()
        with pytest.raises(anthropic.NotFoundError):
            c.get("/v1/nowhere", cast_to=object)
        assert gw.rows() == []
    assert counted.input_tokens == fake_api.count_tokens(
        {"model": MODEL, "messages": ask("count me please")}
    )
    assert len(models.data) > 0
    assert fake_api.counters["count_tokens"] == 1 and fake_api.counters["models"] == 1


def test_upstream_errors_mirrored_with_status_headers_and_body(fake_api: FakeAnthropic) -> None:
    fake_api.inject("rate_limit")
    with serve(fake_api.url) as gw:
        with pytest.raises(anthropic.RateLimitError) as caught:
            client(gw.url).messages.create(model=MODEL, max_tokens=32, messages=ask("hi"))
        rows = gw.rows()
    err = caught.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"]
    assert err.response.headers["request-id"].startswith("req_")
    assert err.body["error"]["type"] == "rate_limit_error"
    assert rows[0]["error"].startswith("rate_limit_error") and rows[0]["cost"] == 0


def test_stream_error_status_mirrored(fake_api: FakeAnthropic) -> None:
    fake_api.inject("overloaded")
    with serve(fake_api.url) as gw:
        c = client(gw.url)
        with (
            pytest.raises(anthropic.APIStatusError) as caught,
            c.messages.stream(model=MODEL, max_tokens=32, messages=ask("hi")) as s,
        ):
            s.get_final_message()
        assert caught.value.status_code == 529
        assert len(gw.rows()) == 1


def test_cache_hit_served_as_json_and_as_stream(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        c = client(gw.url)
        question = ask("What is the boiling point of water at sea level in Celsius?")
        first = c.messages.create(model=MODEL, max_tokens=64, messages=question)
        gw.flush()  # the answer is kept by the response cache off the request path
        again = c.messages.with_raw_response.create(model=MODEL, max_tokens=64, messages=question)
        assert again.headers["x-tars-opt-source"] == "cache"
        assert again.parse().content[0].text == first.content[0].text
        with c.messages.stream(model=MODEL, max_tokens=64, messages=question) as stream:
            streamed = stream.get_final_message()
            assert stream.response.headers["x-tars-opt-source"] == "cache"
        assert streamed.content[0].text == first.content[0].text
        rows = gw.rows()
    assert [r["source"] for r in rows] == ["api", "cache", "cache"]
    assert len(fake_api.requests_to("/v1/messages")) == 1


def test_cache_control_headers(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        c = client(gw.url)
        question = ask("What is the boiling point of water at sea level in Celsius?")
        c.messages.create(model=MODEL, max_tokens=64, messages=question)
        gw.flush()
        raw = c.messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=question, extra_headers={"x-tars-opt-cache": "off"}
        )
        assert raw.headers["x-tars-opt-source"] == "api"
        with pytest.raises(anthropic.BadRequestError) as caught:
            c.messages.create(
                model=MODEL,
                max_tokens=64,
                messages=question,
                extra_headers={"x-tars-opt-cache": "maybe"},
            )
    assert "x-tars-opt-cache" in caught.value.message and "tars-opt" in caught.value.message


def test_the_key_is_never_stored_or_logged(fake_api: FakeAnthropic, home: Path) -> None:
    with serve(fake_api.url) as gw:
        c = client(gw.url)
        c.messages.create(model=MODEL, max_tokens=32, messages=ask("one"))
        with c.messages.stream(model=MODEL, max_tokens=32, messages=ask("two")) as s:
            s.get_final_message()
        fake_api.inject("rate_limit")
        with pytest.raises(anthropic.RateLimitError):
            c.messages.create(model=MODEL, max_tokens=32, messages=ask("three"))
        assert len(gw.rows()) == 3
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert stored and KEY.encode() not in stored


def test_health_and_metrics(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        client(gw.url).messages.create(model=MODEL, max_tokens=32, messages=ask("hi"))
        gw.flush()
        with httpx2.Client() as http:
            health = http.get(f"{gw.url}/tars-opt/health").json()
            metrics = http.get(f"{gw.url}/tars-opt/metrics").text
    assert health["status"] == "ok" and health["upstream"] == fake_api.url
    assert 'tars_opt_gateway_requests_total{route="messages",source="api"} 1' in metrics
    assert "tars_opt_gateway_upstream_latency_seconds_count 1" in metrics
    assert "tars_opt_gateway_cost_usd_total" in metrics


def test_request_row_unknown_is_404(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw, httpx2.Client() as http:
        answer = http.get(f"{gw.url}/tars-opt/requests/req_nothing")
    assert answer.status_code == 404 and answer.json()["error"]["type"] == "not_found_error"
    assert json.loads(answer.content)["type"] == "error"


def test_a_json_answer_cut_at_max_tokens_is_escalated_once(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        raw = client(gw.url).messages.with_raw_response.create(
            model=MODEL, max_tokens=8, messages=ask("hi")
        )
        rows = gw.rows()
    first, second = rows
    assert second["escalated_from"] == first["request_id"]
    assert raw.headers["x-tars-opt-request-id"] == second["request_id"]
    assert raw.parse().model == second["model"] != first["model"]
    assert float(raw.headers["x-tars-opt-cost"]) == pytest.approx(
        first["cost"] + second["cost"], abs=1e-8
    )
    assert len(fake_api.requests_to("/v1/messages")) == 2


def test_streamed_requests_are_never_escalated(fake_api: FakeAnthropic) -> None:
    with serve(fake_api.url) as gw:
        with client(gw.url).messages.stream(model=MODEL, max_tokens=8, messages=ask("hi")) as s:
            assert s.get_final_message().stop_reason == "max_tokens"
        assert len(gw.rows()) == 1


def test_a_blocking_budget_refuses_with_a_status_the_sdk_does_not_retry(
    fake_api: FakeAnthropic,
) -> None:
    overrides = {"budget.policy": "block", "budget.monthly_usd": 0.000001}
    with serve(fake_api.url, overrides=overrides) as gw:
        c = anthropic.Anthropic(base_url=gw.url, api_key=KEY, max_retries=2)
        with pytest.raises(anthropic.APIStatusError) as caught:
            c.messages.create(model=MODEL, max_tokens=64, messages=ask("hi"))
        with httpx2.Client() as http:
            metrics = http.get(f"{gw.url}/tars-opt/metrics").text
        assert gw.rows() == []
    err = caught.value
    assert err.status_code == 402 and err.body["error"]["type"] == "billing_error"
    message = err.body["error"]["message"]
    assert message.startswith("tars-opt monthly budget reached") and "Fix:" in message
    assert 'errors_total{route="messages",status="402"} 1' in metrics  # asked once: no retry
    assert fake_api.requests_to("/v1/messages") == []


def test_concurrent_streams_leave_one_row_each(fake_api: FakeAnthropic) -> None:
    fake_api.stream_event_delay = 0.005

    async def run(url: str) -> list[str]:
        async with anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0) as c:

            async def one(i: int) -> str:
                async with c.messages.stream(
                    model=MODEL, max_tokens=200, messages=ask(f"Tell me fact number {i}.")
                ) as stream:
                    await stream.get_final_message()
                    return stream.response.headers["x-tars-opt-request-id"]

            return await asyncio.gather(*(one(i) for i in range(30)))

    with serve(fake_api.url) as gw:
        ids = asyncio.run(run(gw.url))
        rows = gw.rows()
    assert len(set(ids)) == 30
    assert sorted(r["request_id"] for r in rows) == sorted(ids)  # none lost, none doubled
    assert all(r["error"] is None and r["tokens_estimated"] == 0 for r in rows)


def test_a_failed_escalation_keeps_the_first_answer_counted_once(fake_api: FakeAnthropic) -> None:
    def first_answer(body: dict) -> str:
        fake_api.inject(500)  # the next call - the escalation - fails upstream
        return "a short answer that is cut at max_tokens"

    fake_api.responder = first_answer
    with serve(fake_api.url) as gw, httpx2.Client() as http:
        raw = client(gw.url).messages.with_raw_response.create(
            model=MODEL, max_tokens=8, messages=ask("hi")
        )
        rows = gw.rows()
        metrics = http.get(f"{gw.url}/tars-opt/metrics").text
    answered = [r for r in rows if r["error"] is None]
    assert len(answered) == 1 and raw.headers["x-tars-opt-request-id"] == answered[0]["request_id"]
    assert raw.parse().stop_reason == "max_tokens"
    cost = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("tars_opt_gateway_cost_usd_total ")
    )
    assert cost == pytest.approx(answered[0]["cost"], abs=1e-9)
