"""Routing: the heuristic score's factors, thresholds and overrides from the config, the
decision trace in the ledger, and escalation to the next tier on each trigger."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.texts import pasted_log
from tars_opt import Request, open_app
from tars_opt.backends.offline import OfflineBackend
from tars_opt.cli.main import app
from tars_opt.config.loader import load_config
from tars_opt.config.schema import EscalationConfig, RoutingConfig
from tars_opt.errors import ConfigError
from tars_opt.routing import tables as store
from tars_opt.routing.heuristic import HeuristicRouter
from tars_opt.routing.stage import RouteStage
from tars_opt.store import connect
from tars_opt.types import BackendResult

OFFLINE = ["--backend", "offline"]


def heuristic(**weights: float) -> HeuristicRouter:
    cfg = load_config().config.routing.heuristic
    if weights:
        cfg = cfg.model_copy(update={"weights": cfg.weights.model_copy(update=weights)})
    return HeuristicRouter(cfg)


def points(prompt: str, context: int = 0) -> dict[str, float]:
    return {f.name: f.points for f in heuristic().score_text(prompt, context).factors}


def write_config(tmp_path: Path, text: str, *, router: str = "heuristic") -> Path:
    """A config file of `text`, routed by `router` with thresholds as written unless the
    text sets its own (the shipped default is the learned router with a strong share)."""
    data = yaml.safe_load(text) or {}
    routing = data.setdefault("routing", {})
    routing.setdefault("router", router)
    routing.setdefault("strong_share", None)
    path = tmp_path / "routing.yaml"
    path.write_text("backend: offline\n" + yaml.safe_dump(data))
    return path


# --- the score, factor by factor -----------------------------------------------------------


def test_words_factor_grows_with_length_and_saturates() -> None:
    short, longer = points("tell me about otters"), points(" ".join(["otters"] * 100))
    huge = points(" ".join(["otters"] * 5000))
    assert 0 < short["words"] < longer["words"] < huge["words"] == pytest.approx(15.0)


def test_questions_factor_counts_question_marks() -> None:
    assert points("Paris")["questions"] == 0
    assert points("Paris?")["questions"] == pytest.approx(10 / 3, abs=0.01)
    assert points("a? b? c? d? e?")["questions"] == pytest.approx(10.0)


def test_technical_factor_counts_terms_code_and_numbers() -> None:
    assert points("tell me a nice story about a dog")["technical"] == 0
    some = points("my python function leaks memory")["technical"]
    assert some == pytest.approx(10.0)  # python, function: 2 of 5 -> 10 of 25 points
    assert points("fix parse_args() in my_module")["technical"] > 0  # code-shaped tokens
    assert points("add 12, 30 and 45")["technical"] == pytest.approx(5.0)  # arithmetic


def test_reasoning_factor_counts_cues() -> None:
    assert points("a poem about rain")["reasoning"] == 0
    assert points("explain why the sky is blue")["reasoning"] == pytest.approx(20.0)
    assert points("prove it, derive it, then analyze it step by step")["reasoning"] == 30.0


def test_context_factor_uses_history_and_system_prompt() -> None:
    router = heuristic()
    bare = router.score(Request.from_prompt("and then?"))
    history = ({"role": "user", "content": "word " * 4000}, {"role": "assistant", "content": "ok"})
    long = router.score(Request.from_prompt("and then?", messages=history, system="Be brief."))
    ctx = {f.name: f for f in long.factors}["context"]
    assert {f.name: f.points for f in bare.factors}["context"] == 0
    assert 5 < ctx.points <= 10 and ctx.raw > 4000


def test_output_factor_reads_length_cues() -> None:
    assert points("answer in one word: capital of Peru")["output"] == 0
    assert points("write an essay on the French revolution")["output"] == pytest.approx(10.0)
    plain = points("capital of Peru")["output"]
    assert 0 < plain < points("summarize the plot of Hamlet")["output"] < 10


def test_scores_spread_over_the_range_and_levels_name_the_bands() -> None:
    router = heuristic()
    easy = router.score_text("What is the capital of France?")
    hard = router.score_text(
        "Design a distributed cache architecture with consistent hashing. Explain the "
        "trade-offs in latency and throughput, compare it to a database-backed approach "
        "and write a detailed report. Why would replication help? How would you test it?"
    )
    assert easy.score < 25 and easy.level == "simple"
    assert hard.score > 75 and hard.level == "highly complex"
    assert hard.explain().startswith("reasoning 30.0")


def test_weights_from_the_config_scale_to_100() -> None:
    only_reasoning = heuristic(words=0, questions=0, technical=0, context=0, output=0)
    assert only_reasoning.score_text("prove it, derive it, analyze it").score == 100.0
    assert only_reasoning.score_text("a long poem about rain?").score == 0.0


# --- config --------------------------------------------------------------------------------


def test_quality_target_alone_replaces_the_default_strong_share(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("routing:\n  quality_target: 0.9\n")
    routing = load_config(path).config.routing
    assert (routing.strong_share, routing.quality_target) == (None, 0.9)
    flagged = load_config(overrides={"routing.quality_target": 0.8}).config.routing
    assert (flagged.strong_share, flagged.quality_target) == (None, 0.8)
    assert RoutingConfig(quality_target=0.9).strong_share is None
    assert load_config().config.routing.strong_share == 0.6


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("routing:\n  heuristic:\n    thresholds:\n      big: 50\n", "'big'"),
        ("routing:\n  heuristic:\n    thresholds:\n      cheap: 10\n", "cheapest tier"),
        ("routing:\n  strong_share: 0.5\n  quality_target: 0.9\n", "not both"),
        ("routing:\n  pinned_types:\n    poetry: strong\n", "not a query type"),
        ("routing:\n  tools_min_tier: opus\n", "routing.tools_min_tier"),
        ("routing:\n  escalation:\n    require_pattern: '(['\n", "not a valid regular"),
        ("routing:\n  heuristic:\n    levels: [50, 25, 75]\n", "ascending"),
        ("routing:\n  router: magic\n", "routing.router"),
    ],
)
def test_bad_routing_config_is_one_line_naming_the_key(
    tmp_path: Path, text: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, text))
    assert words in str(err.value) and "\n" not in str(err.value)


def test_thresholds_come_from_the_config(tmp_path: Path) -> None:
    prompt = "What is the capital of France?"
    low = write_config(tmp_path, "routing:\n  heuristic:\n    thresholds:\n      strong: 5\n")
    assert open_app(low).optimizer().ask(Request.from_prompt(prompt)).model == "claude-sonnet-5-5"
    default = write_config(tmp_path, "")
    assert (
        open_app(default).optimizer().ask(Request.from_prompt(prompt)).model == "claude-haiku-5-5"
    )


def test_three_tiers_take_the_strongest_threshold_reached(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "models:\n  tiers:\n    cheap: claude-haiku-5-5\n    strong: claude-sonnet-5-5\n"
        "    top: claude-opus-5-5\nrouting:\n  heuristic:\n    thresholds:\n"
        "      strong: 20\n      top: 60\n",
    )
    stage = RouteStage(open_app(path).config)
    assert stage.tier_for(10)[0] == "cheap"
    assert stage.tier_for(20) == ("strong", 20.0)
    assert stage.tier_for(99) == ("top", 60.0)


def test_routing_switched_off_uses_the_default_tier(tmp_path: Path) -> None:
    path = write_config(tmp_path, "routing:\n  enabled: false\n")
    reply = open_app(path).optimizer().ask(Request.from_prompt("hi"))
    assert reply.model == "claude-sonnet-5-5"
    assert all(d.stage != "route" for d in reply.decisions)


def test_strong_share_picks_the_threshold_from_the_saved_calibration(tmp_path: Path) -> None:
    path = write_config(tmp_path, "routing:\n  strong_share: 0.3\n")
    config = open_app(path).config
    rows = [
        {"threshold": 70.0, "strong_share": 0.1, "quality": 0.7, "pgr": 0.4},
        {"threshold": 40.0, "strong_share": 0.32, "quality": 0.8, "pgr": 0.7},
        {"threshold": 20.0, "strong_share": 0.6, "quality": 0.85, "pgr": 0.9},
    ]
    store.save_table(
        config,
        "heuristic",
        {"weights": config.routing.heuristic.weights.model_dump(), "table": rows},
    )
    stage = RouteStage(config)
    assert stage.thresholds() == {"strong": 40.0}
    _, decision = stage.apply(Request.from_prompt("What is the capital of France?"))
    assert "strong_share 0.3 -> 40.00" in decision.reason


def test_strong_share_without_a_matching_calibration_says_how_to_make_one(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path, "routing:\n  strong_share: 0.3\n  heuristic:\n    weights:\n      words: 40\n"
    )
    with pytest.raises(ConfigError, match="router calibrate"):
        RouteStage(open_app(path).config).thresholds()


# --- overrides -----------------------------------------------------------------------------


def test_pinned_keyword_and_type_and_tools_minimum(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "routing:\n  pinned_keywords:\n    Invoice: strong\n  pinned_types:\n    code: strong\n"
        "  tools_min_tier: strong\n  tool_conversations: true\n",
    )
    stage = RouteStage(open_app(path).config)
    req, dec = stage.apply(Request.from_prompt("Total of this INVOICE?"))
    assert req.tier == "strong" and "keyword 'invoice'" in dec.reason
    req, dec = stage.apply(Request.from_prompt("hi", query_type="code"))
    assert req.tier == "strong" and "query type code pinned" in dec.reason
    req, dec = stage.apply(Request.from_prompt("hi", query_type="fact"))
    assert req.tier == "cheap"
    tool = {"name": "get_time", "description": "now", "input_schema": {"type": "object"}}
    req, dec = stage.apply(Request.from_prompt("hi", query_type="fact", tools=(tool,)))
    assert req.tier == "strong" and "tools present" in dec.reason


def test_forced_model_skips_the_router(home: Path) -> None:
    reply = (
        open_app(backend="offline")
        .optimizer()
        .ask(Request.from_prompt("prove it step by step, explain why", model="claude-haiku-5-5"))
    )
    assert reply.model == "claude-haiku-5-5"
    assert [d.action for d in reply.decisions if d.stage == "route"] == ["forced"]


# --- the ledger ----------------------------------------------------------------------------


def test_decision_and_ledger_carry_score_router_threshold_tier_and_why(
    home: Path, tmp_path: Path
) -> None:
    opened = open_app(write_config(tmp_path, ""))
    reply = opened.optimizer().ask(Request.from_prompt("What is the capital of France?"))
    route = next(d for d in reply.decisions if d.stage == "route")
    assert set(route.data) >= {"router", "score", "threshold", "tier", "why", "factors"}
    row = opened.ledger.get(reply.request_id)
    assert row["router"] == "heuristic" and row["route_score"] == route.data["score"]
    assert row["tier"] == "cheap" and row["escalated_from"] is None
    stored = next(d for d in row["decisions"] if d["stage"] == "route")
    assert stored["data"]["threshold"] == 50.0


def test_a_version_1_database_gains_the_routing_columns(tmp_path: Path) -> None:
    from tars_opt.store import migrations

    path = tmp_path / "old.db"
    saved = list(migrations.MIGRATIONS)
    migrations.MIGRATIONS[:] = saved[:1]
    try:
        connect(path).close()
    finally:
        migrations.MIGRATIONS[:] = saved
    columns = {row["name"] for row in connect(path).query("PRAGMA table_info(calls)")}
    assert {"route_score", "router", "escalated_from"} <= columns


def test_ask_explain_shows_the_factors(runner: CliRunner, tmp_path: Path) -> None:
    cfg = ["--config", str(write_config(tmp_path, ""))]
    ask = ["ask", *OFFLINE, "--explain", "Explain why the sky is blue?"]
    result = runner.invoke(app, [*ask, *cfg])
    assert result.exit_code == 0, result.output
    assert "complexity score" in result.output and "reasoning" in result.output
    assert "heuristic score" in result.output
    # The shipped default: the learned router, its threshold from the strong-share knob.
    result = runner.invoke(app, ask)
    assert result.exit_code == 0, result.output
    assert "learned score" in result.output and "strong_share 0.6" in result.output


# --- escalation ----------------------------------------------------------------------------


class Scripted(OfflineBackend):
    """Offline answers, except the cheap model's text and stop reason are given."""

    def __init__(self, text: str, stop: str = "end_turn") -> None:
        super().__init__()
        self.text, self.stop = text, stop
        self.models: list[str] = []

    def send(self, params: dict[str, Any]) -> BackendResult:
        result = super().send(params)
        self.models.append(params["model"])
        if "haiku" in params["model"]:
            return replace(result, text=self.text, stop_reason=self.stop)
        return result


