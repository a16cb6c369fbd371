"""A finished Message as the server-sent events the API streams, for answers tars-opt
gives itself (a response-cache hit, an answer already held) to a client that asked for
a stream. Each block arrives in one delta: there is nothing left to wait for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

# The usage fields message_delta carries (cumulative totals, as the API sends them).
_DELTA_USAGE = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use",
)


def _block_events(block: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The content_block_start shape of `block` and the deltas that complete it."""
    kind = block.get("type")
    if kind == "text":
        empty = {k: v for k, v in block.items() if k != "citations"}
        deltas = [{"type": "text_delta", "text": block.get("text", "")}]
        deltas += [{"type": "citations_delta", "citation": c} for c in block.get("citations") or ()]
        return {**empty, "text": ""}, deltas
    if kind == "thinking":
        return {**block, "thinking": "", "signature": ""}, [
            {"type": "thinking_delta", "thinking": block.get("thinking", "")},
            {"type": "signature_delta", "signature": block.get("signature", "")},
        ]
    if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
        raw = json.dumps(block.get("input", {}), ensure_ascii=False, separators=(",", ":"))
        return {**block, "input": {}}, [{"type": "input_json_delta", "partial_json": raw}]
    # Redacted thinking and server tool results arrive whole in their start event.
    return dict(block), []


def message_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs that stream `message`: message_start, one start,
    delta(s) and stop per content block, message_delta and message_stop."""
    usage = dict(message.get("usage") or {})
    start_usage = {**usage, "output_tokens": min(1, int(usage.get("output_tokens") or 0))}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    start.pop("context_management", None)  # reported with the final message_delta
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message.get("content") or ()):
        empty, deltas = _block_events(block)
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
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {
            "stop_reason": message.get("stop_reason"),
            "stop_sequence": message.get("stop_sequence"),
        },
        "usage": {k: usage[k] for k in _DELTA_USAGE if k in usage},
    }
    if "context_management" in message:
        delta["context_management"] = message["context_management"]
    events.append(("message_delta", delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def encode_event(name: str, data: dict[str, Any]) -> bytes:
    """One event in the wire format: `event:` line, `data:` line, blank line."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"event: {name}\ndata: {payload}\n\n".encode()


def message_stream(message: dict[str, Any]) -> Iterator[bytes]:
    """`message` as the bytes of an SSE response body."""
    for name, data in message_events(message):
        yield encode_event(name, data)
