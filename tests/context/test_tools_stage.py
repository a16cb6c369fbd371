"""Stage tools: top-k by relevance, tools in use never dropped, tool search mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.tool_catalog import catalog, prompts
from tars_opt import Request, open_app
from tars_opt.backends.offline import OfflineBackend
from tars_opt.config.schema import ToolsConfig
from tars_opt.context.relevance import Scorer
from tars_opt.context.tools import TOOL_SEARCH, ToolStage
from tars_opt.tokens import estimate_tool


@pytest.fixture(autouse=True)
def lexical_only(home: Path) -> None:
    """Chains built from the config score by word overlap: fast and deterministic. (The
    semantic path has its own tests with a small embedder.)"""
    Path("performance-config.yaml").write_text(
        "prune: {semantic: false}\ntools: {semantic: false}\n"
    )


def stage(**cfg) -> ToolStage:
    return ToolStage(ToolsConfig(**cfg), scorer=Scorer(None))


def test_few_tools_are_all_sent() -> None:
    tools = tuple(catalog(8))
    req = Request.from_prompt("hi", tools=tools)
    out, decision = stage().apply(req)
    assert out.tools == tools and decision.action == "all"


def test_many_tools_are_cut_to_the_relevant_top_k_in_catalogue_order() -> None:
    tools = tuple(catalog(120))
    req = Request.from_prompt("Add a new ticket on Jira called 'login bug'", tools=tools)
    out, decision = stage().apply(req)
    names = [t["name"] for t in out.tools]
    assert len(names) == 10
    assert "jira_create_ticket" in names
    order = [t["name"] for t in tools]
    assert names == sorted(names, key=order.index)  # the catalogue's order is kept
    dropped = [t for t in tools if t["name"] not in names]
    assert out.removed_tokens == sum(estimate_tool(t) for t in dropped)
    assert decision.data["selected"] == names
    assert len(decision.data["dropped"]) == 110


def test_a_tool_the_conversation_uses_is_never_dropped() -> None:
    tools = tuple(catalog(120))
    history = (
        {"role": "user", "content": "what's the weather?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "spotify_delete_playlist",
                    "input": {"id": "x"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
        },
        {"role": "assistant", "content": "Done."},
    )
    req = Request.from_prompt(
        "Add a new ticket on Jira called 'login bug'", tools=tools, messages=history
    )
    out, decision = stage(max_per_request=3).apply(req)
    names = {t["name"] for t in out.tools}
    assert "spotify_delete_playlist" in names
    assert "jira_create_ticket" in names
    assert decision.data["used"] == ["spotify_delete_playlist"]


def test_a_tool_named_in_the_prompt_is_kept() -> None:
    tools = tuple(catalog(120))
    req = Request.from_prompt("use hr_create_leave_request for next week", tools=tools)
    out, decision = stage(max_per_request=2).apply(req)
    assert "hr_create_leave_request" in {t["name"] for t in out.tools}
    assert decision.data["named"] == ["hr_create_leave_request"]


def test_server_tools_are_always_sent() -> None:
    tools = (*catalog(30), {"type": "web_search_20250305", "name": "web_search"})
    out, _ = stage(max_per_request=5).apply(Request.from_prompt("find news", tools=tools))
    assert "web_search" in {t["name"] for t in out.tools}


def test_tool_search_mode_defers_the_rest() -> None:
    tools = tuple(catalog(60))
    req = Request.from_prompt("Remove the GitHub issue 51", tools=tools)
    out, decision = stage(mode="tool_search").apply(req)
    assert decision.action == "deferred"
    assert len(out.tools) == 61 and out.tools[-1] == TOOL_SEARCH
    loaded = [t for t in out.tools[:-1] if not t.get("defer_loading")]
    assert len(loaded) == 10
    assert "github_delete_issue" in {t["name"] for t in loaded}
    assert out.removed_tokens > 0


def test_lexical_recall_at_10_on_the_generated_catalogue() -> None:
    tools = catalog(150)
    pairs = prompts(tools)[::3]
    s = stage()
    hits = 0
    for text, needed in pairs:
        out, _ = s.apply(Request.from_prompt(text, tools=tuple(tools)))
        hits += needed in {t["name"] for t in out.tools}
    assert hits / len(pairs) >= 0.8


def test_the_chain_sends_only_the_selected_tools(home: Path) -> None:
    app = open_app(backend="offline")
    reply = app.optimizer(backend=OfflineBackend()).ask(
        Request.from_prompt(
            "Look through Confluence for articles about release 4.2",
            tools=tuple(catalog(100)),
        )
    )
    row = app.ledger.get(reply.request_id)
    assert row["removed_tokens"] > 0 and row["saved_pruning"] > 0
    tools_decision = [d for d in row["decisions"] if d["stage"] == "tools"][0]
    assert len(tools_decision["data"]["selected"]) == 10


def test_semantic_scores_are_used_when_an_embedder_is_there() -> None:
    from tests.context.test_prune import WordEmbedder

    s = ToolStage(ToolsConfig(), scorer=Scorer(lambda: WordEmbedder()))
    out, decision = s.apply(
        Request.from_prompt("remove the GitHub issue 51", tools=tuple(catalog(60)))
    )
    assert decision.data["scoring"] == "semantic+lexical"
    assert len(out.tools) == 10


def test_a_session_keeps_its_selection_while_it_fits() -> None:
    s = stage()
    tools = tuple(catalog(120))
    first, _ = s.apply(
        Request.from_prompt(
            "Add a new ticket on Jira called 'login bug'", tools=tools, session="s1"
        )
    )
    # A follow-up on the same subject: same tool list, same bytes (cache-friendly).
    again, decision = s.apply(
        Request.from_prompt(
            "Add a new ticket on Jira called 'release 4.2'", tools=tools, session="s1"
        )
    )
    assert again.tools == first.tools and decision.data["sticky"] is True
    # A new subject: the selection follows it.
    other, decision = s.apply(
        Request.from_prompt("What's the forecast from the weather app?", tools=tools, session="s1")
    )
    assert decision.data["sticky"] is False and other.tools != first.tools
    # Without a session nothing is remembered.
    _, none = s.apply(Request.from_prompt("Add a new ticket on Jira", tools=tools))
    assert "sticky" not in none.data


# ---- a tool list the prompt cache can hold stays whole --------------------------------

AGENT_SYSTEM = "You are the operations agent of a small company. Follow the runbook. " * 150
AGENT_TOOLS = tuple(catalog(16))


def cache_aware(**cfg) -> ToolStage:
    from tars_opt.accounting.pricing import PriceBook
    from tars_opt.config.loader import load_config
    from tars_opt.config.schema import PromptCacheConfig

    caching = PromptCacheConfig(**cfg)
    return ToolStage(
        ToolsConfig(),
        scorer=Scorer(None),
        caching=caching,
        prices=PriceBook(load_config().config.pricing),
        model_of=lambda r: r.model or "claude-haiku-5-5",
    )


def agent_request(**extra) -> Request:
    return Request.from_prompt(
        "Add a new ticket on Jira called 'login bug'",
        system=AGENT_SYSTEM,
        tools=AGENT_TOOLS,
        **extra,
    )


def test_a_cacheable_agent_tool_list_is_sent_whole() -> None:
    out, decision = cache_aware().apply(agent_request(model="claude-sonnet-5-5"))
    assert out.tools == AGENT_TOOLS and out.removed_tokens == 0
    assert decision.action == "all" and "cached prefix" in decision.reason
    compare = decision.data["cache_compare"]
    assert compare["whole_cached_usd"] * 2 < compare["selected_uncached_usd"]


@pytest.mark.parametrize(
    ("request_", "caching", "why"),
    [
        (agent_request(), {}, "haiku's 4,096-token minimum: nothing would be cached"),
        (agent_request(model="claude-sonnet-5-5"), {"enabled": False}, "prompt caching off"),
        (
            Request.from_prompt(
                "Add a new ticket on Jira",
                tools=tuple(catalog(150)),
                model="claude-sonnet-5-5",
            ),
            {},
            "150 tools read cached cost about what 10 cost uncached",
        ),
    ],
)
def test_otherwise_the_relevant_tools_are_selected(request_, caching, why) -> None:
    out, decision = cache_aware(**caching).apply(request_)
    assert decision.action == "selected", why
    assert len(out.tools) == 10 and out.removed_tokens > 0


def test_the_chain_routes_first_then_keeps_a_cached_tool_list(home: Path) -> None:
    app = open_app(backend="offline")
    opt = app.optimizer(backend=OfflineBackend())
    assert [s.name for s in opt.stages] == [
        "cache",
        "defer",
        "prune",
        "route",
        "tools",
        "prompt_cache",
    ]
    reply = opt.ask(agent_request(tier="strong"))
    tools = next(d for d in reply.decisions if d.stage == "tools")
    assert tools.action == "all" and reply.model == "claude-sonnet-5-5"


@pytest.mark.parametrize(("tier", "action"), [("cheap", "selected"), ("strong", "all")])
def test_without_routing_the_requested_tier_decides(home: Path, tier: str, action: str) -> None:
    """Routing off: the tier's model (Haiku: 4,096-token minimum; Sonnet: 1,024) decides
    whether the agent's ~2.5K-token prefix can be cached."""
    app = open_app(backend="offline", overrides={"routing.enabled": False})
    reply = app.optimizer(backend=OfflineBackend()).ask(agent_request(tier=tier))
    assert next(d for d in reply.decisions if d.stage == "tools").action == action


