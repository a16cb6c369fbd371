"""Crash safety: a drain killed at any step, then run again, loses nothing, submits nothing
twice, records nothing twice and forgets no batch. Also two drains at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tars_opt import Request, open_app
from tars_opt.defer.queue import Queue
from tars_opt.drain.runner import Drainer
from tars_opt.store import connect
from tests.drain_helpers import Clock, ScriptedBatches, at

NIGHT = at("2026-11-22T01:00")
REPO = Path(__file__).resolve().parents[2]


class Crash(Exception):
    pass


def crash_at(step: str):
    def checkpoint(name: str) -> None:
        if name == step:
            raise Crash(step)

    return checkpoint


def enqueue(app, n: int, clock=None) -> list[str]:
    q = Queue(app.db, clock or time.time)
    return [
        q.enqueue(
            # One model for all, so one batch: the tests count submissions.
            Request.from_prompt(f"task {i}", model="claude-haiku-5-5", forced_model=True),
            reason="test",
            max_wait_s=None,
            deadline=None,
            expected_at=None,
        )["ticket"]
        for i in range(n)
    ]


def assert_each_done_once(app, tickets: list[str]) -> None:
    q = Queue(app.db)
    tasks = [q.require(t) for t in tickets]
    assert {t["state"] for t in tasks} == {"done"}
    rows = app.db.execute("SELECT request_id FROM calls WHERE source = 'batch'").fetchall()
    assert sorted(r[0] for r in rows) == sorted(t["request_id"] for t in tasks)
    left = app.db.execute(
        "SELECT COUNT(*) FROM batches WHERE state IN ('submitting', 'in_progress', 'ended')"
    ).fetchone()[0]
    assert left == 0


@pytest.mark.parametrize(
    ("step", "hold"),
    [
        ("claimed", False),
        ("prepared", False),
        ("opened", False),
        ("submitted", False),
        ("recorded", False),
        ("answer", False),
        ("polled", True),
        ("answer", True),
    ],
)
def test_crash_at_each_step_then_run_again(home: Path, step: str, hold: bool) -> None:
    clock = Clock(NIGHT)
    app = open_app(backend="offline", overrides={"defer.max_batch_requests": 4})
    tickets = enqueue(app, 10, clock)
    api = ScriptedBatches(clock, hold=hold)  # the remote API outlives the crashed drain
    first = Drainer(app.config, app.db, backend=api, clock=clock, checkpoint=crash_at(step))
    if hold:
        Drainer(app.config, app.db, backend=api, clock=clock).run()  # submits; none ended
        api.end_all()
    with pytest.raises(Crash):
        first.run()
    clock.now += 31 * 60  # the dead drain's lease runs out
    api.end_all()
    report = Drainer(app.config, app.db, backend=api, clock=clock, sleep=clock.sleep).run(wait=True)
    assert report.uncertain == 0
    assert_each_done_once(app, tickets)
    assert set(api.sent) == {f"{t}-1" for t in tickets}
    assert all(n == 1 for n in api.sent.values()), "a request was submitted twice"
    if step == "submitted":
        assert len(report.adopted) == 1  # found again by listing batches


def test_a_live_drains_claims_are_left_alone(home: Path) -> None:
    clock = Clock(NIGHT)
    app = open_app(backend="offline")
    tickets = enqueue(app, 3, clock)
    api = ScriptedBatches(clock)
    with pytest.raises(Crash):
        Drainer(app.config, app.db, backend=api, clock=clock, checkpoint=crash_at("opened")).run()
    report = Drainer(app.config, app.db, backend=api, clock=clock).run()
    assert report.released == 0 and report.abandoned == 0 and report.claimed == 0
    assert {Queue(app.db).require(t)["state"] for t in tickets} == {"claimed"}
    assert api.submits == 0


def test_an_unrecorded_batch_still_running_blocks_resubmission(home: Path) -> None:
    clock = Clock(NIGHT)
    app = open_app(backend="offline")
    tickets = enqueue(app, 3, clock)
    api = ScriptedBatches(clock, hold=True)
    with pytest.raises(Crash):
        Drainer(
            app.config, app.db, backend=api, clock=clock, checkpoint=crash_at("submitted")
        ).run()
    clock.now += 31 * 60
    report = Drainer(app.config, app.db, backend=api, clock=clock).run()
    # In progress, its custom_ids unreadable yet: wait rather than risk a second submission.
    assert report.uncertain == 1 and api.submits == 1
    api.end_all()
    report = Drainer(app.config, app.db, backend=api, clock=clock).run()
    assert len(report.adopted) == 1 and report.outcomes["done"] == 3
    assert_each_done_once(app, tickets)


def test_two_drains_in_parallel_take_each_task_once(home: Path) -> None:
    app = open_app(backend="offline", overrides={"defer.max_batch_requests": 15})
    tickets = enqueue(app, 120)
    db_path = app.config.resolved_database()
    errors: list[BaseException] = []

    def one() -> None:
        try:
            db = connect(db_path)
            Drainer(app.config, db).run(now=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sent = Counter()

    for (items,) in app.db.execute("SELECT items FROM offline_batches").fetchall():
        sent.update(i["custom_id"] for i in json.loads(items))
    assert set(sent) == {f"{t}-1" for t in tickets} and max(sent.values()) == 1
    assert_each_done_once(app, tickets)


SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from tars_opt import open_app
from tars_opt.drain.runner import Drainer

def checkpoint(name):
    if name == {step!r}:
        open({marker!r}, "w").write(name)
        time.sleep(120)

app = open_app(backend="offline", overrides={{"defer.max_batch_requests": 10}})
Drainer(app.config, app.db, checkpoint=checkpoint).run(now=True)
"""


