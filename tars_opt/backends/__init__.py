"""Backends send prepared requests: the real API (anthropic) or a deterministic offline one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tars_opt.types import BackendResult


@dataclass(frozen=True)
class BatchInfo:
    """The state of one Message Batch."""

    id: str
    status: str  # in_progress | canceling | ended
    counts: dict[str, int] = field(default_factory=dict)
    created_at: str | None = None
    ended_at: str | None = None


@dataclass(frozen=True)
class BatchItem:
    """One request's outcome inside an ended batch."""

    custom_id: str
    outcome: str  # succeeded | errored | canceled | expired
    result: BackendResult | None = None
    error: str | None = None


class Backend(Protocol):
    """What the chain and the drain need from whatever answers messages."""

    name: str

    def send(self, params: dict[str, Any]) -> BackendResult: ...

    def stream(self, params: dict[str, Any], on_text: Callable[[str], None]) -> BackendResult: ...

    def count_tokens(self, params: dict[str, Any]) -> int: ...

    def submit_batch(self, requests: list[dict[str, Any]]) -> BatchInfo: ...

    def poll_batch(self, batch_id: str) -> BatchInfo: ...

    def batch_results(self, batch_id: str) -> Iterator[BatchItem]: ...

    def cancel_batch(self, batch_id: str) -> BatchInfo: ...

    def list_batches(self, limit: int = 100) -> list[BatchInfo]: ...
