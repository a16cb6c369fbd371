"""Tool-result clearing in agent loops: placeholders, steps, what is never cleared, the
API's context editing, and the saving attributed to pruning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tars_opt import Request, open_app
from tars_opt.backends.anthropic import AnthropicBackend
from tars_opt.config.schema import ClearToolResultsConfig, PruneConfig
from tars_opt.context.clearing import PLACEHOLDER_START, ToolUse, clear, placeholder, tool_uses
from tars_opt.context.history import problems
from tars_opt.context.prune import PruneStage
from tars_opt.tokens import estimate_text
from tests.context.test_agent_loops import TOOLS
from tests.context.test_prompt_cache import LONG_SYSTEM
from tests.fake_anthropic.validate import message_params_error

RESULT = "flight HAT170 departs 08:00, seat 12A, fare $312; " * 40  # ~500 tokens


def loop(uses: int, *, name_of: Any = lambda i: "search_flights") -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Find me a flight."}]
    for i in range(uses):
        messages.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": f"tu{i}", "name": name_of(i), "input": {"q": i}}
                ],
            }
        )
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": f"tu{i}", "content": f"{i}: {RESULT}"}
                ],
            }
        )
    return messages


CFG = ClearToolResultsConfig(trigger_tokens=2000, clear_at_least_tokens=1000, keep_tool_uses=3)


def cleared_ids(messages: tuple[dict[str, Any], ...]) -> list[str]:
    return [u.id for u in tool_uses(messages) if u.cleared]


def test_old_results_become_placeholders_naming_the_tool_never_the_last_k() -> None:
    messages = tuple(loop(10))
    done = clear(messages, CFG, 6000)
    assert done is not None
    ids = cleared_ids(done.messages)
    # Chunks of 2 results (~500 tokens each, step 1000) out of the 7 clearable ones.
    assert ids == [f"tu{i}" for i in range(6)]
    last = [u for u in tool_uses(done.messages) if u.id in ("tu7", "tu8", "tu9")]
    assert not any(u.cleared for u in last)
    text = done.messages[2]["content"][0]["content"]
    assert text.startswith(PLACEHOLDER_START) and "search_flights" in text
    # The identifiers the result held stay: the agent may quote them and cannot guess them.
    assert all(x in text for x in ("HAT170", "08:00", "12A", "$312"))
    assert "departs" not in text
    # Every tool_use keeps its tool_result: the API accepts the request.
    assert not problems(list(done.messages))
    body = {"model": "claude-sonnet-5-5", "max_tokens": 10, "messages": list(done.messages)}
    body["messages"].append({"role": "assistant", "content": "ok"})
    body["messages"].append({"role": "user", "content": "next"})
    assert message_params_error(body) is None
    assert done.removed_tokens > 2500
    assert clear(messages, CFG, 1999) is None  # under the trigger: nothing


def test_clearing_moves_in_steps_and_the_cleared_prefix_stays_the_same_bytes() -> None:
    sets, prefixes = [], []
    for uses in range(4, 16):
        messages = tuple(loop(uses))
        done = clear(messages, CFG, 9999)
        out = done.messages if done else messages
        sets.append(tuple(cleared_ids(out)))
        last = max((int(i[2:]) for i in sets[-1]), default=-1)
        prefixes.append(json.dumps(out[: 2 * last + 3]))
    changes = sum(1 for a, b in zip(sets, sets[1:], strict=False) if a != b)
    assert changes <= len(sets) // 2  # a new chunk every other call at most, not every call
    for a, b, pa, pb in zip(sets, sets[1:], prefixes, prefixes[1:], strict=False):
        if a == b:
            assert pa == pb  # between steps, the cleared part is byte-identical


def test_excluded_tools_are_never_cleared_and_inputs_optionally() -> None:
    messages = tuple(loop(10, name_of=lambda i: "get_user" if i % 2 else "search_flights"))
    cfg = CFG.model_copy(update={"exclude_tools": ["get_user"], "clear_tool_inputs": True})
    done = clear(messages, cfg, 9999)
    assert done is not None
    cleared = [u for u in tool_uses(done.messages) if u.cleared]
    assert cleared and all(u.name == "search_flights" for u in cleared)
    inputs = {
        b["id"]: b["input"] for m in done.messages if m["role"] == "assistant" for b in m["content"]
    }
    assert all(inputs[u.id] == {} for u in cleared)
    assert inputs["tu1"] == {"q": 1}  # get_user: excluded


def _request(uses: int, **extra: Any) -> Request:
    body = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 50,
        "tools": TOOLS,
        "messages": loop(uses),
        **extra,
    }
    return Request.from_body(body)


def test_the_api_edit_for_listed_models_after_the_clients_own() -> None:
    cfg = PruneConfig(
        clear_tool_results=CFG.model_copy(
            update={"mode": "api", "api_models": ["claude-sonnet-5-5"]}
        )
    )
    stage = PruneStage(cfg.model_copy(update={"semantic": False}))
    own = {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}
    request, decision = stage.apply(_request(10, context_management=own))
    edits = request.extra["context_management"]["edits"]
    assert edits[0] == own["edits"][0] and edits[1]["type"] == "clear_tool_uses_20250919"
    assert edits[1]["keep"] == {"type": "tool_uses", "value": 3}
    assert decision.action == "api_clearing"
    # The client clears tool uses itself: its edit is kept, nothing is added or cleared.
    theirs = {"edits": [{"type": "clear_tool_uses_20250919"}]}
    request, decision = stage.apply(_request(10, context_management=theirs))
    assert request.extra["context_management"] == theirs and decision.action == "none"
    assert "client's own" in decision.reason


def test_a_long_loop_is_cleared_through_the_sdk_and_the_saving_is_pruning(
    fake_api, home: Path
) -> None:
    Path("performance-config.yaml").write_text(
        "prune:\n  semantic: false\n  clear_tool_results:\n"
        "    trigger_tokens: 3000\n    clear_at_least_tokens: 1000\n    keep_tool_uses: 2\n"
        "tools: {semantic: false}\n"
    )
    opt = open_app().optimizer(
        backend=AnthropicBackend("test-key", base_url=fake_api.url, max_retries=0)
    )
    fake_api.responder = lambda body: {"text": "Here are your options."}
    replies = []
    for uses in range(6, 12):
        body = {
            "model": "claude-sonnet-5-5",
            "max_tokens": 50,
            "system": LONG_SYSTEM,
            "tools": TOOLS,
            "messages": loop(uses),
        }
        replies.append(opt.ask(Request.from_body(body)))
    sent = [r.body for r in fake_api.requests_to("/v1/messages", "POST")]
    assert all(PLACEHOLDER_START in json.dumps(b["messages"]) for b in sent)
    decisions = [[d for d in r.decisions if d.stage == "prune"][0] for r in replies]
    assert all(d.action == "cleared" and d.data["removed_tokens"] > 0 for d in decisions)
    assert all(r.saved_by_strategy["pruning"] > 0 for r in replies)
    # Between steps the cleared prefix is read from the cache, not written again.
    assert sum(1 for r in replies[1:] if r.usage.cache_read > r.usage.cache_write) >= 3


def test_a_placeholder_costs_few_tokens_beyond_the_identifiers_it_keeps() -> None:
    """Agent tool results run ~200 tokens: a 40-token placeholder would eat a fifth of
    what clearing one saves."""
    result = '{"reservation_id": "XEWRD9", "user_id": "mia_li_3668", "flight": "HAT170"}'
    use = ToolUse("tu1", "get_reservation_details", 1, 2, 250, 12, False, result)
    text = placeholder(use, inputs=True)
    assert text.startswith(PLACEHOLDER_START) and "get_reservation_details" in text
    assert all(x in text for x in ("XEWRD9", "mia_li_3668", "HAT170"))
    ids = estimate_text("XEWRD9, mia_li_3668, HAT170")
    assert estimate_text(text) - ids <= 30  # the wordier placeholder before took 47
