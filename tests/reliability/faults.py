"""The API-fault run shared by the CI test and scripts/soak.py: many requests and a few
batches against the fake API at a set fault rate, then what a user and the ledger saw."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tars_opt import Request, open_app
from tars_opt.defer.queue import Queue
from tars_opt.drain.runner import Drainer
from tars_opt.errors import BackendError
from tests.fake_anthropic.faults import Fault
from tests.fake_anthropic.server import FakeAnthropic

RETRY_AFTER_MS = 40.0
# A slow fault sleeps past the client's timeout; the SDK gives up on it and retries.
TIMEOUT_S = 0.25
SLOW = Fault("slow", delay=0.4)
KINDS = [
    Fault("rate_limit"),
    Fault("overloaded"),
    Fault("api_error"),
    Fault("connection_reset"),
    SLOW,
    Fault("stream_cut", after_events=2),
    Fault("stream_error", after_events=2),
]


def scripted_output_tokens(body: dict[str, Any]) -> int:
    """The output tokens the fake answers a body with: fixed per prompt, so checkable."""
    text = str(body.get("messages"))
    return 3 + int(hashlib.sha256(text.encode()).hexdigest()[:4], 16) % 40


def responder(body: dict[str, Any]) -> dict[str, Any]:
    return {"text": "answer " * 6, "output_tokens": scripted_output_tokens(body)}


@dataclass
class FaultRun:
    """What one run did and saw."""

    requests: int = 0
    answered: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    batch_tasks: int = 0
    http_requests: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    retries_checked: int = 0
    problems: list[str] = field(default_factory=list)


def overrides() -> dict[str, Any]:
    return {
        "api.timeout_s": TIMEOUT_S,
        "api.max_retries": 2,
        "defer.enabled": False,
        "routing.enabled": False,
        "cache.enabled": False,
        "budget.policy": "warn",
    }


def run_faults(
    server: FakeAnthropic, *, requests: int, tasks: int, rate: float, seed: int
) -> FaultRun:
    """Send `requests` asks (every third streamed) and drain `tasks` deferred tasks with faults
    at `rate`; check every outcome and return the figures (problems lists what went wrong)."""
    server.responder = responder
    server.fault_retry_after_ms = RETRY_AFTER_MS
    server.fault_kinds = KINDS
    server.fault_seed = seed
    server.fault_rate = rate
    app = open_app(overrides=overrides())
    opt = app.optimizer()
    run = FaultRun()
    outcome: dict[str, str] = {}
    for i in range(requests):
        req = Request.from_prompt(f"Fault run question {seed}-{i}: name a prime above {i}.")
        chunks: list[str] = []
        run.requests += 1
        try:
            reply = opt.ask(req, on_text=chunks.append if i % 3 == 0 else None)
        except BackendError as exc:
            message = str(exc)
            if "\n" in message or len(message) < 20:
                run.problems.append(f"unclear failure reason: {message!r}")
            run.failed[exc.kind] += 1
            outcome[req.request_id] = "failed"
            continue
        run.answered += 1
        outcome[req.request_id] = "answered"
        if i % 3 == 0 and "".join(chunks) != reply.text:
            run.problems.append(f"{req.request_id}: streamed text differs from the answer")
    run.problems += check_ledger(app, server, outcome)
    run.batch_tasks, batch_problems = run_batches(app, server, tasks, seed)
    run.problems += batch_problems
    checked, retry_problems = check_retry_after(server)
    run.retries_checked = checked
    run.problems += retry_problems
    run.http_requests = len(server.requests)
    run.faults = Counter(f["kind"] for f in server.faults_injected)
    server.fault_rate = 0.0
    app.db.close()
    return run


def check_ledger(app: Any, server: FakeAnthropic, outcome: dict[str, str]) -> list[str]:
    """Each request has exactly one row; failed rows cost nothing; answered rows carry the
    usage the fake API reported for the one attempt that succeeded."""
    problems: list[str] = []
    bodies = {r.request_id: r.body for r in server.requests if r.status == 200}
    rows = {r["request_id"]: r for r in app.db.query("SELECT * FROM calls WHERE source = 'api'")}
    if set(rows) != set(outcome):
        problems.append(f"ledger has {len(rows)} api rows for {len(outcome)} requests")
    for rid, what in outcome.items():
        row = rows.get(rid)
        if row is None:
            continue
        if what == "failed":
            if row["error"] is None or row["cost"] != 0 or row["output_tokens"] != 0:
                problems.append(f"{rid}: failed request billed or without a reason: {row}")
            continue
        if row["error"] is not None:
            problems.append(f"{rid}: answered but the row has an error")
        body = bodies.get(row["api_request_id"])
        if body is None:
            problems.append(f"{rid}: no successful API request {row['api_request_id']}")
            continue
        prompt = (
            row["input_tokens"] + row["cache_write_5m"] + row["cache_write_1h"] + row["cache_read"]
        )
        if prompt != FakeAnthropic.count_tokens(body):
            problems.append(f"{rid}: prompt tokens {prompt} != the API's")
        if row["output_tokens"] != scripted_output_tokens(body):
            problems.append(f"{rid}: output tokens {row['output_tokens']} != the API's")
        if row["cost"] <= 0:
            problems.append(f"{rid}: answered row costs nothing")
    left = app.db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0]
    if left:
        problems.append(f"{left} reservations left after the run")
    return problems


def run_batches(app: Any, server: FakeAnthropic, tasks: int, seed: int) -> tuple[int, list[str]]:
    """Queue `tasks`, drain until none is in flight; each ends done or failed, once."""
    q = Queue(app.db)
    tickets = [
        q.enqueue(
            Request.from_prompt(f"Batch fault task {seed}-{i}"),
            reason="test",
            max_wait_s=None,
            deadline=None,
            expected_at=None,
        )["ticket"]
        for i in range(tasks)
    ]
    problems: list[str] = []
    for _ in range(60):
        try:
            report = Drainer(app.config, app.db, sleep=lambda s: None).run(now=True)
        except BackendError:
            continue  # a drain that cannot reach the API leaves its work for the next run
        if report.in_flight == 0 and not q.tasks(states=["queued", "claimed"]):
            break
    states = Counter(q.require(t)["state"] for t in tickets)
    if set(states) - {"done", "failed"}:
        problems.append(f"batch tasks not finished: {dict(states)}")
    sent = Counter(
        item["custom_id"]
        for r in server.requests_to("/v1/messages/batches", "POST")
        if r.status == 200 and isinstance(r.body, dict)
        for item in r.body.get("requests", [])
    )
    if any(n > 1 for n in sent.values()):
        problems.append("a batch request (same custom_id) was submitted twice")
    rows = Counter(
        r[0] for r in app.db.execute("SELECT request_id FROM calls WHERE source = 'batch'")
    )
    if any(n > 1 for n in rows.values()):
        problems.append("a batch result was recorded twice")
    done = [q.require(t) for t in tickets if q.require(t)["state"] == "done"]
    if {t["request_id"] for t in done} - set(rows):
        problems.append("a done task has no ledger row")
    return tasks, problems


def check_retry_after(server: FakeAnthropic) -> tuple[int, list[str]]:
    """After a 429/529/500 with retry-after-ms, the next attempt waited at least that long
    (the fake server's own arrival times). Returns how many retries were checked."""
    problems: list[str] = []
    checked = 0
    reqs = [r for r in server.requests if r.path == "/v1/messages" and r.method == "POST"]
    for before, after in zip(reqs, reqs[1:], strict=False):
        if before.fault in ("rate_limit", "overloaded", "api_error") and (
            after.header("x-stainless-retry-count") not in (None, "0")
        ):
            checked += 1
            gap = after.time - before.time
            if gap < RETRY_AFTER_MS / 1000 * 0.95:
                problems.append(f"retry {gap * 1000:.0f} ms after a {before.fault}")
    return checked, problems
