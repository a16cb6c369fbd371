"""Tool-result clearing: old tool results of a long agent loop replaced by a placeholder.

An agent loop re-sends every tool result on every call. Past `trigger_tokens`, the results
of old tool uses are replaced by a short placeholder naming the tool and what was cleared
(optionally their inputs by {}); the tool_use and tool_result blocks themselves stay, so
the pairs the API checks are never separated. Never cleared: the last `keep_tool_uses`
tool uses and tools in `exclude_tools`.

Cache: clearing changes the request from the first cleared result on, and the prompt
cache is rewritten from there. So results are cleared in chunks: walking the clearable
uses from the oldest, a chunk closes once it holds `clear_at_least_tokens`, and only whole
chunks are cleared. A chunk, once closed, stays the same as the conversation grows (it
depends only on the uses before it), so the cleared part of the request is the same bytes
from call to call and the cache is rewritten once per chunk, not on every call.

The API's own context editing (`context_management` with `clear_tool_uses_20250919`,
beta) does the same on the server: `api_edit` builds that edit, kept after any edit of the
client's own, for the models the config lists.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tars_opt import tokens
from tars_opt.config.schema import ClearToolResultsConfig
from tars_opt.hashing import canonical

# Short on purpose: a tool result in an agent loop is ~200 tokens, so every token of
# boilerplate in the placeholder is ~0.5% of what clearing it saves.
PLACEHOLDER_START = "[tars-opt cleared "
API_EDIT = "clear_tool_uses_20250919"
# Identifiers a placeholder keeps (`keep_identifiers`): tokens of 3+ characters holding a
# digit - ids, booking codes, flight numbers, dates, prices - which an agent quotes later
# and cannot guess; at most this many, first seen first.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_$]+(?:[.:\-][A-Za-z0-9_]+)*")
MAX_IDENTIFIERS = 60


@dataclass(frozen=True)
class ToolUse:
    """One tool use of a conversation and where its result is."""

    id: str
    name: str
    use_message: int
    result_message: int | None
    result_tokens: int
    input_tokens: int
    cleared: bool  # its result is already a placeholder (the client's or ours)
    result_text: str = ""


def identifiers(text: str) -> list[str]:
    """The distinct identifier-like tokens of `text` (see _IDENTIFIER), in order."""
    seen: dict[str, None] = {}
    for token in _IDENTIFIER.findall(text):
        if len(token) >= 3 and any(c.isdigit() for c in token):
            seen.setdefault(token, None)
            if len(seen) >= MAX_IDENTIFIERS:
                break
    return list(seen)


@dataclass(frozen=True)
class Clearing:
    """What clearing did to one request."""

    messages: tuple[dict[str, Any], ...]
    cleared: list[ToolUse]
    removed_tokens: int
    reason: str

    def data(self) -> dict[str, Any]:
        """For the decision trace: counts, not contents."""
        return {
            "cleared_tool_uses": len(self.cleared),
            "by_tool": dict(Counter(u.name for u in self.cleared)),
            "removed_tokens": self.removed_tokens,
            "last_cleared_message": max((u.result_message or 0) for u in self.cleared),
        }


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(b.get("text", "")) if b.get("type") == "text" else canonical(b)
            for b in content
            if isinstance(b, dict)
        )
    return ""


def tool_uses(messages: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[ToolUse]:
    """Every tool use of the conversation in order, with its result's size."""
    results: dict[str, tuple[int, str]] = {}
    for i, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list | tuple):
            continue
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                results[str(block.get("tool_use_id"))] = (i, _result_text(block.get("content")))
    out: list[ToolUse] = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if message.get("role") != "assistant" or not isinstance(content, list | tuple):
            continue
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_use":
                continue
            where, text = results.get(str(block.get("id")), (None, ""))
            out.append(
                ToolUse(
                    id=str(block.get("id")),
                    name=str(block.get("name")),
                    use_message=i,
                    result_message=where,
                    result_tokens=tokens.estimate_text(text),
                    input_tokens=tokens.estimate_text(canonical(block.get("input") or {})),
                    cleared=text.startswith(PLACEHOLDER_START),
                    result_text=text,
                )
            )
    return out


def placeholder(use: ToolUse, inputs: bool, keep_identifiers: bool = True) -> str:
    """The text that replaces a cleared result: which tool, what went, the identifiers it
    held (with `keep_identifiers`), how to get the rest back."""
    also = " and its input" if inputs else ""
    ids = identifiers(use.result_text) if keep_identifiers else []
    held = f"; ids: {', '.join(ids)}" if ids else ""
    return (
        f"{PLACEHOLDER_START}the {use.name} result (~{use.result_tokens} tokens){also}{held}; "
        "call it again for the rest]"
    )


