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


# What routing reads of a prompt: its first ROUTE_HEAD_CHARS and last ROUTE_TAIL_CHARS
# characters. The router's regexes and tokenizer cost time in proportion to what they read
# (a 2 MB pasted log took seconds); the ask and the wanted output sit at the start and the
# end, and every factor the heuristic counts is saturated long before 16,000 characters
# (300 words, 3 questions, 5 technical terms). Prompts of the routers' benchmark and
# calibration sets (8,637 characters at most) are read whole.
ROUTE_HEAD_CHARS = 12_000
ROUTE_TAIL_CHARS = 4_000
_JOIN = "\n\n"
ROUTE_MAX_CHARS = ROUTE_HEAD_CHARS + len(_JOIN) + ROUTE_TAIL_CHARS


def routing_text(prompt: str) -> str:
    """The part of `prompt` that routing reads: all of it up to ROUTE_MAX_CHARS, else its
    head and tail joined by a blank line (ROUTE_MAX_CHARS long, so reading it again gives
    the same text)."""
    if len(prompt) <= ROUTE_MAX_CHARS:
        return prompt
    return prompt[:ROUTE_HEAD_CHARS] + _JOIN + prompt[-ROUTE_TAIL_CHARS:]


class Router(Protocol):
    """What the route stage needs from a router."""

    name: str

    def route_score(self, request: Request) -> RouteScore:
        """Score `request`; the route stage passes its prompt through `routing_text`."""
        ...
