"""Stage prune: levels, tool pairs, relevance, summaries (stored, reused, in the ledger)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tars_opt import Request, open_app
from tars_opt.backends.offline import OfflineBackend
from tars_opt.config.schema import PruneConfig
from tars_opt.context.history import problems, split_turns
from tars_opt.context.prune import PruneStage
from tars_opt.context.relevance import Scorer, holds, lexical_score, needles, words
from tars_opt.errors import BackendError
from tars_opt.types import Reply
from tests.ops_chat import ANSWER, QUESTION, ops_chat

FILLER = (
    "The quarterly planning notes cover staffing, vendor timelines, budget reviews and the "
    "usual risks around delivery, which we discussed at length in the meeting yesterday. "
)


@pytest.fixture(autouse=True)
def lexical_only(home: Path) -> None:
    """Chains built from the config score by word overlap: fast and deterministic. (The
    semantic path has its own tests with a small embedder.)"""
    Path("performance-config.yaml").write_text(
        "prune: {semantic: false}\ntools: {semantic: false}\n"
    )


def conversation(turns: int, *, words: int = 3) -> tuple[dict, ...]:
    """A user/assistant history of `turns` turns, each turn a few hundred tokens."""
    out = []
    for i in range(turns):
        out.append({"role": "user", "content": f"Question {i}: " + FILLER * words})
        out.append({"role": "assistant", "content": f"Answer {i}: " + FILLER * (words + 1)})
    return tuple(out)


class Recorder:
    """A side_ask that answers like the cheap tier would and remembers each call."""

    def __init__(self) -> None:
        self.calls: list[Request] = []

    def __call__(self, request: Request) -> Reply:
        self.calls.append(request)
        return Reply(
            text="Topic: planning\nKey decisions: none\nOpen items: none\nFacts: Q0-Q9",
            model="claude-haiku-5-5",
            source="api",
            request_id=request.request_id,
        )


def stage(db=None, side_ask=None, **cfg) -> PruneStage:
    return PruneStage(PruneConfig(**cfg), db, side_ask=side_ask, scorer=Scorer(None))


def kept_messages(request: Request) -> list[str]:
    return [m["content"].split(":")[0] for m in request.history]


def test_short_history_is_sent_whole() -> None:
    req = Request.from_prompt("next?", messages=conversation(2))
    out, decision = stage().apply(req)
    assert out == req
    assert decision.action == "none"
    assert "within the 4000 budget" in decision.reason


def test_light_keeps_last_20_and_the_first_turn_without_summary() -> None:
    asked = Recorder()
    req = Request.from_prompt("And then?", messages=conversation(30), query_type="code")
    out, decision = stage(side_ask=asked, relevant_top_k=0).apply(req)
    assert decision.action == "light"
    assert asked.calls == []  # light never summarizes
    names = kept_messages(out)
    assert names[:2] == ["Question 0", "Answer 0"]  # the task statement stays
    assert names[-1] == "Answer 29"
    assert 20 <= len(names) - 2 <= 20 + PruneConfig().summary_step
    assert out.system is None
    assert out.removed_tokens > 0
    assert not problems(out.api_messages())


def test_medium_summarizes_the_rest_into_the_system_prompt() -> None:
    asked = Recorder()
    req = Request.from_prompt("Summarize the plan", messages=conversation(30), system="Be brief.")
    out, decision = stage(side_ask=asked, relevant_top_k=0).apply(req)
    assert decision.action == "medium"
    assert len(asked.calls) == 1
    call = asked.calls[0]
    assert call.query_type == "summary" and call.overhead_for == "pruning"
    assert call.request_id == f"{req.request_id}.summary"
    for heading in ("Topic:", "Key decisions:", "Open items:", "Facts and numbers to keep:"):
        assert heading in str(call.system)
    assert isinstance(out.system, tuple)
    assert out.system[0]["text"] == "Be brief."
    assert "Summary of" in out.system[1]["text"] and "Topic: planning" in out.system[1]["text"]
    kept = len(out.messages) - 2
    assert 10 <= kept < 10 + PruneConfig().summary_step + 2
    assert decision.data["summary"]["reused"] is False
    assert decision.data["tokens_after"] < decision.data["tokens_before"]
    assert out.removed_tokens == decision.data["tokens_before"] - decision.data["tokens_after"]


def test_aggressive_keeps_only_the_last_turns() -> None:
    req = Request.from_prompt("ok", messages=conversation(30), query_type="template")
    out, decision = stage(side_ask=Recorder(), relevant_top_k=0).apply(req)
    assert decision.action == "aggressive"
    assert kept_messages(out)[:2] == ["Question 0", "Answer 0"]
    assert len(out.messages) - 2 < 3 + PruneConfig().summary_step + 2


def test_level_by_priority_and_budget_pressure() -> None:
    s = stage(side_ask=Recorder(), relevant_top_k=0)
    high = Request.from_prompt(
        "x", messages=conversation(30), priority="high", query_type="template"
    )
    assert s.plan(high).level == "light"
    # A huge history stays over budget at light and medium: pressure escalates it.
    big = Request.from_prompt("x", messages=conversation(60, words=12), query_type="code")
    plan = s.plan(big)
    assert plan.level == "aggressive"
    assert "budget pressure" in plan.reason


def tool_conversation(turns: int) -> tuple[dict, ...]:
    out: list[dict] = []
    for i in range(turns):
        out.append({"role": "user", "content": f"Step {i}: " + FILLER * 3})
        out.append(
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": f"tu_{i}", "name": "search", "input": {"q": i}},
                ],
            }
        )
        out.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": f"tu_{i}", "content": FILLER * 2}
                ],
            }
        )
        out.append({"role": "assistant", "content": f"Result {i}: " + FILLER})
    return tuple(out)


@pytest.mark.parametrize("query_type", ["code", "other", "template"])
def test_tool_use_and_tool_result_are_never_separated(query_type: str) -> None:
    history = tool_conversation(15)
    assert not problems([*history, {"role": "user", "content": "go on"}])
    req = Request.from_prompt("go on", messages=history, query_type=query_type)
    out, decision = stage(side_ask=Recorder()).apply(req)
    assert decision.action in {"light", "medium", "aggressive"}
    assert len(out.messages) < len(history)
    assert problems(out.api_messages()) == []
    uses = {
        b["id"]
        for m in out.messages
        if isinstance(m["content"], list)
        for b in m["content"]
        if b["type"] == "tool_use"
    }
    results = {
        b["tool_use_id"]
        for m in out.messages
        if isinstance(m["content"], list)
        for b in m["content"]
        if b["type"] == "tool_result"
    }
    assert uses == results and uses


def test_turns_group_tool_results_with_their_call() -> None:
    turns = split_turns(tool_conversation(2))
    assert [(t.start, t.end) for t in turns] == [(0, 4), (4, 8)]


def test_relevant_old_turn_is_kept_verbatim() -> None:
    history = list(conversation(30))
    history[8] = {"role": "user", "content": "Our server is db-west-7 on port 54321. " + FILLER}
    req = Request.from_prompt("Which port did db-west-7 use, 54321?", messages=tuple(history))
    out, decision = stage(side_ask=Recorder()).apply(req)
    assert decision.data["relevant"] == [[8, 9]]
    # Quoted in the final user turn, after every cache breakpoint, not among the messages.
    last = out.api_messages()[-1]["content"]
    assert "USER (message 8): Our server is db-west-7 on port 54321." in last[0]["text"]
    assert last[-1] == {"type": "text", "text": req.prompt}
    assert not any("54321" in str(m["content"]) for m in out.history)
    assert not problems(out.api_messages())
    # Another prompt selects other turns, yet system and messages are the same bytes.
    again = Request.from_prompt("Anything else?", messages=req.history)
    other, d2 = stage(side_ask=Recorder()).apply(again)
    assert d2.data["relevant"] != decision.data["relevant"]
    assert (other.system, other.history) == (out.system, out.history)


@pytest.mark.parametrize(
    "prompt,expected",
    [
        (QUESTION, {"alpha-7"}),
        ("Is v2 on x86_64, B7 or #4?", {"v2", "x86_64", "B7", "#4"}),
        ("Ask mia_li_3668 about XEWRD9", {"mia_li_3668", "XEWRD9"}),
        # The number belongs to its identifier: no separate "12" matching every "12".
        ("and alpha-12?", {"alpha-12"}),
        ("Which port did db-west-7 use, 54321?", {"db-west-7", "54321"}),
        # Bare single digits and ordinals are not needles.
        ("Give me 3 ideas for the 2nd step", set()),
    ],
)
def test_identifiers_with_digits_are_needles(prompt: str, expected: set[str]) -> None:
    assert needles(prompt) == expected


def test_an_identifier_matches_only_itself() -> None:
    for text in ("alpha-7 on 8003", "ALPHA-7.", "(alpha-7)", "alpha-7.service", "alpha-7, then"):
        assert holds(text, "alpha-7"), text
    for text in ("alpha-17", "alpha-70", "alpha-7-west", "pre-alpha-7", "alpha-7.5", "alpha7"):
        assert not holds(text, "alpha-7"), text
    assert holds("see #4.", "#4") and not holds("see #42", "#4")
    # A bare number may end an identifier, never be part of a longer number.
    assert holds("alpha-12 is up", "12") and not holds("in 2012", "12")
    assert not holds("port 18003", "8003") and not holds("v8003.5", "8003")
    assert holds("os.path.join(a)", "os.path")
    # Plain names keep their case ("Will" is not "will"); identifiers with digits do not.
    assert not holds("it will", "Will") and holds("XEWRD9", "xewrd9")


def test_a_bare_digit_is_a_weak_term() -> None:
    # It is a word of the prompt (one of several), found as "7" in "alpha-7" only.
    assert "7" in words(QUESTION)
    assert "7" in words("alpha-7 is up") and "7" not in words("alpha-17 is up")
    assert lexical_score("restart step 7", "we did step 7") > lexical_score(
        "restart step 7", "we did step 17"
    )


def test_the_turn_with_the_asked_identifier_is_kept_verbatim() -> None:
    history = tuple(ops_chat())
    out, decision = stage(side_ask=Recorder()).apply(
        Request.from_prompt(QUESTION, messages=history)
    )
    assert decision.action == "medium"
    assert list(ANSWER) in decision.data["relevant"]
    quoted = out.api_messages()[-1]["content"][0]["text"]
    assert f"USER (message 14): {history[14]['content']}" in quoted
    assert f"ASSISTANT (message 15): {history[15]['content']}" in quoted
    # alpha-17 and alpha-70 (messages 26-27) are other services: not quoted for alpha-7.
    assert [26, 27] not in decision.data["relevant"]
    assert "8017" not in quoted
    # Asked about alpha-17, that turn is the one kept.
    _, other = stage(side_ask=Recorder()).apply(
        Request.from_prompt("What was the port of alpha-17?", messages=history)
    )
    assert [26, 27] in other.data["relevant"]


def test_the_exact_identifier_outweighs_similar_recent_turns() -> None:
    """The recent part mentions alpha-7 too (so it is no missing needle) and old turns
    about ports read much like the question: the turn naming alpha-7's port still wins,
    with embeddings on."""
    history = list(ops_chat())
    history[77] = {"role": "assistant", "content": "Done; alpha-7 was restarted by the drain."}
    scorer = Scorer(lambda: WordEmbedder())
    s = PruneStage(PruneConfig(), side_ask=Recorder(), scorer=scorer)
    _, decision = s.apply(Request.from_prompt(QUESTION, messages=tuple(history)))
    assert decision.data["scoring"] == "semantic+lexical"
    assert list(ANSWER) in decision.data["relevant"]


class WordEmbedder:
    """A tiny deterministic embedder (hashed bag of words) to exercise the semantic path."""

    name, dim = "words", 64

    def embed(self, texts):
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for w in text.lower().split():
                out[row, hash(w.strip(".,?:")) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_semantic_scorer_is_used_when_an_embedder_is_there() -> None:
    history = list(conversation(30))
    history[10] = {"role": "user", "content": "penguins penguins antarctic colonies " * 5}
    req = Request.from_prompt(
        "tell me more about antarctic penguins colonies", messages=tuple(history)
    )
    s = PruneStage(PruneConfig(), side_ask=Recorder(), scorer=Scorer(lambda: WordEmbedder()))
    out, decision = s.apply(req)
    assert decision.data["scoring"] == "semantic+lexical"
    assert [10, 11] in decision.data["relevant"]


def test_without_an_embedder_scoring_degrades_to_word_overlap() -> None:
    s = PruneStage(PruneConfig(), side_ask=Recorder(), scorer=Scorer(lambda: None))
    _, decision = s.apply(Request.from_prompt("x y", messages=conversation(30)))
    assert decision.data["scoring"] == "lexical"


def test_summary_failure_keeps_the_history_whole() -> None:
    def broken(request: Request) -> Reply:

        raise BackendError("API error 529 overloaded_error", kind="overloaded_error")

    req = Request.from_prompt("x", messages=conversation(30))
    out, decision = stage(side_ask=broken).apply(req)
    assert out == req
    assert "summary failed" in decision.reason


# ---- through the optimizer: stored summaries, ledger rows, prompt caching -------------


def long_history(turns: int) -> list[dict]:
    return list(conversation(turns))


def test_summaries_are_stored_reused_and_remade_when_history_changes(home: Path) -> None:
    app = open_app(backend="offline")
    opt = app.optimizer(backend=OfflineBackend())
    history = long_history(30)
    first = opt.ask(Request.from_prompt("What next?", messages=tuple(history)))
    again = opt.ask(Request.from_prompt("And after that?", messages=tuple(history)))
    rows = list(app.db.query("SELECT * FROM calls WHERE query_type = 'summary'"))
    assert len(rows) == 1  # made once, reused by the second request
    summary_row = rows[0]
    assert summary_row["request_id"] == f"{first.request_id}.summary"
    assert summary_row["model"] == "claude-haiku-5-5"
    assert summary_row["baseline_cost"] == 0
    assert summary_row["saved_pruning"] == pytest.approx(-summary_row["cost"])
    assert summary_row["cost"] > 0
    prune = [d for d in again.decisions if d.stage == "prune"][0]
    assert prune.data["summary"]["reused"] is True
    stored = list(app.db.query("SELECT uses, messages FROM summaries"))
    assert stored[0]["uses"] == 1
    # Change an old message: the summary must be made again.
    history[4] = {"role": "user", "content": "Question 2 (edited): " + FILLER * 3}
    opt.ask(Request.from_prompt("What next?", messages=tuple(history)))
    assert (
        app.db.execute("SELECT count(*) FROM calls WHERE query_type='summary'").fetchone()[0] == 2
    )
    # The pruned request's baseline prices the unpruned prompt.
    row = app.ledger.get(first.request_id)
    assert row["removed_tokens"] > 0
    assert row["saved_pruning"] > 0
    assert row["tokens_estimated"] is True


def test_ledger_saving_is_net_of_the_summary(home: Path) -> None:
    app = open_app(backend="offline")
    opt = app.optimizer(backend=OfflineBackend())
    reply = opt.ask(Request.from_prompt("What next?", messages=tuple(long_history(30))))
    pruning = app.db.execute("SELECT SUM(saved_pruning) FROM calls").fetchone()[0]
    row = app.ledger.get(reply.request_id)
    summary = app.ledger.get(f"{reply.request_id}.summary")
    assert pruning == pytest.approx(row["saved_pruning"] - summary["cost"])


def test_decisions_show_the_prune_plan(home: Path) -> None:
    app = open_app(backend="offline")
    reply = app.optimizer(backend=OfflineBackend()).ask(
        Request.from_prompt("go", messages=tuple(long_history(30)))
    )
    prune = [d for d in reply.decisions if d.stage == "prune"][0]
    assert json.dumps(prune.to_dict())  # serialisable for the ledger
    assert prune.data["pinned"] == [[0, 1]]
    assert prune.data["summarized"]


def test_a_summary_rolls_forward_from_the_previous_step(tmp_path: Path) -> None:
    from tars_opt.store import connect

    asked = Recorder()
    s = stage(db=connect(tmp_path / "t.db"), side_ask=asked, relevant_top_k=0)
    s.apply(Request.from_prompt("next", messages=conversation(30)))
    assert asked.calls[0].prompt.startswith("Summarize this part")
    s.apply(Request.from_prompt("next", messages=conversation(30)))
    assert len(asked.calls) == 1  # same history: reused
    s.apply(Request.from_prompt("next", messages=conversation(34)))  # the cut moved one step
    assert len(asked.calls) == 2
    rolled = asked.calls[1].prompt
    assert rolled.startswith("Here is the summary of the conversation so far")
    assert "Topic: planning" in rolled
    assert "Question 2:" not in rolled  # already summarized: not sent again


def test_a_session_keeps_its_level_across_query_types() -> None:
    s = stage(side_ask=Recorder(), relevant_top_k=0)
    history = conversation(30)
    first = s.plan(Request.from_prompt("x", messages=history, query_type="template", session="a"))
    assert first.level == "aggressive"
    code = s.plan(Request.from_prompt("y", messages=history, query_type="code", session="a"))
    assert code.level == "aggressive" and "kept for the prompt cache" in code.reason
    other = s.plan(Request.from_prompt("y", messages=history, query_type="code", session="b"))
    assert other.level == "light"
    high = s.plan(Request.from_prompt("y", messages=history, priority="high", session="a"))
    assert high.level == "light"  # an explicit priority rule still wins
