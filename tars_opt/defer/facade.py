"""Message Batches a client creates through tars-opt, served from the deferred queue.

A client's batch (`client_batches`) is a group of queue tasks, one per request, each
linked to the batch and its custom_id. The drain sends them like any queued work: off-peak
(or earlier when the batch's 24-hour deadline comes near), through the chain (response
cache, pruning, routing, cache marks) and the upstream Message Batches API at batch price.
What the client sees is computed from the tasks, so it survives any crash:

- `in_progress` until every request has a final result, then `ended` (`canceling` in
  between once canceled); a request not final 24 hours after creation is `expired`;
- `request_counts` and the JSON Lines results in the API's shape, one line per custom_id.

Cancel settles the queued requests at once; requests already inside an upstream batch are
canceled upstream by the drain when that batch holds nothing else (it holds only one client
batch's requests, see `group_requests`); what the API processed anyway is kept and billed.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tars_opt.config.schema import Config
from tars_opt.defer.queue import TERMINAL, Queue
from tars_opt.defer.window import DAY, Window
from tars_opt.errors import BatchRequestError
from tars_opt.store.database import Database
from tars_opt.timefmt import iso
from tars_opt.types import Request

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_REQUESTS = 100_000
OUTCOMES = ("succeeded", "errored", "canceled", "expired")
# A task's final state -> the result type the client reads.
RESULT_OF = {"done": "succeeded", "failed": "errored", "canceled": "canceled", "expired": "expired"}
# Error types of the API; any other kind a failure names is reported as api_error.
API_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "billing_error",
        "permission_error",
        "not_found_error",
        "request_too_large",
        "rate_limit_error",
        "api_error",
        "overloaded_error",
        "timeout_error",
    }
)


@dataclass(frozen=True)
class BatchControls:
    """tars-opt's controls for every request of a batch (from the gateway's headers)."""

    namespace: str = "default"
    priority: str = "normal"
    cache_mode: str = "use"
    route: bool = True
    session: str | None = None


def new_batch_id() -> str:
    """An id shaped like the API's (`msgbatch_` + 24 characters)."""
    return "msgbatch_" + uuid.uuid4().hex[:24]


def _rfc3339(ts: float | None) -> str | None:
    return None if ts is None else iso(ts)


