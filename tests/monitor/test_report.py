"""Benchmark reports: the Markdown for a fixed ledger (snapshot), its charts, the CLI."""

from __future__ import annotations

import io
import json
import os
import re
import time
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tars_opt import open_app
from tars_opt.accounting.alerts import Alert, Alerter
from tars_opt.accounting.money import usd
from tars_opt.cli.main import app
from tars_opt.monitor import charts
from tars_opt.monitor.baseline import capture_baseline
from tars_opt.monitor.charts import usd_ticks
from tars_opt.monitor.heartbeat import active_phase
from tars_opt.monitor.metrics import last_full_iso_week
from tars_opt.monitor.report import final_spec, judge, phase_spec, range_spec, write_report
from tests.handmade import add_call, phase_week, ts


def matplotlib_close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


SNAPSHOT = Path(__file__).parent / "snapshots" / "PHASE_2_BENCHMARK.md"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ledger(home: Path):
    # Phases fixed from 2026-02-10, so phase 2 is the handmade week.
    Path("performance-config.yaml").write_text("phases_start: 2026-02-10\n")
    opened = open_app()
    phase_week(opened.db)
    alerter = Alerter(opened.config.alerts, opened.db, clock=lambda: ts("2026-02-19T10:00"),
                      stderr=io.StringIO())  # fmt: skip
    alerter.raise_once(Alert("budget:50", "info", "50% of the $200.00 monthly budget spent",
                             "2026-02"))  # fmt: skip
    return opened


def test_phase_report_matches_the_snapshot_and_has_its_charts(ledger, tmp_path: Path) -> None:
    out = tmp_path / "out" / "PHASE_2_BENCHMARK.md"
    result = write_report(ledger.db, ledger.config, phase_spec(ledger.db, ledger.config, 2),
                          now=ts("2026-03-01T00:00"), out=out)  # fmt: skip
    text = out.read_text()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(text)
    assert text == SNAPSHOT.read_text()
    # The shipped phases' targets are the plan's example: without a baseline of the user's
    # only daily cost is judged (on the ledger's own baseline column), the rest is not.
    assert (result.passed, result.judged, result.no_baseline) == (1, 1, 5)
    for chart in result.charts:
        assert chart.parent == out.parent and chart.read_bytes().startswith(PNG)
        assert f"]({chart.name})" in text
    assert not list(out.parent.glob("*.tmp"))


def test_phase_in_progress_is_measured_up_to_now(ledger, tmp_path: Path) -> None:
    out = tmp_path / "p.md"
    write_report(ledger.db, ledger.config, phase_spec(ledger.db, ledger.config, 2),
                 now=ts("2026-02-20T00:00"), out=out)  # fmt: skip
    text = out.read_text()
    assert "in progress: through 2026-02-20 00:00 UTC" in text
    assert "| 2026-02-20 |" in text and "| 2026-02-21 |" not in text


