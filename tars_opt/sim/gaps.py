"""When the calls of a recorded conversation happen, for recordings without timestamps.

A seeded model of an agent's working day: a conversation starts at a random moment of
09:00-12:00 or 13:15-17:00 UTC (so the lunch break leaves a shared prefix idle for over an
hour, which is what separates a 5-minute from a 1-hour cache TTL), a call after tool
results comes 2-8 s after the previous call (the agent's own loop), a call after a user's
text 10-60 s after it (a person reading and typing). Conversations interleave. The same
seed gives the same times.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

DAY = 1_796_169_600.0  # 2026-12-02T00:00Z: the day used when a workload names none
MORNING = (9 * 3600.0, 12 * 3600.0)
AFTERNOON = (13.25 * 3600.0, 17 * 3600.0)
TOOL_GAP_S = (2.0, 8.0)
USER_GAP_S = (10.0, 60.0)


def ends_with_tool_result(messages: Sequence[dict[str, Any]]) -> bool:
    """Whether the last message hands tool results back (the agent's loop, not a person)."""
    if not messages:
        return False
    content = messages[-1].get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    )


class GapModel:
    """Seeded start times and gaps; draw in a fixed order for reproducible replays."""

    def __init__(self, seed: int, day: float = DAY) -> None:
        self.day = float(day)
        self._rng = random.Random(seed)

    def start(self) -> float:
        """A conversation's start: a random moment of the morning or afternoon span."""
        span = self._rng.choice([MORNING, AFTERNOON])
        return self.day + self._rng.uniform(*span)

    def gap(self, after_tools: bool) -> float:
        """Seconds from the previous call to the next one."""
        return self._rng.uniform(*(TOOL_GAP_S if after_tools else USER_GAP_S))

    def call_times(
        self, messages: Sequence[dict[str, Any]], start: float | None = None
    ) -> list[float]:
        """The time of every assistant message's call (each is one API call whose request is
        the messages before it); `start` (drawn when None) is the first call's."""
        at = self.start() if start is None else float(start)
        times: list[float] = []
        for i, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            if times:
                at += self.gap(ends_with_tool_result(messages[:i]))
            times.append(at)
        return times