class SeenEmbedder:
    """WordEmbedder that remembers the length of every text it embeds."""

    def __init__(self) -> None:
        from tests.context.test_prune import WordEmbedder

        self.inner, self.lengths = WordEmbedder(), []
        self.name, self.dim = self.inner.name, self.inner.dim

    def embed(self, texts):
        self.lengths += [len(t) for t in texts]
        return self.inner.embed(texts)


def test_a_huge_prompt_is_read_at_its_head_and_tail() -> None:
    from benchmarks.texts import pasted_log
    from tars_opt.tokens import READ_MAX_CHARS, read_ends

    tools = tuple(catalog(60))
    log = pasted_log(2_000_000)  # thousands of numbers and ids, each a needle to look for
    prompt = "Use github_update_issue for the bug below.\n" + log + "\nThen open a Jira ticket."
    seen = SeenEmbedder()
    s = ToolStage(ToolsConfig(), scorer=Scorer(lambda: seen))
    out, decision = s.apply(Request.from_prompt(prompt, tools=tools))
    assert max(seen.lengths) <= READ_MAX_CHARS
    # The same choice as for the part it reads; a tool named at the start is kept.
    capped, same = s.apply(Request.from_prompt(read_ends(prompt), tools=tools))
    assert out.tools == capped.tools and decision.data["named"] == same.data["named"]
    assert "github_update_issue" in decision.data["named"]


