"""The fake API as strict as the real one: request validation, agent replies, cache billing.

Driven by the real SDK, as an agent drives the API: the content of one reply (`model_dump()`)
goes back as the next request's assistant turn.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fake_anthropic import FakeAnthropic, count_input_tokens, text_tokens
from tests.fake_anthropic.context import CLEARED_TEXT
from tests.fake_anthropic.tokens import MESSAGE_OVERHEAD

MODEL = "claude-haiku-5-5"
REPO = Path(__file__).resolve().parents[2]
TOOLS = [
    {
        "name": name,
        "description": f"{name} a thing",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    for name in ("lookup", "fetch", "grep")
]
THINK = {"type": "enabled", "budget_tokens": 2000}


class Clock:
    """A hand-driven clock for the fake (seconds)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def minutes(self, n: float) -> None:
        self.now += 60 * n


@pytest.fixture
def client(fake_api: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=fake_api.url, api_key="test-key", max_retries=0) as c:
        yield c


CM = "context-management-2025-06-27"


def create(c: anthropic.Anthropic, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("max_tokens", 4000)
    return c.messages.create(messages=messages, **kwargs)


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def dumped(message: Any) -> dict[str, Any]:
    """A reply as the next request's assistant turn, the way an agent passes it back."""
    return assistant([block.model_dump() for block in message.content])


def tool_use(tool_id: str, name: str = "lookup") -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": {"q": tool_id}}


def result(tool_id: str, text: str = "42") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": text}


def refused(
    c: anthropic.Anthropic, messages: list[dict[str, Any]], stream: bool = False, **kwargs: Any
) -> str:
    """The 400 message the fake answers (to a streaming request too, before any event)."""
    with pytest.raises(anthropic.BadRequestError) as info:
        if stream:
            kwargs.setdefault("model", MODEL)
            kwargs.setdefault("max_tokens", 4000)
            with c.messages.stream(messages=messages, **kwargs) as s:
                s.get_final_message()
        else:
            create(c, messages, **kwargs)
    body: Any = info.value.body
    assert body["error"]["type"] == "invalid_request_error"
    return str(body["error"]["message"])


# ----- validation -----


def test_conversation_rules_are_enforced(client: anthropic.Anthropic) -> None:
    ask = user("q")
    two_calls = assistant(
        [{"type": "text", "text": "Let me look."}, tool_use("t1"), tool_use("t2")]
    )
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([assistant("hi"), ask], 'first message must use the "user" role'),
        (
            [ask, two_calls],
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately "
            "after: t1, t2.",
        ),
        ([ask, two_calls, user("done")], "immediately after: t1, t2"),
        ([ask, two_calls, user([result("t1")])], "immediately after: t2."),
        # Tool results come first: text before them does not answer.
        (
            [ask, two_calls, user([{"type": "text", "text": "x"}, result("t1"), result("t2")])],
            "t1, t2",
        ),
        (
            [ask, two_calls, user([result("t1"), result("t2"), result("t9")])],
            "messages.2.content.2: unexpected `tool_use_id` found in `tool_result` blocks: t9.",
        ),
        ([ask, assistant("no tools"), user([result("t1")])], "unexpected `tool_use_id`"),
        ([user([result("t1")])], "messages.0.content.0: unexpected `tool_use_id`"),
        (
            [ask, two_calls, user([result("t1"), result("t2"), result("t1")])],
            "each tool_use must have a single result",
        ),
        (
            [ask, assistant([tool_use("t1")]), user([result("t1")]), assistant([tool_use("t1")])],
            "messages.3.content.0: `tool_use` ids must be unique",
        ),
        ([user([tool_use("t1")])], "`tool_use` blocks may only appear in `assistant` messages"),
        ([ask, assistant([result("t1")]), ask], "`tool_result` blocks may only appear in `user`"),
        ([user(""), assistant("a"), ask], "messages.0: all messages must have non-empty content"),
        ([ask, assistant([]), ask], "messages.1: all messages must have non-empty content"),
        ([user([{"type": "text", "text": ""}])], "text content blocks must be non-empty"),
        (
            [ask, {"role": "system", "content": [{"type": "image", "source": {}}]}],
            "system messages may only contain text",
        ),
    ]
    for messages, needle in cases:
        assert needle in refused(client, messages), messages
        assert needle in refused(client, messages, stream=True), messages


