"""What the fake model says: request validation, deterministic replies, Message JSON, SSE events."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .tokens import CacheUsage, cache_control_error, canonical, text_tokens

_VOCABULARY = (
    "the agent checks each step before it acts and keeps plan short cost latency "
    "quality cache batch prompt answer result careful clear simple stable model "
    "token budget route retry measure compare review summary evidence test because "
    "therefore however first second finally overall likely correct option"
)
_WORDS = _VOCABULARY.split()


def last_user_text(body: dict[str, Any]) -> str:
    """Text of the last user message (text blocks and tool_result text concatenated)."""
    for message in reversed(body.get("messages") or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content", "")
        if isinstance(content, str):
            return content
        parts: list[str] = []
        for block in content or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                inner = block.get("content", "")
                parts.append(inner if isinstance(inner, str) else canonical(inner))
        return "\n".join(parts)
    return ""


def default_text(body: dict[str, Any]) -> str:
    """ "Answer: " + a 8-16 word sentence chosen by a hash of the last user message.

    Only the prompt feeds the hash (not the model), so every model gives the same answer to
    the same question unless a test scripts it otherwise.
    """
    digest = hashlib.sha256(last_user_text(body).encode()).digest()
    n = 8 + digest[0] % 9
    words = [_WORDS[b % len(_WORDS)] for b in digest[1 : 1 + n]]
    return "Answer: " + " ".join(words).capitalize() + "."


def message_params_error(body: Any, *, need_max_tokens: bool = True) -> str | None:
    """The API's 400 message for an invalid Messages request, or None if it is acceptable."""
    if not isinstance(body, dict):
        return "body: Input should be a valid dictionary"
    required = ("model", "max_tokens", "messages") if need_max_tokens else ("model", "messages")
    for name in required:
        if name not in body:
            return f"{name}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    if need_max_tokens:
        max_tokens = body["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return "max_tokens: Input should be an integer greater than or equal to 1"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if not isinstance(message.get("content"), str | list):
            return f"messages.{i}.content: Field required"
    if "system" in body and not isinstance(body["system"], str | list):
        return "system: Input should be a valid string or list of text blocks"
    tools = body.get("tools", [])
    if not isinstance(tools, list) or any(
        not isinstance(t, dict) or not t.get("name") for t in tools
    ):
        return "tools: every tool needs a name"
    return cache_control_error(body)


@dataclass
class Reply:
    """The model's side of one answer, before usage is attached."""

    content: list[dict[str, Any]]
    stop_reason: str
    output_tokens: int
    stop_sequence: str | None = None
    delay: float = 0.0
    error: tuple[int, str, str] | None = None


def _block_tokens(block: dict[str, Any]) -> int:
    if block.get("type") == "text":
        return text_tokens(block.get("text", ""))
    return text_tokens(str(block.get("name", ""))) + text_tokens(canonical(block.get("input", {})))


def build_reply(body: dict[str, Any], scripted: Any, message_id: str) -> Reply:
    """Turn a responder's answer (None, str or dict) into content, stop_reason and output tokens.

    Honours stop_sequences and max_tokens: text is cut at the first stop sequence, then to
    max_tokens * 4 characters, and blocks that no longer fit are dropped.
    """
    script: dict[str, Any] = {}
    if isinstance(scripted, str):
        script = {"text": scripted}
    elif isinstance(scripted, dict):
        script = dict(scripted)
    if "error" in script:
        err = script["error"]
        if isinstance(err, dict):
            err = (
                err.get("status", 400),
                err.get("type", "invalid_request_error"),
                err.get("message", "scripted error"),
            )
        return Reply([], "end_turn", 0, error=tuple(err), delay=float(script.get("delay", 0)))
    tools = list(script.get("tool_use") or [])
    text = script.get("text")
    if text is None and not tools:
        text = default_text(body)
    blocks: list[dict[str, Any]] = []
    if text:
        blocks.append({"type": "text", "text": str(text), "citations": None})
    for i, tool in enumerate(tools):
        tool_id = (
            tool.get("id")
            or "toolu_" + hashlib.sha256(f"{message_id}:{i}".encode()).hexdigest()[:24]
        )
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_id,
                "name": tool["name"],
                "input": tool.get("input", {}),
                "caller": {"type": "direct"},
            }
        )
    stop_reason = "tool_use" if tools else "end_turn"
    stop_sequence = None
    sequences = [s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s]
    if blocks and blocks[0]["type"] == "text" and sequences:
        found = [(blocks[0]["text"].find(s), s) for s in sequences if s in blocks[0]["text"]]
        if found:
            index, stop_sequence = min(found)
            blocks = [{**blocks[0], "text": blocks[0]["text"][:index]}]
            stop_reason = "stop_sequence"
    budget = int(body.get("max_tokens", 1 << 30))
    kept: list[dict[str, Any]] = []
    used = 0
    for block in blocks:
        cost = _block_tokens(block)
        if used + cost <= budget:
            kept.append(block)
            used += cost
            continue
        if block["type"] == "text" and budget > used:
            cut = block["text"][: (budget - used) * 4]
            kept.append({**block, "text": cut})
            used += text_tokens(cut)
        stop_reason, stop_sequence = "max_tokens", None
        break
    output_tokens = used
    if script.get("output_tokens") is not None:
        output_tokens = min(int(script["output_tokens"]), budget)
        if int(script["output_tokens"]) > budget:
            stop_reason = "max_tokens"
    if script.get("stop_reason"):
        stop_reason = script["stop_reason"]
    return Reply(kept, stop_reason, output_tokens, stop_sequence, float(script.get("delay", 0)))


def message_json(
    message_id: str, model: str, reply: Reply, cache: CacheUsage, service_tier: str
) -> dict[str, Any]:
    """A complete Message object (every field the OpenAPI document requires)."""
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": None,
        "container": None,
        "usage": cache.usage(reply.output_tokens, service_tier),
    }


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def sse_events(message: dict[str, Any], chunk_chars: int = 24) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events that stream `message`: start, ping, blocks with deltas, delta, stop."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            empty = {**block, "text": ""}
            deltas = [
                {"type": "text_delta", "text": part} for part in _chunks(block["text"], chunk_chars)
            ]
        else:
            empty = {**block, "input": {}}
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": part}
                for part in _chunks(raw, chunk_chars)
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
        )
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                    "stop_details": None,
                    "container": None,
                },
                # Cumulative totals, as the API sends them.
                "usage": {
                    k: usage[k]
                    for k in (
                        "input_tokens",
                        "cache_creation_input_tokens",
                        "cache_read_input_tokens",
                        "output_tokens",
                        "server_tool_use",
                        "output_tokens_details",
                    )
                },
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events