class CountingScorer(Scorer):
    """Word-overlap scoring that counts how often it is asked."""

    def __init__(self) -> None:
        super().__init__(None)
        self.asked = 0

    def scores(self, *args, **kwargs):
        self.asked += 1
        return super().scores(*args, **kwargs)


def test_a_conversation_keeps_the_tool_list_of_its_first_call_without_rescoring() -> None:
    from dataclasses import replace

    scorer = CountingScorer()
    tools_stage = ToolStage(ToolsConfig(), scorer=scorer)
    tools = tuple(catalog(120))
    first = replace(Request.from_prompt("Add a Jira ticket", tools=tools), conversation="k:1")
    out1, _ = tools_stage.apply(first)
    later = replace(
        Request.from_prompt(
            "Now send an email about the weather",
            messages=(
                {"role": "user", "content": "Add a Jira ticket"},
                {"role": "assistant", "content": "Done."},
            ),
            tools=tools,
        ),
        conversation="k:1",
    )
    out2, decision = tools_stage.apply(later)
    assert out2.tools == out1.tools  # the start of the cached prefix is the same bytes
    assert decision.data["conversation"] == "kept" and "first call" in decision.reason
    assert scorer.asked == 1
    # Another conversation is selected for its own prompt.
    other, _ = tools_stage.apply(replace(later, conversation="k:2"))
    assert scorer.asked == 2 and other.tools != out1.tools