def test_what_the_api_accepts(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    calls = assistant([tool_use("t1"), tool_use("t2")])
    accepted = [
        [user("a"), user("b")],  # consecutive turns of one role are combined
        [user("a"), assistant("b"), assistant("c"), user("d")],
        [user("a"), {"role": "system", "content": "Be brief."}, assistant("b"), user("c")],
        [
            user("a"),
            calls,
            {"role": "system", "content": "note"},
            user([result("t1"), result("t2")]),
        ],
        # Results of parallel calls in any order, then text; the results may span two messages.
        [user("a"), calls, user([result("t2"), result("t1"), {"type": "text", "text": "go on"}])],
        [user("a"), calls, user([result("t1")]), user([result("t2")])],
        [user("a"), assistant("The answer is (")],  # prefill
        [user("a"), assistant("")],  # the final assistant message may be empty
    ]
    for messages in accepted:
        assert create(client, messages).stop_reason == "end_turn", messages
    assert fake_api.counters["errors"] == 0


def test_request_level_rules(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    ask = [user("q")]
    cc = {"type": "ephemeral"}
    five, hour = {"type": "ephemeral", "ttl": "5m"}, {"type": "ephemeral", "ttl": "1h"}
    system4 = [{"type": "text", "text": f"s{i}", "cache_control": cc} for i in range(4)]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
        # The top-level (automatic) breakpoint counts as one of the four.
        ({"system": system4, "cache_control": cc}, "A maximum of 4 blocks with cache_control"),
        (
            {
                "tools": [{**TOOLS[0], "cache_control": five}],
                "system": [{"type": "text", "text": "s", "cache_control": hour}],
            },
            "ttl '1h' must not come after one with ttl '5m'",
        ),
        (
            {"system": [{"type": "text", "text": "s", "cache_control": {"type": "persistent"}}]},
            "'ephemeral'",
        ),
        (
            {
                "system": [
                    {
                        "type": "text",
                        "text": "s",
                        "cache_control": {"type": "ephemeral", "ttl": "10m"},
                    }
                ]
            },
            "'5m' or '1h'",
        ),
        (
            {"tools": [{"name": "x", "description": "no schema"}]},
            "tools.0.custom.input_schema: Field required",
        ),
        ({"tools": [TOOLS[0], TOOLS[0]]}, "Tool names must be unique"),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "greater than or equal to 1024"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4000}}, "`max_tokens` must be greater"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        (
            {"thinking": {"type": "adaptive"}, "tools": TOOLS, "tool_choice": {"type": "any"}},
            "forces tool use",
        ),
    ]
    for kwargs, needle in cases:
        assert needle in refused(client, ask, **kwargs), kwargs
    # The 1h-before-5m order runs tools -> system -> messages, messages included.
    message_hour = [user([{"type": "text", "text": "q", "cache_control": hour}])]
    system_five = [{"type": "text", "text": "s", "cache_control": five}]
    assert "must not come after" in refused(client, message_hour, system=system_five)
    # count_tokens needs no max_tokens but checks the conversation like create.
    assert client.messages.count_tokens(model=MODEL, messages=ask).input_tokens > 0
    with pytest.raises(anthropic.BadRequestError, match="immediately after: t1"):
        client.messages.count_tokens(model=MODEL, messages=[user("q"), assistant([tool_use("t1")])])
    assert fake_api.counters["messages"] == 0