class BatchFacade:
    """The Message Batches API over the deferred queue.

    `key_id` (a keyed hash of the client's API key, or None) partitions batches: a
    client sees only the batches made with its key, as with the API. `on_cancel` is
    called after a cancel (the serve drain collects at once, canceling upstream).
    """

    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.clock = clock
        self.queue = Queue(db, clock)
        self.window = Window.parse(config.defer.window)
        self.on_cancel = on_cancel

    # ---- create ----------------------------------------------------------------------------
    def create(
        self,
        body: Any,
        *,
        base_url: str,
        key_id: str | None = None,
        controls: BatchControls = BatchControls(),
    ) -> dict[str, Any]:
        """Queue every request of a `{"requests": [{custom_id, params}]}` body as one
        batch (one transaction: all or nothing); return the MessageBatch object.

        The envelope is checked as the API checks it (400 on a bad one); a request whose
        params cannot be sent becomes an errored result, as with the API.
        """
        requests = _validated(body)
        now = self.clock()
        batch_id = new_batch_id()
        expires = now + DAY
        expected = min(
            self.window.next_open(now) + self.config.defer.expected_turnaround_minutes * 60,
            expires,
        )
        reason = f"Message Batch {batch_id} (sent by the client)"
        rows = []
        for item in requests:
            params = item["params"]
            problem = params_problem(params)
            request = Request.from_body(
                params if problem is None else {},
                namespace=controls.namespace,
                priority=controls.priority,
                cache_mode=controls.cache_mode,
                route=controls.route,
                session=controls.session,
                key_id=key_id,
                defer=True,
                max_wait_s=DAY,
            )
            rows.append(
                self.queue.task_row(
                    request,
                    reason=reason,
                    max_wait_s=DAY,
                    deadline=expires,
                    expected_at=expected,
                    state="queued" if problem is None else "failed",
                    error=None if problem is None else f"invalid_request_error: {problem}",
                    client_batch=batch_id,
                    client_custom_id=item["custom_id"],
                )
            )
        with self.db.transaction() as cur:
            cur.insert(
                "client_batches",
                {
                    "id": batch_id,
                    "key_id": key_id,
                    "namespace": controls.namespace,
                    "requests": len(rows),
                    "created_at": now,
                    "expires_at": expires,
                },
            )
            self.queue.insert_tasks(cur, rows)
        return self.retrieve(batch_id, base_url=base_url, key_id=key_id)

    # ---- read ------------------------------------------------------------------------------
    def _row(self, batch_id: str, key_id: str | None) -> dict[str, Any]:
        rows = list(
            self.db.query(
                "SELECT * FROM client_batches WHERE id = ? AND deleted_at IS NULL", [batch_id]
            )
        )
        if not rows or rows[0]["key_id"] != key_id:
            # Another key's batch is as unknown to this client as a missing one.
            raise BatchRequestError(
                f"message_batch_id: batch '{batch_id}' not found",
                status=404,
                kind="not_found_error",
            )
        return rows[0]

    def _view(self, row: dict[str, Any], base_url: str) -> dict[str, Any]:
        """The MessageBatch object of a client batch, from its tasks' states."""
        now = self.clock()
        expires = row["expires_at"]
        counts = dict.fromkeys(("processing", *OUTCOMES), 0)
        last = None
        queued = 0
        late = False  # some request had no final result by the deadline
        for r in self.queue.client_batch_states(row["id"], expires):
            if r["state"] in TERMINAL and r["in_time"]:
                counts[RESULT_OF[r["state"]]] += r["n"]
                last = r["last"] if last is None else max(last, r["last"])
            elif now >= expires:
                counts["expired"] += r["n"]
                late = True
            else:
                counts["processing"] += r["n"]
                queued += r["n"] if r["state"] == "queued" else 0
        canceled = row["cancel_initiated_at"] is not None
        # Claims released back to the queue after the cancel: settle them now.
        if canceled and queued and self.queue.close_client_batches(row["id"]):
            return self._view(row, base_url)
        ended_at = None
        if counts["processing"] == 0:
            ended_at = expires if late else last
        status = "ended" if ended_at is not None else "in_progress"
        if status != "ended" and row["cancel_initiated_at"] is not None:
            status = "canceling"
        return {
            "id": row["id"],
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "created_at": _rfc3339(row["created_at"]),
            "expires_at": _rfc3339(expires),
            "ended_at": _rfc3339(ended_at),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(row["cancel_initiated_at"]),
            "results_url": (
                f"{base_url.rstrip('/')}/v1/messages/batches/{row['id']}/results"
                if status == "ended"
                else None
            ),
        }

    def retrieve(self, batch_id: str, *, base_url: str, key_id: str | None = None) -> dict:
        """The MessageBatch object; `results_url` is built on `base_url`, the address the
        client used to reach tars-opt."""
        return self._view(self._row(batch_id, key_id), base_url)

    def list(
        self,
        *,
        base_url: str,
        key_id: str | None = None,
        limit: int = 20,
        after_id: str | None = None,
        before_id: str | None = None,
    ) -> dict[str, Any]:
        """A page of this key's batches, newest first, as the API pages them."""
        if not 1 <= limit <= 1000:
            raise BatchRequestError("limit: Input should be between 1 and 1000")
        key = "key_id IS NULL" if key_id is None else "key_id = ?"
        keys = [] if key_id is None else [key_id]
        cursor, params = "", list(keys)
        if after_id is not None or before_id is not None:
            name = "after_id" if after_id else "before_id"
            value = after_id or before_id or ""
            pivot = self.db.execute(
                f"SELECT created_at FROM client_batches WHERE id = ? AND {key} "
                "AND deleted_at IS NULL",
                [value, *keys],
            ).fetchone()
            if pivot is None:
                raise BatchRequestError(f"{name}: unknown id '{value}'")
            # Newest first: "after" is older, "before" is newer; ties broken by id.
            op = "<" if name == "after_id" else ">"
            cursor = f" AND (created_at {op} ? OR (created_at = ? AND id {op} ?))"
            params += [pivot[0], pivot[0], value]
        order = "DESC" if before_id is None else "ASC"
        rows = list(
            self.db.query(
                f"SELECT * FROM client_batches WHERE {key} AND deleted_at IS NULL{cursor} "
                f"ORDER BY created_at {order}, id {order} LIMIT ?",
                [*params, limit + 1],
            )
        )
        has_more = len(rows) > limit
        rows = rows[:limit]
        if before_id is not None:
            rows.reverse()
        data = [self._view(r, base_url) for r in rows]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    # ---- change ----------------------------------------------------------------------------
    def cancel(self, batch_id: str, *, base_url: str, key_id: str | None = None) -> dict:
        """Cancel a batch: its queued requests are canceled at once; those inside an
        upstream batch are canceled upstream by the drain (`on_cancel` wakes it), and
        whatever the API processed before that is kept, billed and served as succeeded."""
        row = self._row(batch_id, key_id)
        view = self._view(row, base_url)
        if view["processing_status"] == "ended":
            raise BatchRequestError(f"Batch {batch_id} cannot be canceled: it has already ended")
        if row["cancel_initiated_at"] is None:
            with self.db.transaction() as cur:
                cur.execute(
                    "UPDATE client_batches SET cancel_initiated_at = ? "
                    "WHERE id = ? AND cancel_initiated_at IS NULL",
                    [self.clock(), batch_id],
                )
            self.queue.close_client_batches(batch_id)
            if self.on_cancel is not None:
                self.on_cancel()
        return self.retrieve(batch_id, base_url=base_url, key_id=key_id)

    def delete(self, batch_id: str, *, key_id: str | None = None) -> dict[str, Any]:
        """Delete an ended batch: it is no longer listed or served, and its requests and
        results are dropped from the queue. Ledger rows (what was paid) stay."""
        row = self._row(batch_id, key_id)
        if self._view(row, "")["processing_status"] != "ended":
            raise BatchRequestError(
                f"Batch {batch_id} cannot be deleted until it has ended; cancel it first"
            )
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("UPDATE client_batches SET deleted_at = ? WHERE id = ?", [now, batch_id])
            self.queue.drop_client_batch_requests(cur, batch_id, now)
        return {"id": batch_id, "type": "message_batch_deleted"}

    # ---- results ---------------------------------------------------------------------------
    def results(self, batch_id: str, *, key_id: str | None = None) -> Iterator[str]:
        """The results of an ended batch as JSON Lines (each line ends with a newline),
        one per request in the order they were sent. Raises if it has not ended."""
        row = self._row(batch_id, key_id)
        if self._view(row, "")["processing_status"] != "ended":
            raise BatchRequestError(f"Batch {batch_id} has not ended yet: no results")
        return self._lines(row)

    def _lines(self, row: dict[str, Any]) -> Iterator[str]:
        last_id = 0
        while True:  # in pages, so a 100,000-request batch is never held whole
            page = self.queue.client_batch_page(row["id"], last_id)
            if not page:
                return
            for task in page:
                line = {"custom_id": task["client_custom_id"], "result": _result(task, row)}
                yield json.dumps(line, separators=(",", ":")) + "\n"
            last_id = page[-1]["id"]


