"""Agent loops through the real SDK against the strict fake API: each call reads what the
previous one wrote, client marks are kept, the conversation keeps its model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tars_opt import Request, open_app
from tars_opt.backends.anthropic import AnthropicBackend
from tests.context.test_prompt_cache import LONG_SYSTEM
from tests.context.test_prune import FILLER
from tests.fake_anthropic.tokens import MAX_BREAKPOINTS, breakpoints, segments

TOOLS = [
    {
        "name": name,
        "description": f"{name}: " + FILLER * 3,
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
    }
    for name in ("get_user", "search_flights", "book")
]


@pytest.fixture
def backend(fake_api) -> AnthropicBackend:
    return AnthropicBackend("test-key", base_url=fake_api.url, max_retries=0)


def _loop(opt: Any, fake_api: Any, calls: int, *, system: Any = LONG_SYSTEM) -> list[Any]:
    """An agent that calls a tool until `calls` calls are made, then answers."""
    fake_api.responder = lambda body: (
        {"tool_use": [{"name": "get_user", "input": {"q": "mia_li_3668"}}]}
        if sum(1 for m in body["messages"] if m["role"] == "assistant") < calls - 1
        else {"text": "Booked: XEWRD9."}
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Book my usual flight."}]
    replies = []
    for n in range(calls):
        body = {
            "model": "claude-sonnet-5-5",
            "max_tokens": 200,
            "system": system,
            "tools": TOOLS,
            "messages": list(messages),
        }
        reply = opt.ask(Request.from_body(body))
        replies.append(reply)
        messages.append({"role": "assistant", "content": list(reply.content)})
        uses = [b for b in reply.content if b.get("type") == "tool_use"]
        if not uses:
            break
        result = f"user {n}: " + FILLER * 2
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": uses[0]["id"], "content": result}
                ],
            }
        )
    return replies


def _marks(body: dict[str, Any]) -> int:
    return len(breakpoints(body, segments(body)))


def test_each_call_of_a_tool_loop_reads_what_the_previous_call_wrote(
    fake_api, backend: AnthropicBackend, home: Path
) -> None:
    Path("performance-config.yaml").write_text(
        "prune: {semantic: false}\ntools: {semantic: false}\n"
    )
    opt = open_app().optimizer(backend=backend)
    replies = _loop(opt, fake_api, 5)
    assert len(replies) == 5
    sent = [r.body for r in fake_api.requests_to("/v1/messages", "POST")]
    assert all(1 <= _marks(b) <= MAX_BREAKPOINTS for b in sent)
    for before, after in zip(replies, replies[1:], strict=False):
        # The whole previous request (its tail included) is read, not written again.
        assert after.usage.cache_read >= before.usage.prompt_tokens
    assert replies[0].usage.cache_write > 0
    assert all(r.saved_by_strategy["prompt_caching"] > 0 for r in replies[1:])
    # Not routed: a tool-using conversation goes to the client's model, every call.
    assert {r.model for r in replies} == {"claude-sonnet-5-5"}
    routes = [d for r in replies for d in r.decisions if d.stage == "route"]
    assert all("tool_conversations" in d.reason for d in routes)


def test_client_marks_are_kept_and_automatic_caching_adds_the_tail(
    fake_api, backend: AnthropicBackend, home: Path
) -> None:
    Path("performance-config.yaml").write_text(
        "prune: {semantic: false}\ntools: {semantic: false}\n"
    )
    opt = open_app().optimizer(backend=backend)
    system = [
        {"type": "text", "text": "You are an agent."},
        {"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    replies = _loop(opt, fake_api, 4, system=system)
    sent = [r.body for r in fake_api.requests_to("/v1/messages", "POST")]
    assert all(b["system"] == system for b in sent)  # the client's marks, as they were
    # Tools make even the first call a loop: its tail is marked, at 5m (no gap known).
    assert all(b["cache_control"] == {"type": "ephemeral", "ttl": "5m"} for b in sent)
    assert all(_marks(b) <= MAX_BREAKPOINTS for b in sent)
    assert replies[2].usage.cache_read >= replies[1].usage.prompt_tokens
    assert replies[3].usage.cache_read >= replies[2].usage.prompt_tokens


def test_a_routed_tool_conversation_keeps_its_first_model(
    fake_api, backend: AnthropicBackend, home: Path
) -> None:
    Path("performance-config.yaml").write_text(
        "prune: {semantic: false}\ntools: {semantic: false}\n"
        "routing: {router: heuristic, strong_share: null, tool_conversations: true}\n"
    )
    opt = open_app().optimizer(backend=backend)
    replies = _loop(opt, fake_api, 4)
    assert len({r.model for r in replies}) == 1
    routes = [[d for d in r.decisions if d.stage == "route"][0] for r in replies]
    assert "conversation" not in routes[0].data  # the first call is routed
    assert all(d.data.get("conversation") == "kept" for d in routes[1:])
    assert all("a tool loop goes on with it" in d.reason for d in routes[1:])