def test_batch_params_are_validated_like_create(client: anthropic.Anthropic) -> None:
    good = {"model": MODEL, "max_tokens": 10, "messages": [user("q")]}
    bad = {**good, "messages": [user("q"), assistant([tool_use("t1")])]}
    batch = client.messages.batches.create(
        requests=[{"custom_id": "good", "params": good}, {"custom_id": "bad", "params": bad}]
    )
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["good"].type == "succeeded"
    assert results["bad"].type == "errored"
    assert "immediately after: t1" in results["bad"].error.error.message


def test_strict_can_be_turned_off_for_one_test(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    dangling = [user("q"), assistant([tool_use("t1")]), user("never answered")]
    assert "immediately after" in refused(client, dangling)
    fake_api.strict = False
    assert create(client, dangling).stop_reason == "end_turn"
    # The basic rules stay.
    assert "max_tokens" in refused(client, dangling, max_tokens=-5)


def test_unknown_fields_are_accepted_and_recorded(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    tools = [{**TOOLS[0], "defer_loading": True}, TOOLS[1]]
    extra = {
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
        "temperature": 0.3,
        "container": "container_123",
        "mcp_servers": [{"type": "url", "url": "https://mcp.example/sse", "name": "ex"}],
        "brand_new_beta_field": {"x": [1, 2]},
    }
    sent = {
        "thinking": {"type": "adaptive", "display": "omitted"},
        "metadata": {"user_id": json.dumps({"device": "d1", "session": "s1"})},
        "tool_choice": {"type": "auto"},
        "stop_sequences": ["\n\nHuman:"],
        "tools": tools,
    }
    create(client, [user("q")], extra_body=extra, extra_headers={"anthropic-beta": CM}, **sent)
    body = fake_api.requests_to("/v1/messages")[-1].body
    for name, value in {**extra, **sent}.items():
        assert body[name] == value, name


# ----- replies for agents -----


def test_parallel_tool_calls_round_trip(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake_api.responder = lambda body: (
        {
            "text": "Checking both.",
            "tool_use": [
                {"name": "lookup", "input": {"q": "a"}},
                {"name": "fetch", "input": {"q": "b"}},
            ],
        }
        if body["messages"][-1]["content"] == "go"
        else None
    )
    first = create(client, [user("go")], tools=TOOLS)
    assert [b.type for b in first.content] == ["text", "tool_use", "tool_use"]
    assert first.stop_reason == "tool_use" and len({b.id for b in first.content[1:]}) == 2
    with client.messages.stream(
        model=MODEL, max_tokens=4000, tools=TOOLS, messages=[user("go")]
    ) as s:
        streamed = s.get_final_message()
    assert [(b.name, b.input) for b in streamed.content[1:]] == [
        ("lookup", {"q": "a"}),
        ("fetch", {"q": "b"}),
    ]
    # The agent runs both tools and answers; unscripted, the model then ends its turn with text.
    answers = user([result(b.id, f"result of {b.name}") for b in first.content[1:]])
    final = create(client, [user("go"), dumped(first), answers], tools=TOOLS)
    assert final.stop_reason == "end_turn" and [b.type for b in final.content] == ["text"]


def test_thinking_signatures_round_trip(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake_api.responder = lambda body: (
        {"tool_use": [{"name": "lookup", "input": {"q": "x"}}]}
        if body["messages"][-1]["role"] == "user" and body["messages"][-1]["content"] == "q"
        else None
    )
    first = create(client, [user("q")], tools=TOOLS, thinking=THINK)
    thinking, call = first.content
    assert thinking.type == "thinking" and thinking.thinking.startswith("Thinking: ")
    assert thinking.signature and call.type == "tool_use" and first.stop_reason == "tool_use"
    assert first.usage.output_tokens_details.thinking_tokens == text_tokens(thinking.thinking)
    assert first.usage.output_tokens == text_tokens(thinking.thinking) + text_tokens(
        "lookup"
    ) + text_tokens('{"q":"x"}')
    loop = [user("q"), dumped(first), user([result(call.id)])]
    done = create(client, loop, tools=TOOLS, thinking=THINK)
    assert [b.type for b in done.content] == ["thinking", "text"] and done.stop_reason == "end_turn"
    # A changed thought, a changed signature, a forged block or a dropped thought: refused.
    turn = dumped(first)
    edited = [dict(turn["content"][0], thinking=thinking.thinking + " "), turn["content"][1]]
    resigned = [dict(turn["content"][0], signature=done.content[0].signature), turn["content"][1]]
    forged = [{"type": "thinking", "thinking": "mine", "signature": "sig"}, turn["content"][1]]
    for content in (edited, resigned, forged):
        message = refused(
            client,
            [user("q"), assistant(content), user([result(call.id)])],
            tools=TOOLS,
            thinking=THINK,
        )
        assert message == "messages.1.content.0: Invalid `signature` in `thinking` block"
    without = [user("q"), assistant(turn["content"][1:]), user([result(call.id)])]
    assert "must start with a thinking block" in refused(
        client, without, tools=TOOLS, thinking=THINK
    )
    # Signatures are not tied to the server instance, as on the API.
    with (
        FakeAnthropic() as other,
        anthropic.Anthropic(base_url=other.url, api_key="k", max_retries=0) as c,
    ):
        assert create(c, loop, tools=TOOLS, thinking=THINK).stop_reason == "end_turn"


def test_streamed_thinking_events_and_round_trip(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 4000,
        "thinking": THINK,
        "messages": [user("why?")],
    }
    plain = client.messages.create(**kwargs)
    with client.messages.with_streaming_response.create(stream=True, **kwargs) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts[0] == {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta" and e["index"] == 0]
    assert {d["type"] for d in deltas[:-1]} == {"thinking_delta"} and deltas[-1][
        "type"
    ] == "signature_delta"
    assert "".join(d["thinking"] for d in deltas[:-1]) == plain.content[0].thinking
    message_delta = next(e for e in events if e["type"] == "message_delta")
    assert message_delta["usage"]["output_tokens"] == plain.usage.output_tokens
    assert message_delta["usage"]["output_tokens_details"] == {
        "thinking_tokens": text_tokens(plain.content[0].thinking)
    }
    with client.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert final.content[0].thinking == plain.content[0].thinking
    assert final.content[0].signature.startswith("fake1")
    follow = [user("why?"), dumped(final), user("and then?")]
    assert create(client, follow, thinking=THINK).content[0].type == "thinking"


def test_adaptive_thinking_with_display_omitted(client: anthropic.Anthropic) -> None:
    adaptive = {"type": "adaptive", "display": "omitted"}
    reply = create(client, [user("q")], thinking=adaptive)
    thinking, text = reply.content
    assert thinking.type == "thinking" and thinking.thinking == "" and thinking.signature
    assert reply.usage.output_tokens_details.thinking_tokens > 0  # billed although not shown
    assert (
        reply.usage.output_tokens
        == reply.usage.output_tokens_details.thinking_tokens + text_tokens(text.text)
    )
    with client.messages.stream(
        model=MODEL, max_tokens=100, thinking=adaptive, messages=[user("q")]
    ) as s:
        assert s.get_final_message().content[0].thinking == ""
    assert create(client, [user("q"), dumped(reply), user("more")], thinking=adaptive).id
    # No thinking unless the request asks for it.
    assert [b.type for b in create(client, [user("q")]).content] == ["text"]


def test_redacted_thinking_round_trip(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake_api.responder = lambda body: {"redacted_thinking": 1, "text": "Done."}
    reply = create(client, [user("q")], thinking=THINK)
    assert [b.type for b in reply.content] == ["thinking", "redacted_thinking", "text"]
    turn = dumped(reply)
    assert create(client, [user("q"), turn, user("ok")], thinking=THINK).id
    turn["content"][1]["data"] = turn["content"][1]["data"][:-4] + "AAAA"
    assert "Invalid `data` in `redacted_thinking` block" in refused(
        client, [user("q"), turn, user("ok")], thinking=THINK
    )


def test_server_tools_and_pause_turn(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    search = {"name": "web_search", "input": {"query": "cache ttl"}}
    fake_api.responder = lambda body: {"server_tool_use": [search], "text": "Found it."}
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    reply = create(client, [user("q")], tools=tools)
    assert [b.type for b in reply.content] == ["server_tool_use", "web_search_tool_result", "text"]
    assert reply.content[0].id.startswith("srvtoolu_")
    assert reply.content[1].tool_use_id == reply.content[0].id
    assert [r.title for r in reply.content[1].content] == ["cache ttl (1)", "cache ttl (2)"]
    assert reply.usage.server_tool_use.web_search_requests == 1 and reply.stop_reason == "end_turn"
    with client.messages.stream(
        model=MODEL, max_tokens=100, tools=tools, messages=[user("q")]
    ) as s:
        streamed = s.get_final_message()
    assert streamed.content[0].input == {"query": "cache ttl"}
    assert streamed.content[1].model_dump() == {
        **reply.content[1].model_dump(),
        "tool_use_id": streamed.content[0].id,
    }
    assert create(client, [user("q"), dumped(reply), user("thanks")], tools=tools).id
    # A long turn pauses with the call unanswered; the agent sends it back to continue.
    fake_api.responder = lambda body: (
        {"server_tool_use": [{**search, "result": False}], "stop_reason": "pause_turn"}
        if len(body["messages"]) == 1
        else None
    )
    paused = create(client, [user("q")], tools=tools)
    assert paused.stop_reason == "pause_turn" and [b.type for b in paused.content] == [
        "server_tool_use"
    ]
    assert create(client, [user("q"), dumped(paused)], tools=tools).stop_reason == "end_turn"
    # A server tool result must follow its call.
    orphan = assistant(
        [{"type": "web_search_tool_result", "tool_use_id": "srvtoolu_x", "content": []}]
    )
    assert "must have a corresponding `server_tool_use` block before it" in refused(
        client, [user("q"), orphan, user("?")]
    )


def test_stop_reasons(fake_api: FakeAnthropic, client: anthropic.Anthropic) -> None:
    fake_api.responder = lambda body: {"text": "I can't help with that.", "stop_reason": "refusal"}
    refusal = create(client, [user("q")])
    assert refusal.stop_reason == "refusal" and refusal.stop_details.type == "refusal"
    with client.messages.stream(model=MODEL, max_tokens=100, messages=[user("q")]) as s:
        assert s.get_final_message().stop_details.type == "refusal"
    fake_api.responder = None
    tiny = create(client, [user("q")], thinking={"type": "adaptive"}, max_tokens=3)
    assert tiny.stop_reason == "max_tokens" and [b.type for b in tiny.content] == ["thinking"]
    assert tiny.usage.output_tokens == 3 and len(tiny.content[0].thinking) == 12
    # A cut thought is signed as cut: it goes back as is.
    assert create(
        client, [user("q"), dumped(tiny), user("go on")], thinking={"type": "adaptive"}
    ).id


def test_max_tokens_zero_warms_the_cache(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    system = [{"type": "text", "text": "x" * 8000, "cache_control": {"type": "ephemeral"}}]
    warm = create(client, [user("q")], system=system, max_tokens=0)
    assert warm.content == [] and warm.stop_reason == "max_tokens" and warm.usage.output_tokens == 0
    assert warm.usage.cache_creation_input_tokens == 2000
    assert create(client, [user("q")], system=system).usage.cache_read_input_tokens == 2000


def test_context_management_clears_old_tool_results(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    big = "r" * 4000  # 1,000 tokens per result
    messages: list[dict[str, Any]] = [user("start")]
    for n in range(5):
        messages += [assistant([tool_use(f"t{n}")]), user([result(f"t{n}", big)])]
    edit = {
        "type": "clear_tool_uses_20250919",
        "trigger": {"type": "input_tokens", "value": 3000},
        "keep": {"type": "tool_uses", "value": 2},
    }
    body = {"model": MODEL, "messages": messages, "tools": TOOLS}
    before = count_input_tokens(body)
    cleared_each = 1 + text_tokens(big) - (1 + text_tokens(CLEARED_TEXT))
    reply = client.beta.messages.create(
        max_tokens=100,
        context_management={"edits": [edit]},
        betas=["context-management-2025-06-27"],
        **body,
    )
    applied = reply.context_management.applied_edits
    assert [(a.type, a.cleared_tool_uses, a.cleared_input_tokens) for a in applied] == [
        ("clear_tool_uses_20250919", 3, 3 * cleared_each)
    ]
    assert reply.usage.input_tokens == before - 3 * cleared_each
    counted = client.beta.messages.count_tokens(
        context_management={"edits": [edit]}, betas=["context-management-2025-06-27"], **body
    )
    assert counted.input_tokens == reply.usage.input_tokens
    assert counted.context_management.original_input_tokens == before
    # Below the trigger nothing is cleared; the field still answers.
    high = {**edit, "trigger": {"type": "input_tokens", "value": before}}
    calm = client.beta.messages.create(
        max_tokens=100, context_management={"edits": [high]}, betas=[CM], **body
    )
    assert calm.context_management.applied_edits == [] and calm.usage.input_tokens == before
    # clear_at_least: not worth it, not done.
    greedy = {**edit, "clear_at_least": {"type": "input_tokens", "value": 10_000}}
    assert (
        client.beta.messages.create(
            max_tokens=100, context_management={"edits": [greedy]}, betas=[CM], **body
        ).context_management.applied_edits
        == []
    )
    with client.beta.messages.stream(
        max_tokens=100, context_management={"edits": [edit]}, betas=[CM], **body
    ) as s:
        assert s.get_final_message().context_management.applied_edits[0].cleared_tool_uses == 3


def test_context_management_without_its_beta_is_refused_as_by_the_api(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    edit = {"type": "clear_thinking_20251015", "keep": "all"}
    extra = {"context_management": {"edits": [edit]}}
    message = "context_management: Extra inputs are not permitted"
    assert refused(client, [user("q")], extra_body=extra) == message
    assert refused(client, [user("q")], stream=True, extra_body=extra) == message
    other = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    assert refused(client, [user("q")], extra_body=extra, extra_headers=other) == message
    with pytest.raises(anthropic.BadRequestError, match="Extra inputs"):
        client.messages.count_tokens(model=MODEL, messages=[user("q")], extra_body=extra)
    # Named among other betas, it is accepted.
    both = {"anthropic-beta": f"interleaved-thinking-2025-05-14, {CM}"}
    assert create(client, [user("q")], extra_body=extra, extra_headers=both).content
    # A batch's header covers its requests: without it each such request errors.
    params = {"model": MODEL, "max_tokens": 100, "messages": [user("q")], **extra}
    requests: Any = [{"custom_id": "cm", "params": params}]
    for headers, outcome in ((None, "errored"), ({"anthropic-beta": CM}, "succeeded")):
        batch = client.messages.batches.create(requests=requests, extra_headers=headers)
        (line,) = client.messages.batches.results(batch.id)
        assert line.result.type == outcome
        if outcome == "errored":
            assert line.result.error.error.message == message


def test_context_management_clears_old_thinking(client: anthropic.Anthropic) -> None:
    first = create(client, [user("q1")], thinking=THINK)
    second = create(client, [user("q1"), dumped(first), user("q2")], thinking=THINK)
    messages = [user("q1"), dumped(first), user("q2"), dumped(second), user("q3")]
    edit = {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}}
    reply = client.beta.messages.create(
        model=MODEL,
        max_tokens=4000,
        thinking=THINK,
        messages=messages,
        context_management={"edits": [edit]},
        betas=[CM],
    )
    (applied,) = reply.context_management.applied_edits
    assert applied.type == "clear_thinking_20251015" and applied.cleared_thinking_turns == 1
    assert applied.cleared_input_tokens == text_tokens(first.content[0].thinking)


# ----- prompt-cache billing -----


def padded(label: str, tokens: int) -> str:
    return label.ljust(4 * tokens, ".")


def test_cache_breakpoints_with_two_ttls(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    hour, five = {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral", "ttl": "5m"}
    system = [
        {"type": "text", "text": padded("stable", 1200), "cache_control": hour},
        {"type": "text", "text": padded("daily", 400), "cache_control": five},
    ]
    ask = [user(padded("q", 100))]

    def usage() -> tuple[int, int, int, int]:
        u = create(client, ask, system=system).usage
        assert (
            u.cache_creation_input_tokens
            == u.cache_creation.ephemeral_5m_input_tokens
            + u.cache_creation.ephemeral_1h_input_tokens
        )
        return (
            u.input_tokens,
            u.cache_read_input_tokens,
            u.cache_creation.ephemeral_1h_input_tokens,
            u.cache_creation.ephemeral_5m_input_tokens,
        )

    rest = 100 + MESSAGE_OVERHEAD
    assert usage() == (rest, 0, 1200, 400)
    assert usage() == (rest, 1600, 0, 0)
    fake_api.advance_clock(301)  # the 5m entry is gone, the 1h one is read
    assert usage() == (rest, 1200, 0, 400)
    fake_api.advance_clock(3601)
    assert usage() == (rest, 0, 1200, 400)
    # Below the model's minimum a breakpoint is ignored; the later one still caches.
    fake_api.clear_cache()
    fake_api.min_cacheable_by_model[MODEL] = 1500
    assert usage() == (rest, 0, 0, 1600)


def blocks(n: int, cache_at: int | None = None) -> list[dict[str, Any]]:
    """A user message of n blocks of 10 tokens each (the first one pays the message overhead)."""
    out: list[dict[str, Any]] = [
        {"type": "text", "text": padded(f"block {i}", 10)} for i in range(n)
    ]
    if cache_at is not None:
        out[cache_at]["cache_control"] = {"type": "ephemeral"}
    return out


def cumulative(n: int) -> int:
    return MESSAGE_OVERHEAD + 10 * n


def test_cache_lookback_is_twenty_blocks(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake_api.min_cacheable_tokens = 1

    def usage(n: int, cache_at: int) -> tuple[int, int, int]:
        u = create(client, [user(blocks(n, cache_at))]).usage
        return u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens

    assert usage(5, 4) == (0, 0, cumulative(5))
    # The breakpoint on block 23 looks at blocks 23 down to 4: the entry at block 4 is read.
    assert usage(24, 23) == (0, cumulative(5), cumulative(24) - cumulative(5))
    fake_api.clear_cache()
    assert usage(5, 4) == (0, 0, cumulative(5))
    # From block 24 the window ends at block 5: a miss, everything is written again.
    assert usage(25, 24) == (0, 0, cumulative(25))
    # Tokens after the last breakpoint are plain input.
    assert usage(30, 24) == (cumulative(30) - cumulative(25), cumulative(25), 0)


def test_cache_reads_renew_entries() -> None:
    clock = Clock()
    with (
        FakeAnthropic(clock=clock) as api,
        anthropic.Anthropic(base_url=api.url, api_key="k", max_retries=0) as c,
    ):
        api.min_cacheable_tokens = 1

        def read(n: int, cache_at: int) -> int:
            return create(c, [user(blocks(n, cache_at))]).usage.cache_read_input_tokens

        assert read(5, 4) == 0  # written at minute 0
        clock.minutes(4)
        assert read(12, 11) == cumulative(5)  # read at minute 4 (the tail moved): renewed
        clock.minutes(4)
        assert read(5, 4) == cumulative(5)  # minute 8: alive only because of the renewal
        clock.minutes(5)
        assert read(5, 4) == 0  # 5 minutes after the last use: expired, written again
        clock.minutes(4.9)
        assert read(5, 4) == cumulative(5)
        # The fake's timestamps follow the same clock.
        batch = c.messages.batches.create(
            requests=[
                {
                    "custom_id": "a",
                    "params": {"model": MODEL, "max_tokens": 5, "messages": [user("x")]},
                }
            ]
        )
        assert batch.created_at.timestamp() == pytest.approx(clock.now)
        assert api.requests[-1].time == pytest.approx(clock.now)


def test_automatic_caching_uses_the_last_cacheable_block(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake_api.min_cacheable_tokens = 1
    hour = {"type": "ephemeral", "ttl": "1h"}
    system = [{"type": "text", "text": padded("s", 50), "cache_control": hour}]
    messages = [user(padded("q", 20)), assistant("")]  # an empty text block is not cacheable
    u = create(client, messages, system=system, cache_control={"type": "ephemeral"}).usage
    total = count_input_tokens({"system": system, "messages": messages})
    assert u.cache_creation.ephemeral_1h_input_tokens == 50
    assert u.cache_creation.ephemeral_5m_input_tokens == 20 + MESSAGE_OVERHEAD
    assert u.input_tokens == total - 50 - 20 - MESSAGE_OVERHEAD == MESSAGE_OVERHEAD
    counted = client.messages.count_tokens(
        model=MODEL, messages=messages, system=system, cache_control={"type": "ephemeral"}
    )
    assert (
        counted.input_tokens
        == u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens
    )


# ----- running it as a process -----


def test_runs_as_its_own_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_anthropic",
            "--port",
            "0",
            "--print-url",
            "--request-delay",
            "0.3",
            "--min-cacheable",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with anthropic.Anthropic(base_url=url, api_key="k", max_retries=0) as c:
            started = time.monotonic()
            system = [{"type": "text", "text": "s" * 40, "cache_control": {"type": "ephemeral"}}]
            usage = create(c, [user("q")], system=system).usage
            assert time.monotonic() - started >= 0.3
            assert usage.cache_creation_input_tokens == 10  # --min-cacheable 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    bad = subprocess.run(
        [sys.executable, "-m", "tests.fake_anthropic", "--request-delay", "-1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )
    assert bad.returncode == 2 and "delays must be >= 0" in bad.stderr


def test_agent_replies_match_the_openapi_document(
    fake_api: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    from tests.fake_anthropic.openapi import OPENAPI_PATH, load_schemas
    from tests.fake_anthropic.replies import sse_events

    if not OPENAPI_PATH.is_file():
        pytest.skip(f"OpenAPI document not found at {OPENAPI_PATH}")
    schemas = load_schemas(OPENAPI_PATH)
    scripts: list[tuple[dict[str, Any], dict[str, Any]]] = [
        (
            {"redacted_thinking": 1, "text": "x", "tool_use": [{"name": "a", "input": {"q": 1}}]},
            {"thinking": THINK},
        ),
        ({"text": "x"}, {"thinking": {"type": "adaptive", "display": "omitted"}}),
        ({"server_tool_use": [{"name": "web_search", "input": {"query": "x"}}]}, {}),
        ({"text": "no", "stop_reason": "refusal"}, {}),
    ]
    for script, kwargs in scripts:
        fake_api.responder = lambda body, script=script: script
        raw = client.messages.with_raw_response.create(
            model=MODEL, max_tokens=4000, messages=[user("q")], **kwargs
        )
        message = raw.http_response.json()
        schemas.validate("Message", message)
        for name, data in sse_events(message):
            if name != "ping":
                schemas.validate("MessageStreamEvent", data)
