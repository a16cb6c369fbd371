"""The drain: send queued tasks as Message Batches off-peak, collect what has ended.

One run (`Drainer.run`), in this order, each step safe to interrupt at any point:
1. recover - claims of a drain that died go back to the queue; a batch it was submitting
   but never recorded is looked up by listing the API's batches and matching custom_ids;
2. collect - poll recorded batches; the results of ended ones go to their tasks and to
   the ledger through Optimizer.finish (batch tier: half price);
3. submit  - inside the window (or `now`): claim queued tasks by priority, run them
   through the chain's prepare (every stage but defer), group them per model, submit
   each batch, and record its id before anything else happens. Outside the window only
   tasks whose deadline is near (the deadline rule) are submitted.

Requests of a client's Message Batch (the gateway's `/v1/messages/batches`) are tasks
like any other; their batch's cancel and 24-hour deadline settle the ones still queued,
and an upstream batch holding only such requests is canceled upstream.

Idempotence rests on two facts: a task changes state only by a conditional UPDATE on its
current custom_id, and the ledger keys rows by request_id, which a task keeps across
retries - so a ledger row found for a task means its answer was already recorded.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tars_opt.accounting.ledger import Ledger
from tars_opt.accounting.money import usd
from tars_opt.backends import Backend, BatchItem
from tars_opt.config.schema import Config
from tars_opt.defer.batching import group_requests, mark_shared_prefixes
from tars_opt.defer.queue import Queue, queue_budget
from tars_opt.defer.taskjson import (
    prepared_from_json,
    prepared_to_json,
    queued_decision,
    request_from_json,
)
from tars_opt.defer.window import Window
from tars_opt.drain.recovery import Recovery, new_owner
from tars_opt.errors import BackendError
from tars_opt.pipeline.optimizer import Optimizer, build_backend
from tars_opt.store.database import Database
from tars_opt.types import BackendResult, Prepared, Reply

log = logging.getLogger("tars_opt.drain")
IN_FLIGHT = ("in_progress", "canceling", "ended")


def drain_backend(config: Config, db: Database, clock: Callable[[], float]) -> Backend:
    """The config's backend; offline batches are kept in the database (see offline_store)."""
    return build_backend(config, clock, db)


@dataclass
class DrainReport:
    """What one drain run did."""

    window: str
    in_window: bool
    opens_at: float | None = None
    forced: bool = False  # `--now`: submitted whatever the window
    released: int = 0
    adopted: list[str] = field(default_factory=list)
    abandoned: int = 0
    uncertain: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    claimed: int = 0
    answered_in_prepare: int = 0
    submitted: list[dict[str, Any]] = field(default_factory=list)
    submit_errors: list[str] = field(default_factory=list)
    in_flight: int = 0
    due: int = 0  # tasks submitted outside the window because their deadline is near
    closed: int = 0  # queued requests of canceled or expired client batches settled
    canceled_upstream: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "in_window": self.in_window,
            "opens_at": self.opens_at,
            "now": self.forced,
            "recovered": {
                "released_claims": self.released,
                "adopted_batches": self.adopted,
                "abandoned_submissions": self.abandoned,
                "uncertain_submissions": self.uncertain,
            },
            "collected": dict(self.outcomes),
            "claimed": self.claimed,
            "answered_in_prepare": self.answered_in_prepare,
            "submitted": self.submitted,
            "submitted_for_deadline": self.due,
            "client_batches_closed": self.closed,
            "canceled_upstream": self.canceled_upstream,
            "submit_errors": self.submit_errors,
            "in_flight_batches": self.in_flight,
        }


