"""What `ask` does with the caller's instructions under budget pressure: warn answers now,
block refuses without queueing, defer queues and says when; --no-defer."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli import app
from tars_opt.queue import Queue
from tests.handmade import add_call

PROMPT = "What is 17 times 3?"


def write_config(path: Path, **sections: object) -> Path:
    # Lazy loading stays on (the shipped default): the point is what it does under budget.
    path.write_text(yaml.safe_dump({"backend": "offline", **sections}))
    return path


def spent(config: Path, dollars: float) -> None:
    add_call(open_app(config).db, time.time() - 60, cost=dollars)


def ask(runner: CliRunner, config: Path, *args: str, code: int = 0):
    result = runner.invoke(app, ["ask", "-c", str(config), *args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def queued(config: Path) -> int:
    return Queue(open_app(config).db).counts()["queued"]


# ---- budget pressure ----------------------------------------------------------------------
def test_warn_at_85_percent_answers_now_and_warns_on_stderr(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0})
    spent(config, 0.85)
    result = ask(runner, config, PROMPT)
    assert PROMPT in result.stdout and "queued" not in result.stdout
    assert "via api" in result.stdout
    assert "WARNING: 85% of the $1.00 monthly budget spent" in result.stderr
    assert queued(config) == 0


def test_warn_over_budget_answers_and_says_so_on_every_call(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0})
    spent(config, 1.20)
    for prompt in (PROMPT, "And 18 times 3?"):
        result = ask(runner, config, prompt)
        assert prompt in result.stdout and "queued" not in result.stdout
        assert "budget.policy is warn, so this was answered anyway" in result.stderr
    assert queued(config) == 0


@pytest.mark.parametrize("extra", [[], ["--defer"], ["--priority", "low"]])
def test_block_over_budget_refuses_in_one_line_and_queues_nothing(
    tmp_path: Path, runner, extra: list[str]
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        budget={"monthly_usd": 1.0, "policy": "block"},
        lazy={"defer_low_priority": True},
    )
    spent(config, 1.05)
    result = ask(runner, config, *extra, PROMPT, code=3)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("refused: tars-opt monthly budget reached: $1.05 spent")
    assert "budget.monthly_usd is $1.00 (budget.policy block)" in line
    assert "--urgent" in line and "raise budget.monthly_usd" in line
    assert queued(config) == 0
    assert open_app(config).db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 1


def test_block_under_budget_answers_normal_requests_now(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0, "policy": "block"})
    spent(config, 0.85)  # tight, not spent: the budget queues nothing
    assert PROMPT in ask(runner, config, PROMPT).stdout
    assert queued(config) == 0


def test_defer_policy_queues_and_says_when_the_answer_comes(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0, "policy": "defer"})
    spent(config, 1.05)
    out = ask(runner, config, PROMPT).stdout
    assert out.startswith("queued as t_")
    assert "budget: 105% of $1 used this month and budget.policy is defer" in out
    assert "the 00:00-06:00 UTC window opens" in out
    assert "answer expected by" in out and "(in " in out
    assert queued(config) == 1
    data = json.loads(ask(runner, config, "--json", "And 18 times 3?").stdout)
    when = next(d for d in data["decisions"] if d["action"] == "queued")["data"]
    expected = datetime.strptime(when["expected_at"], "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
    assert timedelta(0) < expected - datetime.now(UTC) <= timedelta(hours=19, minutes=1)
    # --no-defer and --urgent are the caller's word: answered now, budget or not.
    for flag in ("--no-defer", "--urgent"):
        assert PROMPT in ask(runner, config, flag, PROMPT).stdout, flag
    assert queued(config) == 2


def test_no_defer_beats_defer_low_priority(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", lazy={"defer_low_priority": True})
    assert ask(runner, config, "--priority", "low", PROMPT).stdout.startswith("queued as t_")
    result = ask(runner, config, "--priority", "low", "--no-defer", "--explain", PROMPT)
    assert PROMPT in result.stdout and "--no-defer: never deferred" in result.stdout
    assert queued(config) == 1
