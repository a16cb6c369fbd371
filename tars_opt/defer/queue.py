"""The deferred queue: `tasks` (one per deferred request) and `batches` (Message Batches).

A task moves queued -> claimed -> submitted -> done | failed | expired | canceled.
Every change is one short transaction with a conditional UPDATE (claims lock the rows they
take and skip those another drain holds), so two drains - on one host or several - never
take the same task and a crash between two steps leaves a state the next
drain can finish. Each task's `custom_id` is `<ticket>-<attempt>`: deterministic, so a
batch submitted but not recorded can be matched to its tasks again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

from tars_opt.accounting.budget import Budget
from tars_opt.accounting.pricing import PriceBook
from tars_opt.config.schema import Config
from tars_opt.defer.taskjson import prepared_from_json, request_from_json, request_to_json
from tars_opt.errors import QueueError
from tars_opt.store.database import Database, Executor
from tars_opt.types import Prepared, Request, new_request_id

PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
STATES = ("queued", "claimed", "submitted", "done", "failed", "expired", "canceled")
TERMINAL = ("done", "failed", "expired", "canceled")
OPEN_STATES = ("queued", "claimed", "submitted")


def new_ticket() -> str:
    """A ticket id a user can type: `t_` and 16 hex digits."""
    return "t_" + uuid.uuid4().hex[:16]


def custom_id_for(ticket: str, attempt: int) -> str:
    """The batch custom_id of a task's attempt (matches ^[a-zA-Z0-9_-]{1,64}$)."""
    return f"{ticket}-{attempt}"


def _marks(items: Iterable[Any]) -> str:
    return ", ".join("?" for _ in items)


