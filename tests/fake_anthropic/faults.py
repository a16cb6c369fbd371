"""Scripted and random faults for reliability tests of code that talks to the fake API."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

# kind -> (HTTP status, error type, message) for faults answered with an error body.
STATUS_FAULTS: dict[str, tuple[int, str, str]] = {
    "rate_limit": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your rate limit.",
    ),
    "overloaded": (529, "overloaded_error", "Overloaded"),
    "api_error": (500, "api_error", "Internal server error"),
}
OTHER_KINDS = ("connection_reset", "slow", "stream_cut", "stream_error")
KINDS = (*STATUS_FAULTS, *OTHER_KINDS)
ALIASES = {
    "429": "rate_limit",
    "529": "overloaded",
    "500": "api_error",
    "reset": "connection_reset",
    "timeout": "slow",
    "stream_disconnect": "stream_cut",
}
DEFAULT_RANDOM_KINDS = ("rate_limit", "overloaded", "api_error", "connection_reset")


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one request.

    kind: rate_limit (429) | overloaded (529) | api_error (500) | connection_reset (close the
      socket without a response) | slow (wait `delay` s, then answer normally) | stream_cut
      (close after `after_events` SSE events; a non-streaming answer is cut mid-body) |
      stream_error (an `event: error` overloaded_error after `after_events` events of a 200
      stream; only matches streaming requests).
    retry_after / retry_after_ms: headers on 429/529/500; when both are None the server's
      `fault_retry_after_ms` default is used (the SDK prefers retry-after-ms, so tests stay fast).
    status / error_type / message: override the error answer of a status fault.
    """

    kind: str
    retry_after: float | None = None
    retry_after_ms: float | None = None
    delay: float = 1.0
    after_events: int = 3
    status: int | None = None
    error_type: str | None = None
    message: str | None = None

    @classmethod
    def of(cls, spec: str | int | Fault) -> Fault:
        """Accept a Fault, a kind name, an alias ("429", "reset", ...) or a status code."""
        if isinstance(spec, Fault):
            return spec
        kind = ALIASES.get(str(spec), str(spec))
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {spec!r}; expected one of {KINDS}")
        return cls(kind)

    @property
    def stream_only(self) -> bool:
        return self.kind == "stream_error"

    def error(self) -> tuple[int, str, str]:
        """(status, error type, message) of a status fault."""
        status, etype, message = STATUS_FAULTS[self.kind]
        return self.status or status, self.error_type or etype, self.message or message

    def headers(self, default_ms: float | None) -> dict[str, str]:
        """retry-after headers of a status fault."""
        after, after_ms = self.retry_after, self.retry_after_ms
        if after is None and after_ms is None and default_ms is not None:
            after_ms = default_ms
            if self.kind == "rate_limit":  # the API always sends whole seconds on a 429
                after = max(1, math.ceil(default_ms / 1000))
        out: dict[str, str] = {}
        if after is not None:
            out["retry-after"] = str(int(after)) if float(after).is_integer() else str(after)
        if after_ms is not None:
            out["retry-after-ms"] = (
                str(int(after_ms)) if float(after_ms).is_integer() else str(after_ms)
            )
        return out


@dataclass
class _Queued:
    fault: Fault
    path_prefix: str
    method: str | None


class FaultPlan:
    """A FIFO of scripted faults plus a seeded random fault rate; callers hold the lock."""

    def __init__(self) -> None:
        self.queue: list[_Queued] = []
        self.rate = 0.0
        self.kinds: list[Fault] = [Fault(k) for k in DEFAULT_RANDOM_KINDS]
        self.path_prefix = "/v1/messages"
        self.rng = random.Random(0)

    def add(self, fault: Fault, times: int, path_prefix: str, method: str | None) -> None:
        self.queue.extend(_Queued(fault, path_prefix, method) for _ in range(times))

    def set_kinds(self, kinds: Iterable[str | int | Fault]) -> None:
        self.kinds = [Fault.of(k) for k in kinds]

    def take(self, method: str, path: str, stream: bool) -> tuple[Fault, str] | None:
        """The fault for this request and where it came from ("queue" | "random"), or None."""
        for i, item in enumerate(self.queue):
            if not path.startswith(item.path_prefix):
                continue
            if item.method and item.method.upper() != method:
                continue
            if item.fault.stream_only and not stream:
                continue  # wait for a request it can apply to
            del self.queue[i]
            return item.fault, "queue"
        if self.rate > 0 and path.startswith(self.path_prefix):
            # Always draw, so the sequence of outcomes depends only on the seed and request order.
            roll = self.rng.random()
            choices = [f for f in self.kinds if stream or not f.stream_only]
            if roll < self.rate and choices:
                return replace(self.rng.choice(choices)), "random"
        return None

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"kind": q.fault.kind, "path_prefix": q.path_prefix, "method": q.method}
            for q in self.queue
        ]