def ask_with(tmp_path: Path, backend: OfflineBackend, extra: str = "", **kw: Any) -> Any:
    opened = open_app(write_config(tmp_path, extra))
    reply = opened.optimizer(backend=backend).ask(Request.from_prompt("What is 2+2?", **kw))
    return opened, reply


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        # what the cache's own pattern caught
        ("I'm sorry, but I can't help with that request.", True),
        ("  Sorry - that is something I cannot do.", True),
        ("I apologise, but I'm not able to share that.", True),
        ("I am unable to comply with this request.", True),
        ("I'm unable to help with that.", True),
        ("I cannot assist with that.", True),
        # what only escalation's patterns caught
        ("As an AI, I have no opinions.", True),
        ("sorry i am unable to answer", True),
        # answers
        ("Sorry for the wait. The capital of France is Paris.", False),
        ("The answer is 4. I can't stress enough: check your units.", False),
        ("Paris.", False),
    ],
)
def test_one_refusal_detector_covers_both_old_pattern_lists(text: str, refused: bool) -> None:
    assert EscalationConfig().refused(text) is refused


@pytest.mark.parametrize(
    ("text", "stop", "extra", "why"),
    [
        ("The answer is", "max_tokens", "", "stopped at max_tokens"),
        ("   ", "end_turn", "", "empty answer"),
        ("I'm sorry, but I can't help with that.", "end_turn", "", "refused"),
        ("", "refusal", "routing:\n  escalation:\n    triggers: [refusal]\n", "refused"),
        (
            "It is five.",
            "end_turn",
            "routing:\n  escalation:\n    require_pattern: '\\d'\n",
            "failed check",
        ),
    ],
)
def test_each_trigger_escalates_once_and_both_calls_are_in_the_ledger(
    tmp_path: Path, text: str, stop: str, extra: str, why: str
) -> None:
    backend = Scripted(text, stop)
    opened, reply = ask_with(tmp_path, backend, extra)
    assert backend.models == ["claude-haiku-5-5", "claude-sonnet-5-5"]
    assert reply.model == "claude-sonnet-5-5"
    escalation = next(d for d in reply.decisions if d.stage == "escalate")
    assert why in escalation.reason
    second = opened.ledger.get(reply.request_id)
    first = opened.ledger.get(second["escalated_from"])
    assert first["model"] == "claude-haiku-5-5" and first["tier"] == "cheap"
    assert second["tier"] == "strong" and second["decisions"][-1]["stage"] == "escalate"
    # The baseline counts the work once; the re-ask's whole cost shows against routing.
    assert second["baseline_cost"] == 0
    assert second["saved_routing"] == pytest.approx(-second["cost"])
    spend = opened.ledger.spend(0, 2e9)
    assert spend["cost"] == pytest.approx(first["cost"] + second["cost"])
    assert spend["baseline_cost"] == pytest.approx(first["baseline_cost"])
    assert spend["escalations"] == 1 and spend["escalation_cost"] == pytest.approx(second["cost"])


