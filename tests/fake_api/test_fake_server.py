"""The fake Anthropic API, driven by the real SDK (and raw HTTP where the SDK hides bytes)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anthropic
import httpx2
import pytest

from tests.fake_anthropic import FakeAnthropic, Fault, count_input_tokens, text_tokens
from tests.fake_anthropic.openapi import OPENAPI_PATH, OpenAPISchemas, load_schemas
from tests.fake_anthropic.tokens import MESSAGE_OVERHEAD

MODEL = "claude-haiku-5-5"
BIG = "The agent keeps its plan short and checks each step. " * 100  # 5,300 chars = 1,325 tokens


def client_for(api: FakeAnthropic, **kwargs: Any) -> anthropic.Anthropic:
    kwargs.setdefault("max_retries", 0)
    return anthropic.Anthropic(base_url=api.url, api_key="test-key", **kwargs)


@pytest.fixture
def client(fake_api: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with client_for(fake_api) as c:
        yield c


def user(text: str, **block: Any) -> dict[str, Any]:
    """A user message; keyword arguments (e.g. cache_control) go on its single text block."""
    if not block:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text, **block}]}


def raw(
    api: FakeAnthropic,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Plain HTTP, for what the SDK would refuse to send or would hide."""
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    url = path if path.startswith("http") else api.url + path
    req = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"x-api-key": "k", "content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def sse(lines: list[str]) -> list[tuple[str | None, dict[str, Any]]]:
    """Parse SSE lines into (event name, data) pairs."""
    events: list[tuple[str | None, dict[str, Any]]] = []
    name: str | None = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
            name = None
    return events


def cached(c: anthropic.Anthropic, **kwargs: Any) -> Any:
    """Create a message and return its usage."""
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("max_tokens", 50)
    return c.messages.create(**kwargs).usage


# ----- messages -----


def test_create_is_deterministic_and_recorded(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    raw_resp = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=100, messages=[user("hi")]
    )
    message = raw_resp.parse()
    again = client.messages.create(model="claude-opus-5-5", max_tokens=100, messages=[user("hi")])
    assert raw_resp.headers["request-id"].startswith("req_")
    assert message.id.startswith("msg_") and message.id != again.id
    assert message.model == MODEL and again.model == "claude-opus-5-5"
    assert message.content[0].text.startswith("Answer: ")
    assert message.content[0].text == again.content[0].text  # prompt-derived, model-independent
    assert message.stop_reason == "end_turn" and message.usage.service_tier == "standard"
    other = client.messages.create(model=MODEL, max_tokens=100, messages=[user("something else")])
    assert other.content[0].text != message.content[0].text
    first = fake_api.requests[0]
    assert (first.method, first.path) == ("POST", "/v1/messages")
    assert first.body["messages"] == [user("hi")]
    assert first.header("anthropic-version") and first.status == 200
    assert fake_api.counters["messages"] == 3


def test_usage_is_self_consistent(client: anthropic.Anthropic) -> None:
    body = {
        "model": MODEL,
        "max_tokens": 200,
        "system": "You are terse.",
        "tools": [
            {
                "name": "lookup",
                "description": "Find a fact",
                "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
            }
        ],
        "messages": [user("What is 2+2?"), {"role": "assistant", "content": "4"}, user("And 3+3?")],
    }
    message = client.messages.create(**body)
    counted = client.messages.count_tokens(**{k: v for k, v in body.items() if k != "max_tokens"})
    assert message.usage.input_tokens == counted.input_tokens == count_input_tokens(body)
    assert message.usage.output_tokens == text_tokens(message.content[0].text)
    assert message.usage.cache_creation_input_tokens == message.usage.cache_read_input_tokens == 0
    # "hi" is 1 token plus the per-message overhead; system and tools add to it.
    bare = client.messages.count_tokens(model=MODEL, messages=[user("hi")]).input_tokens
    assert bare == 1 + MESSAGE_OVERHEAD
    assert (
        client.messages.count_tokens(
            model=MODEL, system="x" * 40, messages=[user("hi")]
        ).input_tokens
        == bare + 10
    )


