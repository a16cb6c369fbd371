"""Context editing (beta `context_management`) as the fake applies it before billing.

Supported edits, applied in the order given:
  clear_tool_uses_20250919: once the input passes `trigger` (default 100,000 input tokens;
    or `{type: tool_uses, value}`), the results of every tool use but the last `keep`
    (default 3; `exclude_tools` never cleared) are replaced by CLEARED_TEXT, and with
    `clear_tool_inputs` (true, or a list of tool names) their inputs by {}. Nothing is cleared
    when fewer than `clear_at_least` input tokens would go.
  clear_thinking_20251015: thinking blocks of all but the last `keep` assistant turns that hold
    thinking are removed (default keep: 1 turn; `"all"` / `{type: all}` keeps every one).
Other edit types (e.g. compact_20260112) are accepted and not applied. What was cleared changes
the content, so the cached prefix ends where the first edit was made, as on the API.
"""

from __future__ import annotations

import copy
from typing import Any

from .tokens import count_input_tokens

CLEARED_TEXT = "[cleared to save context]"
DEFAULT_TRIGGER = {"type": "input_tokens", "value": 100_000}
DEFAULT_KEEP_TOOL_USES = 3


def _tool_uses(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        block
        for message in body["messages"]
        if message.get("role") == "assistant" and isinstance(message.get("content"), list)
        for block in message["content"]
        if isinstance(block, dict) and block.get("type") == "tool_use"
    ]


def _clear_tool_uses(body: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any] | None:
    trigger = edit.get("trigger") or DEFAULT_TRIGGER
    uses = _tool_uses(body)
    measured = len(uses) if trigger.get("type") == "tool_uses" else count_input_tokens(body)
    if measured <= int(trigger.get("value", 0)):
        return None
    keep = int((edit.get("keep") or {}).get("value", DEFAULT_KEEP_TOOL_USES))
    excluded = set(edit.get("exclude_tools") or [])
    candidates = [u for u in uses if u.get("name") not in excluded]
    to_clear = candidates[: max(0, len(candidates) - keep)]
    if not to_clear:
        return None
    clear_inputs = edit.get("clear_tool_inputs") or False
    ids = {u.get("id") for u in to_clear}
    before = count_input_tokens(body)
    edited = copy.deepcopy(body)
    for message in edited["messages"]:
        if not isinstance(message.get("content"), list):
            continue
        for block in message["content"]:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_result" and block.get("tool_use_id") in ids:
                block["content"] = CLEARED_TEXT
            elif (
                block.get("type") == "tool_use"
                and block.get("id") in ids
                and (
                    clear_inputs is True
                    or (isinstance(clear_inputs, list) and block.get("name") in clear_inputs)
                )
            ):
                block["input"] = {}
    cleared = before - count_input_tokens(edited)
    at_least = edit.get("clear_at_least") or {}
    if cleared < int(at_least.get("value", 0)):
        return None
    body.clear()
    body.update(edited)
    return {
        "type": "clear_tool_uses_20250919",
        "cleared_tool_uses": len(to_clear),
        "cleared_input_tokens": cleared,
    }


def _clear_thinking(body: dict[str, Any], edit: dict[str, Any]) -> dict[str, Any] | None:
    keep = edit.get("keep", {"type": "thinking_turns", "value": 1})
    if keep == "all" or (isinstance(keep, dict) and keep.get("type") == "all"):
        return None
    kept_turns = int(keep.get("value", 1)) if isinstance(keep, dict) else 1
    turns = [
        message
        for message in body["messages"]
        if message.get("role") == "assistant"
        and isinstance(message.get("content"), list)
        and any(
            isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking")
            for b in message["content"]
        )
    ]
    older = turns[: max(0, len(turns) - kept_turns)]
    if not older:
        return None
    before = count_input_tokens(body)
    for message in older:
        message["content"] = [
            b
            for b in message["content"]
            if not (isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking"))
        ]
    return {
        "type": "clear_thinking_20251015",
        "cleared_thinking_turns": len(older),
        "cleared_input_tokens": before - count_input_tokens(body),
    }


def apply_context_management(
    body: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the body the model sees and is billed for, the response's `context_management`).

    The second item is None when the request asked for no context management.
    """
    config = body.get("context_management")
    if not isinstance(config, dict):
        return body, None
    edited = copy.deepcopy(body)
    applied: list[dict[str, Any]] = []
    for edit in config.get("edits") or []:
        if not isinstance(edit, dict):
            continue
        result = None
        if edit.get("type") == "clear_tool_uses_20250919":
            result = _clear_tool_uses(edited, edit)
        elif edit.get("type") == "clear_thinking_20251015":
            result = _clear_thinking(edited, edit)
        if result is not None:
            applied.append(result)
    return edited, {"applied_edits": applied}
