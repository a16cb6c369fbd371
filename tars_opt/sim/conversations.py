"""Workload records in the Messages API's own shape: recorded conversations and captured
requests (see tars_opt/sim/workload.py for the file format as a whole).

A conversation record is one agent conversation (the tau-bench shape): every assistant
message in it was one API call, whose request is system + tools + the messages before it
and whose answer is that assistant message. A request record is one captured call: the
body as the client sent it, tars-opt's controls, and the answer's content when known.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from tars_opt.errors import TraceError
from tars_opt.types import PRIORITIES

# Conversation records: these keys are read; any other key (tau-bench's split, task_id,
# trial, reward ...) is kept by the file, not replayed. Call-record and request-record
# fields are refused, so a record that mixes the kinds fails instead of replaying half.
CONVERSATION_FIELDS = (
    "id", "time", "system", "tools", "messages", "model", "max_tokens", "controls",
)  # fmt: skip
REQUEST_FIELDS = ("time", "request", "controls", "answer", "meta")
# The controls a replayed request may carry (the Request fields the gateway's
# x-tars-opt-* headers and the library set), and what each takes.
CONTROL_FIELDS = (
    "namespace", "session", "priority", "cache_mode", "route", "urgent", "defer", "max_wait_s",
)  # fmt: skip
CACHE_MODES = ("use", "refresh", "off")


def fail(line: int, name: str, problem: str) -> TraceError:
    """The one-line error of a workload record: its line and the field at fault."""
    return TraceError(f"line {line}: field '{name}' {problem}")


@dataclass(frozen=True)
class Conversation:
    """A validated conversation record; its calls' times are given later."""

    line: int
    id: str
    start: float | None
    base: dict[str, Any]  # the body fields every call of it sends (system, tools, model ...)
    messages: list[dict[str, Any]]
    controls: dict[str, Any] = field(default_factory=dict)

    def calls(self) -> list[tuple[dict[str, Any], tuple[dict[str, Any], ...]]]:
        """Each assistant message's call: (the request body, the recorded answer)."""
        out = []
        for i, message in enumerate(self.messages):
            if message["role"] == "assistant":
                body = {**self.base, "messages": self.messages[:i]}
                out.append((body, tuple(message["content"])))
        return out


