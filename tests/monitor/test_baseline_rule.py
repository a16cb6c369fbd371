"""One rule for which baseline applies (baseline show/list/reset, report, heartbeat all ask
`baseline_in_use`), and the plan's example figures - its baseline and its phase targets,
someone else's system - are shown as such and never judged against."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.cli.main import app
from tars_opt.monitor.baseline import baseline_in_use, capture_baseline, weekly_regressions
from tars_opt.monitor.report import phase_spec, write_report
from tests.handmade import add_call, cache_hit, phase_week, ts


def run(runner: CliRunner, *args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


def unoptimized_days(db, first: str, days: int, per_day: int = 10) -> None:
    start = date.fromisoformat(first)
    for d in range(days):
        for i in range(per_day):
            add_call(db, f"{start + timedelta(days=d)}T{i + 1:02d}:00", cost=0.01,
                     baseline_cost=0.01)  # fmt: skip


def test_every_command_names_the_same_baseline(runner: CliRunner) -> None:
    db = open_app().db
    add_call(db, "2026-02-17T10:00", cost=0.002, baseline_cost=0.004)
    shown = json.loads(run(runner, "baseline", "show", "--json").output)
    assert shown["kind"] == "plan" and shown["judged"] is False
    assert "the plan's example figures" in shown["why"] and "not judged against" in shown["why"]
    listed = run(runner, "baseline", "list").output
    assert "no captured baseline: in use: the plan's example figures (plan: measured" in listed
    assert "the config's figures are in use" not in listed
    assert json.loads(run(runner, "baseline", "list", "--json").output)["active"] == "plan"
    reset = run(runner, "baseline", "reset").output
    assert "now in use: the plan's example figures" in reset
    # A report over a period with calls measures cost against the ledger's own column.
    report = json.loads(run(runner, "report", "--from", "2026-02-17", "--to", "2026-02-17",
                            "--json").output)  # fmt: skip
    assert report["baseline"].startswith("the ledger's baseline column for this period")


def test_figures_the_user_stated_apply_everywhere(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"baseline": {"daily_cost_usd": 1.0, "calls_per_day": 50,
                                                   "source": "our January"}}))  # fmt: skip
    opened = open_app(config)
    add_call(opened.db, "2026-02-17T10:00", cost=0.002, baseline_cost=0.004)
    base = baseline_in_use(opened.db, opened.config)
    assert (base.kind, base.judged, base.source) == ("config", True, "our January")
    shown = json.loads(run(runner, "baseline", "show", "-c", str(config), "--json").output)
    assert shown["kind"] == "config" and shown["metrics"]["daily_cost_usd"] == 1.0
    report = json.loads(run(runner, "report", "-c", str(config), "--from", "2026-02-17",
                            "--to", "2026-02-17", "--json").output)  # fmt: skip
    assert report["baseline"].startswith("the `baseline:` figures stated in the config (our")
    # A config file that repeats the shipped figures (`config init`) states nothing new.
    repeat = tmp_path / "init.yaml"
    run(runner, "config", "init", str(repeat))
    assert baseline_in_use(opened.db, open_app(repeat).config).kind == "plan"


def test_heartbeat_judges_no_error_rate_or_regression_against_the_plan(
    runner: CliRunner, tmp_path: Path
) -> None:
    db = open_app().db
    now = time.time()
    for i in range(30):  # 10% errors and $0.05 a call: far above the plan's 2% and $0.036
        add_call(db, now - 60 * (i + 1), cost=0.05, baseline_cost=0.05,
                 error="overloaded_error: busy" if i % 10 == 0 else None)  # fmt: skip
    result = runner.invoke(app, ["heartbeat", "--json"])
    data = json.loads(result.stdout)
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["error rate"]["status"] == "ok"
    assert "not compared: the only baseline is the plan's example" in checks["error rate"]["detail"]
    assert checks["regressions"]["status"] == "ok"
    assert weekly_regressions(db, open_app().config, now) == []
    # The user's own figures are judged against.
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"baseline": {"error_rate": 0.02, "daily_cost_usd": 1.0,
                                                   "calls_per_day": 100}}))  # fmt: skip
    result = runner.invoke(app, ["heartbeat", "--json", "-c", str(config)])
    assert result.exit_code == 2, result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["error rate"]["status"] == "critical"
    assert checks["error rate"]["detail"] == "10.0% vs baseline 2.0%"
    found = weekly_regressions(db, open_app(config).config, now)
    assert [r.metric for r in found if r.against == "baseline"] == ["cost_per_request",
                                                                     "error_rate"]  # fmt: skip


@pytest.fixture
def captured(home: Path):
    """The plan's calendar and targets, a captured baseline of this ledger (3 unoptimized
    days: $0.10, 10 calls and 12,000 tokens a day, 2.0 s, no cache, no batches), then the
    handmade phase-2 week."""
    Path("performance-config.yaml").write_text("phases_start: 2026-02-10\n")
    opened = open_app()
    unoptimized_days(opened.db, "2026-02-11", 3)
    phase_week(opened.db)
    capture_baseline(opened.db, opened.config, date(2026, 2, 11), date(2026, 2, 13),
                     ts("2026-03-01T00:00"))  # fmt: skip
    return opened


def test_plan_targets_are_judged_as_the_same_change_on_a_captured_baseline(
    captured, tmp_path: Path
) -> None:
    out = tmp_path / "p.md"
    spec = phase_spec(captured.db, captured.config, 2)
    result = write_report(captured.db, captured.config, spec, now=ts("2026-03-01T00:00"),
                          out=out)  # fmt: skip
    text = out.read_text()
    table = text.split("## Baseline vs target vs actual")[1].split("Targets met")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()
            if line.startswith("| ")}  # fmt: skip
    # Amounts and times: the plan's relative change ($8.50 -> $5.73 is -33%).
    assert rows["Daily cost"] == ("| Daily cost | $0.1000 | $0.0674 (plan example: -33% on "
                                  "your baseline) | $0.0644 | -35.6% | **PASS** |")  # fmt: skip
    assert rows["API calls / day"].startswith("| API calls / day | 10 | 8 (plan example: -15% on")
    assert rows["API calls / day"].endswith("| 32 | +221.4% | **FAIL** |")
    assert (
        "| 1.70 s (plan example: -15% on your baseline) | 1.16 s |"
        in rows["Response time (mean, interactive)"]
    )
    # Shares the plan starts at 0%: the same points (0% -> 20% cache hits).
    assert rows["Cache hit rate"] == (
        "| Cache hit rate | 0.0% | 20.0% (plan example: +20 points on your baseline) | 18.8% "
        "| new | **FAIL** |"
    )
    assert (result.passed, result.judged, result.no_baseline) == (2, 6, 0)
    assert "no baseline |" not in text


def test_the_users_own_targets_are_judged_as_stated(home: Path, tmp_path: Path) -> None:
    Path("performance-config.yaml").write_text(yaml.safe_dump({
        "phases_start": "2026-02-17",
        "phases": [{"name": "ours", "days": 7, "targets": {"calls_per_day": 40,
                                                           "cache_hit_rate": 0.15}}],
    }))  # fmt: skip
    opened = open_app()
    phase_week(opened.db)
    out = tmp_path / "p.md"
    result = write_report(opened.db, opened.config, phase_spec(opened.db, opened.config, 1),
                          now=ts("2026-03-01T00:00"), out=out)  # fmt: skip
    text = out.read_text()
    assert "| API calls / day | — | 40 | 32 | — | **PASS** |" in text
    assert "| Cache hit rate | — | 15.0% | 18.8% | — | **PASS** |" in text
    assert (result.passed, result.judged, result.no_baseline) == (2, 2, 0)
    assert "plan example" not in text


def test_heartbeat_judges_plan_targets_only_on_a_baseline_of_yours(home: Path) -> None:
    from tars_opt.accounting.alerts import Alerter
    from tars_opt.monitor.heartbeat import run_heartbeat

    now = time.time()
    first = datetime.fromtimestamp(now - 8 * 86_400, UTC).date()
    # Tracking started 8 days ago: phase 2 runs (20% cache hits, the plan's example).
    Path("performance-config.yaml").write_text(f"phases_start: {first}\n")
    opened = open_app()
    db = opened.db
    add_call(db, now - 8 * 86_400)
    for i in range(9):
        add_call(db, now - 60 * (i + 1))
    add_call(db, now - 5, **cache_hit())  # 10% cache hits
    result = run_heartbeat(db, opened.config, now=now, alerter=Alerter(opened.config.alerts, db))
    check = next(c for c in result.checks if c.name == "cache hit rate")
    assert check.status == "ok" and "the 20% target (phase 2) is the plan's example" in (
        check.detail
    )
    capture_baseline(db, opened.config, first, first, now, force=True)
    result = run_heartbeat(db, opened.config, now=now, alerter=Alerter(opened.config.alerts, db))
    check = next(c for c in result.checks if c.name == "cache hit rate")
    assert check.status == "warning"
    assert "10.0% is below the 20% target (phase" in check.detail
    assert "plan example: +20 points on your baseline" in check.detail
