"""Routers score a request 0-100 (higher = needs a stronger tier) and explain the score.

`heuristic` is a complexity score over prompt features; `learned` a classifier over
embeddings trained on labelled prompts. Both are used by the route stage
(tars_opt/routing/stage.py), the `tars-opt router` commands and benchmarks/router_quality.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from tars_opt.types import Request


@dataclass(frozen=True)
class RouteScore:
    """A router's verdict on one request."""

    score: float
    router: str
    explain: str
    details: dict[str, Any] = field(default_factory=dict)


class Router(Protocol):
    """What the route stage needs from a router."""

    name: str

    def route_score(self, request: Request) -> RouteScore:
        """Score `request`; the route stage passes its prompt through `tokens.read_ends`."""
        ...