def test_responder_scripts_text_tools_and_errors(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake_api.responder = lambda body: {"tool_use": [{"name": "lookup", "input": {"q": "paris"}}]}
    message = client.messages.create(model=MODEL, max_tokens=100, messages=[user("where?")])
    assert message.stop_reason == "tool_use" and message.content[0].type == "tool_use"
    assert message.content[0].input == {"q": "paris"} and message.content[0].id.startswith("toolu_")
    with client.messages.stream(model=MODEL, max_tokens=100, messages=[user("where?")]) as stream:
        streamed = stream.get_final_message()
    assert streamed.content[0].input == {"q": "paris"} and streamed.stop_reason == "tool_use"
    fake_api.responder = lambda body: {
        "text": "Fine.",
        "output_tokens": 7,
        "stop_reason": "refusal",
    }
    scripted = client.messages.create(model=MODEL, max_tokens=100, messages=[user("x")])
    assert (scripted.content[0].text, scripted.usage.output_tokens, scripted.stop_reason) == (
        "Fine.",
        7,
        "refusal",
    )
    fake_api.responder = lambda body: {"error": (400, "invalid_request_error", "nope")}
    with pytest.raises(anthropic.BadRequestError, match="nope"):
        client.messages.create(model=MODEL, max_tokens=100, messages=[user("x")])


def test_max_tokens_truncates_and_stop_sequences_stop(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake_api.responder = lambda body: "word " * 100  # 500 chars = 125 tokens
    message = client.messages.create(model=MODEL, max_tokens=5, messages=[user("long")])
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 5
    assert message.content[0].text == ("word " * 100)[:20]
    with client.messages.stream(model=MODEL, max_tokens=5, messages=[user("long")]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.content[0].text == message.content[0].text
    assert final.usage.output_tokens == 5
    fake_api.responder = lambda body: "alpha beta STOP gamma"
    stopped = client.messages.create(
        model=MODEL, max_tokens=100, stop_sequences=["STOP"], messages=[user("x")]
    )
    assert (stopped.stop_reason, stopped.stop_sequence, stopped.content[0].text) == (
        "stop_sequence",
        "STOP",
        "alpha beta ",
    )


def test_invalid_requests_get_api_errors(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    for body, needle in [
        ({"model": MODEL, "messages": [user("x")]}, "max_tokens: Field required"),
        ({"max_tokens": 5, "messages": [user("x")]}, "model: Field required"),
        ({"model": MODEL, "max_tokens": 5}, "messages: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": []}, "at least one message"),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}, "role"),
        ({"model": MODEL, "max_tokens": 999_999, "messages": [user("x")]}, "maximum allowed"),
    ]:
        status, headers, data = raw(fake_api, "POST", "/v1/messages", body)
        error = json.loads(data)
        assert status == 400 and headers["request-id"] == error["request_id"]
        assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
        assert needle in error["error"]["message"]
    assert raw(fake_api, "POST", "/v1/messages", b"{not json")[0] == 400
    assert raw(fake_api, "GET", "/v1/nothing")[0] == 404
    with pytest.raises(anthropic.BadRequestError, match="greater than or equal to 0"):
        client.messages.create(model=MODEL, max_tokens=-1, messages=[user("x")])
    fake_api.strict_models = True
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="claude-nonexistent", max_tokens=5, messages=[user("x")])


def test_authentication(fake_api: FakeAnthropic) -> None:
    status, _, data = raw(fake_api, "POST", "/v1/messages", {}, headers={"x-api-key": ""})
    assert status == 401 and json.loads(data)["error"]["type"] == "authentication_error"
    fake_api.api_key = "right"
    with client_for(fake_api) as c, pytest.raises(anthropic.AuthenticationError):
        c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
    with anthropic.Anthropic(base_url=fake_api.url, api_key="right", max_retries=0) as c:
        assert c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")]).id