def test_the_re_ask_is_marked_for_the_stronger_model(tmp_path: Path) -> None:
    """A ~2.5K-token system prompt: below Haiku's 4,096-token minimum, so the cheap call
    is unmarked; the re-ask on Sonnet (1,024) gets its own breakpoint."""

    class Seen(Scripted):
        def send(self, params: dict[str, Any]) -> BackendResult:
            self.params = [*getattr(self, "params", []), params]
            return super().send(params)

    backend = Seen("The answer is", "max_tokens")
    system = "You are the operations agent of a small company. Follow the runbook. " * 150
    extra = "prompt_cache:\n  ttl_interactive: 5m\n"
    opened, reply = ask_with(tmp_path, backend, extra, system=system)
    cheap, strong = backend.params
    assert "cache_control" not in str(cheap) and "cache_control" in str(strong["system"])
    marks = [d for d in reply.decisions if d.stage == "prompt_cache"]
    assert len(marks) == 1 and marks[0].action == "marked"


def test_a_good_answer_does_not_escalate(tmp_path: Path) -> None:
    backend = Scripted("4")
    _, reply = ask_with(tmp_path, backend)
    assert backend.models == ["claude-haiku-5-5"]
    assert all(d.stage != "escalate" for d in reply.decisions)


@pytest.mark.parametrize(
    ("extra", "kw"),
    [
        ("routing:\n  escalation:\n    enabled: false\n", {}),
        ("routing:\n  escalation:\n    triggers: [max_tokens]\n", {}),
        ("", {"model": "claude-haiku-5-5"}),
        ("", {"stream": True}),
    ],
)
def test_no_escalation_when_off_untriggered_forced_or_streamed(
    tmp_path: Path, extra: str, kw: dict[str, Any]
) -> None:
    backend = Scripted("")
    _, reply = ask_with(tmp_path, backend, extra, **kw)
    assert backend.models == ["claude-haiku-5-5"]


