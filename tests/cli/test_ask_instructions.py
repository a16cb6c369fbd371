"""What `ask` does with the caller's instructions under budget pressure and the A/B holdout:
warn answers now, block refuses without queueing, defer queues and says when; the holdout
never overrides --defer, --model or the cache flags and says so when it acts; --no-defer."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli.main import app
from tars_opt.defer.queue import Queue
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
    assert "via offline" in result.stdout
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
        defer={"defer_low_priority": True},
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
    assert "budget: 105% of $1.00 used this month and budget.policy is defer" in out
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
    config = write_config(tmp_path / "c.yaml", defer={"defer_low_priority": True})
    assert ask(runner, config, "--priority", "low", PROMPT).stdout.startswith("queued as t_")
    result = ask(runner, config, "--priority", "low", "--no-defer", "--explain", PROMPT)
    assert PROMPT in result.stdout and "--no-defer: never deferred" in result.stdout
    assert queued(config) == 1


# ---- the A/B holdout ----------------------------------------------------------------------
@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every eligible request is held out: whether one is, is then not left to a hash.
    # (The environment wins over the file, and the test setup sets it to 0.)
    monkeypatch.setenv("TARS_OPT_HOLDOUT", "1.0")


def held_config(tmp_path: Path, **sections: object) -> Path:
    return write_config(tmp_path / "c.yaml", **sections)


def test_a_held_out_call_says_so_in_the_answer_line(tmp_path: Path, runner, held) -> None:
    config = held_config(tmp_path)
    out = ask(runner, config, PROMPT).stdout
    assert "A/B holdout: sent unoptimized | claude-sonnet-5-5 via offline" in out
    data = json.loads(ask(runner, config, "--json", PROMPT).stdout)
    assert data["holdout"] is True and data["model"] == "claude-sonnet-5-5"
    row = open_app(config).db.execute("SELECT holdout FROM calls WHERE request_id = ?",
                                      [data["request_id"]]).fetchone()  # fmt: skip
    assert row == (1,)


def test_defer_is_never_answered_by_the_holdout(tmp_path: Path, runner, held) -> None:
    config = held_config(tmp_path)
    for i in range(3):
        data = json.loads(ask(runner, config, "--defer", "--json", f"{PROMPT} #{i}").stdout)
        assert data["source"] == "queued" and data["ticket"] and data["holdout"] is False
        excluded = [d for d in data["decisions"] if d["stage"] == "experiment"]
        assert excluded[0]["action"] == "excluded" and "--defer" in excluded[0]["reason"]
    assert queued(config) == 3
    assert open_app(config).db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == 0


def test_work_the_config_defers_is_not_held_out_either(tmp_path: Path, runner, held) -> None:
    config = held_config(tmp_path, defer={"defer_low_priority": True})
    out = ask(runner, config, "--priority", "low", PROMPT).stdout
    assert out.startswith("queued as t_") and queued(config) == 1


@pytest.mark.parametrize(
    ("flags", "model"),
    [
        (["--model", "claude-haiku-5-5"], "claude-haiku-5-5"),
        (["--no-cache"], None),
        (["--refresh"], None),
    ],
)
def test_explicit_instructions_keep_a_call_out_of_the_holdout(
    tmp_path: Path, runner, held, flags: list[str], model: str | None
) -> None:
    config = held_config(tmp_path)
    data = json.loads(ask(runner, config, *flags, "--json", PROMPT).stdout)
    assert data["holdout"] is False and data["source"] == "api"
    if model is not None:
        assert data["model"] == model
    stages = {d["stage"]: d for d in data["decisions"]}
    assert stages["experiment"]["action"] == "excluded" and flags[0] in stages[
        "experiment"]["reason"]  # fmt: skip
    assert "cache" in stages or flags[0] != "--refresh"  # the cache stage ran
    out = ask(runner, config, *flags, PROMPT).stdout
    assert "A/B holdout" not in out


def test_the_holdout_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TARS_OPT_HOLDOUT")
    assert open_app().config.experiment.holdout == 0


# ---- nothing past the budget, no fallback and no queued answer goes unsaid -----------------
def over_line(result) -> str:
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("warning: tars-opt month")]
    return line


@pytest.mark.parametrize(
    ("flag", "why"),
    [
        ("--no-defer", "(--no-defer: never deferred)"),
        ("--urgent", "(urgent: never deferred)"),
        ("--stream", "(streamed: the caller is waiting for the text)"),
    ],
)
def test_defer_over_budget_says_so_when_the_caller_has_it_answered_now(
    tmp_path: Path, runner, flag: str, why: str
) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0, "policy": "defer"})
    spent(config, 1.05)
    result = ask(runner, config, flag, PROMPT)
    assert PROMPT in result.stdout and queued(config) == 0
    assert over_line(result) == (
        "warning: tars-opt monthly budget spent: 105% of $1.00 used this month; budget.policy "
        f"is defer, but this call was answered now {why} (raise budget.monthly_usd)"
    )


def test_block_over_budget_says_so_when_urgent_goes_through(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0, "policy": "block"})
    spent(config, 1.05)
    result = ask(runner, config, "--urgent", PROMPT)
    assert PROMPT in result.stdout
    assert "budget.policy is block, but --urgent sends a call anyway" in over_line(result)
    data = json.loads(ask(runner, config, "--urgent", "--json", "And 18 times 3?").stdout)
    assert [d["action"] for d in data["decisions"] if d["stage"] == "budget"] == ["over"]


def test_a_max_wait_shorter_than_the_batch_is_answered_now_and_says_so(
    tmp_path: Path, runner
) -> None:
    config = write_config(tmp_path / "c.yaml")
    result = ask(runner, config, "--defer", "--max-wait", "10m", "-v", PROMPT)
    assert PROMPT in result.stdout and queued(config) == 0
    notice = re.compile(
        r"not deferred: the max wait 10m ends before the batch would be back "
        r"\(~\d{4}-\d\d-\d\dT\d\d:\d\dZ\); answered now at the full price "
        r"\(defer.deadline_fallback: sync\)"
    )
    said = [x for x in result.stderr.splitlines() if not x.startswith("{")]
    assert notice.fullmatch(said[0]), said
    # The log says it too (for a gateway or a script that reads no stderr).
    logged = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    assert any(notice.fullmatch(r["msg"]) and r["request_id"] for r in logged), logged


def test_queued_past_its_max_wait_says_so(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", defer={"deadline_fallback": "queue"})
    result = ask(runner, config, "--defer", "--max-wait", "10m", PROMPT)
    assert result.stdout.startswith("queued as t_") and queued(config) == 1
    assert re.fullmatch(
        r"queued past its max wait: the answer is expected ~\d{4}-\d\d-\d\dT\d\d:\d\dZ, "
        r"after the 10m asked for \(defer.deadline_fallback: queue\)",
        result.stderr.strip(),
    ), result.stderr


def test_defer_policy_says_when_the_call_itself_spent_the_budget(tmp_path: Path, runner) -> None:
    # 99.99% spent: this call is sent (under the threshold) and it is what passes 100%.
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0, "policy": "defer"})
    spent(config, 0.9999)
    result = ask(runner, config, PROMPT)
    assert PROMPT in result.stdout and queued(config) == 0
    assert over_line(result).startswith("warning: tars-opt monthly budget spent: 100% of $1.00 ")
    assert "budget.policy is defer, and this call, sent while under 100%, took it over" in (
        over_line(result)
    )
    # The next one is queued, and says when its answer comes.
    assert "answer expected by" in ask(runner, config, "And 18 times 3?").stdout


def test_defer_all_in_budget_json_follows_the_threshold(tmp_path: Path, runner) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        budget={"monthly_usd": 1.0, "policy": "defer"},
        defer={"budget_threshold": 0.8},
    )
    spent(config, 0.85)
    state = json.loads(runner.invoke(app, ["budget", "-c", str(config), "--json"]).stdout)
    assert state["defer_all"] is True and state["defer_threshold"] == 0.8
    shown = runner.invoke(app, ["budget", "-c", str(config)]).stdout
    assert "; policy: defer from 80%: deferring now" in shown
    assert ask(runner, config, PROMPT).stdout.startswith("queued as t_")  # the same rule
    assert queued(config) == 1
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 1.0, "policy": "defer"})
    state = json.loads(runner.invoke(app, ["budget", "-c", str(config), "--json"]).stdout)
    assert state["defer_all"] is False  # 85% under the default threshold of 100%
    shown = runner.invoke(app, ["budget", "-c", str(config)]).stdout
    assert "; policy: defer from 100%\n" in shown


def test_a_tiny_trial_budget_shows_its_real_amounts(tmp_path: Path, runner) -> None:
    config = write_config(tmp_path / "c.yaml", budget={"monthly_usd": 0.0001, "policy": "block"})
    spent(config, 0.0003)
    refused = ask(runner, config, PROMPT, code=3)
    line = refused.stderr.strip()
    # Money as accounting.money.usd writes it everywhere: a small amount keeps its digits.
    assert line.startswith("refused: tars-opt monthly budget reached: $0.00030 spent + $0.0000 in")
    assert "budget.monthly_usd is $0.00010 (budget.policy block)" in line
    assert "$0.00 " not in line
    urgent = ask(runner, config, "--urgent", PROMPT)
    # The alerts and the per-call warning: the urgent call's own cost is in them too.
    alert = next(x for x in urgent.stderr.splitlines() if x.startswith("tars-opt WARNING"))
    assert re.fullmatch(r"tars-opt WARNING: \d+% of the \$0\.00010 monthly budget spent "
                        r"\(\$0\.000\d+\); month-end pace \$0\.0\d+.*", alert), alert  # fmt: skip
    assert "of $0.00010 used this month" in over_line(urgent)
    assert "$0.00 " not in urgent.stderr and "$0.00)" not in urgent.stderr
