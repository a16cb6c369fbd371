"""Tasks as JSON: the queued request, its prepared form (for collecting in a later
process) and the view `queue show` / `result` print."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from typing import Any

from tars_opt.timefmt import iso, iso_minute
from tars_opt.types import Decision, Prepared, Request

_REQUEST_FIELDS = tuple(f.name for f in fields(Request))
# The format a queued request is kept in. Version 1 (no "v") held the history and the
# prompt apart; it is read into today's Request, so work queued before an upgrade drains.
FORMAT = 2


def _request_dict(request: Request) -> dict[str, Any]:
    # Not dataclasses.asdict: it deep-copies every message, which shows at 10,000 tasks.
    return {"v": FORMAT, **{name: getattr(request, name) for name in _REQUEST_FIELDS}}


def request_to_json(request: Request) -> str:
    return json.dumps(_request_dict(request), separators=(",", ":"))


def request_from_dict(data: dict[str, Any]) -> Request:
    """A Request from its stored form, whichever format version wrote it."""
    data = dict(data)
    if data.pop("v", 1) < 2:
        data = _from_v1(data)
    known = {f.name for f in fields(Request)}
    data = {k: v for k, v in data.items() if k in known}
    for key in ("messages", "tools", "order"):
        data[key] = tuple(data.get(key) or ())
    if isinstance(data.get("system"), list):
        data["system"] = tuple(data["system"])
    return Request(**data)


def _from_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 request: the prompt (after pruning's kept excerpts) is the final turn."""
    prompt = data.pop("prompt", "")
    prefix = data.pop("prompt_prefix", None) or []
    content: Any = [*prefix, {"type": "text", "text": prompt}] if prefix else prompt
    data["messages"] = [*(data.get("messages") or []), {"role": "user", "content": content}]
    return data


def request_from_json(text: str) -> Request:
    return request_from_dict(json.loads(text))


def prepared_to_json(prepared: Prepared) -> str:
    """What collecting needs of a prepared request, in any later process."""
    return json.dumps(
        {
            "request": _request_dict(prepared.request),
            "params": prepared.params,
            "decisions": [d.to_dict() for d in prepared.decisions],
        },
        separators=(",", ":"),
    )


def prepared_from_json(text: str) -> Prepared:
    data = json.loads(text)
    return Prepared(
        request=request_from_dict(data["request"]),
        params=data["params"],
        decisions=[Decision(**d) for d in data["decisions"]],
        started=time.perf_counter(),
    )


def queued_decision(task: dict[str, Any]) -> Decision:
    """The defer stage's decision that put `task` in the queue, rebuilt from the task row
    (which keeps its reason, ticket and times): a drained request's ledger row carries it,
    so it counts as deferred like the request the caller queued."""

    def when(key: str) -> str | None:
        return iso_minute(task[key]) if task.get(key) is not None else None

    data: dict[str, Any] = {
        "ticket": task["ticket"],
        "queued_at": when("created_at"),
        "expected_at": when("expected_at"),
        "deadline": when("deadline"),
    }
    if task.get("client_batch"):
        # A request of a client's Message Batch: its ledger row names the batch and custom_id.
        data["client_batch_id"] = task["client_batch"]
        data["client_custom_id"] = task["client_custom_id"]
    return Decision("defer", "queued", task.get("reason") or "queued for the off-peak drain", data)


def task_view(task: dict[str, Any]) -> dict[str, Any]:
    """A task as `queue show --json` and `result --json` print it."""
    request = json.loads(task["request"])
    names = {0: "high", 1: "normal", 2: "low"}

    def when(key: str) -> str | None:
        return iso(task[key]) if task.get(key) is not None else None

    return {
        "ticket": task["ticket"],
        "state": task["state"],
        "request_id": task["request_id"],
        "prompt": request_from_dict(request).prompt,
        "namespace": task["namespace"],
        "priority": names.get(task["priority"], "normal"),
        "reason": task["reason"],
        "attempts": task["attempts"],
        "custom_id": task["custom_id"],
        "batch_id": task["batch_id"],
        "error": task["error"],
        "created_at": when("created_at"),
        "expected_at": when("expected_at"),
        "deadline": when("deadline"),
        "submitted_at": when("submitted_at"),
        "finished_at": when("finished_at"),
        "result": json.loads(task["result"]) if task.get("result") else None,
    }