def test_the_strongest_tier_never_escalates(tmp_path: Path) -> None:
    backend = Scripted("")
    extra = "routing:\n  heuristic:\n    thresholds:\n      strong: 0\n"
    _, reply = ask_with(tmp_path, backend, extra)
    assert backend.models == ["claude-sonnet-5-5"]


def test_max_tokens_escalation_with_the_plain_offline_backend(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["ask", *OFFLINE, "--json", "--max-tokens", "30", "What is the capital of Peru?"]
    )
    assert result.exit_code == 0, result.output
    import json

    data = json.loads(result.output)
    assert data["model"] == "claude-sonnet-5-5"
    assert [d["stage"] for d in data["decisions"]][-1] == "escalate"
    rows = json.loads(runner.invoke(app, ["log", "--json"]).output)
    assert len(rows) == 2 and rows[0]["escalated_from"] == rows[1]["request_id"]
    costs = runner.invoke(app, ["costs", "--include-offline"])
    assert "escalations this month: 1" in costs.output


class Remembers:
    """A stage that records what it is shown after answering, as the response cache does."""

    name = "cache"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def apply(self, request: Request) -> tuple[Request, Any]:
        from tars_opt.types import Decision

        return request, Decision("cache", "miss", "test")

    def after(self, prepared: Any, reply: Any) -> None:
        self.seen.append(reply.model)


