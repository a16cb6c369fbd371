"""kill -9 at random points of `ask` (library and CLI) and `drain`, then check the data.

Shared by tests/reliability/test_kill9.py (CI) and scripts/soak.py (longer).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tars_opt import Request, open_app
from tars_opt.accounting.budget import Budget
from tars_opt.defer.queue import Queue
from tars_opt.drain.runner import Drainer
from tars_opt.store import is_server
from tests.fake_anthropic.server import FakeAnthropic

REPO = Path(__file__).resolve().parents[2]


class Zygote:
    """The warm parent of tests/reliability/zygote.py; forks workers on request."""

    def __init__(self, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
        env["PYTHONPATH"] = str(REPO)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(REPO),
            env=env,
        )
        assert self._read().get("ready"), "the zygote did not start"
        self.cwd = cwd

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote died")
        return json.loads(line)

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def fork(self, job: str, out: Path, env: dict[str, str], **spec: Any) -> int:
        self._send(
            {"cmd": "fork", "job": job, "out": str(out), "env": env, "cwd": str(self.cwd), **spec}
        )
        return int(self._read()["pid"])

    def wait(self, pid: int) -> dict[str, Any]:
        self._send({"cmd": "wait", "pid": pid})
        return self._read()

    def close(self) -> None:
        try:
            self._send({"cmd": "quit"})
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class KillRun:
    """Figures of one kill run; `problems` lists every consistency failure found."""

    points: Counter[str] = field(default_factory=Counter)  # job -> workers killed by SIGKILL
    finished: Counter[str] = field(default_factory=Counter)  # job -> workers done before
    received: int = 0
    failed: int = 0
    tasks: int = 0
    batches: int = 0  # batches the killed drains and the final one submitted
    problems: list[str] = field(default_factory=list)

    @property
    def killed(self) -> int:
        return sum(self.points.values())


def worker_env(server: FakeAnthropic, home: Path, key: str = "test-key") -> dict[str, str]:
    return {
        "TARS_OPT_HOME": str(home),
        "TARS_OPT_HOLDOUT": "0",
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_API_KEY": key,
    }


def integrity(location: str | Path) -> str | None:
    """SQLite's integrity_check of a database file; None for a server (no file to check)."""
    if is_server(location):
        return None
    conn = sqlite3.connect(location, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def _first_answer(path: Path, limit: float = 20.0) -> None:
    """Wait (bounded) until a worker has printed its first answer: its start-up (imports
    done, but the embedding model to load) takes longer on a loaded machine, and most kills
    should land while it is answering."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0:
            return
        time.sleep(0.01)


def _batch_sent(server: FakeAnthropic, before: int, limit: float = 20.0) -> None:
    """Wait (bounded) until a drain has sent its batch: kills then land between submitting,
    recording, polling and collecting."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if len(server.requests_to("/v1/messages/batches", "POST")) > before:
            return
        time.sleep(0.005)


def _kill_after(zygote: Zygote, pid: int, delay: float) -> dict[str, Any]:
    time.sleep(delay)
    with contextlib.suppress(ProcessLookupError):  # it may have finished already
        os.kill(pid, signal.SIGKILL)  # our own forked worker, by its id
    return zygote.wait(pid)


def received_ids(outputs: list[Path]) -> tuple[set[str], set[str]]:
    """Request ids whose answer (or failure) a caller fully received, from worker outputs."""
    answered: set[str] = set()
    failed: set[str] = set()
    for path in outputs:
        text = path.read_text() if path.exists() else ""
        if path.suffix.lstrip(".").isdigit():  # one `ask --json` output
            try:
                doc = json.loads(text)
            except ValueError:
                continue  # killed mid-print: the caller did not get it
            answered.add(doc["request_id"])
            continue
        for line in text.splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if "answered" in doc:
                answered.add(doc["answered"])
            elif "failed" in doc:
                failed.add(doc["failed"])
    return answered, failed


def run_kills(
    server: FakeAnthropic,
    work: Path,
    *,
    asks: int,
    clis: int,
    drains: int,
    seed: int,
    window: float = 0.6,
) -> KillRun:
    """Kill `asks` library ask loops, `clis` CLI asks and `drains` drains at random moments
    (uniform in [0, window] s after the fork, or after the first answer for most asks);
    check after each kill and at the end."""
    rng = random.Random(seed)
    home = work / "home"
    run = KillRun()
    # Answers take a little while, so kills land inside calls as well as between them.
    server.responder = lambda body: {"text": "prime: 101", "delay": rng.choice([0, 0.01, 0.03])}
    server.batch_mode = "polls"
    server.batch_polls = 4
    env = worker_env(server, home)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the checks below open the same home
    try:
        return _run_kills(server, work, run, env, rng, asks, clis, drains, seed, window)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _run_kills(
    server: FakeAnthropic,
    work: Path,
    run: KillRun,
    env: dict[str, str],
    rng: random.Random,
    asks: int,
    clis: int,
    drains: int,
    seed: int,
    window: float,
) -> KillRun:
    app = open_app()
    db_path = app.config.resolved_database()
    outputs: list[Path] = []
    jobs = ["ask_loop"] * asks + ["cli_ask"] * clis + ["drain"] * drains
    rng.shuffle(jobs)
    q = Queue(app.db)
    tickets: list[str] = []
    cfg = work / "drain-config.yaml"
    cfg.write_text("defer:\n  poll_seconds: 0.1\n")
    with Zygote(work) as zygote:
        for n, job in enumerate(jobs):
            out = work / f"w{n}.out"
            if job == "drain":
                tickets += [
                    q.enqueue(
                        Request.from_prompt(f"kill run task {n}-{k}"),
                        reason="test",
                        max_wait_s=None,
                        deadline=None,
                        expected_at=None,
                    )["ticket"]
                    for k in range(3)
                ]
                batches_before = len(server.requests_to("/v1/messages/batches", "POST"))
                pid = zygote.fork(job, out, env, args=["--wait", "--config", str(cfg)])
            elif job == "cli_ask":
                pid = zygote.fork(job, out, env, tag=f"k{seed}-{n}", n=50)
                outputs += [out.with_name(f"{out.name}.{i}") for i in range(50)]
            else:
                pid = zygote.fork(job, out, env, tag=f"k{seed}-{n}", n=200)
                outputs.append(out)
            if job == "drain" and n % 2:  # half the drains: once their batch is sent
                _batch_sent(server, batches_before)
            elif job != "drain" and n % 5:  # 1 in 5 from the fork: start-up too
                _first_answer(outputs[-50] if job == "cli_ask" else out)
            # A drain whose batch is out finishes within a few polls: kill it sooner.
            limit = window / 2 if job == "drain" and n % 2 else window
            status = _kill_after(zygote, pid, rng.uniform(0.0, limit))
            if status["signal"] == signal.SIGKILL:
                run.points[job] += 1
            else:
                run.finished[job] += 1
                if status["code"] not in (0, None):
                    run.problems.append(f"worker {n} ({job}) exited {status['code']}")
            check = integrity(db_path)
            if check not in ("ok", None):
                run.problems.append(f"integrity_check after kill {n}: {check}")
    run.problems += check_after(app, server, outputs, tickets, run)
    app.db.close()
    return run


def check_after(
    app: Any, server: FakeAnthropic, outputs: list[Path], tickets: list[str], run: KillRun
) -> list[str]:
    problems: list[str] = []
    answered, failed = received_ids(outputs)
    run.received, run.failed = len(answered), len(failed)
    rows = {r["request_id"]: r for r in app.db.query("SELECT * FROM calls")}
    for rid in answered:
        row = rows.get(rid)
        if row is None:
            problems.append(f"{rid}: answer received but no ledger row")
        elif row["error"] is not None:
            problems.append(f"{rid}: answer received but the row says {row['error']}")
    for rid in failed:
        if rid not in rows or rows[rid]["error"] is None:
            problems.append(f"{rid}: failure reported but not recorded as failed")
    ok_ids = {r.request_id for r in server.requests if r.status == 200}
    for rid, row in rows.items():
        if row["source"] == "api" and row["error"] is None and row["api_request_id"] not in ok_ids:
            problems.append(f"{rid}: ledger row for an answer the API never gave")
    # Reservations: a killed call may leave one behind; it stops counting after the TTL.
    ttl = app.config.budget.reservation_ttl_s
    open_res = app.db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
    if open_res > run.killed:
        problems.append(f"{open_res} reservations left by {run.killed} kills")
    later = Budget(app.config, app.db, clock=lambda: time.time() + ttl + 1)
    if later.state().reserved_usd != 0:
        problems.append("reservations still count after their TTL")
    # The queue: one final drain (a clock past every lease) finishes everything once.
    if tickets:
        drainer = Drainer(
            app.config, app.db, clock=lambda: time.time() + 3600, sleep=lambda s: None
        )
        for _ in range(20):
            report = drainer.run(now=True)
            if report.in_flight == 0 and not Queue(app.db).tasks(states=["queued", "claimed"]):
                break
        q = Queue(app.db)
        tasks = [q.require(t) for t in tickets]
        run.tasks = len(tasks)
        states = Counter(t["state"] for t in tasks)
        if set(states) != {"done"}:
            problems.append(f"tasks not all done after the final drain: {dict(states)}")
        batch_rows = Counter(
            r[0] for r in app.db.execute("SELECT request_id FROM calls WHERE source = 'batch'")
        )
        for t in tasks:
            if batch_rows.get(t["request_id"], 0) != 1:
                problems.append(f"task {t['ticket']}: {batch_rows.get(t['request_id'], 0)} rows")
        sent = Counter(
            item["custom_id"]
            for r in server.requests_to("/v1/messages/batches", "POST")
            if r.status == 200 and isinstance(r.body, dict)
            for item in r.body.get("requests", [])
        )
        run.batches = sum(
            1 for r in server.requests_to("/v1/messages/batches", "POST") if r.status == 200
        )
        twice = [c for c, k in sent.items() if k > 1]
        if twice:
            problems.append(f"submitted twice: {twice[:5]}")
        per_task = Counter(c.rsplit("-", 1)[0] for c in sent)
        if any(k > 1 for k in per_task.values()):
            problems.append(f"a task went out in two batches: {per_task.most_common(3)}")
        left = app.db.execute(
            "SELECT COUNT(*) FROM batches WHERE state IN ('submitting', 'in_progress', 'ended')"
        ).fetchone()[0]
        if left:
            problems.append(f"{left} batches never collected")
    return problems
