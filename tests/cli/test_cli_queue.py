"""The CLI of lazy loading: ask --defer/--wait, drain, queue list/show/cancel/retry, result."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli.main import app
from tars_opt.defer.queue import Queue
from tars_opt.drain.daemon import Daemon, add_jobs

OFFLINE = ["--backend", "offline"]
REPO = Path(__file__).resolve().parents[2]


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def defer(runner: CliRunner, prompt: str = "Summarise the Peloponnesian war") -> dict:
    return json.loads(run(runner, "ask", *OFFLINE, "--defer", "--json", prompt))


def test_every_new_command_has_an_example(runner: CliRunner) -> None:
    for sub in (
        ["drain"],
        ["result"],
        ["queue", "list"],
        ["queue", "show"],
        ["queue", "cancel"],
        ["queue", "retry"],
    ):
        assert "Example:" in run(runner, *sub, "--help"), sub


def test_ask_defer_prints_the_ticket_and_when(runner: CliRunner) -> None:
    out = run(runner, "ask", *OFFLINE, "--defer", "Summarise the Peloponnesian war")
    assert out.startswith("queued as t_") and "answer expected by" in out
    assert "tars-opt result t_" in out
    data = defer(runner)
    assert data["source"] == "queued" and data["ticket"].startswith("t_")
    queued = [d for d in data["decisions"] if d["action"] == "queued"][0]
    assert queued["data"]["ticket"] == data["ticket"]


def test_drain_then_result_and_queue_views(runner: CliRunner) -> None:
    ticket = defer(runner)["ticket"]
    out = run(runner, "result", ticket)
    assert f"{ticket} is queued" in out
    report = json.loads(run(runner, "drain", *OFFLINE, "--now", "--json"))
    assert report["claimed"] == 1 and report["collected"] == {"done": 1}
    out = run(runner, "result", ticket)
    assert "Peloponnesian" in out and "via batch" in out
    view = json.loads(run(runner, "result", ticket, "--json"))
    assert view["state"] == "done" and view["result"]["source"] == "batch"
    (row,) = json.loads(run(runner, "log", "--json", "-n", "1"))
    assert row["source"] == "batch" and row["service_tier"] == "batch"
    # Half price: the batch discount saved exactly what was paid.
    assert row["saved_batching"] == pytest.approx(row["cost"]) and row["cost"] > 0
    assert view["result"]["cost"] == pytest.approx(row["cost"])
    listed = json.loads(run(runner, "queue", "list", "--json"))
    assert listed["counts"]["done"] == 1 and listed["tasks"][0]["ticket"] == ticket
    assert ticket in run(runner, "queue", "list", "--state", "done")
    assert "msgbatch_offline_" in run(runner, "queue", "show", ticket)


def test_drain_outside_the_window_says_when_it_opens(runner: CliRunner, home: Path) -> None:
    start = datetime.now(UTC) + timedelta(hours=2)
    window = f"{start:%H}:00-{start + timedelta(hours=1):%H}:00"  # never contains now
    Path("performance-config.yaml").write_text(f"defer:\n  window: '{window}'\n")
    defer(runner)
    report = json.loads(run(runner, "drain", *OFFLINE, "--json"))
    assert not report["in_window"] and report["claimed"] == 0
    assert report["opens_at"] > time.time()
    out = run(runner, "drain", *OFFLINE)
    assert f"outside the off-peak window {window} UTC: it opens at" in out
    assert Queue(open_app().db).counts()["queued"] == 1


def test_drain_wait_shows_progress_and_finishes(runner: CliRunner) -> None:
    for i in range(3):
        defer(runner, f"question {i}")
    out = run(runner, "drain", *OFFLINE, "--now", "--wait")
    assert "collected: 3 done" in out and "batches in flight: 0" in out


def test_cancel_and_retry(runner: CliRunner) -> None:
    ticket = defer(runner)["ticket"]
    assert "canceled" in run(runner, "queue", "cancel", ticket)
    assert "is canceled" in run(runner, "result", ticket, code=1)
    out = run(runner, "queue", "cancel", ticket, code=2)
    assert "only queued tasks can be canceled" in out
    assert "attempt 2" in run(runner, "queue", "retry", ticket)
    assert "only failed, expired or canceled" in run(runner, "queue", "retry", ticket, code=2)


def test_bad_input_is_one_line_and_exit_2(runner: CliRunner) -> None:
    assert "no task 'nope'" in run(runner, "result", "nope", code=2)
    assert "not a duration" in run(runner, "ask", *OFFLINE, "--max-wait", "soon", "x", code=2)
    assert "--state 'lost'" in run(runner, "queue", "list", "--state", "lost", code=2)


def test_ask_wait_blocks_until_a_drain_answers(runner: CliRunner, home: Path) -> None:
    # A drain in another process answers while `ask --wait` polls.
    Path("performance-config.yaml").write_text("defer:\n  poll_seconds: 0.2\n")
    code = (
        f"import sys, time; sys.path.insert(0, {str(REPO)!r})\n"
        "from tars_opt import open_app\nfrom tars_opt.drain.runner import Drainer\n"
        "app = open_app(backend='offline')\n"
        "from tars_opt.defer.queue import Queue\n"
        "deadline = time.time() + 20\n"
        "while not Queue(app.db).counts()['queued'] and time.time() < deadline: time.sleep(0.05)\n"
        "Drainer(app.config, app.db).run(now=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    try:
        out = run(runner, "ask", *OFFLINE, "--defer", "--wait", "--json", "Tell me about Crete")
    finally:
        proc.wait(30)
    view = json.loads(out[out.index("{") :])
    assert view["state"] == "done" and "Crete" in view["result"]["answer"]
    # While it waits it says when the answer is expected.
    assert re.search(r"queued as t_\w+; answer expected by \d{4}-\d\d-\d\dT\d\d:\d\dZ "
                     r"\(in \w+\); waiting for it", out)  # fmt: skip


def test_daemon_registers_its_jobs(home: Path) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    overrides = {"defer.window": "22:30-04:15", "defer.drain_every_minutes": 20}
    cfg = open_app(overrides=overrides).config
    sched = BackgroundScheduler(timezone="UTC")
    add_jobs(sched, cfg.defer, lambda: None, lambda: None)
    jobs = {j.id: j for j in sched.get_jobs()}
    assert set(jobs) == {"drain", "collect"}
    fields = {f.name: str(f) for f in jobs["drain"].trigger.fields}
    assert fields["hour"] == "0,1,2,3,4,22,23" and fields["minute"] == "*/20"
    assert jobs["collect"].trigger.interval.total_seconds() == 600
    daemon = Daemon(cfg, cfg.resolved_database())
    assert {j.id for j in daemon.scheduler.get_jobs()} == {"drain", "collect"}
    assert daemon.collect() is not None and daemon.runs == 1  # a run works from any thread


def test_daemon_stops_cleanly_on_sigterm(home: Path) -> None:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tars_opt", "drain", "--daemon", *OFFLINE],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    log = home / "logs" / "tars-opt.log"
    deadline = time.time() + 30
    while time.time() < deadline and not (log.exists() and '"drain run"' in log.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read().decode()
    messages = [json.loads(line)["msg"] for line in log.read_text().splitlines()]
    assert "daemon started" in messages and messages[-1] == "daemon stopped"
    assert "drain run" in messages  # the collector ran at start


def test_drain_now_outside_the_window_says_it_submits_anyway(tmp_path: Path, runner) -> None:
    now = datetime.now(UTC)
    start, end = now + timedelta(hours=2), now + timedelta(hours=3)
    window = f"{start:%H:%M}-{end:%H:%M}"
    config = tmp_path / "c.yaml"
    config.write_text(f'backend: offline\ndefer:\n  window: "{window}"\n')
    assert run(runner, "ask", "-c", str(config), "--defer", "x").startswith("queued as t_")
    plain = runner.invoke(app, ["drain", "-c", str(config)])
    assert plain.exit_code == 0 and "use --now to submit anyway" in plain.stdout
    forced = runner.invoke(app, ["drain", "-c", str(config), "--now"])
    assert forced.exit_code == 0, forced.output
    assert "use --now" not in forced.stdout
    said = f"outside the off-peak window {window} UTC: submitting anyway (--now)"
    assert said in forced.stdout
    assert "claimed 1 task:" in forced.stdout
    again = runner.invoke(app, ["drain", "-c", str(config), "--now", "--json"])
    report = json.loads(again.stdout)
    assert report["now"] is True and report["in_window"] is False
    empty = runner.invoke(app, ["drain", "-c", str(config), "--now"])
    assert "submitting anyway (--now); nothing was queued" in empty.stdout


def test_queued_hint_points_at_result_wait_which_waits(
    runner: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run(runner, "ask", *OFFLINE, "--defer", "Summarise the Peloponnesian war")
    ticket = out.split()[2]
    assert f"tars-opt result {ticket} --wait" in out and "ask --wait" not in out

    # The drain runs while `result --wait` waits: its first pause drains, no wall clock.
    waited: list[float] = []
    real_wait = Queue.wait

    def drain_while_waiting(seconds: float) -> None:
        if not waited:
            from tars_opt.drain.runner import Drainer

            app_ = open_app(backend="offline")
            Drainer(app_.config, app_.db).run(now=True)
        waited.append(seconds)

    def wait(self: Queue, ticket: str, **kwargs: object) -> dict:
        return real_wait(self, ticket, **{**kwargs, "sleep": drain_while_waiting})

    monkeypatch.setattr(Queue, "wait", wait)
    result = runner.invoke(app, ["result", ticket, "--wait", "--json"])
    assert waited, "result --wait returned without waiting"
    assert result.exit_code == 0, result.output
    assert f"queued as {ticket}; answer expected by " in result.stderr
    view = json.loads(result.stdout)
    assert view["state"] == "done" and "Peloponnesian" in view["result"]["answer"]
    # Done already: --wait returns at once with the answer and the config it read.
    again = run(runner, "result", ticket, "--wait")
    assert "Peloponnesian" in again and again.splitlines()[-1] == "config: shipped defaults"