def test_a_crashing_responder_is_reported_not_hidden() -> None:
    with FakeAnthropic() as api, client_for(api) as c:
        api.responder = lambda body: 1 / 0
        with pytest.raises(anthropic.InternalServerError, match="ZeroDivisionError"):
            c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
        assert "ZeroDivisionError" in api.handler_errors[0]


def test_fake_api_env_points_the_sdk_at_the_fake(fake_api_env: FakeAnthropic) -> None:
    with anthropic.Anthropic(max_retries=0) as c:
        c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
    assert fake_api_env.requests[0].header("x-api-key") or fake_api_env.requests[0].header(
        "authorization"
    )


# ----- streaming -----


def test_stream_events_are_well_formed(client: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 300, "messages": [user("tell me")]}
    plain = client.messages.create(**kwargs)
    with client.messages.with_streaming_response.create(stream=True, **kwargs) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["request-id"].startswith("req_")
        events = sse(list(resp.iter_lines()))
    names = [name for name, _ in events]
    assert None not in names  # every event has an event: line, or the SDK would drop it
    assert [names[0], names[1], names[2]] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in events)
    assert (
        "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
        == plain.content[0].text
    )
    start_usage = events[0][1]["message"]["usage"]
    delta_usage = events[-2][1]["usage"]
    assert start_usage["input_tokens"] == delta_usage["input_tokens"] == plain.usage.input_tokens
    assert (
        start_usage["output_tokens"] == 1
        and delta_usage["output_tokens"] == plain.usage.output_tokens
    )
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == plain.content[0].text
    assert final.usage.model_dump() == plain.usage.model_dump() and final.stop_reason == "end_turn"


# ----- prompt caching -----


