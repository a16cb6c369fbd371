"""Prompt-cache breakpoints: placement, minimums, TTLs, byte-stable prefixes across turns."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tars_opt import Request, open_app
from tars_opt.backends.offline import OfflineBackend
from tars_opt.config import PromptCachingConfig
from tars_opt.prompt_cache import mark_breakpoints, miss_cause
from tars_opt.types import Prepared, Usage
from tests.test_prune import FILLER, conversation

LONG_SYSTEM = "You are a careful planning assistant. " * 300  # ~2,000+ tokens


@pytest.fixture(autouse=True)
def lexical_only(home: Path) -> None:
    """Chains built from the config score by word overlap: fast and deterministic. (The
    semantic path has its own tests with a small embedder.)"""
    Path("performance-config.yaml").write_text(
        "context: {semantic: false}\ntools: {semantic: false}\n"
    )


def params(**extra) -> dict:
    base = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 100,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "next"},
        ],
    }
    return {**base, **extra}


def test_marks_tools_system_and_end_of_history() -> None:
    tools = [{"name": f"t{i}", "description": FILLER * 10, "input_schema": {}} for i in range(3)]
    out, marks, why = mark_breakpoints(
        params(tools=tools, system=LONG_SYSTEM), PromptCachingConfig()
    )
    assert [m.where.split(" ")[0] for m in marks] == ["tools[2]", "system", "messages[1]"]
    assert out["tools"][2]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert out["system"][-1]["cache_control"]["ttl"] == "5m"
    assert out["messages"][1]["content"][-1]["cache_control"]["ttl"] == "5m"
    assert "cache_control" not in json.dumps(out["messages"][2])  # never on the prompt
    assert "3 breakpoint(s)" in why


def test_short_prefixes_are_not_marked() -> None:
    out, marks, why = mark_breakpoints(params(system="Be brief."), PromptCachingConfig())
    assert marks == [] and "below the 1024-token minimum" in why
    assert "cache_control" not in json.dumps(out)


def test_minimum_depends_on_the_model_family() -> None:
    cfg = PromptCachingConfig()
    system = "word " * 2500  # ~2,500 tokens: enough for sonnet (1024), not haiku (4096)
    _, sonnet, _ = mark_breakpoints(params(system=system), cfg)
    _, haiku, _ = mark_breakpoints(params(system=system, model="claude-haiku-5-5"), cfg)
    assert sonnet and not haiku


def test_deferred_work_uses_the_long_ttl_and_caller_marks_are_respected() -> None:
    out, marks, _ = mark_breakpoints(
        params(system=LONG_SYSTEM), PromptCachingConfig(), deferred=True
    )
    assert out["system"][-1]["cache_control"]["ttl"] == "1h"
    own = params(
        system=[{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    )
    same, marks, why = mark_breakpoints(own, PromptCachingConfig())
    assert same is own and marks == [] and "own cache_control" in why
    _, none, why = mark_breakpoints(params(system=LONG_SYSTEM), PromptCachingConfig(enabled=False))
    assert none == [] and "off" in why


def test_a_marked_prefix_with_both_counters_zero_is_a_miss_with_a_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    marks = [{"where": "system (end)", "prefix_tokens": 1100}]
    assert miss_cause(Usage(input_tokens=1200, cache_read=1100), marks, 1024) is None
    assert "minimum" in miss_cause(Usage(input_tokens=1200), marks, 1024)
    far = [{"where": "system (end)", "prefix_tokens": 9000}]
    assert "invalidates" in miss_cause(Usage(input_tokens=9100), far, 1024)


class NoCache(OfflineBackend):
    """A backend that never caches (as a model without prompt caching would)."""

    def _usage(self, params, model, output, tier):
        return Usage(input_tokens=5000, output_tokens=output, estimated=True)


def test_the_chain_logs_a_miss(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = open_app(backend="offline")
    opt = app.optimizer(backend=NoCache())
    with caplog.at_level(logging.WARNING, logger="tars_opt.prompt_cache"):
        opt.ask(Request(prompt="hi", system=LONG_SYSTEM, model="claude-sonnet-5-5"))
    assert any(r.getMessage() == "prompt cache miss" for r in caplog.records)


def canonical(messages: list[dict]) -> str:
    out = []
    for m in messages:
        content = m["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        out.append(
            {
                **m,
                "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in content],
            }
        )
    return json.dumps(out)


def test_prefix_is_byte_identical_across_turns_and_hits_the_cache(home: Path) -> None:
    """A long conversation continued turn by turn: between summary steps, everything
    before the last message breakpoint is the same bytes, and the cache is read."""
    app = open_app(backend="offline")
    clock = [1_000_000.0]
    backend = OfflineBackend(clock=lambda: clock[0])
    opt = app.optimizer(backend=backend, clock=lambda: clock[0])
    history = list(conversation(30))
    prepared: list[Prepared] = []
    reads = []
    for turn in range(8):
        req = Request(
            prompt=f"Next step {turn}?",
            messages=tuple(history),
            system=LONG_SYSTEM,
            model="claude-sonnet-5-5",  # routing aside: sonnet caches from 1,024 tokens
        )
        p = opt.prepare(req)
        assert isinstance(p, Prepared)
        prepared.append(p)
        reply = opt.finish(p, backend.send(p.params))
        reads.append(reply.usage.cache_read)
        history += [
            {"role": "user", "content": req.prompt},
            {"role": "assistant", "content": f"Answer {turn}: " + FILLER},
        ]
        clock[0] += 30
    systems = [json.dumps(p.params["system"]) for p in prepared]
    # The summary (in the system prompt) changes only when the cut moves a step.
    assert len(set(systems)) <= 3
    stable = 0
    for a, b in zip(prepared, prepared[1:], strict=False):
        if json.dumps(a.params["system"]) != json.dumps(b.params["system"]):
            continue
        stable += 1
        old, new = a.params["messages"][:-1], b.params["messages"]
        # The whole history sent last turn is a byte-identical prefix of this turn's
        # (up to where the moving end-of-history mark sits, which the API ignores).
        assert canonical(new[: len(old)]) == canonical(old)
    assert stable >= 4
    assert sum(1 for r in reads[1:] if r > 0) >= 6
