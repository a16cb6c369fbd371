"""Prompt-cache breakpoints: placement, minimums, TTLs, byte-stable prefixes across turns."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tars_opt import Request, open_app
from tars_opt.backends.offline import OfflineBackend
from tars_opt.config.schema import PromptCacheConfig
from tars_opt.context.prompt_cache import (
    AUTO_UNMARKED,
    PrefixLog,
    mark_breakpoints,
    miss_cause,
    stable_key,
)
from tars_opt.store import connect
from tars_opt.types import Prepared, Usage
from tests.context.test_prune import FILLER, conversation

LONG_SYSTEM = "You are a careful planning assistant. " * 300  # ~2,000+ tokens


@pytest.fixture(autouse=True)
def lexical_only(home: Path) -> None:
    """Chains built from the config score by word overlap: fast and deterministic. (The
    semantic path has its own tests with a small embedder.)"""
    Path("performance-config.yaml").write_text(
        "prune: {semantic: false}\ntools: {semantic: false}\n"
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


def test_marks_tools_system_end_of_history_and_the_moving_tail() -> None:
    tools = [{"name": f"t{i}", "description": FILLER * 10, "input_schema": {}} for i in range(3)]
    out, marks, why = mark_breakpoints(
        params(tools=tools, system=LONG_SYSTEM), PromptCacheConfig(ttl_interactive="5m")
    )
    where = [m.where.split(" ")[0] for m in marks]
    assert where == ["tools[2]", "system", "messages[1]", "messages[2]"]
    assert out["tools"][2]["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert out["system"][-1]["cache_control"]["ttl"] == "5m"
    assert out["messages"][1]["content"][-1]["cache_control"]["ttl"] == "5m"
    # The tail (the turn being answered) is marked too: the next call of the loop reads it.
    assert out["messages"][2]["content"][-1]["cache_control"]["ttl"] == "5m"
    assert "4 breakpoint(s)" in why


def test_never_more_than_four_marks_the_tail_and_last_stable_kept() -> None:
    tools = [{"name": f"t{i}", "description": FILLER * 10, "input_schema": {}} for i in range(3)]
    system = [{"type": "text", "text": LONG_SYSTEM}, {"type": "text", "text": "Summary. " * 50}]
    _, marks, _ = mark_breakpoints(
        params(tools=tools, system=system), PromptCacheConfig(ttl_interactive="5m")
    )
    # tools, system[0], system end, end of history, tail: the end of history goes.
    assert [m.where.split(" ")[0] for m in marks] == [
        "tools[2]",
        "system[0]",
        "system",
        "messages[2]",
    ]


def test_a_single_prompt_without_tools_gets_no_tail_mark() -> None:
    single = params(system=LONG_SYSTEM, messages=[{"role": "user", "content": "next"}])
    out, marks, _ = mark_breakpoints(single, PromptCacheConfig(ttl_interactive="5m"))
    assert [m.where for m in marks] == ["system (end)"]
    assert "cache_control" not in json.dumps(out["messages"])


def test_short_prefixes_are_not_marked() -> None:
    out, marks, why = mark_breakpoints(params(system="Be brief."), PromptCacheConfig())
    assert marks == [] and "below the 1024-token minimum" in why
    assert "cache_control" not in json.dumps(out)


def test_minimum_depends_on_the_model_family() -> None:
    cfg = PromptCacheConfig(ttl_interactive="5m")
    system = "word " * 2500  # ~2,500 tokens: enough for sonnet (1024), not haiku (4096)
    _, sonnet, _ = mark_breakpoints(params(system=system), cfg)
    _, haiku, _ = mark_breakpoints(params(system=system, model="claude-haiku-5-5"), cfg)
    assert sonnet and not haiku


def test_deferred_work_uses_the_long_ttl_and_caller_marks_are_respected() -> None:
    out, marks, _ = mark_breakpoints(params(system=LONG_SYSTEM), PromptCacheConfig(), deferred=True)
    assert out["system"][-1]["cache_control"]["ttl"] == "1h"
    own = params(
        system=[{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    )
    # A single prompt with its own marks: left exactly as it is.
    single = {**own, "messages": [{"role": "user", "content": "hi"}]}
    same, marks, why = mark_breakpoints(single, PromptCacheConfig())
    assert same is single and marks == [] and "own cache_control" in why
    # A conversation with its own marks: they are kept as they are, and automatic caching
    # (top-level cache_control) adds the moving tail without touching them.
    added, marks, why = mark_breakpoints(own, PromptCacheConfig())
    assert added["system"] == own["system"] and added["messages"] == own["messages"]
    assert added["cache_control"] == {"type": "ephemeral", "ttl": "5m"}
    assert [m.ttl for m in marks] == ["5m"] and "kept as they are" in why
    assert "cache_control" not in own
    full = {**own, "cache_control": {"type": "ephemeral"}}
    assert mark_breakpoints(full, PromptCacheConfig())[0] is full
    _, none, why = mark_breakpoints(params(system=LONG_SYSTEM), PromptCacheConfig(enabled=False))
    assert none == [] and "off" in why


def _ttls(out: dict) -> list[str]:
    blocks = [*(out.get("tools") or []), *(out.get("system") or [])]
    blocks += [b for m in out["messages"] if isinstance(m["content"], list) for b in m["content"]]
    return [b["cache_control"]["ttl"] for b in blocks if "cache_control" in b]


def test_auto_ttl_marks_a_stable_prefix_sent_in_the_last_hour_with_1h() -> None:
    tools = [{"name": f"t{i}", "description": FILLER * 10, "input_schema": {}} for i in range(3)]
    request = params(tools=tools, system=LONG_SYSTEM)
    auto = PromptCacheConfig()
    assert auto.ttl_interactive == "auto"  # the shipped default
    # Sent 10 minutes ago: a 5m entry would be gone, a 1h one is read (and renewed).
    out, marks, why = mark_breakpoints(request, auto, since_sent=600, since_turn=600)
    assert _ttls(out) == ["1h", "1h", "1h", "1h"]  # tools, system, end of history, tail
    assert "sent 600 s ago" in why and len(marks) == 4
    # A quick loop (its previous turn 30 s ago): the history, read by the next turn,
    # needs only 5m; the shared prefix keeps 1h (1h entries come first, as the API wants).
    out, _, why = mark_breakpoints(request, auto, since_sent=30, since_turn=30)
    assert _ttls(out) == ["1h", "1h", "5m", "5m"] and "previous turn 30 s ago" in why
    # Never sent, or not in the last hour: a loop's next call reads it within minutes, so
    # everything is written at the cheaper 5m rate.
    for since in (None, 3601.0):
        out, marks, why = mark_breakpoints(request, auto, since_sent=since)
        assert _ttls(out) == ["5m", "5m", "5m", "5m"] and "no gap known" in why
        assert "first sent now" in why
    # Turns more than an hour apart: no entry would live to be read, nothing is marked.
    out, marks, why = mark_breakpoints(request, auto, since_sent=None, since_turn=4000)
    assert marks == [] and why.startswith(AUTO_UNMARKED)
    out, marks, _ = mark_breakpoints(request, auto, since_sent=600, since_turn=4000)
    assert _ttls(out) == ["1h", "1h"]  # the shared prefix still pays (sent 10 minutes ago)
    single = {**request, "tools": [], "messages": [{"role": "user", "content": "next"}]}
    out, marks, why = mark_breakpoints(single, auto, since_sent=None)
    assert marks == [] and why.startswith(AUTO_UNMARKED) and out is single
    # Deferred work keeps its own TTL whatever auto would say.
    out, _, _ = mark_breakpoints(single, auto, deferred=True, since_sent=None)
    assert _ttls(out) == ["1h"]  # the system prompt (no tools, no history: no tail)


def test_a_conversation_keeps_its_key_from_turn_to_turn() -> None:
    from tars_opt.context.prompt_cache import conversation_key

    first = params(system=LONG_SYSTEM)
    later = {
        **first,
        # a summary joined the system prompt, more turns came, the first message stayed
        "system": [{"type": "text", "text": LONG_SYSTEM}, {"type": "text", "text": "Summary"}],
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "and then?"},
        ],
    }
    marked, _, _ = mark_breakpoints(later, PromptCacheConfig(), since_sent=1, since_turn=1)
    assert conversation_key(first) == conversation_key(later) == conversation_key(marked)
    other = {
        **first,
        "messages": [{"role": "user", "content": "another task"}, *first["messages"][1:]],
    }
    assert conversation_key(other) != conversation_key(first)
    # The opening request (no history yet) already names the conversation it starts.
    opening = {**first, "messages": first["messages"][:1]}
    assert conversation_key(opening) == conversation_key(first)
    assert conversation_key({**first, "messages": []}) is None


def test_prefix_log_keeps_hashes_and_forgets_after_a_day(tmp_path: Path) -> None:
    db = connect(tmp_path / "t.db")
    log_ = PrefixLog(db)
    key = stable_key(params(system=LONG_SYSTEM))
    assert log_.since_sent(key, 1000.0) is None
    log_.sent([key], "claude-sonnet-5-5", 1000.0)
    assert log_.since_sent(key, 1600.0) == 600.0
    # Marks do not change the key: the marked request is the same prefix.
    marked, _, _ = mark_breakpoints(params(system=LONG_SYSTEM), PromptCacheConfig(), deferred=True)
    assert stable_key(marked) == key
    later = 1000.0 + PrefixLog.KEEP_S + 1
    log_.sent(["other"], "claude-sonnet-5-5", later)
    assert log_.since_sent(key, later) is None  # a day old: gone
    assert PrefixLog(db).since_sent(key, 1000.0) is None  # from the table too
    assert "careful planning" not in json.dumps(list(db.query("SELECT * FROM prefix_sends")))


def test_prefix_log_writes_a_key_at_most_every_few_seconds_and_reads_its_own_sends(
    tmp_path: Path,
) -> None:
    db = connect(tmp_path / "t.db")
    here, there = PrefixLog(db), PrefixLog(db)  # two processes on one database

    def stored() -> float:
        return db.execute("SELECT last_sent FROM prefix_sends WHERE key = 'k'").fetchone()[0]

    here.sent(["k"], "m", 1000.0)
    here.sent(["k"], "m", 1005.0)  # a tool turn 5 s later: no commit
    assert stored() == 1000.0
    assert here.since_sent("k", 1010.0) == 5.0  # this process knows the latest send
    assert there.since_sent("k", 1010.0) == 10.0  # another reads the row: at most 20 s late
    here.sent(["k"], "m", 1000.0 + PrefixLog.WRITE_EVERY_S)
    assert stored() == 1000.0 + PrefixLog.WRITE_EVERY_S
    there.sent(["k"], "m", 1030.0)  # the other's own send is written: it had none yet
    assert here.since_sent("k", 1031.0) == 1.0


def test_an_unusable_prefix_log_costs_only_the_marking(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = connect(tmp_path / "t.db")
    log_ = PrefixLog(db)
    db.execute("DROP TABLE prefix_sends")
    with caplog.at_level(logging.WARNING, logger="tars_opt.prompt_cache"):
        assert log_.times(params(system=LONG_SYSTEM), 1000.0) == (None, None)
        log_.record(params(system=LONG_SYSTEM), 1000.0)  # no exception: the request goes on
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["prefix log unreadable", "prefix log unreadable", "prefix log not written"]


def test_the_chain_caches_an_agent_prefix_across_calls_minutes_apart(home: Path) -> None:
    """Calls 10 minutes apart with the same system prompt: the first is sent unmarked,
    the second writes the 1h entry, the rest read it (a 5m entry would never be read)."""
    app = open_app(backend="offline")
    clock = [1_000_000.0]
    opt = app.optimizer(backend=OfflineBackend(clock=lambda: clock[0]), clock=lambda: clock[0])
    replies = []
    for i in range(4):
        replies.append(
            opt.ask(
                Request.from_prompt(f"Task {i}?", system=LONG_SYSTEM, model="claude-sonnet-5-5")
            )
        )
        clock[0] += 600
    actions = [[d.action for d in r.decisions if d.stage == "prompt_cache"] for r in replies]
    assert actions == [["unmarked"], ["marked"], ["marked"], ["marked"]]
    usage = [r.usage for r in replies]
    assert (usage[0].cache_write, usage[0].cache_read) == (0, 0)
    assert usage[1].cache_write_1h > 0 and usage[1].cache_read == 0
    assert all(u.cache_read > 0 and u.cache_write == 0 for u in usage[2:])
    assert sum(r.saved_by_strategy["prompt_caching"] for r in replies) > 0


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
        for prompt in ("hi", "and now?"):  # ttl auto marks the prefix from its second call
            opt.ask(Request.from_prompt(prompt, system=LONG_SYSTEM, model="claude-sonnet-5-5"))
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
        req = Request.from_prompt(
            f"Next step {turn}?",
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


@pytest.mark.parametrize(("gap", "ttl"), [(30, "5m"), (600, "1h")])
def test_a_conversations_history_ttl_follows_its_turn_gap(home: Path, gap: int, ttl: str) -> None:
    app = open_app(backend="offline")
    clock = [1_000_000.0]
    opt = app.optimizer(backend=OfflineBackend(clock=lambda: clock[0]), clock=lambda: clock[0])
    history = [{"role": "user", "content": "Plan the migration. " + FILLER * 20}]
    history.append({"role": "assistant", "content": "Step one. " + FILLER * 20})
    reads = []
    for turn in range(3):
        reply = opt.ask(
            Request.from_prompt(f"Next {turn}?", messages=tuple(history), model="claude-sonnet-5-5")
        )
        marked = [d for d in reply.decisions if d.stage == "prompt_cache"]
        if turn:  # the first turn knows no gap yet: 5m
            assert f"end of history and tail {ttl}" in marked[0].reason
        reads.append(reply.usage.cache_read)
        history += [
            {"role": "user", "content": f"Next {turn}?"},
            {"role": "assistant", "content": f"Done {turn}. " + FILLER},
        ]
        clock[0] += gap
    # Each turn reads what the previous one wrote, except the second of a slow one: the
    # opening's 5m entry was gone, from then on the history is kept for an hour.
    assert (reads[1] > 0) == (gap == 30) and reads[2] > 0


def test_marking_never_changes_the_callers_request() -> None:
    tools = [{"name": f"t{i}", "description": FILLER * 10, "input_schema": {}} for i in range(3)]
    system = [{"type": "text", "text": LONG_SYSTEM}, {"type": "text", "text": "More. " * 40}]
    request = params(tools=tools, system=system)
    before = json.dumps(request)
    out, marks, _ = mark_breakpoints(request, PromptCacheConfig(ttl_interactive="5m"))
    assert len(marks) == 4 and "cache_control" in json.dumps(out)
    assert json.dumps(request) == before