def plan(
    messages: tuple[dict[str, Any], ...], config: ClearToolResultsConfig, total_tokens: int
) -> tuple[list[ToolUse], str]:
    """The tool uses whose results to clear (whole chunks), and why."""
    if total_tokens <= config.trigger_tokens:
        return [], f"~{total_tokens} tokens is within the {config.trigger_tokens}-token trigger"
    uses = tool_uses(messages)
    keep = config.keep_tool_uses
    older = uses[: max(0, len(uses) - keep)]
    excluded = set(config.exclude_tools)
    clearable = [
        u
        for u in older
        if u.name not in excluded and u.result_message is not None and not u.cleared
    ]
    inputs = config.clear_tool_inputs
    chosen: list[ToolUse] = []
    chunk: list[ToolUse] = []
    size = 0
    for use in clearable:
        chunk.append(use)
        size += use.result_tokens + (use.input_tokens if inputs else 0)
        if config.keep_identifiers:
            size -= tokens.estimate_text(" ".join(identifiers(use.result_text)))
        if size >= max(1, config.clear_at_least_tokens):
            chosen += chunk
            chunk, size = [], 0
    if not chosen:
        return [], (
            f"~{total_tokens} tokens, but the {len(clearable)} clearable tool results "
            f"(all but the last {keep} tool uses) hold less than the "
            f"{config.clear_at_least_tokens}-token step"
        )
    return chosen, (
        f"~{total_tokens} tokens > {config.trigger_tokens}: cleared the results of "
        f"{len(chosen)} old tool uses in steps of {config.clear_at_least_tokens}+ tokens "
        f"(the last {keep} tool uses kept"
        + (f", {', '.join(sorted(excluded))} never cleared" if excluded else "")
        + ")"
    )


def clear(
    messages: tuple[dict[str, Any], ...], config: ClearToolResultsConfig, total_tokens: int
) -> Clearing | None:
    """The messages with old tool results cleared, or None when nothing is to clear."""
    chosen, reason = plan(messages, config, total_tokens)
    if not chosen:
        return None
    inputs = config.clear_tool_inputs
    by_id = {u.id: u for u in chosen}
    touched = {u.use_message for u in chosen} | {u.result_message for u in chosen}
    out = list(messages)
    for i in sorted(m for m in touched if m is not None):
        message = copy.deepcopy(out[i])
        for block in message["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result" and str(block.get("tool_use_id")) in by_id:
                use = by_id[str(block["tool_use_id"])]
                block["content"] = placeholder(use, inputs, config.keep_identifiers)
            elif inputs and block.get("type") == "tool_use" and str(block.get("id")) in by_id:
                block["input"] = {}
        out[i] = message
    before = sum(tokens.estimate_message(messages[i]) for i in touched if i is not None)
    after = sum(tokens.estimate_message(out[i]) for i in touched if i is not None)
    return Clearing(tuple(out), chosen, max(0, before - after), reason)


def client_clears(extra: dict[str, Any]) -> bool:
    """Whether the client's own context_management already clears tool uses."""
    edits = (extra.get("context_management") or {}).get("edits") or []
    return any(
        isinstance(e, dict) and str(e.get("type", "")).startswith("clear_tool_uses") for e in edits
    )


def api_edit(config: ClearToolResultsConfig) -> dict[str, Any]:
    """The API's context-editing edit that does what `clear` does, on the server."""
    edit: dict[str, Any] = {
        "type": API_EDIT,
        "trigger": {"type": "input_tokens", "value": config.trigger_tokens},
        "keep": {"type": "tool_uses", "value": config.keep_tool_uses},
        "clear_at_least": {"type": "input_tokens", "value": config.clear_at_least_tokens},
    }
    if config.exclude_tools:
        edit["exclude_tools"] = list(config.exclude_tools)
    if config.clear_tool_inputs:
        edit["clear_tool_inputs"] = True
    return edit


def with_api_edit(extra: dict[str, Any], config: ClearToolResultsConfig) -> dict[str, Any]:
    """`extra` with the clearing edit added after the client's own edits (kept as they are)."""
    management = dict(extra.get("context_management") or {})
    management["edits"] = [*(management.get("edits") or []), api_edit(config)]
    return {**extra, "context_management": management}
