"""Helpers for the queue and drain tests: a settable clock and a scripted batch backend."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tars_opt.backends import BatchInfo, BatchItem
from tars_opt.backends.offline import OfflineBackend
from tars_opt.errors import BackendError


def at(text: str) -> float:
    """Epoch seconds of an ISO UTC time like 2026-11-22T01:00."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


class Clock:
    """A clock tests move by hand; `sleep` advances it instead of waiting."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class ScriptedBatches(OfflineBackend):
    """Offline answers, but batches behave like the API's: they stay in progress until
    `end_all()` when `hold` is set, and an outcome can be scripted per custom_id.

    The object plays the remote API: share it between drains to model one account.
    """

    def __init__(self, clock: Clock, *, hold: bool = False) -> None:
        super().__init__(clock=clock)
        self.hold = hold
        self.outcomes: dict[str, str] = {}  # custom_id -> errored | expired | canceled
        self.sent: Counter[str] = Counter()
        self.submits = 0
        self.refuse: BackendError | None = None

    def submit_batch(self, requests: list[dict[str, Any]]) -> BatchInfo:
        if self.refuse is not None:
            raise self.refuse
        self.submits += 1
        for r in requests:
            self.sent[r["custom_id"]] += 1
        info = super().submit_batch(requests)
        batch = self._batches[info.id]
        batch.items = [self._scripted(item) for item in batch.items]
        counts = Counter(item.outcome for item in batch.items)
        status = "in_progress" if self.hold else "ended"
        batch.info = replace(info, status=status, counts=dict(counts))
        return batch.info

    def _scripted(self, item: BatchItem) -> BatchItem:
        outcome = self.outcomes.get(item.custom_id)
        if outcome is None:
            return item
        error = "api_error: Internal server error" if outcome == "errored" else None
        return BatchItem(item.custom_id, outcome, None, error)

    def end_all(self) -> None:
        for batch in self._batches.values():
            batch.info = replace(batch.info, status="ended")
