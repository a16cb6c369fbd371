"""Counts read right for one: `1 cached answer`, not `1 cached answers`."""

from __future__ import annotations

import json
import time
from pathlib import Path

from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli.main import app
from tars_opt.plural import counted
from tests.handmade import add_call


def test_counted() -> None:
    assert counted(1, "cached answer") == "1 cached answer"
    assert counted(0, "cached answer") == "0 cached answers"
    assert counted(2, "entry", "entries") == "2 entries" and counted(1, "entry", "entries") == (
        "1 entry"
    )
    assert counted(1204, "call") == "1,204 calls" and counted(1.5, "day") == "1.5 days"


def test_commands_say_one_thing_in_the_singular(runner: CliRunner) -> None:
    # A baseline of the user's, so the heartbeat judges the error rate (or says why not).
    Path("performance-config.yaml").write_text("baseline:\n  error_rate: 0.03\n")
    runner.invoke(app, ["ask", "--backend", "offline", "--json", "What is 2 + 2?"])
    stats = runner.invoke(app, ["cache", "stats", "--include-offline"]).stdout
    assert "0 of 1 answer from the cache" in stats
    forgot = runner.invoke(app, ["cache", "forget", "--match", "2 + 2"]).stdout
    assert "forgot 1 entry matching" in forgot
    costs = runner.invoke(app, ["costs"]).stdout
    assert "not counted: 1 offline-backend call this month (" in costs
    add_call(open_app().db, time.time() - 30, error="overloaded_error: busy")
    checks = json.loads(runner.invoke(app, ["heartbeat", "--json"]).stdout)["checks"]
    errors = next(c for c in checks if c["name"] == "error rate")
    assert errors["detail"] == "1 call: too few to judge"