def unique_tool_ids(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages (copied) with tool_use ids made unique: recorded trajectories reuse
    some ids, which the API refuses. A repeat and the tool_result after it get a suffix."""
    out = json.loads(json.dumps(messages))
    seen: set[str] = set()
    renamed: dict[str, str] = {}
    for message in out:
        content = message["content"]
        for block in content if isinstance(content, list) else ():
            if block.get("type") == "tool_use":
                old = block["id"]
                new, n = old, 1
                while new in seen:
                    n += 1
                    new = f"{old}_{n}"
                seen.add(new)
                renamed[old] = new
                block["id"] = new
            elif block.get("type") == "tool_result":
                block["tool_use_id"] = renamed.get(block["tool_use_id"], block["tool_use_id"])
    return out


def _blocks(line: int, name: str, value: Any) -> list[dict[str, Any]]:
    """Content as a list of blocks (text becomes one text block)."""
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if not isinstance(value, list) or not all(
        isinstance(b, dict) and isinstance(b.get("type"), str) for b in value
    ):
        raise fail(line, name, "must be text or a list of content blocks, each with a type")
    return value


def _messages(line: int, name: str, value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise fail(line, name, "must be a non-empty list of {role, content} messages")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise fail(line, name, f"message {i} needs role user or assistant")
        out.append({**msg, "content": _blocks(line, f"{name}[{i}].content", msg.get("content"))})
    if out[0]["role"] != "user":
        raise fail(line, name, "must start with a user message (the API requires it)")
    return out


def _tool_ids(line: int, name: str, messages: list[dict[str, Any]]) -> None:
    for i, msg in enumerate(messages):
        for block in msg["content"]:
            if block["type"] == "tool_use" and not isinstance(block.get("id"), str):
                raise fail(line, name, f"message {i} has a tool_use block without an id")
            if block["type"] == "tool_result" and not isinstance(block.get("tool_use_id"), str):
                raise fail(line, name, f"message {i} has a tool_result without a tool_use_id")


def _common(line: int, rec: dict[str, Any], body: dict[str, Any], prefix: str) -> None:
    """The body fields both record kinds check: model, max_tokens, system, tools."""
    model = rec.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise fail(line, f"{prefix}model", "must be a model name")
    max_tokens = rec.get("max_tokens")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise fail(line, f"{prefix}max_tokens", "must be a whole number of at least 1")
    system = rec.get("system")
    if system is not None and not isinstance(system, str | list):
        raise fail(line, f"{prefix}system", "must be text or a list of text blocks")
    tools = rec.get("tools")
    if tools is not None and (
        not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)
    ):
        raise fail(line, f"{prefix}tools", "must be a list of tool schemas")
    for key in ("model", "max_tokens", "system", "tools"):
        if rec.get(key) is not None:
            body[key] = rec[key]


def parse_controls(line: int, value: Any) -> dict[str, Any]:
    """A record's `controls`: the Request fields tars-opt reads, validated."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail(line, "controls", "must be a JSON object")
    out: dict[str, Any] = {}
    for key, v in value.items():
        name = f"controls.{key}"
        if key not in CONTROL_FIELDS:
            raise fail(line, name, f"is not a control (controls: {', '.join(CONTROL_FIELDS)})")
        if key in ("namespace", "session"):
            if not isinstance(v, str) or not v:
                raise fail(line, name, "must be non-empty text")
        elif key == "priority":
            if v not in PRIORITIES:
                raise fail(line, name, f"{v!r} is not one of {', '.join(PRIORITIES)}")
        elif key == "cache_mode":
            if v not in CACHE_MODES:
                raise fail(line, name, f"{v!r} is not one of {', '.join(CACHE_MODES)}")
        elif key in ("route", "urgent"):
            if not isinstance(v, bool):
                raise fail(line, name, "must be true or false")
        elif key == "defer":
            if v is not None and not isinstance(v, bool):
                raise fail(line, name, "must be true, false or null")
        elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise fail(line, name, "must be a number of seconds (0 or more)")
        out[key] = v
    return out


def parse_conversation(
    line: int,
    rec: dict[str, Any],
    start: float | None,
    defaults: dict[str, Any],
    refused: tuple[str, ...] = (),
) -> Conversation:
    """Validate a conversation record (`start` is its parsed `time`, if any); `defaults`
    (the header's) may give it `system` and `tools`; keys in `refused` (other record
    kinds' fields) are errors, other unknown keys are ignored."""
    mixed = [k for k in rec if k not in CONVERSATION_FIELDS and k in refused]
    if mixed:
        raise fail(line, mixed[0], "belongs to another record kind: a conversation record "
                   f"reads {', '.join(CONVERSATION_FIELDS)}")  # fmt: skip
    messages = _messages(line, "messages", rec.get("messages"))
    if not any(m["role"] == "assistant" for m in messages):
        raise fail(line, "messages", "has no assistant message (each one is a call to replay)")
    for i, msg in enumerate(messages):
        if msg["role"] == "assistant" and (i == 0 or messages[i - 1]["role"] != "user"):
            raise fail(line, "messages", f"message {i} (assistant) must follow a user message")
    _tool_ids(line, "messages", messages)
    ident = rec.get("id", f"conversation-line-{line}")
    if not isinstance(ident, str | int) or isinstance(ident, bool):
        raise fail(line, "id", "must be text or a number")
    merged: dict[str, Any] = {
        k: defaults[k] for k in ("system", "tools") if k in defaults and k not in rec
    }
    base: dict[str, Any] = {}
    _common(line, {**merged, **rec}, base, "")
    return Conversation(
        line=line,
        id=str(ident),
        start=start,
        base=base,
        messages=unique_tool_ids(messages),
        controls=parse_controls(line, rec.get("controls")),
    )


def parse_request(
    line: int, rec: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], tuple[dict[str, Any], ...] | None]:
    """Validate a request record: (the body, its controls, the recorded answer or None)."""
    unknown = [k for k in rec if k not in REQUEST_FIELDS]
    if unknown:
        raise fail(line, unknown[0], "is not a request-record field (fields: "
                   f"{', '.join(REQUEST_FIELDS)})")  # fmt: skip
    body = rec["request"]
    if not isinstance(body, dict):
        raise fail(line, "request", "must be a Messages API body (a JSON object)")
    messages = _messages(line, "request.messages", body.get("messages"))
    if messages[-1]["role"] != "user":
        raise fail(line, "request.messages", "must end with the user turn being answered")
    _tool_ids(line, "request.messages", messages)
    _common(line, body, {}, "request.")
    answer = rec.get("answer")
    recorded = None if answer is None else tuple(_blocks(line, "answer", answer))
    meta = rec.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise fail(line, "meta", "must be a JSON object")
    return dict(body), parse_controls(line, rec.get("controls")), recorded
