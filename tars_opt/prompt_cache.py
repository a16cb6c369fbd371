"""Prompt-cache breakpoints on the stable prefix of a request, and the check that they hit.

The API caches the prefix of a request (tools, then system, then messages) up to each
block marked with `cache_control`, at most 4 per request. We mark, in order:
the last tool; the original system prompt when a summary follows it; the end of the
system prompt (which holds the summary of old history); the last message before the
prompt. Everything before a breakpoint must stay byte-identical from turn to turn, which
is why pruning keeps its cuts stable (see stages/prune.py) and nothing here adds dates.
A prefix shorter than the model's minimum is not marked: the API would ignore it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Any

from tars_opt import tokens
from tars_opt.config import PromptCachingConfig
from tars_opt.types import Usage

log = logging.getLogger("tars_opt.prompt_cache")
MAX_BREAKPOINTS = 4


@dataclass(frozen=True)
class Breakpoint:
    """One cache_control mark: where it is and how many tokens the prefix up to it has."""

    where: str
    prefix_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _has_marks(params: dict[str, Any]) -> bool:
    def marked(items: Any) -> bool:
        for item in items or []:
            if isinstance(item, dict):
                if "cache_control" in item:
                    return True
                content = item.get("content")
                if isinstance(content, list) and marked(content):
                    return True
        return False

    system = params.get("system")
    return (
        "cache_control" in params
        or marked(params.get("tools"))
        or (isinstance(system, list) and marked(system))
        or marked(params.get("messages"))
    )


def mark_breakpoints(
    params: dict[str, Any],
    config: PromptCachingConfig,
    *,
    deferred: bool = False,
    enabled: bool = True,
) -> tuple[dict[str, Any], list[Breakpoint], str]:
    """A copy of `params` with cache_control marks, the marks, and a one-line reason.

    Requests the caller marked already are left alone (the caller manages caching);
    `enabled=False` (the A/B holdout) marks nothing.
    """
    if not config.enabled or not enabled:
        return params, [], "prompt caching off"
    if _has_marks(params):
        return params, [], "the request carries its own cache_control marks"
    ttl = config.ttl_deferred if deferred else config.ttl_interactive
    minimum = config.minimum(str(params.get("model") or ""))
    out = copy.deepcopy(params)
    control = {"type": "ephemeral", "ttl": ttl}
    candidates: list[tuple[str, int, Any]] = []  # (where, prefix tokens, block to mark)
    total = 0
    tools = out.get("tools") or []
    for tool in tools:
        total += tokens.estimate_tool(tool)
    if tools:
        candidates.append((f"tools[{len(tools) - 1}] (last tool)", total, tools[-1]))
    system = out.get("system")
    if isinstance(system, str) and system:
        system = out["system"] = [{"type": "text", "text": system}]
    if isinstance(system, list) and system:
        for i, block in enumerate(system):
            total += tokens.estimate_text(str(block.get("text", "")))
            last = i == len(system) - 1
            if last or i == len(system) - 2:
                label = "system (end)" if last else f"system[{i}]"
                candidates.append((label, total, block))
    messages = out.get("messages") or []
    history = messages[:-1]
    for m in history:
        total += tokens.estimate_message(m)
    if history:
        last = history[-1]
        if isinstance(last.get("content"), str):
            last["content"] = [{"type": "text", "text": last["content"]}]
        content = [b for b in last.get("content") or [] if isinstance(b, dict)]
        if content:
            candidates.append(
                (f"messages[{len(history) - 1}] (end of history)", total, content[-1])
            )
    chosen = [c for c in candidates if c[1] >= minimum][-MAX_BREAKPOINTS:]
    if not chosen:
        longest = candidates[-1][1] if candidates else 0
        return params, [], f"prefix ~{longest} tokens is below the {minimum}-token minimum"
    for _, _, block in chosen:
        block["cache_control"] = dict(control)
    marks = [Breakpoint(where, n) for where, n, _ in chosen]
    return out, marks, f"{len(marks)} breakpoint(s), ttl {ttl}"


def miss_cause(usage: Usage, marks: list[dict[str, Any]], minimum: int) -> str | None:
    """Why a marked prefix was neither written nor read, or None when the cache was used."""
    if not marks or usage.cache_read or usage.cache_write:
        return None
    longest = max(int(m.get("prefix_tokens", 0)) for m in marks)
    if longest < minimum * 1.3:
        return (
            f"prefix ~{longest} tokens (estimated) is close to the {minimum}-token minimum: "
            "it is probably below the model's real minimum"
        )
    return (
        "the model may not support prompt caching, or the request changed something that "
        "invalidates it (tool_choice, images, thinking settings)"
    )


def check_usage(usage: Usage, marks: list[dict[str, Any]], minimum: int, request_id: str) -> None:
    """Log a marked prefix that came back with both cache counters at 0."""
    cause = miss_cause(usage, marks, minimum)
    if cause:
        log.warning("prompt cache miss", extra={"request_id": request_id, "cause": cause})