@pytest.mark.parametrize("step", ["submitted", "answer"])
def test_kill_9_mid_drain_then_run_again(home: Path, tmp_path: Path, step: str) -> None:
    app = open_app(backend="offline", overrides={"defer.max_batch_requests": 10})
    tickets = enqueue(app, 25)
    marker = tmp_path / "reached"
    code = SCRIPT.format(repo=str(REPO), step=step, marker=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    deadline = time.time() + 30
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the drain never reached the step"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    report = Drainer(app.config, app.db).run(now=True)
    if step == "submitted":
        assert len(report.adopted) == 1
    assert_each_done_once(app, tickets)
    (batches,) = app.db.execute("SELECT COUNT(*) FROM offline_batches").fetchone()
    assert batches == 3  # 25 tasks in batches of 10: none sent twice


LOOP = """
import sys
sys.path.insert(0, {repo!r})
from tars_opt import open_app
from tars_opt.drain.runner import Drainer

app = open_app(backend="offline", overrides={{"defer.wave_size": 20}})
Drainer(app.config, app.db).run(now=True)
"""


def test_kill_9_at_arbitrary_moments_loses_and_repeats_nothing(home: Path) -> None:
    app = open_app(backend="offline")
    tickets = enqueue(app, 200)
    code = LOOP.format(repo=str(REPO))
    for batches_seen in (1, 4, 7):
        # Kill as soon as the drain has made this many batches: wherever it then is.
        proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
        deadline = time.time() + 30
        while proc.poll() is None and time.time() < deadline:
            (n,) = app.db.execute("SELECT COUNT(*) FROM offline_batches").fetchone()
            if n >= batches_seen:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    Drainer(app.config, app.db).run(now=True)
    assert_each_done_once(app, tickets)
    sent: Counter[str] = Counter()

    for (items,) in app.db.execute("SELECT items FROM offline_batches").fetchall():
        sent.update(i["custom_id"] for i in json.loads(items))
    assert set(sent) == {f"{t}-1" for t in tickets} and max(sent.values()) == 1


def test_queue_wait_notices_a_drain_within_its_poll_cap(home: Path) -> None:
    clock = Clock(NIGHT)
    app = open_app(backend="offline")
    (ticket,) = enqueue(app, 1, clock)
    q = Queue(app.db, clock)
    reads = []
    real_require = q.require
    q.require = lambda t: reads.append(t) or real_require(t)  # type: ignore[method-assign]
    drained_at = []

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if clock.now - NIGHT >= 40 and not drained_at:  # a drain answers 40 s in
            Drainer(app.config, app.db, clock=clock).run()
            drained_at.append(clock.now)

    task = q.wait(ticket, sleep=sleep)
    assert task["state"] == "done"
    # Short first checks, doubling, capped at 1 s: noticed within a second, not 30.
    assert clock.slept[:6] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0] and max(clock.slept) == 1.0
    assert clock.now - drained_at[0] <= 1.0
    # Between writes a check is a PRAGMA, not a read of the task.
    assert len(reads) < len(clock.slept) / 4
    (other,) = enqueue(app, 1, clock)
    assert q.wait(other, timeout_s=25, sleep=clock.sleep)["state"] == "queued"


def test_a_drain_that_cannot_start_its_backend_leaves_the_queue_as_it_was(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The heartbeat drains inside the window: without an API key that drain fails, and a
    # `queue cancel` right after must not find its task claimed for a 30-minute lease.
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    app = open_app()
    tickets = enqueue(app, 3)
    with pytest.raises(Exception, match="no API key"):
        Drainer(app.config, app.db, clock=Clock(NIGHT)).run(now=True)
    q = Queue(app.db)
    assert [q.require(t)["state"] for t in tickets] == ["queued"] * 3
    assert all(q.require(t)["owner"] is None for t in tickets)
    q.cancel(tickets[0])
    assert q.require(tickets[0])["state"] == "canceled"