class Queue:
    """Reads and changes `tasks` and `batches`. `clock` gives epoch seconds."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    # ---- tasks a user sees -------------------------------------------------------------
    def enqueue(
        self,
        request: Request,
        *,
        reason: str,
        max_wait_s: float | None,
        deadline: float | None,
        expected_at: float | None,
    ) -> dict[str, Any]:
        """Queue a request; return its task row (with the ticket). Committed on return."""
        row = self.task_row(
            request,
            reason=reason,
            max_wait_s=max_wait_s,
            deadline=deadline,
            expected_at=expected_at,
        )
        row["id"] = self.db.insert("tasks", row)
        return row

    def task_row(
        self,
        request: Request,
        *,
        reason: str,
        max_wait_s: float | None,
        deadline: float | None,
        expected_at: float | None,
        state: str = "queued",
        error: str | None = None,
        client_batch: str | None = None,
        client_custom_id: str | None = None,
    ) -> dict[str, Any]:
        """The row of a new task, to insert with `insert_tasks` (in the caller's transaction)."""
        now = self.clock()
        ticket = new_ticket()
        return {
            "ticket": ticket,
            "request_id": request.request_id,
            "request": request_to_json(request),
            "namespace": request.namespace,
            "priority": PRIORITY_RANK.get(request.priority, 1),
            "reason": reason,
            "state": state,
            "max_wait_s": max_wait_s,
            "deadline": deadline,
            "expected_at": expected_at,
            "attempts": 1,
            "custom_id": custom_id_for(ticket, 1),
            "created_at": now,
            "updated_at": now,
            "error": error,
            "finished_at": now if state in TERMINAL else None,
            "client_batch": client_batch,
            "client_custom_id": client_custom_id,
        }

    @staticmethod
    def insert_tasks(cur: Executor, rows: list[dict[str, Any]]) -> None:
        """Insert task rows made by `task_row` inside the caller's transaction."""
        for row in rows:
            cur.insert("tasks", row)

    def get(self, ticket: str) -> dict[str, Any] | None:
        """The task with this ticket (or numeric id), or None."""
        key = "id" if ticket.isdigit() else "ticket"
        rows = list(self.db.query(f"SELECT * FROM tasks WHERE {key} = ?", [ticket]))
        return rows[0] if rows else None

    def require(self, ticket: str) -> dict[str, Any]:
        task = self.get(ticket)
        if task is None:
            raise QueueError(f"no task {ticket!r}: see `tars-opt queue list` for tickets")
        return task

    def tasks(self, states: Iterable[str] | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Tasks, newest first, optionally only in some states."""
        wanted = list(states or ())
        where = f"WHERE state IN ({_marks(wanted)})" if wanted else ""
        return list(
            self.db.query(
                f"SELECT * FROM tasks {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                [*wanted, limit],
            )
        )

    def status(self, now: float, stuck_after_s: float) -> dict[str, Any]:
        """Tasks by state, how many are open (queued, claimed, submitted), the age of the
        oldest open one, and how many have not moved for `stuck_after_s`."""
        by_state = {k: v for k, v in self.counts().items() if v}
        marks = ", ".join("?" for _ in OPEN_STATES)
        oldest, stuck = self.db.execute(
            "SELECT MIN(created_at), SUM(CASE WHEN updated_at < ? THEN 1 ELSE 0 END) "
            f"FROM tasks WHERE state IN ({marks})",
            [now - stuck_after_s, *OPEN_STATES],
        ).fetchone()
        return {
            "by_state": by_state,
            "open": sum(by_state.get(s, 0) for s in OPEN_STATES),
            "oldest_age_s": None if oldest is None else now - oldest,
            "stuck": int(stuck or 0),
        }

    def request_ids_queued_before(self, end: float) -> set[str]:
        """Request ids of every task queued before `end` (each was deferred by the stage)."""
        rows = self.db.execute("SELECT request_id FROM tasks WHERE created_at < ?", [end])
        return {r[0] for r in rows.fetchall()}

    def any_due(self, due_by: float) -> bool:
        """Whether a queued task's deadline falls before `due_by` (cheap; for the deadline
        rule outside the window)."""
        return (
            self.db.scalar(
                "SELECT 1 FROM tasks WHERE state = 'queued' AND deadline IS NOT NULL "
                "AND deadline <= ? LIMIT 1",
                [due_by],
            )
            is not None
        )

    def count(self, state: str) -> int:
        """How many tasks are in `state`."""
        return int(self.db.scalar("SELECT COUNT(*) FROM tasks WHERE state = ?", [state]))

    def claims_outside_batches(self) -> list[dict[str, Any]]:
        """Claimed tasks not yet in a batch row: id, owner and lease (for recovery)."""
        return list(
            self.db.query(
                "SELECT id, owner, lease_until FROM tasks "
                "WHERE state = 'claimed' AND batch_row IS NULL"
            )
        )

    def remember_foreign_batch(self, batch_id: str, backend: str) -> None:
        """Record an ended batch that is none of ours, so it is not read again."""
        now = self.clock()
        row = {"batch_id": batch_id, "state": "foreign", "backend": backend, "created_at": now,
               "updated_at": now, "discovered": 1, "note": "not a tars-opt batch"}  # fmt: skip
        self.db.insert("batches", row, on_conflict="ignore")

    def prepared_in_flight(self) -> list[Prepared]:
        """The prepared requests of tasks claimed or submitted but not collected."""
        rows = self.db.execute(
            "SELECT prepared FROM tasks WHERE state IN ('claimed', 'submitted') "
            "AND prepared IS NOT NULL"
        ).fetchall()
        return [prepared_from_json(row[0]) for row in rows]

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for row in self.db.query("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state"):
            out[row["state"]] = row["n"]
        return out

    def cancel(self, ticket: str) -> dict[str, Any]:
        """Cancel a task that has not been sent. A submitted one is in a batch for good."""
        task = self.require(ticket)
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE tasks SET state = 'canceled', finished_at = ?, updated_at = ?, "
                "error = 'canceled by the user' WHERE id = ? AND state = 'queued'",
                [self.clock(), self.clock(), task["id"]],
            )
            changed = cur.rowcount
        if not changed:
            state = self.require(ticket)["state"]
            hint = {
                "claimed": "a drain is preparing it right now; try again in a moment",
                "submitted": f"it is in batch {task['batch_id']} already and will be answered",
            }.get(state, "only queued tasks can be canceled")
            raise QueueError(f"cannot cancel {ticket}: it is {state} - {hint}")
        return self.require(ticket)

    def retry(self, ticket: str) -> dict[str, Any]:
        """Queue a failed, expired or canceled task again, as a new attempt.

        The retry is a new request (a fresh request id): the ledger keeps the failed one.
        """
        task = self.require(ticket)
        if task.get("client_batch"):
            raise QueueError(
                f"cannot retry {ticket}: it is request {task['client_custom_id']!r} of the "
                f"client's Message Batch {task['client_batch']}, whose results are final; "
                "the client can send it again in a new batch"
            )
        attempt = task["attempts"] + 1
        request = replace(request_from_json(task["request"]), request_id=new_request_id())
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE tasks SET state = 'queued', attempts = ?, custom_id = ?, request = ?,"
                " request_id = ?, batch_row = NULL, batch_id = NULL, prepared = NULL,"
                " owner = NULL, lease_until = NULL, error = NULL, result = NULL,"
                " finished_at = NULL, updated_at = ?"
                " WHERE id = ? AND state IN ('failed', 'expired', 'canceled')",
                [
                    attempt,
                    custom_id_for(task["ticket"], attempt),
                    request_to_json(request),
                    request.request_id,
                    self.clock(),
                    task["id"],
                ],
            )
            changed = cur.rowcount
        if not changed:
            raise QueueError(
                f"cannot retry {ticket}: it is {task['state']}; only failed, expired or "
                "canceled tasks can be retried"
            )
        return self.require(ticket)

    def wait(
        self,
        ticket: str,
        *,
        max_poll_s: float = 1.0,
        first_poll_s: float = 0.05,
        timeout_s: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Block until the task reaches a final state (or `timeout_s` passes); return it.

        Checks after `first_poll_s`, then at doubling intervals up to `max_poll_s`, so a
        drain's answer is noticed within `max_poll_s`. A check costs one look at the
        database's change marker (it moves only when something commits) unless something
        was written, so many waiting processes do not load the database.
        """
        start = self.clock()
        interval = first_poll_s
        seen: object = None
        task = self.require(ticket)
        while True:
            if task["state"] in TERMINAL:
                return task
            if timeout_s is not None and self.clock() - start >= timeout_s:
                return task
            sleep(interval)
            interval = min(interval * 2, max_poll_s)
            now_seen = self.db.change_marker()
            if now_seen != seen:
                seen = now_seen
                task = self.require(ticket)

    # ---- what a drain does -------------------------------------------------------------
    def claim(
        self, owner: str, lease_s: float, limit: int, *, due_by: float | None = None
    ) -> list[dict[str, Any]]:
        """Atomically take up to `limit` queued tasks, best priority and oldest first.

        With `due_by`, only tasks whose deadline falls before it (the deadline rule).
        Requests of a client's Message Batch that was canceled or has expired are never
        taken: their results are final.
        """
        now = self.clock()
        due = "AND deadline IS NOT NULL AND deadline <= ? " if due_by is not None else ""
        with self.db.transaction() as cur:
            # Rows another drain is claiming are skipped, not waited for: each task goes
            # to exactly one claimer.
            rows = cur.select_for_update(
                f"SELECT id FROM tasks WHERE state = 'queued' {due}AND (client_batch IS NULL "
                "OR client_batch IN (SELECT id FROM client_batches "
                "WHERE cancel_initiated_at IS NULL AND expires_at > ?)) "
                "ORDER BY priority, created_at, id LIMIT ?",
                [*([due_by] if due_by is not None else []), now, limit],
                skip_locked=True,
            )
            ids = [r["id"] for r in rows]
            claimed: list[dict[str, Any]] = []
            for chunk in _chunks(ids, 500):
                cur.execute(
                    "UPDATE tasks SET state = 'claimed', owner = ?, lease_until = ?, "
                    f"claimed_at = ?, updated_at = ? WHERE state = 'queued' AND id IN "
                    f"({_marks(chunk)})",
                    [owner, now + lease_s, now, now, *chunk],
                )
                claimed.extend(
                    cur.query(
                        f"SELECT * FROM tasks WHERE owner = ? AND state = 'claimed' AND id IN "
                        f"({_marks(chunk)}) ORDER BY priority, created_at, id",
                        [owner, *chunk],
                    )
                )
        return claimed

    def save_prepared_many(self, owner: str, items: list[tuple[int, str]]) -> None:
        """Store the prepared form of many claimed tasks in one transaction."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.executemany(
                "UPDATE tasks SET prepared = ?, updated_at = ? "
                "WHERE id = ? AND owner = ? AND state = 'claimed'",
                [(text, now, task_id, owner) for task_id, text in items],
            )

    def open_batch(
        self, owner: str, lease_s: float, model: str, task_ids: list[int], size: int, backend: str
    ) -> int:
        """Before submitting: a `submitting` batch row owning the tasks. Returns its row id."""
        now = self.clock()
        with self.db.transaction() as cur:
            batch = {
                "state": "submitting",
                "backend": backend,
                "model": model,
                "requests": len(task_ids),
                "bytes": size,
                "owner": owner,
                "lease_until": now + lease_s,
                "created_at": now,
                "updated_at": now,
            }
            row = cur.insert("batches", batch)
            for chunk in _chunks(task_ids, 500):
                cur.execute(
                    f"UPDATE tasks SET batch_row = ?, lease_until = ?, updated_at = ? "
                    f"WHERE owner = ? AND state = 'claimed' AND id IN ({_marks(chunk)})",
                    [row, now + lease_s, now, owner, *chunk],
                )
        return row

    def record_batch(self, row: int, batch_id: str, status: str, counts: dict[str, int]) -> None:
        """Right after the API accepted a batch: its id, and its tasks are `submitted`."""
        now = self.clock()
        state = status if status in ("in_progress", "canceling", "ended") else "in_progress"
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE batches SET batch_id = ?, state = ?, counts = ?, owner = NULL, "
                "lease_until = NULL, submitted_at = COALESCE(submitted_at, ?), updated_at = ? "
                "WHERE id = ?",
                [batch_id, state, json.dumps(counts), now, now, row],
            )
            cur.execute(
                "UPDATE tasks SET state = 'submitted', batch_id = ?, owner = NULL, "
                "lease_until = NULL, submitted_at = ?, updated_at = ? "
                "WHERE batch_row = ? AND state = 'claimed'",
                [batch_id, now, now, row],
            )

    def batch_tasks(self, row: int, states: tuple[str, ...] = ("submitted",)) -> list[dict]:
        return list(
            self.db.query(
                f"SELECT * FROM tasks WHERE batch_row = ? AND state IN ({_marks(states)})",
                [row, *states],
            )
        )

    def batches(self, states: Iterable[str]) -> list[dict[str, Any]]:
        wanted = list(states)
        return list(
            self.db.query(
                f"SELECT * FROM batches WHERE state IN ({_marks(wanted)}) ORDER BY id", wanted
            )
        )

    def known_batch_ids(self) -> set[str]:
        return {
            r["batch_id"]
            for r in self.db.query("SELECT batch_id FROM batches WHERE batch_id IS NOT NULL")
        }

    def set_batch_state(self, row: int, state: str, **extra: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in extra)
        with self.db.transaction() as cur:
            cur.execute(
                f"UPDATE batches SET state = ?, updated_at = ?{', ' + sets if sets else ''} "
                "WHERE id = ?",
                [state, self.clock(), *extra.values(), row],
            )

    def lease_batch(self, row: int, owner: str, lease_s: float, is_stale: Callable) -> bool:
        """Take the right to collect an ended batch; False if a live drain holds it."""
        now = self.clock()
        with self.db.transaction() as cur:
            found = cur.select_for_update(
                "SELECT owner, lease_until, state FROM batches WHERE id = ?", [row]
            )[0]
            current, until, state = found["owner"], found["lease_until"], found["state"]
            if state != "ended":
                return False
            if current and current != owner and not is_stale(current, until):
                return False
            cur.execute(
                "UPDATE batches SET owner = ?, lease_until = ?, updated_at = ? WHERE id = ?",
                [owner, now + lease_s, now, row],
            )
        return True

    def settle(
        self,
        task_id: int,
        custom_id: str,
        state: str,
        *,
        result: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Move a submitted task to a final state, if it is still that attempt."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE tasks SET state = ?, result = ?, error = ?, finished_at = ?, "
                "updated_at = ?, owner = NULL, lease_until = NULL, prepared = NULL "
                "WHERE id = ? AND custom_id = ? AND state IN ('submitted', 'claimed')",
                [state, result, error, now, now, task_id, custom_id],
            )
            return cur.rowcount == 1

    def settle_many(self, items: list[tuple[int, str, str, str | None, str | None]]) -> int:
        """`settle` for many (task id, custom_id, state, result, error) in one transaction."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.executemany(
                "UPDATE tasks SET state = ?, result = ?, error = ?, finished_at = ?, "
                "updated_at = ?, owner = NULL, lease_until = NULL, prepared = NULL "
                "WHERE id = ? AND custom_id = ? AND state IN ('submitted', 'claimed')",
                [(st, res, err, now, now, tid, cid) for tid, cid, st, res, err in items],
            )
            return cur.rowcount

    def forget_prompts(self, batch_row: int | None = None) -> int:
        """Drop the prompt, history and system text of finished tasks (all, or one batch's),
        for `ledger.store_prompts: false`; the answer stays so `result` can show it."""
        where = "AND batch_row = ?" if batch_row is not None else ""
        forgotten = 0
        with self.db.transaction() as cur:
            rows = cur.query(
                f"SELECT id, request FROM tasks WHERE state IN ({_marks(TERMINAL)}) {where}",
                [*TERMINAL, *([batch_row] if batch_row is not None else [])],
            )
            for row in rows:
                data = json.loads(row["request"])
                if not (data.get("messages") or data.get("prompt") or data.get("system")):
                    continue
                data.update(messages=[], system=None, tools=[])
                if "prompt" in data:  # a request queued in the older format
                    data["prompt"] = ""
                cur.execute(
                    "UPDATE tasks SET request = ? WHERE id = ?",
                    [json.dumps(data, separators=(",", ":")), row["id"]],
                )
                forgotten += 1
        return forgotten

    def requeue(self, task_id: int, custom_id: str, error: str) -> bool:
        """An errored attempt with retries left: queue the next attempt (new custom_id)."""
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("SELECT ticket, attempts FROM tasks WHERE id = ?", [task_id])
            ticket, attempts = cur.fetchone()
            cur.execute(
                "UPDATE tasks SET state = 'queued', attempts = ?, custom_id = ?, error = ?, "
                "batch_row = NULL, batch_id = NULL, prepared = NULL, owner = NULL, "
                "lease_until = NULL, updated_at = ? "
                "WHERE id = ? AND custom_id = ? AND state IN ('submitted', 'claimed')",
                [attempts + 1, custom_id_for(ticket, attempts + 1), error, now, task_id, custom_id],
            )
            return cur.rowcount == 1

    def release(
        self, task_ids: list[int], owner: str | None = None, *, unbatched_only: bool = False
    ) -> int:
        """Put claimed (never submitted) tasks back in the queue, same attempt. With
        `unbatched_only`, tasks already in a batch row stay claimed: whether that batch
        reached the API is for recovery to find out."""
        now = self.clock()
        released = 0
        with self.db.transaction() as cur:
            for chunk in _chunks(task_ids, 500):
                who = "AND owner = ?" if owner else ""
                if unbatched_only:
                    who += " AND batch_row IS NULL"
                cur.execute(
                    "UPDATE tasks SET state = 'queued', owner = NULL, lease_until = NULL, "
                    f"batch_row = NULL, prepared = NULL, updated_at = ? WHERE state = 'claimed' "
                    f"{who} AND id IN ({_marks(chunk)})",
                    [now, *([owner] if owner else []), *chunk],
                )
                released += cur.rowcount
        return released

    # ---- requests of a client's Message Batch ------------------------------------------
    def close_client_batches(self, batch_id: str | None = None) -> int:
        """Settle the queued requests of client batches that no drain may send any more:
        canceled ones (canceled) and those past their 24-hour deadline (expired). One
        batch or all; returns how many tasks changed."""
        now = self.clock()
        which = "AND c.id = ?" if batch_id is not None else ""
        args = [batch_id] if batch_id is not None else []
        changed = 0
        with self.db.transaction() as cur:
            for state, error, cond, params in (
                ("canceled", "canceled by the client", "c.cancel_initiated_at IS NOT NULL", []),
                ("expired", "not sent before the batch's 24-hour deadline", "c.expires_at <= ?",
                 [now]),
            ):  # fmt: skip
                cur.execute(
                    "UPDATE tasks SET state = ?, error = ?, finished_at = ?, updated_at = ? "
                    "WHERE state = 'queued' AND client_batch IN (SELECT c.id FROM "
                    f"client_batches c WHERE {cond} {which})",
                    [state, error, now, now, *params, *args],
                )
                changed += cur.rowcount
        return changed

    def client_batch_states(self, batch_id: str, deadline: float) -> list[dict[str, Any]]:
        """How many requests of a client batch are in each state, split by whether they
        finished before `deadline` (rows: state, in_time, n, last)."""
        return list(
            self.db.query(
                "SELECT state, (finished_at IS NOT NULL AND finished_at < ?) AS in_time, "
                "COUNT(*) AS n, MAX(finished_at) AS last FROM tasks WHERE client_batch = ? "
                "GROUP BY state, in_time",
                [deadline, batch_id],
            )
        )

    def client_batch_page(self, batch_id: str, after: int, limit: int = 500) -> list[dict]:
        """The next `limit` requests of a client batch after task id `after`, in the order
        they were queued, with what a result line needs."""
        return list(
            self.db.query(
                "SELECT id, state, finished_at, client_custom_id, request_id, result, "
                "error FROM tasks WHERE client_batch = ? AND id > ? ORDER BY id LIMIT ?",
                [batch_id, after, limit],
            )
        )

    @staticmethod
    def drop_client_batch_requests(cur: Executor, batch_id: str, now: float) -> None:
        """Forget the prompts and results of a deleted client batch's finished requests
        (inside the caller's transaction). A request still inside an upstream batch keeps
        its task until the drain collects it, so what it costs is still recorded."""
        cur.execute(
            "UPDATE tasks SET request = ?, result = NULL, updated_at = ? "
            f"WHERE client_batch = ? AND state IN ({_marks(TERMINAL)})",
            ['{"v":2,"messages":[]}', now, batch_id, *TERMINAL],
        )

    def may_retry(self, task: dict[str, Any]) -> bool:
        """Whether an errored request may go out again: not when it belongs to a client's
        Message Batch that was canceled or whose deadline has passed."""
        if not task.get("client_batch"):
            return True
        row = self.db.execute(
            "SELECT cancel_initiated_at, expires_at FROM client_batches WHERE id = ?",
            [task["client_batch"]],
        ).fetchone()
        return row is not None and row[0] is None and row[1] > self.clock()

    def cancelable_batches(self) -> list[dict[str, Any]]:
        """Upstream batches in progress whose every open request belongs to a client batch
        that was canceled or has passed its deadline: canceling them upstream harms no one
        else's request (a batch holding any other request is left to run)."""
        return list(
            self.db.query(
                "SELECT b.id, b.batch_id FROM batches b WHERE b.state = 'in_progress' "
                "AND EXISTS (SELECT 1 FROM tasks t WHERE t.batch_row = b.id "
                "AND t.state = 'submitted') "
                "AND NOT EXISTS (SELECT 1 FROM tasks t LEFT JOIN client_batches c "
                "ON c.id = t.client_batch WHERE t.batch_row = b.id AND t.state = 'submitted' "
                "AND (c.id IS NULL OR (c.cancel_initiated_at IS NULL AND c.expires_at > ?))) "
                "ORDER BY b.id",
                [self.clock()],
            )
        )


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def queue_budget(
    config: Config,
    db: Database,
    *,
    prices: PriceBook | None = None,
    clock: Callable[[], float] = time.time,
) -> Budget:
    """The monthly budget, with deferred work in flight counted against it."""
    return Budget(
        config, db, prices=prices, clock=clock, in_flight=Queue(db, clock).prepared_in_flight
    )