def test_cache_write_then_read(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {
        "system": [{"type": "text", "text": BIG, "cache_control": {"type": "ephemeral"}}],
        "messages": [user("q1")],
    }
    prefix = text_tokens(BIG)
    total = count_input_tokens({**kwargs, "model": MODEL})
    first = cached(client, **kwargs)
    assert first.cache_creation_input_tokens == prefix and first.cache_read_input_tokens == 0
    assert first.cache_creation.ephemeral_5m_input_tokens == prefix
    assert first.cache_creation.ephemeral_1h_input_tokens == 0
    assert first.input_tokens == total - prefix  # input EXCLUDES cached tokens
    second = cached(client, **kwargs)
    assert (second.cache_read_input_tokens, second.cache_creation_input_tokens) == (prefix, 0)
    assert second.input_tokens == total - prefix
    # Another model has its own cache; a changed prefix misses.
    assert (
        cached(client, **{**kwargs, "model": "claude-sonnet-5-5"}).cache_creation_input_tokens
        == prefix
    )
    changed = {**kwargs, "system": [{**kwargs["system"][0], "text": BIG + "!"}]}
    assert cached(client, **changed).cache_read_input_tokens == 0
    # TTL: after 5 minutes the entry is gone and is written again.
    fake_api.advance_clock(301)
    assert cached(client, **kwargs).cache_creation_input_tokens == prefix


def test_cache_below_minimum_is_silently_not_cached(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    kwargs: dict[str, Any] = {
        "system": [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}],
        "messages": [user("q")],
    }
    for _ in range(2):
        usage = cached(client, **kwargs)
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
        assert usage.input_tokens == count_input_tokens({**kwargs, "model": MODEL})
    fake_api.min_cacheable_tokens = 1
    assert cached(client, **kwargs).cache_creation_input_tokens == text_tokens("short")


def test_cache_ttl_split_and_moving_breakpoint(client: anthropic.Anthropic) -> None:
    tools = [
        {
            "name": "t",
            "description": BIG,
            "input_schema": {"type": "object"},
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    system = [{"type": "text", "text": BIG, "cache_control": {"type": "ephemeral", "ttl": "5m"}}]
    body1: dict[str, Any] = {
        "model": MODEL,
        "tools": tools,
        "system": system,
        "messages": [user("q1", cache_control={"type": "ephemeral"})],
    }
    first = cached(client, **body1)
    tool_tokens = count_input_tokens({"model": MODEL, "tools": tools, "messages": []})
    assert first.cache_creation.ephemeral_1h_input_tokens == tool_tokens
    assert first.cache_creation.ephemeral_5m_input_tokens == count_input_tokens(body1) - tool_tokens
    assert first.input_tokens == 0
    # Next turn: the breakpoint moves to the new last message; the old prefix is read.
    body2 = {
        **body1,
        "messages": [
            user("q1"),
            {"role": "assistant", "content": "a1"},
            user("q2", cache_control={"type": "ephemeral"}),
        ],
    }
    second = cached(client, **body2)
    assert second.cache_read_input_tokens == count_input_tokens(body1)
    assert second.cache_creation_input_tokens == count_input_tokens(body2) - count_input_tokens(
        body1
    )
    assert second.input_tokens == 0


def test_automatic_caching_and_breakpoint_limit(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    kwargs: dict[str, Any] = {"cache_control": {"type": "ephemeral"}, "messages": [user(BIG)]}
    total = count_input_tokens({**kwargs, "model": MODEL})
    assert cached(client, **kwargs).cache_creation_input_tokens == total
    assert cached(client, **kwargs).cache_read_input_tokens == total
    cc = {"cache_control": {"type": "ephemeral"}}
    too_many = [{"type": "text", "text": f"s{i}", **cc} for i in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4 blocks"):
        cached(client, system=too_many, messages=[user("q")])
    # Longer-lived entries come first: a 1h breakpoint after a 5m one is refused.
    five, hour = ({"type": "ephemeral", "ttl": t} for t in ("5m", "1h"))
    backwards = [
        {"type": "text", "text": "a", "cache_control": five},
        {"type": "text", "text": "b", "cache_control": hour},
    ]
    with pytest.raises(anthropic.BadRequestError, match="must not come after"):
        cached(client, system=backwards, messages=[user("q")])
    fake_api.clear_cache()
    assert cached(client, **kwargs).cache_read_input_tokens == 0


def test_count_tokens_counts_every_part(client: anthropic.Anthropic) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "abcd" * 10},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
            ],
        }
    ]
    counted = client.messages.count_tokens(model=MODEL, messages=messages).input_tokens
    assert counted == 10 + 1_000 + MESSAGE_OVERHEAD
    assert counted == count_input_tokens({"messages": messages})


# ----- models -----


def test_models(fake_client: anthropic.Anthropic) -> None:
    client = fake_client  # the plugin's ready-made client
    ids = [m.id for m in client.models.list(limit=2)]  # auto-pagination over 2-item pages
    assert {"claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"} <= set(ids)
    assert len(ids) == len(set(ids))
    assert client.models.retrieve("claude-sonnet-5-5").display_name == "Claude Sonnet 5.5"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope")


# ----- batches -----


def batch_requests(n: int, **params: Any) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 50,
                "messages": [user(f"question {i}")],
                **params,
            },
        }
        for i in range(n)
    ]


def test_batch_end_to_end(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    batch = client.messages.batches.create(requests=batch_requests(3))
    assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
    assert batch.processing_status == "ended" and batch.request_counts.succeeded == 3
    assert batch.results_url == f"{fake_api.url}/v1/messages/batches/{batch.id}/results"
    assert batch.expires_at - batch.created_at == timedelta(hours=24)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"r0", "r1", "r2"}
    direct = client.messages.create(model=MODEL, max_tokens=50, messages=[user("question 1")])
    message = results["r1"].message
    assert message.content[0].text == direct.content[0].text
    assert (
        message.usage.service_tier == "batch"
        and message.usage.input_tokens == direct.usage.input_tokens
    )
    assert fake_api.counters["batches_created"] == 1 and fake_api.counters["batch_requests"] == 3