def test_a_report_without_a_holdout_says_it_is_off(home: Path, tmp_path: Path) -> None:
    from tests.handmade import add_call

    opened = open_app()
    add_call(opened.db, "2026-02-18T10:00", cost=0.002, baseline_cost=0.004)
    out = tmp_path / "p.md"
    write_report(opened.db, opened.config, phase_spec(opened.db, opened.config, 1),
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
    assert ("wrote reports/PHASE_2_BENCHMARK.md (targets met: 1 of 1; 5 plan-example targets "
            "not judged: no baseline of yours)") in result.output  # fmt: skip
    assert result.output.splitlines()[-1] == f"config: {Path.cwd() / 'performance-config.yaml'}"
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


# --- phases on the calendar, no-data verdicts, per-day figures, one baseline, axis labels ----


def test_report_on_a_period_without_calls_judges_nothing(ledger, runner: CliRunner) -> None:
    # Phases from 2026-01-01: phase 2 is 01-08..01-14, before the ledger's first call.
    Path("performance-config.yaml").write_text("phases_start: 2026-01-01\n")
    result = runner.invoke(app, ["report", "--phase", "2"])
    assert result.exit_code == 0, result.output
    assert "(targets met: 0 of 6, 6 without data)" in result.output
    text = Path("reports/PHASE_2_BENCHMARK.md").read_text()
    assert "Period: 2026-01-08 to 2026-01-14" in text
    assert "No calls were recorded in this period: no target can be judged." in text
    assert "PASS" not in text and "FAIL" not in text
    assert text.count("| no data |") == 6
    assert "Targets met: **0 of 6 (6 without data)**." in text
    assert "| Cost per day with calls | — (baseline plan example $8.50, not compared) |" in text
    assert "Baseline: the plan's example figures (plan: measured" in text
    assert "someone else's system, shown for reference and not judged against" in text


def test_phases_count_from_the_first_call_in_the_ledger(home: Path, runner: CliRunner) -> None:
    opened = open_app()
    phase_week(opened.db, first_day="2026-05-04")
    spec = phase_spec(opened.db, opened.config, 1)
    assert (str(spec.first), str(spec.last)) == ("2026-05-04", "2026-05-10")
    assert spec.why == (
        "phase 1 is days 1-7 counted from 2026-05-04 (the first call in the ledger, "
        "2026-05-04 02:00 UTC)"
    )
    three = phase_spec(opened.db, opened.config, 3)
    assert (str(three.first), str(three.last)) == ("2026-05-18", "2026-05-31")  # 14 days
    result = runner.invoke(app, ["report", "--phase", "1", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["period"]["first"] == "2026-05-04" and data["targets_without_data"] == 0
    text = Path("reports/PHASE_1_BENCHMARK.md").read_text()
    assert "Period: 2026-05-04 to 2026-05-10 (UTC, inclusive): phase 1 is days 1-7" in text
    final = final_spec(opened.db, opened.config)
    assert (str(final.first), str(final.last)) == ("2026-05-04", "2026-05-31")


def test_phases_follow_a_captured_baseline_or_fixed_dates(home: Path) -> None:
    opened = open_app()
    phase_week(opened.db, first_day="2026-05-04")
    capture_baseline(opened.db, opened.config, date(2026, 5, 4), date(2026, 5, 6),
                     ts("2026-06-01T00:00"), force=True)  # fmt: skip
    spec = phase_spec(opened.db, opened.config, 1)
    assert (str(spec.first), str(spec.last)) == ("2026-05-07", "2026-05-13")
    assert "2026-05-07 (the day after the captured baseline 2026-05-04..2026-05-06)" in (
        spec.why or ""
    )
    # A phase with fixed dates keeps them; the next one follows it.
    Path("performance-config.yaml").write_text(
        "phases:\n  - {name: a, start: 2026-03-02, end: 2026-03-03}\n  - {name: b, days: 2}\n"
    )
    fixed = open_app()
    a, b = phase_spec(fixed.db, fixed.config, 1), phase_spec(fixed.db, fixed.config, 2)
    assert (str(a.first), str(a.last), str(b.first), str(b.last)) == (
        "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05",
    )  # fmt: skip
    assert a.why == "phase 1 is given fixed dates in the config (phases[0])"
    assert b.why == "phase 2 is the 2 days after phase 1 ends"


def test_heartbeat_phase_is_the_one_running_since_the_first_call(home: Path) -> None:
    opened = open_app()
    now = time.time()
    add_call(opened.db, now - 8 * 86_400)  # tracking started 8 days ago: phase 2 runs
    phase = active_phase(opened.db, opened.config, now)
    assert phase is not None and phase.number == 2
    assert phase.targets.batch_share == 0.18


def test_phase_without_a_start_yet_is_one_line_exit_2(runner: CliRunner) -> None:
    result = runner.invoke(app, ["report", "--phase", "1"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = " ".join(result.output.split())
    assert "--phase 1 has no dates yet" in line and "phases_start: YYYY-MM-DD" in line


def test_per_day_figures_are_over_days_with_calls(ledger, runner: CliRunner) -> None:
    # Two weeks, calls only in the second: per day as for that week, not halved.
    result = runner.invoke(app, ["report", "--from", "2026-02-10", "--to", "2026-02-23"])
    assert result.exit_code == 0, result.output
    text = Path("reports/REPORT_2026-02-10_2026-02-23.md").read_text()
    assert "Per-day figures are over the 7 days with calls, not the period's 14 days." in text
    assert "| Cost per day with calls | $0.0644 (baseline $0.1648, -60.9%) |" in text
    assert "| API calls / day | — | — | 32 | — | — |" in text
    assert "| **total** | **$0.7030** | 60.9% | $0.1004 |" in text


def test_one_baseline_for_the_tables_and_both_charts(
    ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: dict[str, float | None] = {}

    def spy(name: str, real):
        def wrapper(*args, **kw):
            drawn[name] = kw.get("baseline_daily")
            drawn[f"{name} target"] = kw.get("target_daily")
            return real(*args, **kw)

        return wrapper

    monkeypatch.setattr(charts, "savings_chart", spy("savings", charts.savings_chart))
    monkeypatch.setattr(charts, "cost_vs_budget_chart", spy("cost", charts.cost_vs_budget_chart))
    spec = phase_spec(ledger.db, ledger.config, 2)
    out = tmp_path / "r.md"
    # Nothing captured: the ledger's baseline column, in the table and in both charts.
    result = write_report(ledger.db, ledger.config, spec, now=ts("2026-03-01T00:00"), out=out)
    assert result.baseline is not None and result.baseline.kind == "ledger"
    assert drawn["savings"] == drawn["cost"] == pytest.approx(0.1648, abs=5e-5)
    text = out.read_text()
    assert "Baseline: the ledger's baseline column for this period" in text
    # The plan's $5.73 target is its -33% from $8.50, placed on this ledger's baseline.
    assert "| Daily cost | $0.1648 | $0.1111 (plan example: -33% on your baseline) | $0.0644 |" in (
        text
    )
    assert "| $8.50" not in text and "$8.50)" not in text
    assert drawn["cost target"] == pytest.approx(0.1111, abs=5e-5)  # the table's target
    # A period without calls: the plan's example figures are labelled in the table and
    # drawn in neither chart (its $8.50 line would dwarf a small agent's bars).
    empty = write_report(ledger.db, ledger.config, range_spec(date(2026, 1, 5), date(2026, 1, 5)),
                         now=ts("2026-03-01T00:00"), out=tmp_path / "e.md")  # fmt: skip
    assert empty.baseline is not None and empty.baseline.kind == "plan"
    assert drawn["savings"] is drawn["cost"] is None
    assert "| Daily cost | $8.50 (plan example) |" in (tmp_path / "e.md").read_text()
    # A captured baseline replaces it everywhere.
    capture_baseline(ledger.db, ledger.config, date(2026, 2, 17), date(2026, 2, 19),
                     ts("2026-03-01T00:00"), force=True)  # fmt: skip
    result = write_report(ledger.db, ledger.config, spec, now=ts("2026-03-01T00:00"), out=out)
    daily = result.baseline.metrics["daily_cost_usd"] if result.baseline else None
    assert drawn["savings"] == drawn["cost"] == daily == pytest.approx(0.2022 / 3)
    text = out.read_text()
    assert "Baseline: captured baseline #1, ledger 2026-02-17..2026-02-19 (120 calls)" in text
    assert "| Daily cost | $0.0674 | $0.0454 (plan example: -33% on your baseline) | $0.0644 |" in (
        text
    )


def test_chart_axis_labels_show_small_amounts() -> None:
    assert usd_ticks([0.0, 0.0025, 0.005, 0.0075]) == ["$0.0000", "$0.0025", "$0.0050",
                                                       "$0.0075"]  # fmt: skip
    assert usd_ticks([0.0, 2.0, 4.0]) == ["$0.00", "$2.00", "$4.00"]
    assert usd_ticks([0.0, 0.02, 0.04]) == ["$0.00", "$0.02", "$0.04"]
    assert usd(0.0644) == "$0.0644" and usd(0.000123) == "$0.00012"  # legends: one amount
    days = [{"day": f"2026-02-1{i}", "calls": 3, "cost": 0.001 * i, "saved_routing": 0.0005}
            for i in range(1, 5)]  # fmt: skip
    for fig in (charts.savings_figure(days, "t", baseline_daily=0.0042),
                charts.cost_figure(days, 0.0065, "t", baseline_daily=0.0042)):  # fmt: skip
        fig.canvas.draw()
        ax = fig.axes[0]
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
        legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
        assert "baseline $0.0042/day" in legend
        matplotlib_close(fig)
