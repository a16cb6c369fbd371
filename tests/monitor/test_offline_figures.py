"""The offline backend's placeholder calls are handled alike by every figure command: left
out unless counted (Config.counts_offline, --include-offline), and every command says how
many it left out - reports, the phases' start, heartbeat, dashboard, metrics --session,
baseline capture."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli.main import app
from tars_opt.monitor.report import phase_spec
from tests.handmade import add_call, haiku, phase_week


def run(runner: CliRunner, *args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def test_phase_1_starts_at_the_first_counted_call_not_an_offline_trial(home: Path) -> None:
    opened = open_app()
    add_call(opened.db, "2026-05-01T09:00", backend="offline")  # a trial before tracking
    phase_week(opened.db, first_day="2026-05-04")
    spec = phase_spec(opened.db, opened.config, 1)
    assert (str(spec.first), str(spec.last)) == ("2026-05-04", "2026-05-10")
    assert "the first call in the ledger, 2026-05-04 02:00 UTC" in (spec.why or "")
    # An offline run counts its own calls, so its phase 1 starts with them.
    offline = open_app(backend="offline")
    assert str(phase_spec(offline.db, offline.config, 1).first) == "2026-05-01"


def test_report_says_how_many_offline_calls_it_left_out(runner: CliRunner) -> None:
    db = open_app().db
    add_call(db, "2026-02-17T10:00", cost=0.002, baseline_cost=0.004)
    for hour in (11, 12):
        add_call(db, f"2026-02-17T{hour}:00", cost=5.0, backend="offline")
    out = run(runner, "report", "--from", "2026-02-17", "--to", "2026-02-17").output
    assert out.splitlines()[-1] == (
        "config: shipped defaults | not counted: 2 offline-backend calls (--include-offline "
        "counts them)"
    )
    text = Path("reports/REPORT_2026-02-17_2026-02-17.md").read_text()
    assert "Not counted: 2 offline-backend calls (placeholder answers, no money spent" in text
    assert "| Requests answered | 1 (0 failed) |" in text
    assert "from the tars-opt ledger (config: shipped defaults)." in text
    data = json.loads(
        run(runner, "report", "--from", "2026-02-17", "--to", "2026-02-17", "--json").output
    )
    assert data["offline_left_out"] == 2
    counted = run(runner, "report", "--from", "2026-02-17", "--to", "2026-02-17",
                  "--include-offline", "--json")  # fmt: skip
    assert json.loads(counted.output)["offline_left_out"] == 0
    text = Path("reports/REPORT_2026-02-17_2026-02-17.md").read_text()
    assert "| Requests answered | 3 (0 failed) |" in text and "Not counted" not in text


def test_a_ledger_of_only_offline_calls_says_so(runner: CliRunner) -> None:
    db = open_app().db
    add_call(db, "2026-02-17T10:00", backend="offline")
    add_call(db, "2026-02-18T10:00", backend="offline")
    phase = run(runner, "report", "--phase", "1", code=2)
    line = " ".join(phase.output.split())
    assert "has only 2 offline-backend calls, which are not counted" in line
    assert "--include-offline counts them" in line
    run(runner, "report", "--from", "2026-02-17", "--to", "2026-02-18")
    text = Path("reports/REPORT_2026-02-17_2026-02-18.md").read_text()
    assert "No calls were recorded" not in text
    assert "**This period has only 2 offline-backend calls, left out: no target can be" in text
    capture = run(runner, "baseline", "capture", "--from", "2026-02-17", "--to", "2026-02-18",
                  code=2)  # fmt: skip
    line = " ".join(capture.output.split())
    assert "the ledger's only calls from 2026-02-17 to 2026-02-18 are 2 offline-backend" in line
    assert "no calls from" not in line


def test_baseline_capture_says_what_it_left_out(runner: CliRunner) -> None:
    db = open_app().db
    for day in ("2026-02-11", "2026-02-12", "2026-02-13"):
        add_call(db, f"{day}T10:00", cost=0.01, baseline_cost=0.01)
    add_call(db, "2026-02-12T11:00", cost=3.0, backend="offline")
    out = run(runner, "baseline", "capture", "--from", "2026-02-11", "--to", "2026-02-13").output
    assert "ledger 2026-02-11..2026-02-13 (3 calls)" in out
    assert "not counted: 1 offline-backend call (--include-offline" in out.splitlines()[-1]


def test_heartbeat_counts_offline_calls_as_the_others_do(runner: CliRunner) -> None:
    db = open_app().db
    now = time.time()
    add_call(db, now - 120, cost=0.01)
    for i in range(3):
        add_call(db, now - 60 - i, backend="offline", **haiku(cost=2.0))
    left = json.loads(run(runner, "heartbeat", "--json").stdout)["metrics"]
    assert left["offline_left_out"] == 3 and left["cost"] == pytest.approx(0.01)
    counted = json.loads(run(runner, "heartbeat", "--json", "--include-offline").stdout)
    assert counted["metrics"]["offline_left_out"] == 0
    assert counted["metrics"]["cost"] == pytest.approx(6.01)
    out = run(runner, "heartbeat").stdout
    assert out.splitlines()[-1] == (
        "config: shipped defaults | not counted: 3 offline-backend calls in the last 24 h "
        "(--include-offline counts them)"
    )


def test_metrics_session_says_what_it_left_out(runner: CliRunner) -> None:
    db = open_app().db
    add_call(db, "2026-02-17T10:00", session="task-1", cost=0.01, baseline_cost=0.02)
    add_call(db, "2026-02-17T10:01", session="task-1", cost=4.0, backend="offline")
    add_call(db, "2026-02-17T10:02", session="task-2", cost=4.0, backend="offline")
    data = json.loads(run(runner, "metrics", "--session", "task-1", "--json").output)
    assert data["calls"] == 1 and data["offline_left_out"] == 1
    out = run(runner, "metrics", "--session", "task-1").output
    assert "not counted: 1 offline-backend call of this session" in out
    data = json.loads(
        run(runner, "metrics", "--session", "task-1", "--json", "--include-offline").output
    )
    assert data["calls"] == 2 and data["offline_left_out"] == 0


def test_dashboard_takes_include_offline_and_says_what_it_left_out(runner: CliRunner) -> None:
    db = open_app().db
    now = time.time()
    add_call(db, now - 30, cost=0.01)
    add_call(db, now - 20, cost=9.0, backend="offline")
    out = run(runner, "dashboard", "--once").output
    assert "not counted: 1 offline" in out and "$9.00" not in out.split("recent calls")[0]
    counted = run(runner, "dashboard", "--once", "--include-offline").output
    assert "not counted" not in counted and "$9.01" in counted
