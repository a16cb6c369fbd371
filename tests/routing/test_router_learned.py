"""The learned router, calibration arithmetic, labelled data and the `router` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tars_opt import Request, open_app
from tars_opt.cli.main import app
from tars_opt.errors import InputError
from tars_opt.routing.calibration import curve, oracle_scores, pick_threshold, summary, table
from tars_opt.routing.datasets import bucket, in_split, load_jsonl
from tars_opt.routing.learned import SHIPPED, load_learned

HARD = [
    "Prove that the sum of the first {n} odd numbers is a perfect square, step by step.",
    "A train leaves at {n} km/h and another at {m} km/h; when do they meet if 300 km apart?",
    "Derive the closed form of the recurrence T(n) = 2T(n/2) + {n}n and explain why.",
    "Solve for x: {n}x^2 - {m}x + 3 = 0 and show each step of the calculation.",
]
EASY = [
    "Say hello to {name} in a friendly way.",
    "What colour is a {thing}?",
    "Give me a synonym for happy, for a card to {name}.",
    "Write a one-line greeting for {name}'s birthday.",
]
NAMES = ["Ana", "Bo", "Cy", "Dee", "Eli", "Fay"]
THINGS = ["banana", "tomato", "sky", "crow", "lime", "plum"]


def labelled_file(tmp_path: Path) -> Path:
    """48 prompts: hard ones needed the strong tier, easy ones did not."""
    lines = []
    for i, (name, thing) in enumerate(zip(NAMES, THINGS, strict=True)):
        for template in HARD:
            prompt = template.format(n=i + 3, m=i + 7)
            lines.append({"prompt": prompt, "correct": {"cheap": False, "strong": True}})
        for template in EASY:
            lines.append({"prompt": template.format(name=name, thing=thing), "label": "cheap"})
    path = tmp_path / "labelled.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


# --- calibration arithmetic ----------------------------------------------------------------


def test_ties_make_a_random_router_and_the_oracle_is_the_limit() -> None:
    rng = np.random.default_rng(0)
    weak = rng.integers(0, 2, 200).astype(float)
    strong = np.maximum(weak, rng.integers(0, 2, 200))
    assert summary(np.zeros(200), weak, strong)["apgr"] == pytest.approx(0.5)
    oracle = curve(oracle_scores(weak, strong), weak, strong)
    needed = (strong > weak).mean()  # the oracle recovers the gap linearly up to this share
    assert oracle.apgr() == pytest.approx(1 - needed / 2) and oracle.cpt(1.0) == needed
    worst = curve(-oracle_scores(weak, strong), weak, strong)
    assert worst.apgr() == pytest.approx(needed / 2) and worst.cpt(0.5) > 0.8


def test_table_thresholds_give_their_shares_and_pick_a_row() -> None:
    scores = np.arange(100, dtype=float)
    weak, strong = np.zeros(100), (scores >= 50).astype(float)
    rows = table(scores, weak, strong)
    assert rows[0]["strong_share"] == 0 and rows[-1]["strong_share"] == 1
    half = next(r for r in rows if r["strong_share"] == 0.5)
    assert half["threshold"] == 50 and half["pgr"] == 1.0
    assert pick_threshold(rows, strong_share=0.48)["threshold"] == 50
    assert pick_threshold(rows, quality_target=0.9)["strong_share"] == 0.45
    assert pick_threshold(rows, quality_target=1.0)["strong_share"] == 0.5


# --- labelled data and the split rule --------------------------------------------------------


def test_split_rule_matches_the_data_readme() -> None:
    import hashlib

    key = "mmlu:What is 2+2?"
    assert bucket(key) == int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10
    assert in_split(key, "calibration") == (bucket(key) <= 5)
    assert in_split(key, "evaluation") != in_split(key, "calibration")


def test_labelled_jsonl_shapes_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"prompt": "a", "label": "strong"}\n\n{"prompt": "b", "quality": {"weak": 6, '
        '"strong": 8}}\n{"prompt": "c", "correct": {"cheap": true, "strong": false}}\n'
    )
    data = load_jsonl(path, "cheap", "strong")
    assert data.weak.tolist() == [0, 6, 1] and data.strong.tolist() == [1, 8, 0]
    for bad, words in (
        ('{"prompt": "a"}\n{"prompt": "b", "label": "cheap"}', 'needs "label"'),
        ('{"prompt": "a", "label": "opus"}\n', "must be 'cheap' or 'strong'"),
        ("not json\n", "line 1 is not valid JSON"),
        ('{"prompt": "a", "label": "cheap"}\n', "at least 2"),
    ):
        path.write_text(bad)
        with pytest.raises(InputError, match=words):
            load_jsonl(path, "cheap", "strong")


# --- the learned router ----------------------------------------------------------------------


def test_the_shipped_router_loads_offline_with_its_note() -> None:
    router = load_learned()
    assert router.note["made_by"] == "scripts/build_router.py"
    assert "calibration split" in router.note["data"] and router.note["made"]
    assert len(router.table) == 21 and router.note["calibration"]["apgr"] > 0.6
    maths = router.route_score(
        Request.from_prompt(
            "Natalia sold clips to 48 of her friends in April, and then she sold "
            "half as many clips in May. How many clips did Natalia sell altogether?"
        )
    )
    trivia = router.route_score(
        Request.from_prompt("Which colour do you get mixing blue and yellow?")
    )
    assert maths.score > trivia.score
    assert maths.router == "learned" and "predicted_gain" in maths.details
    # It reads MiniLM's layer 2, chosen on the held-out calibration prompts.
    assert router.layer == 2 and router.embedder.name.endswith("@layer2")
    assert router.note["layer_search"]["chosen"] == 2
    assert "after layer 2 of 6" in router.note["features"][0]
    assert "fallback" not in maths.details  # a GSM8K-like prompt: the ridge decides
    # Weights, 64 centroids and held-out factor values: numbers only, never prompt text.
    assert SHIPPED.stat().st_size < 160_000
    with np.load(SHIPPED) as arrays:
        assert all(arrays[k].dtype.kind in "fiu" for k in arrays.files)
        assert arrays["centroids"].shape == (64, 384)


def test_unfamiliar_prompts_get_the_heuristic_on_the_same_scale() -> None:
    """Far from the training data (MMLU/GSM8K), the ridge's guess is noise: the heuristic
    decides, as a percentile of its scores on the held-out prompts."""
    router = load_learned()
    ask = (
        "Design a distributed rate limiter for a multi-region API gateway and discuss "
        "the trade-offs."
    )
    design = router.route_score(Request.from_prompt(ask))
    hello = router.route_score(Request.from_prompt("hi"))
    for scored in (design, hello):
        assert scored.details["fallback"] == "heuristic"
        assert scored.details["familiarity"] < router.familiar_min
        assert "so the heuristic decides" in scored.explain
    assert design.score > 90 > 10 > hello.score
    # Same mapping in bulk (benchmarks score embedded prompts this way).
    prompts = ["hi", ask]
    bulk = router.score_embedded(router.embedder.embed(prompts), prompts)
    np.testing.assert_allclose(bulk, [hello.score, design.score], atol=0.01)
    # An old router file without centroids treats every prompt as familiar.
    router.centroids = None
    assert "fallback" not in router.route_score(Request.from_prompt("hi")).details


def test_learned_router_in_the_chain_and_ledger(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("backend: offline\nrouting:\n  router: learned\n")
    opened = open_app(path)
    reply = opened.optimizer().ask(Request.from_prompt("What is the capital of France?"))
    route = next(d for d in reply.decisions if d.stage == "route")
    assert route.data["router"] == "learned" and "percentile" in route.reason
    assert opened.ledger.get(reply.request_id)["router"] == "learned"


def test_learned_router_falls_back_to_the_heuristic_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        f"backend: offline\nrouting:\n  router: learned\n  learned:\n"
        f"    path: {tmp_path / 'none.npz'}\n"
    )
    reply = open_app(path).optimizer().ask(Request.from_prompt("hi"))
    route = next(d for d in reply.decisions if d.stage == "route")
    assert route.data["router"] == "heuristic"
    assert "learned router unavailable" in route.reason and "router train" in route.reason


# --- the CLI ---------------------------------------------------------------------------------


def test_router_train_reads_the_layer_it_is_given(runner: CliRunner, tmp_path: Path) -> None:
    data = labelled_file(tmp_path)
    out = tmp_path / "full.npz"
    args = ["router", "train", "--data", str(data), "--out", str(out), "--layer", "6"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    router = load_learned(out)
    assert router.layer == 6 and router.embedder.name == "all-MiniLM-L6-v2-onnx-int8"
    assert "after layer 6 of 6" in router.note["features"][0]
    # A router file from before layers were recorded read the sentence embedding.
    with np.load(out) as saved:
        arrays = {k: saved[k] for k in saved.files if k != "layer"}
    np.savez(out, **arrays)
    assert load_learned(out).layer == 6
    bad = runner.invoke(app, [*args[:-1], "7"])
    assert bad.exit_code == 2 and "--layer" in bad.output


def test_router_train_then_route_and_calibrate_with_it(runner: CliRunner, tmp_path: Path) -> None:
    data = labelled_file(tmp_path)
    out = tmp_path / "mine.npz"
    result = runner.invoke(app, ["router", "train", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "APGR" in result.output and out.is_file() and out.with_suffix(".json").is_file()
    note = json.loads(out.with_suffix(".json").read_text())
    assert note["rows"] == 48 and note["made_by"] == "tars-opt router train"
    assert load_learned(out).layer == 2  # the shipped router's layer by default
    config = tmp_path / "c.yaml"
    config.write_text(
        f"backend: offline\nrouting:\n  router: learned\n  learned:\n    path: {out}\n"
    )
    opened = open_app(config)

    def models(prompts: list[str]) -> list[str]:
        return [opened.optimizer().ask(Request.from_prompt(p)).model for p in prompts]

    # 48 training prompts make single decisions noisy: judge the new prompts as groups.
    hard = models([t.format(n=40, m=2) for t in HARD])
    easy = models([t.format(name="Gus", thing="cherry") for t in EASY])
    assert hard == ["claude-sonnet-5-5"] * 4
    assert easy.count("claude-haiku-5-5") >= 2
    shown = runner.invoke(app, ["router", "calibrate", "-c", str(config), "--data", str(data)])
    assert shown.exit_code == 0, shown.output
    assert "learned router calibration" in shown.output and "strong share" in shown.output


def test_calibrate_save_feeds_strong_share(runner: CliRunner, tmp_path: Path) -> None:
    data = labelled_file(tmp_path)
    result = runner.invoke(
        app,
        ["router", "calibrate", "--router", "heuristic", "--data", str(data), "--save", "--json"],
    )
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    assert measured["saved"] and len(measured["table"]) == 21 and measured["n"] == 48
    config = tmp_path / "c.yaml"
    config.write_text("backend: offline\nrouting:\n  router: heuristic\n  strong_share: 0.5\n")
    opened = open_app(config)
    reply = opened.optimizer().ask(Request.from_prompt("hi"))
    route = next(d for d in reply.decisions if d.stage == "route")
    expected = pick_threshold(measured["table"], strong_share=0.5)["threshold"]
    assert route.data["threshold"] == expected and "router-calibration.json" in route.reason


def test_calibrate_shows_the_shipped_table_without_data(runner: CliRunner) -> None:
    result = runner.invoke(app, ["router", "calibrate"])  # the default router: learned
    assert result.exit_code == 0, result.output
    assert "learned router calibration (the router file)" in result.output
    assert "APGR 0.72" in result.output and "100%" in result.output
    result = runner.invoke(app, ["router", "calibrate", "--router", "heuristic"])
    assert result.exit_code == 0, result.output
    assert "router_heuristic_calibration.json" in result.output and "100%" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["train", "--data", "missing.jsonl"], "does not exist"),
        (["calibrate", "--router", "magic"], "not one of heuristic, learned"),
        (["calibrate", "--save"], "--save needs --data"),
    ],
)
def test_router_command_errors_are_one_line(runner: CliRunner, args: list[str], words: str) -> None:
    result = runner.invoke(app, ["router", *args])
    assert result.exit_code == 2
    assert words in result.output and len(result.output.strip().splitlines()) == 1


def test_train_refuses_too_little_data(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "tiny.jsonl"
    path.write_text('{"prompt": "a", "label": "cheap"}\n{"prompt": "b", "label": "strong"}\n')
    result = runner.invoke(app, ["router", "train", "--data", str(path)])
    assert result.exit_code == 2 and "at least ~20" in result.output


def test_router_commands_have_examples(runner: CliRunner) -> None:
    for sub in ("train", "calibrate"):
        assert "Example:" in runner.invoke(app, ["router", sub, "--help"]).output


def test_strong_share_with_the_learned_router_uses_its_shipped_table(tmp_path: Path) -> None:
    from tars_opt.routing.stage import RouteStage

    path = tmp_path / "c.yaml"
    path.write_text("backend: offline\nrouting:\n  router: learned\n  strong_share: 0.3\n")
    stage = RouteStage(open_app(path).config)
    row = pick_threshold(load_learned(embed=False).table, strong_share=0.3)
    assert stage.thresholds() == {"strong": row["threshold"]}
    _, decision = stage.apply(Request.from_prompt("What is the capital of France?"))
    assert "strong_share 0.3" in decision.reason and "the router file" in decision.reason
