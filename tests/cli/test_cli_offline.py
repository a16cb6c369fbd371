"""The CLI on the offline backend: ask, the ledger row it leaves, costs, log, db path."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt.accounting.pricing import PriceBook
from tars_opt.cli.main import app
from tars_opt.config.loader import load_config
from tars_opt.store import connect
from tars_opt.types import Usage
from tests.stored import database_at

OFFLINE = ["--backend", "offline"]


def ask_json(runner: CliRunner, *args: str, input: str | None = None) -> dict:
    result = runner.invoke(app, ["ask", *OFFLINE, "--json", *args], input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_help_lists_every_command_with_examples(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("ask", "costs", "log", "config", "db"):
        assert name in result.output
    for sub in (
        ["ask"],
        ["costs"],
        ["log"],
        ["db", "path"],
        ["config", "init"],
        ["config", "show"],
        ["config", "check"],
    ):
        assert "Example:" in runner.invoke(app, [*sub, "--help"]).output, sub


def test_ask_prints_answer_and_one_summary_line(runner: CliRunner) -> None:
    result = runner.invoke(app, ["ask", *OFFLINE, "What is the capital of France?"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "What is the capital of France?" in lines[0]
    summary = lines[-1]
    for part in (
        "claude-haiku-5-5",  # a simple prompt: routed to the cheap tier
        "tokens in",
        "cache write",
        "cache read",
        "out",
        "cost $",
        "baseline $",
        "saved $",
        " ms",
        "stages:",
    ):
        assert part in summary


def test_ask_json_has_the_documented_fields(runner: CliRunner) -> None:
    data = ask_json(runner, "What is the capital of France?")
    for key in (
        "answer",
        "model",
        "source",
        "request_id",
        "usage",
        "cost",
        "baseline_cost",
        "saved_by_strategy",
        "latency_ms",
        "decisions",
    ):
        assert key in data
    assert data["source"] == "api"
    assert set(data["usage"]) >= {
        "input_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "output_tokens",
        "service_tier",
    }
    assert set(data["saved_by_strategy"]) == {
        "pruning",
        "routing",
        "prompt_caching",
        "batching",
        "response_cache",
    }
    assert data["decisions"][0]["stage"] == "classify"


def test_ask_writes_a_ledger_row_whose_cost_matches_a_hand_computation(
    runner: CliRunner, home: Path
) -> None:
    data = ask_json(runner, "--model", "claude-haiku-5-5", "--max-tokens", "50", "Hello there")
    db = connect(database_at(home))
    (row,) = db.query("SELECT * FROM calls WHERE request_id = ?", [data["request_id"]])
    assert row["model"] == "claude-haiku-5-5" and row["source"] == "api"
    assert row["output_tokens"] <= 50
    assert row["tokens_estimated"] == 1  # offline counts are estimates, and say so
    hand = (row["input_tokens"] * 0.10 + row["output_tokens"] * 0.50) / 1e6
    assert row["cost"] == pytest.approx(hand, abs=1e-12)
    base = (row["input_tokens"] * 2.0 + row["output_tokens"] * 10.0) / 1e6
    assert row["baseline_cost"] == pytest.approx(base, abs=1e-12)
    assert row["saved_routing"] == pytest.approx(base - hand, abs=1e-12)
    assert data["cost"] == pytest.approx(row["cost"])


def test_prompt_from_stdin(runner: CliRunner) -> None:
    data = ask_json(runner, "-", input="Summarize the plot of Hamlet\n")
    assert "Summarize the plot of Hamlet" in data["answer"]


def test_explain_and_stream(runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["ask", *OFFLINE, "--explain", "--stream", "--type", "fact", "Who wrote Hamlet?"]
    )
    assert result.exit_code == 0, result.output
    assert "decisions" in result.output and "Who wrote Hamlet?" in result.output


def test_context_and_tools_files(runner: CliRunner, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.json"
    ctx.write_text(
        json.dumps(
            [
                {"role": "user", "content": "My name is Ada."},
                {"role": "assistant", "content": "Hello Ada."},
            ]
        )
    )
    tools = tmp_path / "tools.json"
    tools.write_text(
        json.dumps(
            [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {}},
                }
            ]
        )
    )
    short = ask_json(runner, "What is my name?")
    longer = ask_json(runner, "--context", str(ctx), "--tools", str(tools), "What is my name?")
    assert longer["usage"]["input_tokens"] > short["usage"]["input_tokens"]


@pytest.mark.parametrize(
    ("args", "content", "expected"),
    [
        (["--context"], "not json", "is not valid JSON"),
        (["--context"], '[{"role": "system", "content": "x"}]', "use 'user' or 'assistant'"),
        (["--context"], '[{"role": "user", "content": "x"}]', "ends with a user message"),
        (["--tools"], '[{"description": "no name"}]', "needs a 'name'"),
    ],
)
def test_bad_input_files_exit_2_with_one_line(
    runner: CliRunner, tmp_path: Path, args: list[str], content: str, expected: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = runner.invoke(app, ["ask", *OFFLINE, *args, str(bad), "hi"])
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--type", "poem", "hi"], "--type 'poem' is not one of"),
        (["--priority", "urgent", "hi"], "--priority 'urgent'"),
        (["   "], "no prompt"),
    ],
)
def test_bad_arguments_exit_2(runner: CliRunner, args: list[str], expected: str) -> None:
    result = runner.invoke(app, ["ask", *OFFLINE, *args])
    assert result.exit_code == 2
    assert expected in result.output


def test_a_model_with_no_price_is_answered_with_a_warning(runner: CliRunner) -> None:
    # A new model id must never break an agent: sent unoptimized, its cost unknown.
    result = runner.invoke(app, ["ask", *OFFLINE, "--model", "gpt-5", "hi"])
    assert result.exit_code == 0, result.output
    assert "warning: no price for model 'gpt-5'" in result.stderr


def test_missing_key_says_how_to_fix_and_exits_2(runner: CliRunner, home: Path) -> None:
    result = runner.invoke(app, ["ask", "hello"])
    assert result.exit_code == 2
    assert "ANTHROPIC_API_KEY" in result.output and "--backend offline" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_costs_and_log(runner: CliRunner) -> None:
    first = ask_json(runner, "--model", "claude-sonnet-5-5", "What is 2+2?")
    second = ask_json(runner, "--model", "claude-haiku-5-5", "Name a colour")
    # Offline placeholder calls count only when asked for.
    costs = runner.invoke(app, ["costs", "--json", "--include-offline"])
    assert costs.exit_code == 0
    summary = json.loads(costs.output)
    today = summary["periods"]["today"]
    assert today["calls"] == 2
    assert today["cost"] == pytest.approx(first["cost"] + second["cost"])
    assert summary["budget_usd"] == 200
    assert {r["key"] for r in summary["by_model"]} == {"claude-sonnet-5-5", "claude-haiku-5-5"}
    assert "budget:" in runner.invoke(app, ["costs"]).output
    real_only = json.loads(runner.invoke(app, ["costs", "--json"]).output)
    assert real_only["periods"]["today"]["calls"] == 0 and real_only["by_model"] == []
    logged = json.loads(runner.invoke(app, ["log", "--json", "-n", "1"]).output)
    assert [r["request_id"] for r in logged] == [second["request_id"]]
    table = runner.invoke(app, ["log"])
    assert first["request_id"] in table.output


@pytest.mark.sqlite_only(reason="the default database file's path and mode")
def test_db_option_and_db_path(runner: CliRunner, tmp_path: Path, home: Path) -> None:
    target = tmp_path / "elsewhere" / "ledger.db"
    target.parent.mkdir()  # a --db folder must exist; only the default data dir is made
    ask_json(runner, "--db", str(target), "hi there")
    assert target.exists()
    assert runner.invoke(app, ["db", "path", "--db", str(target)]).stdout.strip() == str(target)
    assert runner.invoke(app, ["db", "path"]).stdout.strip() == str(home / "tars-opt.db")
    # The data dir and the database are the user's only.
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    ask_json(runner, "hi there")
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "tars-opt.db").stat().st_mode) == 0o600


def test_damaged_or_foreign_database_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    result = runner.invoke(app, ["ask", *OFFLINE, "--db", str(junk), "hi"])
    assert result.exit_code == 2 and "damaged or not an SQLite database" in result.output
    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE other (x)")
    con.commit()
    con.close()
    result = runner.invoke(app, ["log", "--db", str(foreign)])
    assert result.exit_code == 2 and "another program" in result.output
    assert junk.read_bytes() == b"this is not sqlite" * 100  # nothing damaged


def test_library_use_without_the_cli(home: Path) -> None:
    from tars_opt import Request, open_app

    opened = open_app(backend="offline")
    reply = opened.optimizer().ask(Request.from_prompt("Hi", model="claude-haiku-5-5"))
    assert reply.source == "api" and reply.cost > 0
    assert opened.ledger.get(reply.request_id)["cost"] == pytest.approx(reply.cost)
    book = PriceBook(load_config().config.pricing)
    assert book.cost(reply.usage, "claude-haiku-5-5") == pytest.approx(reply.cost)
    assert isinstance(reply.usage, Usage)