def test_batch_polls_mode(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake_api.batch_mode, fake_api.batch_polls = "polls", 3
    batch = client.messages.batches.create(requests=batch_requests(2))
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 2 and batch.ended_at is None
    statuses = [client.messages.batches.retrieve(batch.id).processing_status for _ in range(3)]
    assert statuses == ["in_progress", "in_progress", "ended"]
    with pytest.raises(anthropic.AnthropicError):  # results() needs results_url
        fake_api.batch_polls = 99
        list(
            client.messages.batches.results(
                client.messages.batches.create(requests=batch_requests(1)).id
            )
        )


def test_batch_cancel_delete_and_manual_end(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake_api.batch_mode = "manual"
    batch = client.messages.batches.create(requests=batch_requests(3))
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(batch.id)  # only ended batches can be deleted
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert client.messages.batches.retrieve(batch.id).processing_status == "canceling"
    fake_api.end_batch(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 3
    assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"canceled"}
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(batch.id)  # already ended
    deleted = client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(batch.id)


def test_batch_outcomes_are_scriptable(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    script = {"r0": "succeeded", "r1": "errored", "r2": "expired", "r3": "canceled"}
    fake_api.batch_outcome = lambda custom_id, params: script.get(custom_id)
    requests = batch_requests(5)
    requests[4]["params"].pop("max_tokens")  # invalid params: errored, like the API
    batch = client.messages.batches.create(requests=requests)
    counts = batch.request_counts
    assert (
        counts.succeeded,
        counts.errored,
        counts.expired,
        counts.canceled,
        counts.processing,
    ) == (1, 2, 1, 1, 0)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert [results[f"r{i}"].type for i in range(5)] == [
        "succeeded",
        "errored",
        "expired",
        "canceled",
        "errored",
    ]
    assert results["r1"].error.error.type == "api_error"
    assert results["r4"].error.error.type == "invalid_request_error"


def test_batch_expires_after_24h(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake_api.batch_mode = "manual"
    batch = client.messages.batches.create(requests=batch_requests(2))
    fake_api.advance_clock(24 * 3600 + 1)
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.expired == 2


def test_batch_validation(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    duplicate = batch_requests(2)
    duplicate[1]["custom_id"] = "r0"
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        client.messages.batches.create(requests=duplicate)
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        client.messages.batches.create(requests=[{**batch_requests(1)[0], "custom_id": "bad id!"}])
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.create(requests=[])
    fake_api.batch_max_requests = 2
    with pytest.raises(anthropic.BadRequestError, match="at most 2"):
        client.messages.batches.create(requests=batch_requests(3))
    assert fake_api.counters["batches_created"] == 0


def test_batch_list_is_newest_first_and_paginates(client: anthropic.Anthropic) -> None:
    ids = [client.messages.batches.create(requests=batch_requests(1)).id for _ in range(5)]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert page.first_id == ids[4] and page.last_id == ids[3]
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # auto-pagination
    before = client.messages.batches.list(before_id=ids[1], limit=2)
    assert [b.id for b in before.data] == [ids[3], ids[2]] and before.has_more
    tail = client.messages.batches.list(after_id=ids[1])
    assert [b.id for b in tail.data] == [ids[0]] and not tail.has_more


def test_batch_results_are_clean_jsonl_at_an_absolute_url(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    batch = client.messages.batches.create(requests=batch_requests(3))
    assert batch.results_url and batch.results_url.startswith("http://127.0.0.1:")
    status, headers, data = raw(fake_api, "GET", batch.results_url)
    assert status == 200 and headers["content-type"] == "application/x-jsonl"
    assert headers["request-id"].startswith("req_")
    text = data.decode()
    assert text.endswith("\n") and "\n\n" not in text
    assert [json.loads(line)["custom_id"] for line in text.splitlines()] == ["r0", "r1", "r2"]


def test_batches_share_the_prompt_cache(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": BIG, "cache_control": {"type": "ephemeral"}}]
    first = client.messages.batches.create(requests=batch_requests(2, system=system))
    usages = [r.result.message.usage for r in client.messages.batches.results(first.id)]
    assert usages[0].cache_creation_input_tokens == text_tokens(BIG)
    assert usages[1].cache_read_input_tokens == text_tokens(BIG)
    assert {u.service_tier for u in usages} == {"batch"}


# ----- faults -----


@pytest.mark.parametrize(
    ("kind", "status", "error_cls"),
    [
        ("rate_limit", 429, anthropic.RateLimitError),
        ("overloaded", 529, anthropic.OverloadedError),
        ("api_error", 500, anthropic.InternalServerError),
    ],
)
def test_status_faults_are_retried(
    fake_api: FakeAnthropic, kind: str, status: int, error_cls: type[anthropic.APIStatusError]
) -> None:
    fake_api.inject(kind, times=2)
    with client_for(fake_api, max_retries=2) as c:
        assert c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")]).id
    assert [r.status for r in fake_api.requests] == [status, status, 200]
    assert [f["kind"] for f in fake_api.faults_injected] == [kind, kind]
    fake_api.inject(kind)
    with client_for(fake_api) as c, pytest.raises(error_cls) as info:
        c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
    assert info.value.status_code == status


def test_rate_limit_headers_and_retry_after_is_respected(fake_api: FakeAnthropic) -> None:
    fake_api.inject("429")
    status, headers, _ = raw(fake_api, "POST", "/v1/messages", {})
    assert status == 429 and headers["retry-after"] == "1" and headers["retry-after-ms"] == "10"
    for fault in (Fault("rate_limit", retry_after_ms=300), Fault("overloaded", retry_after=0.3)):
        fake_api.inject(fault)
        with client_for(fake_api, max_retries=1) as c:
            started = time.monotonic()
            c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
            assert time.monotonic() - started >= 0.3


def test_connection_reset(fake_api: FakeAnthropic) -> None:
    fake_api.inject("connection_reset")
    with client_for(fake_api) as c, pytest.raises(anthropic.APIConnectionError):
        c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
    fake_api.inject("connection_reset")
    fake_api.fault_retry_after_ms = None
    with client_for(fake_api, max_retries=1) as c:
        assert c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")]).id
    assert [r.status for r in fake_api.requests] == [None, None, 200]


def test_slow_response_times_out(fake_api: FakeAnthropic) -> None:
    fake_api.inject(Fault("slow", delay=0.6))
    with client_for(fake_api, timeout=0.15) as c, pytest.raises(anthropic.APITimeoutError):
        c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
    fake_api.inject(Fault("slow", delay=0.05))
    with client_for(fake_api, timeout=2) as c:
        assert c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")]).id


def test_stream_cut_mid_way(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake_api.inject(Fault("stream_cut", after_events=4))
    received: list[str] = []
    # The SDK does not wrap a broken body: the transport's own error reaches the caller.
    kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": [user("x")]}
    with pytest.raises(httpx2.RemoteProtocolError), client.messages.stream(**kwargs) as stream:
        received.extend(event.type for event in stream)
    # ping is hidden; the SDK adds a "text" event per text delta
    assert received == ["message_start", "content_block_start", "content_block_delta", "text"]
    # Non-streaming: half a body, then the connection drops; the SDK retries that.
    fake_api.inject("stream_cut")
    with client_for(fake_api, max_retries=1) as c:
        assert c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")]).id


def test_stream_error_event_is_not_retried(fake_api: FakeAnthropic) -> None:
    fake_api.inject("stream_error")
    with client_for(fake_api, max_retries=2) as c:
        assert c.messages.create(model=MODEL, max_tokens=5, messages=[user("x")]).id  # not a stream
        assert len(fake_api.pending_faults) == 1
        kwargs: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": [user("x")]}
        with pytest.raises(anthropic.APIStatusError) as info, c.messages.stream(**kwargs) as stream:
            stream.get_final_message()
    body: Any = info.value.body
    assert info.value.status_code == 200 and body["error"]["type"] == "overloaded_error"
    assert len(fake_api.requests_to("/v1/messages")) == 2 and not fake_api.pending_faults


def test_fault_targeting(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake_api.inject("overloaded", path_prefix="/v1/messages/batches", method="POST")
    client.messages.create(model=MODEL, max_tokens=5, messages=[user("x")])
    client.messages.count_tokens(model=MODEL, messages=[user("x")])
    with pytest.raises(anthropic.OverloadedError):
        client.messages.batches.create(requests=batch_requests(1))
    assert [f["path"] for f in fake_api.faults_injected] == ["/v1/messages/batches"]
    with pytest.raises(ValueError):
        Fault.of("gremlins")


def run_with_random_faults(seed: int, n: int = 30) -> list[str]:
    with FakeAnthropic() as api:
        api.fault_rate, api.fault_seed = 0.3, seed
        api.fault_kinds = ["rate_limit", "overloaded", "api_error", "connection_reset"]
        with client_for(api) as c:
            outcomes = []
            for i in range(n):
                try:
                    c.messages.create(model=MODEL, max_tokens=5, messages=[user(f"q{i}")])
                    outcomes.append("ok")
                except anthropic.APIError as err:
                    outcomes.append(type(err).__name__)
        assert len(api.faults_injected) == n - outcomes.count("ok")
    return outcomes


def test_random_faults_are_seeded() -> None:
    first, again, other = (
        run_with_random_faults(7),
        run_with_random_faults(7),
        run_with_random_faults(8),
    )
    assert first == again != other
    assert 3 <= sum(o != "ok" for o in first) <= 18
    assert {"RateLimitError", "OverloadedError", "InternalServerError", "APIConnectionError"} & set(
        first
    )


def test_concurrent_clients(fake_api: FakeAnthropic) -> None:
    errors: list[BaseException] = []
    ids: list[str] = []

    def work(worker: int) -> None:
        try:
            with client_for(fake_api) as c:
                for i in range(5):
                    ids.append(
                        c.messages.create(
                            model=MODEL, max_tokens=20, messages=[user(f"{worker}-{i}")]
                        ).id
                    )
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(ids)) == 80
    assert fake_api.counters["messages"] == 80 and len(fake_api.requests) == 80
    fake_api.reset()
    assert not fake_api.requests and not fake_api.counters


# ----- conformance with the public OpenAPI document -----


@pytest.fixture(scope="module")
def schemas() -> OpenAPISchemas:
    if not OPENAPI_PATH.is_file():
        pytest.skip(f"OpenAPI document not found at {OPENAPI_PATH} (set TARS_OPT_SHARED_DATA)")
    return load_schemas(OPENAPI_PATH)


def test_validation_is_not_vacuous(schemas: OpenAPISchemas) -> None:
    with pytest.raises(AssertionError, match="usage"):
        schemas.validate(
            "Message",
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": MODEL,
                "stop_reason": None,
                "stop_sequence": None,
                "stop_details": None,
                "container": None,
            },
        )
    with pytest.raises(AssertionError):
        schemas.validate(
            "MessageBatch", {"id": "x", "type": "message_batch", "created_at": "yesterday"}
        )


def test_responses_match_the_openapi_document(
    fake_api: FakeAnthropic, client: anthropic.Anthropic, schemas: OpenAPISchemas
) -> None:
    def body(raw_response: Any) -> Any:
        return raw_response.http_response.json()

    system = [{"type": "text", "text": BIG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 50,
        "system": system,
        "messages": [user("q")],
    }
    messages = [body(client.messages.with_raw_response.create(**kwargs)) for _ in range(2)]
    fake_api.responder = lambda b: {
        "text": "Let me look.",
        "tool_use": [{"name": "lookup", "input": {"q": 1}}],
    }
    messages.append(body(client.messages.with_raw_response.create(**{**kwargs, "max_tokens": 2})))
    messages.append(body(client.messages.with_raw_response.create(**kwargs)))
    fake_api.responder = None
    for message in messages:
        schemas.validate("Message", message)
    assert (
        messages[1]["usage"]["cache_read_input_tokens"] > 0
        and messages[2]["stop_reason"] == "max_tokens"
    )

    with client.messages.with_streaming_response.create(stream=True, **kwargs) as resp:
        events = sse(list(resp.iter_lines()))
    for name, data in events:
        if name != "ping":
            schemas.validate("MessageStreamEvent", data)
    fake_api.inject("stream_error")
    with client.messages.with_streaming_response.create(stream=True, **kwargs) as resp:
        error_event = sse(list(resp.iter_lines()))[-1]
    assert error_event[0] == "error"
    schemas.validate("ErrorResponse", error_event[1])

    count = client.messages.with_raw_response.count_tokens(model=MODEL, messages=[user("q")])
    schemas.validate("CountMessageTokensResponse", body(count))
    schemas.validate("ListResponse_ModelInfo_", body(client.models.with_raw_response.list()))
    schemas.validate("ModelInfo", body(client.models.with_raw_response.retrieve(MODEL)))

    fake_api.batch_mode = "manual"
    fake_api.batch_outcome = lambda custom_id, params: {
        "r0": "succeeded",
        "r1": "errored",
        "r2": "canceled",
    }.get(custom_id, "expired")
    created = body(client.messages.batches.with_raw_response.create(requests=batch_requests(4)))
    canceling = body(client.messages.batches.with_raw_response.cancel(created["id"]))
    fake_api.end_batch(created["id"])
    ended = body(client.messages.batches.with_raw_response.retrieve(created["id"]))
    for batch in (created, canceling, ended):
        schemas.validate("MessageBatch", batch)
    schemas.validate(
        "ListResponse_MessageBatch_", body(client.messages.batches.with_raw_response.list())
    )
    _, _, lines = raw(fake_api, "GET", ended["results_url"])
    results = [json.loads(line) for line in lines.decode().splitlines()]
    assert {r["result"]["type"] for r in results} == {"succeeded", "errored", "canceled", "expired"}
    for line in results:
        schemas.validate("MessageBatchIndividualResponse", line)
    schemas.validate(
        "DeleteMessageBatchResponse",
        body(client.messages.batches.with_raw_response.delete(created["id"])),
    )

    error_bodies = [
        raw(fake_api, "POST", "/v1/messages", {"model": MODEL})[2],
        raw(fake_api, "POST", "/v1/messages", {}, headers={"x-api-key": ""})[2],
        raw(fake_api, "GET", "/v1/models/nope")[2],
    ]
    for kind in ("rate_limit", "overloaded", "api_error"):
        fake_api.inject(kind)
        error_bodies.append(raw(fake_api, "POST", "/v1/messages", {})[2])
    for error in error_bodies:
        schemas.validate("ErrorResponse", json.loads(error))


def test_sdk_requests_match_the_openapi_document(
    strict_fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    client.messages.create(
        model=MODEL,
        max_tokens=5,
        system="s",
        messages=[user("x")],
        cache_control={"type": "ephemeral"},
    )
    client.messages.count_tokens(model=MODEL, messages=[user("x")])
    client.messages.batches.create(requests=batch_requests(2))
    with pytest.raises(anthropic.BadRequestError, match="Additional properties"):
        client.messages.create(
            model=MODEL, max_tokens=5, messages=[user("x")], extra_body={"bogus": 1}
        )


def test_each_request_records_the_time_the_fake_spent_on_it(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    """A proxy benchmark subtracts the fake's share from the client's round trip."""
    started = time.perf_counter()
    client.messages.create(model=MODEL, max_tokens=100, messages=[user(BIG)])
    round_trip = time.perf_counter() - started
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=100, messages=[])
    answered, refused = fake_api.requests
    answered.spent(), refused.spent()  # the client may read an answer before it is timed
    assert answered.seconds is not None and 0 < answered.seconds < round_trip
    assert answered.cpu_seconds is not None and 0 < answered.cpu_seconds < round_trip
    assert refused.status == 400 and refused.seconds is not None and refused.seconds > 0
