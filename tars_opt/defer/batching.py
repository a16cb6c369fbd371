"""Grouping prepared requests into Message Batches, and the shared-prefix cache breakpoint."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from tars_opt import tokens
from tars_opt.hashing import prefix_key
from tars_opt.types import Decision, Prepared

# (task row, {"custom_id", "params"} body, body bytes)
Item = tuple[dict[str, Any], dict[str, Any], int]
ENVELOPE_BYTES = 1024  # the {"requests": [...]} around the bodies, with room to spare


def group_requests(
    ready: list[tuple[dict[str, Any], Prepared]], max_requests: int, max_bytes: int
) -> list[tuple[str, list[Item]]]:
    """Batches per model, each within `max_requests` and `max_bytes`; inside a model,
    requests that share a prefix sit next to each other (then by priority, then age).
    The requests of a client's Message Batch go in upstream batches of their own, so
    canceling it can cancel them upstream without touching anyone else's requests.

    A single request over the byte limit still gets a batch of its own; the caller
    refuses it (the API would).
    """
    by_model: dict[tuple[str, str], list[tuple[str, dict[str, Any], dict[str, Any], int]]] = (
        defaultdict(list)
    )
    for task, prepared in ready:
        body = {"custom_id": task["custom_id"], "params": prepared.params}
        size = len(json.dumps(body, separators=(",", ":")).encode()) + 1
        key = prefix_key(prepared.params)
        by_model[(prepared.params["model"], task.get("client_batch") or "")].append(
            (key, task, body, size)
        )
    limit = max_bytes - ENVELOPE_BYTES
    out: list[tuple[str, list[Item]]] = []
    for model, client_batch in sorted(by_model):
        group = by_model[(model, client_batch)]
        items = sorted(group, key=lambda x: (x[0], x[1]["priority"], x[1]["id"]))
        chunk: list[Item] = []
        used = 0
        for _key, task, body, size in items:
            if chunk and (len(chunk) >= max_requests or used + size > limit):
                out.append((model, chunk))
                chunk, used = [], 0
            chunk.append((task, body, size))
            used += size
        if chunk:
            out.append((model, chunk))
    return out


def has_breakpoint(params: dict[str, Any]) -> bool:
    """Whether any system block, tool or message block already carries cache_control."""
    system = params.get("system")
    blocks: list[Any] = list(system) if isinstance(system, list) else []
    blocks += list(params.get("tools") or [])
    for message in params.get("messages") or []:
        content = message.get("content")
        blocks += content if isinstance(content, list) else [message]
    return any(isinstance(b, dict) and "cache_control" in b for b in blocks)


def mark_shared_prefixes(
    ready: list[tuple[dict[str, Any], Prepared]],
    min_tokens: int,
    minimum: Callable[[str], int] = lambda _model: 0,
) -> int:
    """Give a system prompt shared by 2+ requests a 1-hour prompt-cache breakpoint.

    Batches can take longer than the default 5-minute cache lives, hence 1h. Skipped when
    the prefix is under `min_tokens` or the model's `minimum` (estimated; below a model's
    minimum nothing is cached) or the request already has a breakpoint (the chain's
    prompt caching marks long prefixes itself). Returns how many requests were marked.
    """
    keys = [prefix_key(p.params) for _, p in ready]
    counts = Counter(keys)
    sizes: dict[str, int] = {}
    marked = 0
    for key, (_, prepared) in zip(keys, ready, strict=True):
        params = prepared.params
        system = params.get("system")
        shared = counts[key]
        if not system or shared < 2 or has_breakpoint(params):
            continue
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system)
        if key not in sizes:  # estimated once per shared prefix
            size = tokens.estimate_text(" ".join(str(b.get("text", "")) for b in blocks))
            size += sum(tokens.estimate_tool(t) for t in params.get("tools") or [])
            sizes[key] = size
        size = sizes[key]
        if size < max(min_tokens, minimum(str(params.get("model") or ""))):
            continue
        blocks[-1] = {**blocks[-1], "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        params["system"] = blocks
        prepared.decisions.append(
            Decision(
                "batch",
                "prompt_cache",
                f"system prompt shared by {shared} requests: 1h cache breakpoint",
                {"tokens": size},
            )
        )
        marked += 1
    return marked
