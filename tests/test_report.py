"""Benchmark reports: the Markdown for a fixed ledger (snapshot), its charts, the CLI."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.alerts import Alert, Alerter
from tars_opt.cli import app
from tars_opt.metrics import last_full_iso_week
from tars_opt.report import judge, phase_spec, write_report
from tests.handmade import phase_week, ts

SNAPSHOT = Path(__file__).parent / "snapshots" / "PHASE_2_BENCHMARK.md"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ledger(home: Path):
    opened = open_app()
    phase_week(opened.db)
    alerter = Alerter(opened.config.alerts, opened.db, clock=lambda: ts("2026-02-19T10:00"),
                      stderr=io.StringIO())  # fmt: skip
    alerter.raise_once(Alert("budget:50", "info", "50% of the $200.00 monthly budget spent",
                             "2026-02"))  # fmt: skip
    return opened


def test_phase_report_matches_the_snapshot_and_has_its_charts(ledger, tmp_path: Path) -> None:
    out = tmp_path / "out" / "PHASE_2_BENCHMARK.md"
    result = write_report(ledger.db, ledger.config, phase_spec(ledger.config, 2),
                          now=ts("2026-03-01T00:00"), out=out)  # fmt: skip
    text = out.read_text()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()
    assert (result.passed, result.judged) == (4, 6)
    for chart in result.charts:
        assert chart.parent == out.parent and chart.read_bytes().startswith(PNG)
        assert f"]({chart.name})" in text
    assert not list(out.parent.glob("*.tmp"))


def test_phase_in_progress_is_measured_up_to_now(ledger, tmp_path: Path) -> None:
    out = tmp_path / "p.md"
    write_report(ledger.db, ledger.config, phase_spec(ledger.config, 2),
                 now=ts("2026-02-20T00:00"), out=out)  # fmt: skip
    text = out.read_text()
    assert "in progress: through 2026-02-20 00:00 UTC" in text
    assert "| 2026-02-20 |" in text and "| 2026-02-21 |" not in text


def test_a_report_without_a_holdout_says_it_is_off(home: Path, tmp_path: Path) -> None:
    from tests.handmade import add_call

    opened = open_app()
    add_call(opened.db, "2026-02-18T10:00", cost=0.002, baseline_cost=0.004)
    out = tmp_path / "p.md"
    write_report(opened.db, opened.config, phase_spec(opened.config, 2),
                 now=ts("2026-03-01T00:00"), out=out)  # fmt: skip
    text = out.read_text()
    assert "The holdout is off (`experiment.holdout: 0`" in text
    assert "too few for a firm" not in text


def test_judge_uses_each_metric_direction() -> None:
    assert judge("daily_cost_usd", 5.0, 5.73) == "PASS"
    assert judge("daily_cost_usd", 6.0, 5.73) == "FAIL"
    assert judge("cache_hit_rate", 0.25, 0.20) == "PASS"
    assert judge("cache_hit_rate", 0.10, 0.20) == "FAIL"
    assert judge("cache_hit_rate", None, 0.20) == "no data"
    assert judge("cache_hit_rate", 0.3, None) == "—"


def test_cli_report_phase_writes_into_reports_dir(ledger, runner: CliRunner) -> None:
    result = runner.invoke(app, ["report", "--phase", "2"])
    assert result.exit_code == 0, result.output
    assert "wrote reports/PHASE_2_BENCHMARK.md (targets met: 4 of 6)" in result.output
    assert Path("reports/PHASE_2_BENCHMARK_savings.png").read_bytes().startswith(PNG)
    assert Path("reports/PHASE_2_BENCHMARK_cost.png").is_file()


def test_cli_report_week_final_and_range(ledger, runner: CliRunner) -> None:
    _, _, label = last_full_iso_week(time.time())
    week = runner.invoke(app, ["report", "--week", "--json"])
    assert week.exit_code == 0, week.output
    assert f"WEEK_{label}.md" in week.output
    final = runner.invoke(app, ["report", "--final", "--out", "x/FINAL.md"])
    assert final.exit_code == 0 and Path("x/FINAL.md").is_file()
    assert "Final benchmark" in Path("x/FINAL.md").read_text()
    rng = runner.invoke(app, ["report", "--from", "2026-02-17", "--to", "2026-02-18"])
    assert rng.exit_code == 0
    text = Path("reports/REPORT_2026-02-17_2026-02-18.md").read_text()
    assert "No targets for this period" in text and "| Requests answered | 79 (1 failed) |" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "choose one of"),
        (["--phase", "9"], "lists 3 phase(s)"),
        (["--from", "2026-02-30", "--to", "2026-03-01"], "is not a date"),
        (["--from", "2026-03-01"], "go together"),
        (["--week", "--phase", "1"], "choose one of"),
    ],
)
def test_cli_report_bad_input_is_one_line_exit_2(runner: CliRunner, args, message) -> None:
    result = runner.invoke(app, ["report", *args])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and not Path("reports").exists()


def test_phase_not_started_yet(tmp_path: Path, runner: CliRunner) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("phases:\n  - {name: later, start: 2099-01-01, end: 2099-01-07}\n")
    result = runner.invoke(app, ["report", "-c", str(cfg), "--phase", "1"])
    assert result.exit_code == 2 and "nothing to report yet" in result.output
    assert re.search(r"starts 2099-01-01", result.output)
