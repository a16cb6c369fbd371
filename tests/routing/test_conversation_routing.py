"""Routing in conversations: the model is chosen once and kept unless a switch pays for
the prompt-cache rewrite it causes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tars_opt import Request, open_app
from tars_opt.routing import RouteScore
from tars_opt.routing.stage import RouteStage
from tests.routing.test_route import write_config


class Scripted:
    """A router whose score is looked up by the prompt."""

    name = "heuristic"  # read the heuristic's thresholds from the config

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores
        self.calls = 0

    def route_score(self, request: Request) -> RouteScore:
        self.calls += 1
        return RouteScore(self.scores[request.prompt], "scripted", "scripted score")


def _stage(tmp_path: Path, cheap: str, scores: dict[str, float]) -> RouteStage:
    path = write_config(
        tmp_path,
        f"models: {{tiers: {{cheap: {cheap}, strong: claude-sonnet-5-5}}}}\n"
        "routing: {tool_conversations: true, heuristic: {thresholds: {strong: 50}}}\n",
    )
    return RouteStage(open_app(path).config, router=Scripted(scores))


HISTORY = tuple(
    m
    for i in range(20)
    for m in (
        {"role": "user", "content": f"question {i} " + "word " * 200},
        {"role": "assistant", "content": f"answer {i} " + "word " * 200},
    )
)


def test_a_switch_down_happens_only_when_it_pays_for_the_rewrite(tmp_path: Path) -> None:
    for cheap, moves in (("claude-haiku-5-5", True), ("claude-haiku-4-5", False)):
        stage = _stage(tmp_path, cheap, {"hard": 90.0, "easy": 10.0})
        first = Request.from_prompt("hard", conversation="k:1")
        routed, decision = stage.apply(first)
        assert routed.tier == "strong"
        later = replace(Request.from_prompt("easy", messages=HISTORY), conversation="k:1")
        routed, decision = stage.apply(later)
        # haiku-5-5 writes (0.125/MTok) for less than sonnet reads (0.20): moving pays.
        # haiku-4-5 writes at 1.25/MTok: the cached sonnet prefix is cheaper, kept.
        assert (routed.tier == "cheap") == moves, decision.reason
        assert decision.data["conversation"] == ("moved down" if moves else "kept")
        assert decision.data["switch_usd"] > 0 and decision.data["stay_usd"] > 0


def test_tool_results_keep_the_model_without_scoring(tmp_path: Path) -> None:
    stage = _stage(tmp_path, "claude-haiku-5-5", {"easy": 10.0})
    routed, _ = stage.apply(Request.from_prompt("easy", conversation="k:2"))
    assert routed.tier == "cheap"
    tool_turn = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}],
    }
    use = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
    }
    request = Request.from_body(
        {"messages": [{"role": "user", "content": "easy"}, use, tool_turn], "max_tokens": 10},
        conversation="k:2",
    )
    routed, decision = stage.apply(request)
    assert routed.tier == "cheap" and decision.data["conversation"] == "kept"
    assert stage.router.calls == 1  # scored once, at the conversation's first call


def test_tool_conversations_are_not_routed_by_default(home: Path) -> None:
    stage = RouteStage(open_app(backend="offline").config)
    tool = {"name": "get_time", "description": "now", "input_schema": {"type": "object"}}
    body = {"model": "claude-sonnet-5-5", "max_tokens": 10, "tools": [tool],
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    routed, decision = stage.apply(Request.from_body(body))
    assert routed.model == "claude-sonnet-5-5" and "tool_conversations" in decision.reason
