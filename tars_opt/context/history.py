"""Conversation histories as the Messages API sees them: turns, tool pairs, validity.

Pruning works on *turns*, never on single messages: a turn starts at a user message that is
not a tool result and runs to the next such message. A turn therefore holds every
tool_use with its tool_result, so keeping or dropping whole turns can never orphan either
half of a pair (the API rejects orphans), and the kept turns still alternate user /
assistant because each turn does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tars_opt import tokens


def blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as a list of blocks (a plain string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list | tuple) else []


def is_tool_result_turn(message: dict[str, Any]) -> bool:
    """True for a user message that carries tool results (it answers the turn before)."""
    return message.get("role") == "user" and any(
        b.get("type") == "tool_result" for b in blocks(message.get("content"))
    )


def message_text(message: dict[str, Any], limit: int | None = None) -> str:
    """The readable text of a message: text blocks, tool calls and results flattened."""
    parts: list[str] = []
    for b in blocks(message.get("content")):
        kind = b.get("type")
        if kind == "text":
            parts.append(str(b.get("text", "")))
        elif kind == "tool_use":
            args = json.dumps(b.get("input", {}), sort_keys=True, default=str)
            parts.append(f"[tool call {b.get('name')}({args})]")
        elif kind == "tool_result":
            inner = b.get("content", "")
            inner_text = (
                inner
                if isinstance(inner, str)
                else " ".join(message_text({"content": inner}).split())
            )
            parts.append(f"[tool result: {inner_text}]")
    text = "\n".join(p for p in parts if p)
    return text[:limit] if limit is not None else text


def tool_names_used(messages: Any) -> set[str]:
    """Names of the tools the conversation has called."""
    return {
        str(b.get("name"))
        for m in messages
        for b in blocks(m.get("content"))
        if b.get("type") == "tool_use" and b.get("name")
    }


@dataclass(frozen=True)
class Turn:
    """Messages [start, end) of a history, kept or dropped together."""

    index: int
    start: int
    end: int
    tokens: int

    @property
    def size(self) -> int:
        return self.end - self.start


def split_turns(messages: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[Turn]:
    """The history cut into turns (see the module docstring), with estimated tokens."""
    starts = [
        i
        for i, m in enumerate(messages)
        if i == 0 or (m.get("role") == "user" and not is_tool_result_turn(m))
    ]
    turns = []
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(messages)
        size = sum(tokens.estimate_message(m) for m in messages[start:end])
        turns.append(Turn(n, start, end, size))
    return turns


def problems(messages: list[dict[str, Any]]) -> list[str]:
    """What the Messages API would reject in a message list (empty when valid).

    Checks: starts with user, roles alternate, every tool_use is answered by a tool_result
    in the next message and every tool_result answers a tool_use of the message before.
    """
    found: list[str] = []
    if messages and messages[0].get("role") != "user":
        found.append("the first message is not from the user")
    for i, m in enumerate(messages):
        if i and m.get("role") == messages[i - 1].get("role"):
            found.append(f"messages {i - 1} and {i} have the same role")
        uses = {b.get("id") for b in blocks(m.get("content")) if b.get("type") == "tool_use"}
        if uses:
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            answered = {
                b.get("tool_use_id")
                for b in blocks(nxt.get("content") if nxt else [])
                if b.get("type") == "tool_result"
            }
            if not uses <= answered and i + 1 < len(messages):
                found.append(f"tool_use in message {i} has no tool_result in message {i + 1}")
        results = {
            b.get("tool_use_id") for b in blocks(m.get("content")) if b.get("type") == "tool_result"
        }
        if results:
            prev = messages[i - 1] if i else {}
            called = {
                b.get("id") for b in blocks(prev.get("content")) if b.get("type") == "tool_use"
            }
            if not results <= called:
                found.append(f"tool_result in message {i} answers no tool_use of message {i - 1}")
    return found