def test_an_escalated_answer_is_not_handed_to_the_cache(tmp_path: Path) -> None:
    opened = open_app(write_config(tmp_path, ""))
    opt = opened.optimizer(backend=Scripted("", "max_tokens"))
    cache = Remembers()
    opt.stages = [cache, RouteStage(opened.config)]
    reply = opt.ask(Request.from_prompt("What is 2+2?"))
    assert reply.model == "claude-sonnet-5-5" and cache.seen == ["claude-sonnet-5-5"]


# --- what routing reads of a very long prompt ------------------------------------------------


class Seen:
    """A router that remembers the prompts it was asked to score."""

    name = "heuristic"

    def __init__(self, inner: HeuristicRouter) -> None:
        self.inner, self.prompts = inner, []

    def route_score(self, request: Request) -> Any:
        self.prompts.append(request.prompt)
        return self.inner.route_score(request)


@pytest.mark.parametrize("router", ["heuristic", "learned"])
def test_a_huge_prompt_is_routed_on_its_head_and_tail(tmp_path: Path, router: str) -> None:
    from tars_opt.pipeline.classify import guess_query_type
    from tars_opt.tokens import READ_HEAD_CHARS, READ_MAX_CHARS, READ_TAIL_CHARS, read_ends

    prompt = pasted_log(2_000_000)
    capped = read_ends(prompt)
    assert len(capped) == READ_MAX_CHARS and read_ends(capped) is capped
    assert capped.startswith(prompt[:READ_HEAD_CHARS]) and capped.endswith(prompt[-100:])
    config = open_app(write_config(tmp_path, "", router=router)).config
    stage = RouteStage(config)
    huge_req, huge = stage.apply(Request.from_prompt(prompt))
    capped_req, short = stage.apply(Request.from_prompt(capped))
    assert (huge_req.tier, huge.data["score"]) == (capped_req.tier, short.data["score"])
    assert huge.data["prompt_chars_read"] == len(capped) and "prompt_chars_read" not in short.data
    assert f"last {READ_TAIL_CHARS:,} of {len(prompt):,} characters" in huge.reason
    assert guess_query_type(prompt) == guess_query_type(capped)
    # What the router itself is handed is bounded, whatever the prompt's length.
    seen = Seen(heuristic())
    RouteStage(config, router=seen).apply(Request.from_prompt(prompt))
    assert [len(p) for p in seen.prompts] == [len(capped)]


def test_prompts_of_normal_length_are_routed_whole() -> None:
    from tars_opt.tokens import read_ends

    prompt = pasted_log(15_000)
    assert read_ends(prompt) is prompt
    seen = Seen(heuristic())
    _, decision = RouteStage(load_config().config, router=seen).apply(Request.from_prompt(prompt))
    assert seen.prompts == [prompt] and "prompt_chars_read" not in decision.data
