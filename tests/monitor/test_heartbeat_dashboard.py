"""Heartbeat exit codes and snapshot, the dashboard frame, feedback, baselines, regressions
and the A/B holdout."""

from __future__ import annotations

import io
import json
import random
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from tars_opt import Decision, Request, open_app
from tars_opt.accounting.alerts import Alerter
from tars_opt.backends.offline import OfflineBackend
from tars_opt.cli.main import app
from tars_opt.defer.queue import Queue
from tars_opt.monitor.baseline import compare, raise_regression_alerts, weekly_regressions
from tars_opt.monitor.dashboard import read_frame, render, run_live
from tars_opt.monitor.feedback import record_feedback
from tars_opt.pipeline.holdout import in_holdout
from tests.handmade import add_call, cache_hit, haiku, phase_week


def config_file(tmp_path: Path, **sections) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"backend": "offline", **sections}, default_flow_style=False))
    return str(path)


def today_phase(**targets) -> list[dict]:
    day = time.strftime("%Y-%m-%d", time.gmtime())
    return [{"name": "now", "start": day, "end": day, "targets": targets}]


# --- heartbeat --------------------------------------------------------------------------


def test_heartbeat_ok_exit_0_and_a_stored_snapshot(runner: CliRunner) -> None:
    result = runner.invoke(app, ["heartbeat"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("tars-opt heartbeat OK:")
    assert "OK       queue: 0 waiting" in result.output
    db = open_app().db
    row = db.execute("SELECT kind, status, metrics FROM metric_snapshots").fetchone()
    assert row[:2] == ("heartbeat", "ok") and "budget" in json.loads(row[2])


def test_heartbeat_warning_exit_1_on_a_missed_target(tmp_path: Path, runner) -> None:
    cfg = config_file(tmp_path, phases=today_phase(cache_hit_rate=0.5, cheap_share=0.1))
    db = open_app(cfg).db
    now = time.time()
    for i in range(4):
        add_call(db, now - 60 * (i + 1), **haiku())
    add_call(db, now - 30, **cache_hit())
    result = runner.invoke(app, ["heartbeat", "-c", cfg, "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "warning"
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["cache hit rate"]["status"] == "warning"
    assert "20.0% is below the 50% target (phase 1)" in checks["cache hit rate"]["detail"]
    assert checks["routing share"]["status"] == "ok"
    assert "tars-opt WARNING: cache hit rate" in result.stderr  # the alert
    again = runner.invoke(app, ["heartbeat", "-c", cfg, "--json"])
    assert again.exit_code == 1 and "tars-opt WARNING" not in again.stderr  # once a day


def test_heartbeat_critical_exit_2_when_the_budget_is_spent(tmp_path: Path, runner) -> None:
    # No phases: phase 1 would start with this first call and judge its targets too.
    cfg = config_file(tmp_path, budget={"monthly_usd": 1}, phases=[])
    add_call(open_app(cfg).db, time.time() - 5, cost=1.2)
    result = runner.invoke(app, ["heartbeat", "-c", cfg])
    assert result.exit_code == 2
    assert result.stdout.startswith("tars-opt heartbeat CRITICAL: budget: the monthly budget")


def test_heartbeat_queue_backlog_and_stuck_tasks(tmp_path: Path, runner) -> None:
    cfg = config_file(tmp_path, heartbeat={"max_backlog": 1, "stuck_after_h": 1})
    db = open_app(cfg).db
    now = time.time()
    for age in (7200, 60):
        Queue(db, clock=lambda age=age: now - age).enqueue(
            Request.from_prompt(f"task {age}"), reason="test", max_wait_s=None, deadline=None,
            expected_at=None,
        )  # fmt: skip
    result = runner.invoke(app, ["heartbeat", "-c", cfg, "--json"])
    assert result.exit_code == 1
    queue = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "queue")
    assert queue["detail"] == "backlog 2 > 1; 1 task(s) waiting over 1 h"


def test_heartbeat_script_wraps_the_command(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "heartbeat.sh"
    text = script.read_text()
    assert text.startswith("#!/") and "tars-opt heartbeat" in text
    assert script.stat().st_mode & 0o111


# --- dashboard -----------------------------------------------------------------------


def test_dashboard_once_prints_one_frame(runner: CliRunner) -> None:
    db = open_app().db
    rid = add_call(db, time.time() - 10, **haiku())
    result = runner.invoke(app, ["dashboard", "--once"])
    assert result.exit_code == 0, result.output
    for part in ("spend vs budget", "saved by strategy", "model mix (today)", "hit rates",
                 "recent calls", rid, "no alerts in the last 24 h",
                 "config: shipped defaults"):  # fmt: skip
        assert part in result.output, part
    assert "queued" not in result.output  # an empty queue shows no states


def test_dashboard_live_redraws_on_its_interval(home: Path) -> None:
    opened = open_app()
    reads, sleeps = [], []

    def read():
        reads.append(1)
        return read_frame(opened.db, opened.config, time.time())

    out = io.StringIO()
    run_live(read, Console(file=out, width=120), interval_s=5, sleep=sleeps.append, frames=3)
    assert len(reads) == 3 and sleeps == [5, 5]
    Console(file=io.StringIO()).print(render(read()))


# --- feedback ------------------------------------------------------------------------


class RecordingEvictor:
    """Stands in for the response cache store: remembers what it was asked to evict."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def evict_for_call(self, call: dict) -> bool:
        self.calls.append(call["request_id"])
        return call["source"] == "cache"


def test_feedback_cli_records_and_replaces_a_verdict(runner: CliRunner) -> None:
    db = open_app().db
    rid = add_call(db, time.time(), **cache_hit())
    result = runner.invoke(app, ["feedback", rid, "bad", "--note", "stale answer"])
    assert result.exit_code == 0 and f"recorded bad for {rid} (cache" in result.output
    runner.invoke(app, ["feedback", rid, "good"])
    rows = db.execute("SELECT verdict, note FROM feedback").fetchall()
    assert rows == [("good", None)]


def test_feedback_rejects_unknown_ids_bad_verdicts_and_failed_calls(runner) -> None:
    db = open_app().db
    failed = add_call(db, time.time(), error="api_error: boom")
    assert runner.invoke(app, ["feedback", "req_nope", "bad"]).exit_code == 2
    assert runner.invoke(app, ["feedback", failed, "bad"]).exit_code == 2
    out = runner.invoke(app, ["feedback", failed, "meh"])
    assert out.exit_code == 2 and "not good or bad" in out.output


def test_bad_feedback_hands_the_call_to_the_cache_evictor(home: Path) -> None:
    db = open_app().db
    rid = add_call(db, time.time(), **cache_hit())
    evictor = RecordingEvictor()
    assert record_feedback(db, rid, "good", now=1, evictor=evictor).evicted is None
    result = record_feedback(db, rid, "bad", now=2, evictor=evictor)
    assert result.evicted is True and evictor.calls == [rid]


# --- baseline and regressions ---------------------------------------------------------


def unoptimized_days(db, first: str, days: int, per_day: int = 10) -> None:
    """Plain Sonnet API calls, nothing routed, cached or deferred: a baseline period."""
    start = date.fromisoformat(first)
    for d in range(days):
        for i in range(per_day):
            add_call(db, f"{start + timedelta(days=d)}T{i % 24:02d}:{i // 24:02d}", cost=0.01,
                     baseline_cost=0.01)  # fmt: skip


def test_baseline_capture_measures_the_ledger_and_wins_over_the_config(runner) -> None:
    unoptimized_days(open_app().db, "2026-02-11", 3)
    shown = json.loads(runner.invoke(app, ["baseline", "show", "--json"]).output)
    assert shown["source"].startswith("plan:") and shown["metrics"]["daily_cost_usd"] == 8.5
    cap = runner.invoke(app, ["baseline", "capture", "--from", "2026-02-11", "--to",
                              "2026-02-13", "--json"])  # fmt: skip
    assert cap.exit_code == 0, cap.output
    assert "warning" not in cap.stderr
    data = json.loads(runner.invoke(app, ["baseline", "show", "--json"]).output)
    assert data["source"] == "ledger 2026-02-11..2026-02-13 (30 calls)"
    assert data["kind"] == "captured" and data["id"] == 1
    assert data["metrics"]["daily_cost_usd"] == pytest.approx(0.10)
    assert data["metrics"]["cheap_share"] == 0.0
    empty = runner.invoke(app, ["baseline", "capture", "--from", "2025-01-01", "--to",
                                "2025-01-02"])  # fmt: skip
    assert empty.exit_code == 2 and "no calls" in empty.output
    assert runner.invoke(app, ["baseline", "capture", "--from", "2025-01-01"]).exit_code == 2


def test_baseline_capture_refuses_an_optimized_period_unless_forced(runner) -> None:
    phase_week(open_app().db)  # 48% cheap tier, 19% cache hits, 9% deferred
    args = ["baseline", "capture", "--from", "2026-02-17", "--to", "2026-02-23"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert len(refused.stderr.strip().splitlines()) == 1
    line = " ".join(refused.stderr.split())
    assert "not capturing 2026-02-17..2026-02-23 as the baseline" in line
    assert "48.4% of model calls on the cheapest tier" in line
    assert "18.8% of requests answered by the response cache" in line
    assert "9.0% of requests deferred" in line and "add --force" in line
    assert open_app().db.execute("SELECT COUNT(*) FROM baselines").fetchone()[0] == 0
    forced = runner.invoke(app, [*args, "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert "warning: captured with --force although" in forced.stderr
    data = json.loads(forced.stdout)
    assert data["source"] == ("ledger 2026-02-17..2026-02-23 (280 calls) captured with --force "
                              "despite: 48% cheap tier, 19% cache hits, 9% deferred")  # fmt: skip
    assert data["metrics"]["daily_cost_usd"] == pytest.approx(0.4505 / 7)


def test_baseline_capture_refuses_an_incomplete_period(runner) -> None:
    db = open_app().db
    today = datetime.now(UTC).date()
    unoptimized_days(db, str(today - timedelta(days=1)), 1)
    add_call(db, time.time() - 60, cost=0.01, baseline_cost=0.01)
    yesterday = str(today - timedelta(days=1))
    partial = runner.invoke(app, ["baseline", "capture", "--from", yesterday, "--to", str(today)])
    line = " ".join(partial.stderr.split())
    assert partial.exit_code == 2 and "add --force" in line
    assert f"it runs to {today}, which is not over yet" in line
    assert "it has calls on 2 day(s), fewer than baseline.capture.min_days (3)" in line
    short = runner.invoke(app, ["baseline", "capture", "--from", yesterday, "--to", yesterday])
    assert short.exit_code == 2 and "calls on 1 day(s)" in short.stderr
    assert "not over yet" not in short.stderr
    forced = runner.invoke(app, ["baseline", "capture", "--from", yesterday, "--to", yesterday,
                                 "--force"])  # fmt: skip
    assert forced.exit_code == 0 and "warning: captured with --force" in forced.stderr


def test_baseline_list_and_reset(runner) -> None:
    db = open_app().db
    unoptimized_days(db, "2026-02-01", 3)
    unoptimized_days(db, "2026-02-11", 3, per_day=20)
    empty = runner.invoke(app, ["baseline", "list"])
    assert empty.exit_code == 0 and "no captured baseline" in empty.output
    nothing = runner.invoke(app, ["baseline", "reset"])
    assert nothing.exit_code == 0 and "nothing to reset" in nothing.output
    for first, last in (("2026-02-01", "2026-02-03"), ("2026-02-11", "2026-02-13")):
        cap = runner.invoke(app, ["baseline", "capture", "--from", first, "--to", last])
        assert cap.exit_code == 0, cap.output
    listed = json.loads(runner.invoke(app, ["baseline", "list", "--json"]).output)
    assert [(b["id"], b["active"]) for b in listed["captured"]] == [(2, True), (1, False)]
    assert listed["active"] == "captured"
    table = runner.invoke(app, ["baseline", "list"])
    assert table.exit_code == 0 and "active" in table.output and "#2" in table.output
    # Reset removes the active capture: the one before it applies, then the config's.
    first = runner.invoke(app, ["baseline", "reset"])
    assert first.exit_code == 0, first.output
    assert "removed baseline #2" in first.output and "now in use: captured baseline #1" in (
        first.output
    )
    shown = json.loads(runner.invoke(app, ["baseline", "show", "--json"]).output)
    assert shown["id"] == 1 and shown["metrics"]["calls_per_day"] == 10
    unknown = runner.invoke(app, ["baseline", "reset", "7"])
    assert unknown.exit_code == 2 and "no captured baseline #7 (captured: #1)" in unknown.output
    named = json.loads(runner.invoke(app, ["baseline", "reset", "1", "--json"]).output)
    assert named["removed"]["id"] == 1 and named["active"]["kind"] == "plan"
    assert named["active"]["judged"] is False
    shown = json.loads(runner.invoke(app, ["baseline", "show", "--json"]).output)
    assert shown["source"].startswith("plan:") and shown["metrics"]["daily_cost_usd"] == 8.5


def test_regression_thresholds() -> None:
    ref = {"cost_per_request": 1.0, "cache_hit_rate": 0.20, "error_rate": 0.0}
    assert compare({"cost_per_request": 1.09}, ref, "baseline", 0.10, 0.25) == []
    (warn,) = compare({"cost_per_request": 1.11}, ref, "baseline", 0.10, 0.25)
    assert warn.level == "warning" and warn.worse_by == pytest.approx(0.11)
    (crit,) = compare({"cost_per_request": 1.30}, ref, "baseline", 0.10, 0.25)
    assert crit.level == "critical"
    (drop,) = compare({"cache_hit_rate": 0.17}, ref, "previous week", 0.10, 0.25)
    assert drop.level == "warning" and "15% worse than the previous week" in drop.message()
    assert compare({"cache_hit_rate": 0.30}, ref, "baseline", 0.10, 0.25) == []
    assert compare({"error_rate": 0.5}, ref, "baseline", 0.10, 0.25) == []  # no reference


def test_weekly_regressions_against_the_previous_week_alert_once(home: Path) -> None:
    opened = open_app()
    db, now = opened.db, time.time()
    for i in range(25):
        add_call(db, now - 8 * 86400 - i * 60, latency_ms=1000.0)
        add_call(db, now - 1 * 86400 - i * 60, latency_ms=1400.0)
    found = weekly_regressions(db, opened.config, now)
    (lat,) = [r for r in found if r.metric == "latency_s"]
    assert lat.against == "previous week" and lat.level == "critical"
    err = io.StringIO()
    alerter = Alerter(opened.config.alerts, db, stderr=err)
    assert raise_regression_alerts(found, alerter, now) == len(found)
    assert raise_regression_alerts(found, alerter, now) == 0
    assert "CRITICAL: Response time (mean, interactive) is 40% worse" in err.getvalue()


def test_too_few_calls_are_not_a_regression(home: Path) -> None:
    opened = open_app()
    add_call(opened.db, time.time() - 60, latency_ms=99_000.0)
    assert weekly_regressions(opened.db, opened.config, time.time()) == []


# --- A/B holdout ---------------------------------------------------------------------


def test_holdout_choice_is_deterministic_and_near_its_share() -> None:
    ids = [f"req_{i:06d}" for i in range(20_000)]
    share = sum(in_holdout(i, 0.05) for i in ids) / len(ids)
    assert 0.045 < share < 0.055
    assert [in_holdout(i, 0.05) for i in ids[:50]] == [in_holdout(i, 0.05) for i in ids[:50]]
    assert not any(in_holdout(i, 0) for i in ids[:100])


class PinCheap:
    name = "route"

    def apply(self, request: Request):
        return replace(request, tier="cheap", model="claude-haiku-5-5"), Decision(
            "route", "cheap", "test"
        )


def test_holdout_requests_skip_every_stage_and_are_marked(monkeypatch) -> None:
    monkeypatch.setenv("TARS_OPT_HOLDOUT", "0.5")
    opened = open_app(backend="offline")
    opt = opened.optimizer(backend=OfflineBackend())
    opt.stages = [PinCheap()]
    ids = [f"req_ab_{i:03d}" for i in range(40)]
    for rid in ids:
        opt.ask(Request.from_prompt(f"question {rid}", request_id=rid))
    rows = opened.db.execute("SELECT conversation, holdout, model, decisions FROM calls").fetchall()
    tiers = opened.db.execute("SELECT DISTINCT tier FROM calls WHERE holdout = 1").fetchall()
    assert tiers == [("strong",)]
    held = [r for r in rows if r[1]]
    # Each prompt is a conversation of its own: the holdout draws conversations.
    assert {r[0] for r in held} == {r[0] for r in rows if in_holdout(r[0], 0.5)}
    assert 10 < len(held) < 30
    for _, flag, model, decisions in rows:
        stages = [d["stage"] for d in json.loads(decisions)]
        if flag:
            assert model == "claude-sonnet-5-5" and "route" not in stages
            assert "experiment" in stages
        else:
            assert model == "claude-haiku-5-5" and "route" in stages


def test_a_conversation_is_held_out_whole(monkeypatch) -> None:
    # A held-out call in the middle of a loop would rewrite the cached prefix of every
    # call after it: every call of one conversation goes the same way.
    monkeypatch.setenv("TARS_OPT_HOLDOUT", "0.5")
    rng = random.Random(7)  # conversation ids are uuid4s: seeded, so the draw is fixed
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128)))
    opened = open_app(backend="offline")
    opt = opened.optimizer(backend=OfflineBackend())
    for task in range(12):
        history: list[dict] = []
        for turn in range(3):
            reply = opt.ask(
                Request.from_prompt(f"task {task} step {turn}", messages=tuple(history))
            )
            history += [
                {"role": "user", "content": f"task {task} step {turn}"},
                {"role": "assistant", "content": reply.text},
            ]
    rows = opened.db.execute("SELECT conversation, holdout FROM calls").fetchall()
    by_conversation: dict[str, set[int]] = {}
    for conversation, flag in rows:
        by_conversation.setdefault(conversation, set()).add(flag)
    assert len(by_conversation) == 12 and len(rows) == 36
    assert all(len(flags) == 1 for flags in by_conversation.values())
    assert {1} in by_conversation.values() and {0} in by_conversation.values()


def test_forced_model_is_never_held_out(monkeypatch) -> None:
    monkeypatch.setenv("TARS_OPT_HOLDOUT", "0.5")
    opt = open_app(backend="offline").optimizer(backend=OfflineBackend())
    for i in range(20):
        reply = opt.ask(Request.from_prompt("hi", model="claude-haiku-5-5", request_id=f"r{i}"))
        assert reply.model == "claude-haiku-5-5"


def test_monitor_commands_have_help_with_examples(runner: CliRunner) -> None:
    for sub in (["report"], ["heartbeat"], ["dashboard"], ["feedback"], ["metrics"],
                ["budget"], ["baseline", "capture"], ["baseline", "show"], ["baseline", "list"],
                ["baseline", "reset"]):  # fmt: skip
        result = runner.invoke(app, [*sub, "--help"])
        assert result.exit_code == 0 and "Example:" in result.output, sub


def test_metrics_and_budget_commands(runner: CliRunner) -> None:
    db = open_app().db
    add_call(db, "2026-02-17T10:00", session="task-1", cost=0.01, baseline_cost=0.02)
    data = json.loads(runner.invoke(app, ["metrics", "--from", "2026-02-17", "--to",
                                          "2026-02-17", "--json"]).output)  # fmt: skip
    assert data["calls"] == 1 and data["summary"]["daily_cost_usd"] == pytest.approx(0.01)
    ses = json.loads(runner.invoke(app, ["metrics", "--session", "task-1", "--json"]).output)
    assert ses["saved"] == pytest.approx(0.01)
    table = runner.invoke(app, ["metrics", "--days", "3"])
    assert table.exit_code == 0 and "saved by strategy" in table.output
    state = json.loads(runner.invoke(app, ["budget", "--json"]).output)
    assert state["policy"] == "warn" and state["budget_usd"] == 200


def test_heartbeat_runs_the_drain_when_tasks_wait(tmp_path: Path, runner) -> None:
    cfg = config_file(tmp_path)
    queued = runner.invoke(app, ["ask", "-c", cfg, "--backend", "offline", "--defer", "--json",
                                 "Summarise the history of Rome"])  # fmt: skip
    assert json.loads(queued.stdout)["source"] == "queued"
    result = runner.invoke(app, ["heartbeat", "-c", cfg, "--json"])
    drain = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "drain")
    assert drain["value"] == "ran" and "the window: submitted" in drain["detail"]


def test_a_heartbeat_drain_that_fails_warns_and_leaves_the_task_queued(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    hour = time.gmtime().tm_hour
    window = f"{hour:02d}:00-{(hour + 2) % 24:02d}:00"  # open now, whatever the hour
    cfg = config_file(tmp_path, defer={"window": window})
    queued = runner.invoke(app, ["ask", "-c", cfg, "--defer", "--json", "Summarise Livy"])
    ticket = json.loads(queued.stdout)["ticket"]
    no_key = tmp_path / "no-key.yaml"
    no_key.write_text(yaml.safe_dump({"backend": "anthropic", "defer": {"window": window}}))
    result = runner.invoke(app, ["heartbeat", "-c", str(no_key), "--json"])
    assert result.exit_code == 1, result.output  # a warning
    drain = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "drain")
    assert drain["status"] == "warning" and drain["value"] == "failed"
    assert "no API key" in drain["detail"]
    shown = runner.invoke(app, ["queue", "show", ticket, "-c", str(no_key), "--json"])
    assert json.loads(shown.stdout)["state"] == "queued"
