"""Per-conversation state in the database: the model tier and the tool list a conversation
was given survive a restart and reach a second process or host on the same database;
nothing is written when nothing changed, nor by a dry run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from benchmarks.tool_catalog import catalog
from tars_opt import Prepared, Request, open_app
from tars_opt.app import App
from tars_opt.config.schema import ToolsConfig
from tars_opt.context.relevance import Scorer
from tars_opt.context.tools import ToolStage
from tars_opt.store import connect
from tars_opt.store.conversation_state import ConversationState
from tests.routing.test_route import Scripted, write_config

TOOLS = tuple(catalog(120))
SETTINGS = (
    "routing: {tool_conversations: true}\n"  # agent loops are routed: the tier is kept state
    "tools: {semantic: false}\nprune: {semantic: false}\n"
)


def _open(tmp_path: Path, db: str, extra: str = "") -> App:
    return open_app(write_config(tmp_path, SETTINGS + extra), db=db)


def _decision(prepared: Prepared, stage: str) -> Any:
    return next(d for d in prepared.decisions if d.stage == stage)


def _loop(first: Request, tool: str) -> Request:
    """The next call of `first`'s conversation: the assistant used `tool`, here is its result."""
    use = {"type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}
    messages = [
        *first.messages,
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": "done: ticket ENG-42"}]},
    ]  # fmt: skip
    return Request.from_body({"messages": messages, "tools": list(TOOLS), "max_tokens": 1024})


def _continued_by_a_second_process(tmp_path: Path, db: str) -> None:
    first = Request.from_prompt("Add a Jira ticket called 'login bug'", tools=TOOLS)
    one = _open(tmp_path, db)
    prepared = one.optimizer().prepare(first)
    assert isinstance(prepared, Prepared)
    sent = [t["name"] for t in prepared.request.tools]
    assert len(sent) < len(TOOLS)  # a selection, not the whole catalogue
    # One write per stage that decided (route: tier; tools: catalogue and indexes).
    assert one.db.scalar("SELECT calls FROM conversations") == 2
    # A fresh Optimizer (a restart, another gateway host) on the same database.
    two = _open(tmp_path, db)
    later = two.optimizer().prepare(_loop(first, sent[0]))
    assert isinstance(later, Prepared)
    assert later.request.conversation == prepared.request.conversation
    route = _decision(later, "route")
    assert route.data["conversation"] == "kept" and "tool loop goes on" in route.reason
    assert (later.request.tier, later.request.model) == (
        prepared.request.tier,
        prepared.request.model,
    )
    tools = _decision(later, "tools")
    assert tools.data["conversation"] == "kept" and "first call" in tools.reason
    assert [t["name"] for t in later.request.tools] == sent
    (row,) = two.db.query("SELECT namespace, calls, state FROM conversations")
    assert row["namespace"] == "default" and row["calls"] == 2  # nothing changed: no write


def test_a_second_optimizer_on_the_file_continues_the_conversation(tmp_path: Path) -> None:
    _continued_by_a_second_process(tmp_path, str(tmp_path / "shared.db"))


def test_a_second_host_on_postgresql_continues_the_conversation(
    tmp_path: Path, pg_url: str
) -> None:
    _continued_by_a_second_process(tmp_path, pg_url)


def test_a_dry_run_reads_the_state_and_writes_none(tmp_path: Path) -> None:
    opened = _open(tmp_path, str(tmp_path / "t.db"))
    opt = opened.optimizer()
    ask = Request.from_prompt("Add a Jira ticket", tools=TOOLS, conversation="k:dry")
    opt.inspect(ask)
    assert opened.db.scalar("SELECT COUNT(*) FROM conversations") == 0
    prepared = opt.prepare(ask)
    assert isinstance(prepared, Prepared)
    (before,) = opened.db.query("SELECT * FROM conversations")
    # A dry run of another catalogue would select anew: it shows that, and keeps nothing.
    other = replace(ask, tools=TOOLS[:60], dry_run=True)
    shown = opt.prepare(other)
    assert (
        isinstance(shown, Prepared) and _decision(shown, "tools").data.get("conversation") is None
    )
    assert list(opened.db.query("SELECT * FROM conversations")) == [before]


def test_a_changed_tool_catalogue_is_selected_again(tmp_path: Path) -> None:
    db = connect(tmp_path / "t.db")
    stage = ToolStage(ToolsConfig(), scorer=Scorer(None), state=ConversationState(db))
    first = replace(Request.from_prompt("Add a Jira ticket", tools=TOOLS), conversation="k:1")
    stage.apply(first)
    kept = ConversationState(db).get("k:1")
    other = tuple(catalog(120, seed=1))  # the same kind of tools, another catalogue
    assert [t["name"] for t in other] != [t["name"] for t in TOOLS]
    out, decision = stage.apply(replace(first, tools=other))
    assert decision.data.get("conversation") is None and decision.action == "selected"
    now = ConversationState(db).get("k:1")
    assert now["tool_catalogue"] != kept["tool_catalogue"]
    assert [other[i]["name"] for i in now["tools_sent"]] == [t["name"] for t in out.tools]
    # The new catalogue is the conversation's from now on, in another process too.
    fresh = ToolStage(ToolsConfig(), scorer=Scorer(None), state=ConversationState(db))
    again, decision = fresh.apply(replace(first, tools=other))
    assert decision.data["conversation"] == "kept" and again.tools == out.tools


def test_an_escalation_moves_the_conversation_up_for_good(tmp_path: Path) -> None:
    location = str(tmp_path / "t.db")
    opened = _open(tmp_path, location)
    # The cheap tier answers empty: re-asked on strong, which the conversation keeps.
    reply = opened.optimizer(backend=Scripted("")).ask(Request.from_prompt("What is 2+2?"))
    assert reply.model == "claude-sonnet-5-5"
    first = opened.ledger.get(opened.ledger.get(reply.request_id)["escalated_from"])
    assert first["tier"] == "cheap"
    conversation = first["conversation"]
    assert ConversationState(connect(location)).get(conversation)["tier"] == "strong"
    use = {"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {"x": "3+3"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "6"}
    messages = [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": [use]},
        {"role": "user", "content": [result]},
    ]
    # The loop goes on in a fresh Optimizer (a restart): on strong, not scored again.
    prepared = (
        _open(tmp_path, location)
        .optimizer()
        .prepare(Request.from_body({"max_tokens": 100, "messages": messages}))
    )
    assert isinstance(prepared, Prepared)
    assert prepared.request.conversation == conversation
    assert prepared.request.model == "claude-sonnet-5-5"
    assert _decision(prepared, "route").data["conversation"] == "kept"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_state_is_written_only_when_it_changes_and_merged(tmp_path: Path) -> None:
    db = connect(tmp_path / "t.db")
    clock = Clock()
    state = ConversationState(db, clock)
    state.update("k:1", "ns", tier="cheap")
    clock.now += 5
    state.update("k:1", "ns", tier="cheap")
    row = db.query("SELECT * FROM conversations").__next__()
    assert (row["calls"], row["updated"], row["started"]) == (1, 1_000.0, 1_000.0)
    # Another process keeps the tool list; neither field is lost.
    ConversationState(db, clock).update("k:1", "ns", tool_catalogue="abc", tools_sent=[1, 2])
    clock.now += 100  # past FRESH_S: read again
    state.update("k:1", "ns", tier="strong")
    assert ConversationState(db).get("k:1") == {
        "tier": "strong",
        "tool_catalogue": "abc",
        "tools_sent": [1, 2],
    }
    assert db.scalar("SELECT calls FROM conversations") == 3


def test_a_state_read_is_reused_for_fresh_s_then_read_again(tmp_path: Path) -> None:
    db = connect(tmp_path / "t.db")
    clock = Clock()
    here, there = ConversationState(db, clock), ConversationState(db, clock)
    assert here.get("k:1") == {}
    there.update("k:1", "ns", tier="strong")
    # Within FRESH_S this process uses what it read: no database round trip per call.
    clock.now += 10
    assert here.get("k:1") == {}
    clock.now += 25
    assert here.get("k:1") == {"tier": "strong"}


def test_without_a_database_state_lives_in_memory_bounded() -> None:
    state = ConversationState(None, max_cached=2)
    for n in range(3):
        state.update(f"k:{n}", "ns", tier="cheap")
    assert state.get("k:0") == {} and state.get("k:2") == {"tier": "cheap"}


@pytest.mark.parametrize("stored", ["not json", "[1, 2]"])
def test_an_unreadable_state_is_a_new_one(tmp_path: Path, stored: str) -> None:
    db = connect(tmp_path / "t.db")
    db.insert("conversations", {"id": "k:1", "started": 1.0, "updated": 1.0, "state": stored})
    state = ConversationState(db)
    assert state.get("k:1") == {}
    state.update("k:1", "ns", tier="cheap")
    assert ConversationState(db).get("k:1") == {"tier": "cheap"}
