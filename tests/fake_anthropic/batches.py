"""Message Batches state for the fake API: validation, lifecycle, pagination, result lines."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .transport import ApiError

CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
OUTCOMES = ("succeeded", "errored", "canceled", "expired")


def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 with microseconds and a Z, like the API."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Batch:
    """One Message Batch and, once ended, its result lines in request order."""

    id: str
    requests: list[dict[str, Any]]
    created_at: datetime
    status: str = "in_progress"
    cancel_initiated_at: datetime | None = None
    ended_at: datetime | None = None
    results: list[dict[str, Any]] | None = None
    polls: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    # The betas the create request named: they apply to every request of the batch.
    betas: frozenset[str] = frozenset()

    @property
    def expires_at(self) -> datetime:
        return self.created_at + timedelta(hours=24)

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The MessageBatch object; results_url is absolute and only set once ended."""
        counts = {k: 0 for k in OUTCOMES}
        counts["processing"] = 0 if self.status == "ended" else len(self.requests)
        counts.update(self.counts)
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": self.status,
            "request_counts": {k: counts[k] for k in ("processing", *OUTCOMES)},
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "ended_at": rfc3339(self.ended_at),
            "archived_at": None,
            "cancel_initiated_at": rfc3339(self.cancel_initiated_at),
            "results_url": (
                f"{base_url}/v1/messages/batches/{self.id}/results"
                if self.status == "ended"
                else None
            ),
        }

    def end(
        self,
        now: datetime,
        process: Callable[[str, dict[str, Any], str], dict[str, Any]],
        outcome: str | None = None,
    ) -> None:
        """Finish processing: every request gets a result; `outcome` forces one for all."""
        if self.status == "ended":
            return
        default = outcome or ("canceled" if self.status == "canceling" else "succeeded")
        if outcome is None and now >= self.expires_at:
            default = "expired"
        self.results = [
            {"custom_id": r["custom_id"], "result": process(r["custom_id"], r["params"], default)}
            for r in self.requests
        ]
        self.counts = {k: 0 for k in OUTCOMES}
        for line in self.results:
            self.counts[line["result"]["type"]] += 1
        self.status, self.ended_at = "ended", now


def validate_batch(body: Any, max_requests: int) -> list[dict[str, Any]]:
    """The requests of a batch create body; raises ApiError like the API for bad input.

    Only the envelope is checked here: invalid `params` become errored results, as with the API.
    """
    if not isinstance(body, dict) or "requests" not in body:
        raise ApiError(400, "invalid_request_error", "requests: Field required")
    requests = body["requests"]
    if not isinstance(requests, list) or not requests:
        raise ApiError(400, "invalid_request_error", "requests: List should have at least 1 item")
    if len(requests) > max_requests:
        raise ApiError(
            400,
            "invalid_request_error",
            f"requests: List should have at most {max_requests} items, not {len(requests)}",
        )
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if not isinstance(item, dict) or not isinstance(item.get("params"), dict):
            raise ApiError(400, "invalid_request_error", f"requests.{i}.params: Field required")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise ApiError(
                400,
                "invalid_request_error",
                f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'",
            )
        if custom_id in seen:
            raise ApiError(
                400,
                "invalid_request_error",
                f"requests.{i}.custom_id: Duplicate custom_id '{custom_id}'; "
                "custom_id must be unique within a batch",
            )
        seen.add(custom_id)
    return [{"custom_id": r["custom_id"], "params": r["params"]} for r in requests]


def paginate(items: Sequence[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """A list page like the API's: limit (1-1000, default 20), after_id / before_id cursors."""
    try:
        limit = int(query.get("limit", 20))
    except ValueError:
        raise ApiError(
            400, "invalid_request_error", "limit: Input should be a valid integer"
        ) from None
    if not 1 <= limit <= 1000:
        raise ApiError(400, "invalid_request_error", "limit: Input should be between 1 and 1000")
    ids = [item["id"] for item in items]
    after, before = query.get("after_id"), query.get("before_id")
    for name, cursor in (("after_id", after), ("before_id", before)):
        if cursor is not None and cursor not in ids:
            raise ApiError(400, "invalid_request_error", f"{name}: unknown id '{cursor}'")
    if before is not None:
        end = ids.index(before)
        start = max(0, end - limit)
        page, has_more = list(items[start:end]), start > 0
    else:
        start = ids.index(after) + 1 if after is not None else 0
        page, has_more = list(items[start : start + limit]), start + limit < len(items)
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }
