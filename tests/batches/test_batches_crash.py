"""A client's Message Batch survives a crash at any step: the process is killed (or its
objects dropped and the database reopened), a drain runs again, and no request is lost,
none is sent upstream twice, and the results held before are still served."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tars_opt.defer.queue import Queue
from tars_opt.drain.runner import Drainer
from tests.batches.conftest import NIGHT, Setup
from tests.batches.test_batches import counts, requests, results

REPO = Path(__file__).resolve().parents[2]
STEPS = ["claimed", "prepared", "opened", "submitted", "recorded", "polled", "answer"]


class Crash(Exception):
    pass


def sent_upstream(setup: Setup) -> Counter[str]:
    """How often each custom_id reached the API in a batch create."""
    sent: Counter[str] = Counter()
    for r in setup.api.requests_to("/v1/messages/batches", "POST"):
        if r.status == 200:
            sent.update(item["custom_id"] for item in r.body["requests"])
    return sent


def assert_answered_once(setup: Setup, batch_id: str, n: int) -> None:
    batch = setup.client.messages.batches.retrieve(batch_id)
    assert batch.processing_status == "ended"
    assert counts(batch)["succeeded"] == n
    assert {r.type for r in results(setup, batch_id).values()} == {"succeeded"}
    sent = sent_upstream(setup)
    assert len(sent) == n and set(sent.values()) == {1}, "a request was sent twice"
    rows = setup.app.db.query(
        "SELECT client_custom_id FROM calls WHERE client_batch_id = ?", [batch_id]
    )
    assert sorted(r["client_custom_id"] for r in rows) == [f"r{i}" for i in range(n)]


@pytest.mark.parametrize("step", STEPS)
def test_objects_dropped_at_each_step_then_reopened(batches: Setup, step: str) -> None:
    created = batches.client.messages.batches.create(requests=requests(4))
    batches.clock.now = NIGHT

    def crash(name: str) -> None:
        if name == step:
            raise Crash(step)

    drainer = Drainer(
        batches.app.config, batches.app.db, clock=batches.clock, owner="gone:1:x",
        checkpoint=crash,
    )  # fmt: skip
    with pytest.raises(Crash):
        drainer.run()
    del drainer
    batches.reopen()  # the gateway restarts on the same database file
    mid = batches.client.messages.batches.retrieve(created.id)
    assert mid.processing_status == "in_progress" or step == "answer"
    assert sum(counts(mid).values()) == 4  # no request lost

    batches.clock.now += 31 * 60  # the dead drain's lease runs out
    batches.drain()
    assert_answered_once(batches, created.id, 4)


def test_results_held_before_a_restart_are_served_after(batches: Setup) -> None:
    created = batches.client.messages.batches.create(requests=requests(2))
    batches.clock.now = NIGHT
    batches.drain()
    before = [line.model_dump() for line in batches.client.messages.batches.results(created.id)]
    batches.reopen()
    after = [line.model_dump() for line in batches.client.messages.batches.results(created.id)]
    assert after == before and len(after) == 2


def test_a_create_interrupted_midway_leaves_nothing(batches: Setup, monkeypatch) -> None:
    def half(cur, rows):  # the process dies after writing some of the rows
        cur.insert("tasks", rows[0])
        raise Crash("killed")

    monkeypatch.setattr(Queue, "insert_tasks", staticmethod(half))
    with pytest.raises(Exception):  # noqa: B017 - whatever reaches the client
        batches.client.messages.batches.create(requests=requests(3))
    monkeypatch.undo()
    batches.reopen()
    assert batches.app.db.scalar("SELECT COUNT(*) FROM client_batches") == 0
    assert batches.app.db.scalar("SELECT COUNT(*) FROM tasks") == 0


# Each start of a process imports the SDK (seconds on a loaded machine): a few steps only;
# every step is covered in-process above.
@pytest.mark.parametrize("step", ["claimed"])
def test_sigkill_of_a_drain_process_at_a_step(
    make_batches, home: Path, monkeypatch, step: str
) -> None:
    setup = make_batches()
    setup.api.clock = None  # real time: the killed process runs on the wall clock
    setup.clock.now = __import__("time").time()
    setup.api.batch_mode = "immediate"
    created = setup.client.messages.batches.create(requests=requests(3))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TARS_OPT_"))},
        "TARS_OPT_HOME": str(home),
        "TARS_OPT_HOLDOUT": "0",
        "ANTHROPIC_BASE_URL": setup.api.url,
        "ANTHROPIC_API_KEY": "drain-key",
        "PYTHONPATH": str(REPO),
    }
    if os.environ.get("TARS_OPT_DB"):  # the team database, when the tests run on one
        env["TARS_OPT_DB"] = os.environ["TARS_OPT_DB"]
    proc = subprocess.run(
        [sys.executable, "-m", "tests.batches.killed_drain", step],
        env=env, cwd=str(REPO), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    setup.reopen()
    assert sum(counts(setup.client.messages.batches.retrieve(created.id)).values()) == 3
    # Same host, dead pid: its claims and its unrecorded submission are recovered at once.
    report = Drainer(setup.app.config, setup.app.db).run(now=True)
    assert report.uncertain == 0, json.dumps(report.to_dict())
    assert_answered_once(setup, created.id, 3)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition, limit: float = 60.0) -> bool:
    # A real server in another process on the wall clock: poll briefly.
    import time

    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            if condition():
                return True
        except Exception:  # not listening yet
            pass
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("step", ["submitted", "answer"])
def test_sigkill_of_a_gateway_draining_inside_then_restart(home: Path, fake_api, step: str) -> None:
    import anthropic

    # Every client request is due at once (turnaround >= 24 h), so the drain inside the
    # gateway sends it whatever the time of day.
    config = home.parent / "cfg.yaml"
    # No embedding model in these processes: it would only make each start slower.
    config.write_text(
        "defer: {expected_turnaround_minutes: 1440, collect_every_minutes: 1}\n"
        "routing: {router: heuristic}\ncache: {semantic: {enabled: false}}\n"
        "prune: {semantic: false}\ntools: {semantic: false}\n"
    )
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "TARS_OPT_"))},
        "TARS_OPT_HOME": str(home),
        "TARS_OPT_CONFIG": str(config),
        "TARS_OPT_HOLDOUT": "0",
        "ANTHROPIC_BASE_URL": fake_api.url,
        "ANTHROPIC_API_KEY": "drain-key",
        "PYTHONPATH": str(REPO),
    }
    if os.environ.get("TARS_OPT_DB"):  # the team database, when the tests run on one
        env["TARS_OPT_DB"] = os.environ["TARS_OPT_DB"]

    def serve(*kill_at: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.batches.batch_server", str(port), *kill_at],
            env=env, cwd=str(REPO), stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    client = anthropic.Anthropic(
        base_url=f"http://127.0.0.1:{port}", api_key="client-key", max_retries=0
    )
    first = serve(step)
    try:
        assert _wait(lambda: client.messages.batches.list() is not None), "no server"
        created = client.messages.batches.create(requests=requests(3))
        client.post("/test/wake", cast_to=object)  # the drain inside runs now, and dies
        assert first.wait(60) == -signal.SIGKILL, (
            first.stderr.read()[-2000:] if first.stderr else ""
        )
    finally:
        if first.poll() is None:
            first.kill()
    second = serve()
    try:
        assert _wait(lambda: client.messages.batches.list() is not None), "no server"

        def ended() -> bool:
            batch = client.messages.batches.retrieve(created.id)
            return batch.processing_status == "ended"

        assert _wait(ended), client.messages.batches.retrieve(created.id)
        got = {
            line.custom_id: line.result.type for line in client.messages.batches.results(created.id)
        }
        assert got == {"r0": "succeeded", "r1": "succeeded", "r2": "succeeded"}
        sent: Counter[str] = Counter()
        for r in fake_api.requests_to("/v1/messages/batches", "POST"):
            if r.status == 200:
                sent.update(item["custom_id"] for item in r.body["requests"])
        assert len(sent) == 3 and set(sent.values()) == {1}, "a request was sent twice"
    finally:
        second.terminate()
        second.wait(30)


def test_two_drains_at_once_send_each_request_of_a_batch_once(home: Path) -> None:
    import threading

    from tars_opt import open_app
    from tars_opt.defer.facade import BatchFacade
    from tars_opt.store import connect

    # As `serve`'s drain and a cron drain would, on the same database.
    app = open_app(backend="offline", overrides={"defer.max_batch_requests": 15})
    facade = BatchFacade(app.config, app.db)
    batch = facade.create({"requests": requests(90)}, base_url="http://x")
    errors: list[BaseException] = []

    def one() -> None:
        try:
            Drainer(app.config, connect(app.config.resolved_database())).run(now=True)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    sent: Counter[str] = Counter()
    for (items,) in app.db.execute("SELECT items FROM offline_batches").fetchall():
        sent.update(i["custom_id"] for i in json.loads(items))
    assert len(sent) == 90 and max(sent.values()) == 1
    view = facade.retrieve(batch["id"], base_url="http://x")
    assert view["processing_status"] == "ended" and view["request_counts"]["succeeded"] == 90
    assert (
        app.db.scalar("SELECT COUNT(*) FROM calls WHERE client_batch_id = ?", [batch["id"]]) == 90
    )
