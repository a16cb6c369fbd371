"""The offline backend's placeholder calls are marked offline everywhere and stay out of
spend, budget and savings figures unless asked for (or the run itself is offline)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt import Request, open_app
from tars_opt.accounting.budget import Budget
from tars_opt.cli.main import app
from tests.handmade import add_call

OFFLINE = ["--backend", "offline"]


def invoke(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_ask_offline_says_via_offline_and_marks_its_rows(runner: CliRunner) -> None:
    out = invoke(runner, "ask", *OFFLINE, "What is the capital of France?")
    assert " via offline | " in out.splitlines()[-1] and "via api" not in out
    hit = json.loads(invoke(runner, "ask", *OFFLINE, "--json", "What is the capital of France?"))
    assert hit["source"] == "cache" and hit["backend"] == "offline"
    rows = json.loads(invoke(runner, "log", "--json"))
    assert [r["backend"] for r in rows] == ["offline", "offline"]
    table = invoke(runner, "log")
    assert "cache (offline)" in table and "│ offline" in table


def test_figures_leave_offline_calls_out_unless_asked(runner: CliRunner) -> None:
    db = open_app().db
    now = time.time()
    add_call(db, now - 5, cost=0.01, baseline_cost=0.03, backend="anthropic")
    add_call(db, now - 4, cost=7.0, baseline_cost=9.0, backend="offline")
    costs = json.loads(invoke(runner, "costs", "--json"))
    assert costs["periods"]["month"]["calls"] == 1
    assert costs["periods"]["month"]["cost"] == pytest.approx(0.01)
    assert [r["key"] for r in costs["by_source"]] == ["api"]
    both = json.loads(invoke(runner, "costs", "--json", "--include-offline"))
    assert both["periods"]["month"]["cost"] == pytest.approx(7.01)
    assert "not counted: 1 offline-backend call this month" in invoke(runner, "costs")
    budget = json.loads(invoke(runner, "budget", "--json"))
    assert budget["spent_usd"] == pytest.approx(0.01)
    assert "not counted: 1 offline-backend call" in invoke(runner, "budget")
    budget = json.loads(invoke(runner, "budget", "--json", "--include-offline"))
    assert budget["spent_usd"] == pytest.approx(7.01)
    metrics = json.loads(invoke(runner, "metrics", "--json", "--days", "1"))
    assert metrics["calls"] == 1 and metrics["saved"] == pytest.approx(0.02)
    metrics = json.loads(invoke(runner, "metrics", "--json", "--days", "1", "--include-offline"))
    assert metrics["calls"] == 2 and metrics["saved"] == pytest.approx(2.02)
    assert "not counted: 1 offline-backend call" in invoke(runner, "metrics", "--days", "1")


def test_an_offline_run_counts_its_own_rows(runner: CliRunner, tmp_path: Path) -> None:
    # A trial config on the offline backend (and `simulate`) sees its own figures.
    config = tmp_path / "trial.yaml"
    config.write_text("backend: offline\n")
    db = open_app().db
    add_call(db, time.time() - 4, cost=7.0, baseline_cost=9.0, backend="offline")
    costs = json.loads(invoke(runner, "costs", "--json", "--config", str(config)))
    assert costs["periods"]["month"]["cost"] == pytest.approx(7.0)
    config.write_text("backend: offline\nledger:\n  include_offline: false\n")
    costs = json.loads(invoke(runner, "costs", "--json", "--config", str(config)))
    assert costs["periods"]["month"]["cost"] == 0


def test_a_real_budget_ignores_offline_spend_and_reservations(
    runner: CliRunner, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("budget:\n  monthly_usd: 1\n  policy: block\ndefer:\n  enabled: false\n")
    opened = open_app(config)
    add_call(opened.db, time.time() - 4, cost=5.0, backend="offline")
    assert Budget(opened.config, opened.db).state().spent_usd == 0
    # An offline run under the same budget is refused (its own spend counts). Its calls
    # reserve like any other (concurrent offline runs must not overshoot either) and leave
    # no reservation behind once settled.
    offline = open_app(config, backend="offline")
    opt = offline.optimizer()
    prepared = opt.prepare(Request.from_prompt("hi", model="claude-haiku-5-5", urgent=True))
    opt.budget.settle(opt.budget.reserve(prepared))
    assert offline.db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0
    refused = runner.invoke(app, ["ask", *OFFLINE, "--config", str(config), "hello there"])
    assert refused.exit_code == 3 and "monthly budget reached" in refused.output