def _result(task: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """One request's result object, as the API writes it."""
    # Strictly before: at the deadline the batch ends, and what it said then stays true.
    in_time = task["finished_at"] is not None and task["finished_at"] < batch["expires_at"]
    if task["state"] not in TERMINAL or not in_time:
        return {"type": "expired"}
    kind = RESULT_OF[task["state"]]
    if kind == "succeeded":
        return {"type": "succeeded", "message": _message(task)}
    if kind == "errored":
        error_type, _, message = (task["error"] or "").partition(": ")
        if error_type not in API_ERROR_TYPES:
            error_type, message = "api_error", task["error"] or "the request failed"
        return {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": task["request_id"],
            },
        }
    return {"type": kind}


def _message(task: dict[str, Any]) -> dict[str, Any]:
    """The Message a done task holds; rebuilt from its recorded answer when the drain
    recovered it from the ledger without the batch's result at hand."""
    data = json.loads(task["result"] or "{}")
    if "message" in data:
        return dict(data["message"])
    text = data.get("answer") or ""
    return {
        "id": "msg_" + str(task["request_id"]).removeprefix("req_"),
        "type": "message",
        "role": "assistant",
        "model": data.get("model"),
        "content": data.get("content") or ([{"type": "text", "text": text}] if text else []),
        "stop_reason": data.get("stop_reason") or "end_turn",
        "stop_sequence": None,
        "usage": data.get("usage") or {"input_tokens": 0, "output_tokens": 0},
    }


def _validated(body: Any) -> list[dict[str, Any]]:
    """The requests of a create body; BatchRequestError (400) like the API for a bad one."""
    if not isinstance(body, dict) or "requests" not in body:
        raise BatchRequestError("requests: Field required")
    requests = body["requests"]
    if not isinstance(requests, list) or not requests:
        raise BatchRequestError("requests: List should have at least 1 item")
    if len(requests) > MAX_REQUESTS:
        raise BatchRequestError(
            f"requests: List should have at most {MAX_REQUESTS} items, not {len(requests)}"
        )
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            raise BatchRequestError(f"requests.{i}.params: Field required")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise BatchRequestError(
                f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )
        if custom_id in seen:
            raise BatchRequestError(
                f"requests.{i}.custom_id: Duplicate custom_id '{custom_id}'; "
                "custom_id must be unique within a batch"
            )
        seen.add(custom_id)
    return requests


def params_problem(params: dict[str, Any]) -> str | None:
    """Why a request's params cannot be sent as a Messages request (None if they can).

    Only what tars-opt must read to queue and route it; the API checks the rest."""
    if not isinstance(params.get("model"), str) or not params["model"]:
        return "model: Field required"
    messages = params.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: Field required"
    if any(not isinstance(m, dict) for m in messages):
        return "messages: each message must be an object"
    max_tokens = params.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: Input should be a valid integer of at least 1"
    if "system" in params and not isinstance(params["system"], str | list | None):
        return "system: Input should be a string or a list of content blocks"
    if "tools" in params and not isinstance(params["tools"], list):
        return "tools: Input should be a valid list"
    if params.get("stream"):
        return "stream: streaming is not supported in Message Batches"
    return None