class Drainer(Recovery):
    """Runs drains for one config and database.

    `checkpoint(name)` is called between steps (claimed, prepared, opened, submitted,
    recorded, polled, answer, settled): a place to log or, in tests, to crash.
    """

    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        owner: str | None = None,
        checkpoint: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.defer = config.defer
        self.db = db
        self.clock = clock
        self.sleep = sleep
        self.window = Window.parse(config.defer.window)
        self.queue = Queue(db, clock)
        self.ledger = Ledger(db)
        self.owner = owner or new_owner()
        self.checkpoint = checkpoint or (lambda name: None)
        self._backend = backend
        self._optimizer: Optimizer | None = None
        self._recorded: set[str] = set()  # request ids with a ledger row, per step
        self._done: list[tuple[int, str, str, str | None, str | None]] = []

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = drain_backend(self.config, self.db, self.clock)
        return self._backend

    @property
    def optimizer(self) -> Optimizer:
        if self._optimizer is None:
            opt = Optimizer(self.config, self.db, backend=self.backend, clock=self.clock)
            # The chain minus the defer stage: a queued task is not deferred again. Pruning
            # keeps the optimizer's side_ask, so its summaries (sent at once) still work.
            opt.stages = [s for s in opt.stages if s.name != "defer"]
            self._optimizer = opt
        return self._optimizer

    @property
    def lease_s(self) -> float:
        return self.defer.claim_lease_minutes * 60.0

    @property
    def deadline_lead_s(self) -> float:
        """How long before its deadline a task goes out whatever the window: a batch's
        expected turnaround plus one collect interval (a run may come that much later)."""
        return (self.defer.expected_turnaround_minutes + self.defer.collect_every_minutes) * 60

    # ---- the run -------------------------------------------------------------------------
    def run(
        self,
        *,
        now: bool = False,
        wait: bool = False,
        collect_only: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> DrainReport:
        """One drain: recover, collect, and (inside the window or `now`) submit; outside
        it, only tasks whose deadline is near (also in a `collect_only` run).

        With `wait`, poll until every recorded batch has ended and been collected
        (resubmitting errored requests that have retries left).
        """
        moment = self.clock()
        report = DrainReport(
            str(self.window), self.window.contains(moment), forced=now and not collect_only
        )
        if not report.in_window:
            report.opens_at = self.window.next_open(moment)
        may_submit = (now or report.in_window) and not collect_only
        self.recover(report)
        report.closed += self.queue.close_client_batches()
        self.collect(report)
        if may_submit:
            self.submit(report)
        else:
            self.submit(report, due_by=moment + self.deadline_lead_s)
        if report.submitted:
            # A batch may end at once (small ones, the offline backend): collect it now.
            self.collect(report)
        if wait:
            total = self._pending_tasks()
            while True:
                if may_submit and self.queue.counts()["queued"]:
                    # Retries of errored requests go out again in this run.
                    made = len(report.submitted)
                    self.submit(report)
                    self.collect(report)
                    total = max(total, self._pending_tasks())
                    if len(report.submitted) > made:
                        continue
                if not self._in_flight_batches():
                    break
                if on_progress is not None:
                    on_progress(total - self._pending_tasks(), total)
                self.sleep(self.defer.poll_seconds)
                self.collect(report)
            if on_progress is not None and total:
                on_progress(total, total)
        report.in_flight = self._in_flight_batches()
        log.info("drain run", extra={"owner": self.owner, **report.to_dict()})
        return report

    def _in_flight_batches(self) -> int:
        return len(self.queue.batches(IN_FLIGHT))

    def _pending_tasks(self) -> int:
        return self.queue.count("submitted")

    # ---- 2. collect ----------------------------------------------------------------------
    def collect(self, report: DrainReport) -> None:
        """Poll recorded batches and collect the results of those that ended."""
        self.cancel_upstream(report)
        for row in self.queue.batches(IN_FLIGHT):
            if row["state"] != "ended":
                try:
                    info = self.backend.poll_batch(row["batch_id"])
                except BackendError as exc:
                    log.warning(
                        "poll failed", extra={"batch_id": row["batch_id"], "error": str(exc)}
                    )
                    if exc.kind == "not_found_error":
                        self._lost_batch(row, report, str(exc))
                    continue
                self.checkpoint("polled")
                extra: dict[str, Any] = {"counts": json.dumps(info.counts)}
                if info.status == "ended":
                    extra["ended_at"] = self.clock()
                self.queue.set_batch_state(row["id"], info.status, **extra)
                if info.status != "ended":
                    continue
            if self.queue.lease_batch(row["id"], self.owner, self.lease_s, self.is_stale):
                try:
                    self._collect_batch(row, report)
                except BackendError as exc:
                    # Results unreadable now: keep what was recorded, let any drain retry.
                    self._flush()
                    self.queue.set_batch_state(row["id"], "ended", owner=None, lease_until=None)
                    log.warning(
                        "collect failed", extra={"batch_id": row["batch_id"], "error": str(exc)}
                    )

    def cancel_upstream(self, report: DrainReport) -> None:
        """Cancel upstream the batches that hold only requests of canceled or expired
        client batches. What the API processed before the cancel is billed and recorded."""
        for row in self.queue.cancelable_batches():
            try:
                info = self.backend.cancel_batch(row["batch_id"])
            except BackendError as exc:  # ended meanwhile, or unreachable: collect as usual
                log.warning("cancel failed", extra={"batch_id": row["batch_id"], "error": str(exc)})
                continue
            self.queue.set_batch_state(row["id"], info.status, counts=json.dumps(info.counts))
            report.canceled_upstream.append(row["batch_id"])

    def _lost_batch(self, row: dict[str, Any], report: DrainReport, error: str) -> None:
        """The API no longer knows a recorded batch (deleted, or an offline batch kept in
        another process's memory): its results are unreachable, so its tasks are queued
        again as a new attempt."""
        for task in self.queue.batch_tasks(row["id"]):
            why = f"batch lost: {error}"[:300]
            if self.queue.may_retry(task):
                self.queue.requeue(task["id"], task["custom_id"], why)
                report.outcomes["requeued (batch lost)"] += 1
            else:
                self.queue.settle(task["id"], task["custom_id"], "failed", error=why)
                report.outcomes["failed"] += 1
        self.queue.set_batch_state(row["id"], "abandoned", note=error[:300])

    def _collect_batch(self, row: dict[str, Any], report: DrainReport) -> None:
        pending = {t["custom_id"]: t for t in self.queue.batch_tasks(row["id"])}
        if pending:
            self._recorded = self.ledger.recorded([t["request_id"] for t in pending.values()])
            for item in self.backend.batch_results(row["batch_id"]):
                task = pending.pop(item.custom_id, None)
                if task is not None:
                    report.outcomes[self._settle(task, item)] += 1
            for task in pending.values():
                missing = BatchItem(task["custom_id"], "errored", error="no result in the batch")
                report.outcomes[self._settle(task, missing)] += 1
            self._flush()
            if not self.config.ledger.store_prompts:
                self.queue.forget_prompts(row["id"])
        self.queue.set_batch_state(row["id"], "collected", collected_at=self.clock(), owner=None)

    def _flush(self) -> None:
        # Done tasks are marked in groups: their ledger rows are already committed, and a
        # crash before the group is marked is repaired from the ledger on the next run.
        if self._done:
            self.queue.settle_many(self._done)
            self._done = []

    def _settle(self, task: dict[str, Any], item: BatchItem) -> str:
        """Record one result: ledger first, then the task's state. Returns the outcome."""
        if self._settled_from_ledger(task, item):
            return "already recorded"
        prepared = prepared_from_json(task["prepared"])
        if item.outcome == "succeeded" and item.result is not None:
            # Batch requests are billed at the batch tier whatever the usage says.
            usage = replace(item.result.usage, service_tier="batch")
            waited_ms = (self.clock() - task["created_at"]) * 1000.0
            result = replace(item.result, usage=usage, latency_ms=waited_ms)
            reply = self.optimizer.finish(prepared, result, source="batch")
            self.checkpoint("answer")
            self._done.append(
                (task["id"], task["custom_id"], "done", _reply_json(reply, task), None)
            )
            if len(self._done) >= 500:
                self._flush()
            return "done"
        error = item.error or item.outcome
        retry_left = task["attempts"] <= self.defer.max_retries
        if item.outcome == "errored" and retry_left and self.queue.may_retry(task):
            self.queue.requeue(task["id"], task["custom_id"], error)
            return "retried"
        if item.outcome == "canceled":
            self.queue.settle(task["id"], task["custom_id"], "canceled", error="batch canceled")
            return "canceled"
        state = "expired" if item.outcome == "expired" else "failed"
        self.optimizer.fail(prepared, BackendError(error, kind=f"batch_{state}"), source="batch")
        self.checkpoint("answer")
        self.queue.settle(task["id"], task["custom_id"], state, error=error)
        return state

    def _settled_from_ledger(self, task: dict[str, Any], item: BatchItem | None = None) -> bool:
        # A ledger row for the task's request: its answer was recorded before a crash.
        # `item`, the batch's result for it, still holds the whole Message.
        if task["request_id"] not in self._recorded:
            return False
        row = self.ledger.get(task["request_id"])
        if row is None:
            return False
        state = "failed" if row["error"] else "done"
        if row["error"] and "batch_expired" in row["error"]:
            state = "expired"
        result = _ledger_json(row)
        if state == "done" and item is not None and item.result is not None:
            message = _message_of(item.result, row)
            result = json.dumps({**json.loads(result), "message": message}, separators=(",", ":"))
        self.queue.settle(task["id"], task["custom_id"], state, result=result, error=row["error"])
        return True

    # ---- 3. submit -----------------------------------------------------------------------
    def submit(self, report: DrainReport, *, due_by: float | None = None) -> None:
        """Claim, prepare, group and submit queued tasks, a wave at a time; with `due_by`,
        only tasks whose deadline falls before it.

        Waves bound memory: only `defer.wave_size` tasks (and their batch body, which the
        SDK copies while sending) are held at once, whatever the queue's length.
        """
        if due_by is not None and not self.queue.any_due(due_by):
            return
        spent = queue_budget(self.config, self.db, clock=self.clock).state()
        if spent.policy == "block" and spent.over:
            # A batch's cost is known only when it is collected, so the blocking budget
            # is checked before each run rather than reserved per task.
            report.submit_errors.append(
                f"budget spent ({spent.used_share:.0%} of {usd(spent.budget_usd)}) and "
                "budget.policy is block: nothing submitted; queued tasks stay queued"
            )
            return
        left = self.defer.claim_limit
        while left > 0:
            size = min(left, self.defer.wave_size)
            wave = self.queue.claim(self.owner, self.lease_s, size, due_by=due_by)
            if not wave:
                return
            left -= len(wave)
            report.claimed += len(wave)
            if due_by is not None:
                report.due += len(wave)
            errors = len(report.submit_errors)
            try:
                self._submit_wave(wave, report)
            except BaseException:
                # A wave that fails before its batch is opened (no backend, a stage's
                # error) must not hold its tasks for a whole lease.
                self.queue.release([t["id"] for t in wave], self.owner, unbatched_only=True)
                raise
            if len(report.submit_errors) > errors:
                return  # the API refused or failed: do not hammer it with the next wave

    def _submit_wave(self, claimed: list[dict[str, Any]], report: DrainReport) -> None:
        self.checkpoint("claimed")
        self._recorded = self.ledger.recorded([t["request_id"] for t in claimed])
        ready: list[tuple[dict[str, Any], Prepared]] = []
        for task in claimed:
            if self._settled_from_ledger(task):
                continue
            # defer=True: whatever queued it, it goes out in a batch, so prompt-cache marks
            # get the deferred (1h) TTL - a batch can outlast the 5-minute cache.
            outcome = self.optimizer.prepare(
                replace(request_from_json(task["request"]), defer=True),
                earlier=[queued_decision(task)],
            )
            if isinstance(outcome, Reply):  # a stage answered it (a cache hit)
                self.queue.settle(
                    task["id"], task["custom_id"], "done", result=_reply_json(outcome, task)
                )
                report.answered_in_prepare += 1
                continue
            ready.append((task, outcome))
        if report.answered_in_prepare and not self.config.ledger.store_prompts:
            self.queue.forget_prompts()
        ready = self._within_budget(ready, report)
        if self.defer.cache_shared_prefix:
            mark_shared_prefixes(
                ready,
                self.defer.shared_prefix_min_tokens,
                minimum=self.config.prompt_cache.minimum,
            )
        self.queue.save_prepared_many(
            self.owner, [(t["id"], prepared_to_json(p)) for t, p in ready]
        )
        self.checkpoint("prepared")
        groups = group_requests(ready, self.defer.max_batch_requests, self.defer.max_batch_bytes)
        for model, chunk in groups:
            self._submit_chunk(model, chunk, report)

    def _within_budget(
        self, ready: list[tuple[dict[str, Any], Prepared]], report: DrainReport
    ) -> list[tuple[dict[str, Any], Prepared]]:
        """Under a blocking budget, keep (in claim order: priority first) only the tasks
        whose estimated batch-priced cost fits what is left; the rest go back to the queue.

        Tasks already prepared or in flight count at their estimate (Budget does that).
        """
        budget = queue_budget(self.config, self.db, clock=self.clock)
        if self.config.budget.policy != "block" or not ready:
            return ready
        factor = 1.0 - self.config.pricing.batch_discount
        state = budget.state()  # its reservations include the batches in flight
        left = state.budget_usd - state.spent_usd - state.reserved_usd
        keep: list[tuple[dict[str, Any], Prepared]] = []
        back: list[int] = []
        for task, prepared in ready:
            cost = budget.estimate(prepared) * factor
            if cost <= left:
                keep.append((task, prepared))
                left -= cost
            else:
                back.append(task["id"])
        if back:
            self.queue.release(back, self.owner)
            report.submit_errors.append(
                f"budget.policy is block and the budget would not cover them: {len(back)} "
                "task(s) stay queued"
            )
        return keep

    def _submit_chunk(
        self,
        model: str,
        chunk: list[tuple[dict[str, Any], dict[str, Any], int]],
        report: DrainReport,
    ) -> None:
        ids = [t["id"] for t, _, _ in chunk]
        size = sum(s for _, _, s in chunk)
        if size > self.defer.max_batch_bytes - 1024:  # one request alone is over the limit
            for task, _, _ in chunk:
                self.queue.settle(
                    task["id"], task["custom_id"], "failed", error="too large for a batch"
                )
            report.submit_errors.append(f"{len(chunk)} request(s) over the batch size limit")
            return
        row = self.queue.open_batch(self.owner, self.lease_s, model, ids, size, self.backend.name)
        self.checkpoint("opened")
        try:
            info = self.backend.submit_batch([body for _, body, _ in chunk])
        except BackendError as exc:
            report.submit_errors.append(str(exc))
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
                # Refused outright: nothing was created, so the tasks can go back.
                self.queue.release(ids, self.owner)
                self.queue.set_batch_state(row, "abandoned", owner=None, note=str(exc)[:300])
            else:
                # Unknown whether it was created: leave it to recovery (list and match).
                self.queue.set_batch_state(row, "submitting", lease_until=0.0, note=str(exc)[:300])
            log.warning("batch submit failed", extra={"model": model, "error": str(exc)})
            return
        self.checkpoint("submitted")
        self.queue.record_batch(row, info.id, info.status, info.counts)
        self.checkpoint("recorded")
        report.submitted.append(
            {"batch_id": info.id, "model": model, "requests": len(chunk), "bytes": size}
        )
        log.info("batch submitted", extra={"batch_id": info.id, "requests": len(chunk)})


def _reply_json(reply: Reply, task: dict[str, Any]) -> str:
    data = reply.to_dict()
    if task.get("client_batch"):
        # The client's batch results hand back the API's Message whole.
        data["message"] = reply.to_message()
    return json.dumps(data, separators=(",", ":"))


def _message_of(result: BackendResult, row: dict[str, Any]) -> dict[str, Any]:
    """The API's Message of a batch result, as a collected answer's task keeps it."""
    reply = Reply(
        text=result.text,
        model=result.model,
        source="batch",
        request_id=row["request_id"],
        usage=replace(result.usage, service_tier="batch"),
        stop_reason=result.stop_reason,
        content=result.content,
        message_id=result.message_id,
        stop_sequence=result.stop_sequence,
        message_extra=dict(result.message_extra),
    )
    return reply.to_message()


def _ledger_json(row: dict[str, Any]) -> str:
    return json.dumps(
        {
            "answer": row.get("answer"),
            "model": row.get("model"),
            "source": row.get("source"),
            "request_id": row.get("request_id"),
            "cost": row.get("cost"),
            "baseline_cost": row.get("baseline_cost"),
            "error": row.get("error"),
        }
    )
