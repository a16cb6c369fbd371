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


class EventReader:
    """Server-sent events out of a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buffer = b""
        self._name: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[tuple[str, dict[str, Any]]]:
        """The events `chunk` completes: (event name, parsed data); comments and events
        without JSON data are skipped."""
        self._buffer += chunk
        out: list[tuple[str, dict[str, Any]]] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                return out
            line = self._buffer[:cut].rstrip(b"\r").decode("utf-8")
            self._buffer = self._buffer[cut + 1 :]
            if not line:
                if self._data:
                    try:
                        data = json.loads("\n".join(self._data))
                    except ValueError:
                        data = None
                    if isinstance(data, dict):
                        out.append((self._name or str(data.get("type", "message")), data))
                self._name, self._data = None, []
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                self._name = value
            elif field == "data":
                self._data.append(value)


class MessageBuilder:
    """The Message a stream of events adds up to, as the SDKs accumulate it."""

    def __init__(self) -> None:
        self.message: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.stopped = False
        self._json: dict[int, str] = {}

    def add(self, name: str, data: dict[str, Any]) -> None:
        """Take one event in (unknown event and delta types are ignored, as the SDKs do)."""
        kind = data.get("type", name)
        if kind == "error":
            self.error = dict(data.get("error") or {})
            return
        if kind == "message_start":
            self.message = {**data.get("message", {}), "content": []}
            return
        message = self.message
        if message is None:
            return
        content: list[dict[str, Any]] = message["content"]
        if kind == "content_block_start":
            index = int(data.get("index", len(content)))
            block = dict(data.get("content_block") or {})
            while len(content) <= index:
                content.append({})
            content[index] = block
            if "input" in block:
                self._json[index] = ""
        elif kind == "content_block_delta":
            index = int(data.get("index", 0))
            if index >= len(content):
                return
            block, delta = content[index], data.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                block["text"] = block.get("text", "") + delta.get("text", "")
            elif dtype == "input_json_delta":
                self._json[index] = self._json.get(index, "") + delta.get("partial_json", "")
            elif dtype == "thinking_delta":
                block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            elif dtype == "signature_delta":
                block["signature"] = delta.get("signature", "")
            elif dtype == "citations_delta":
                block.setdefault("citations", []).append(delta.get("citation"))
        elif kind == "content_block_stop":
            index = int(data.get("index", 0))
            raw = self._json.pop(index, None)
            if raw is not None and index < len(content):
                content[index]["input"] = json.loads(raw) if raw else {}
        elif kind == "message_delta":
            for key, value in (data.get("delta") or {}).items():
                message[key] = value
            usage = dict(message.get("usage") or {})
            usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            message["usage"] = usage
            if "context_management" in data:
                message["context_management"] = data["context_management"]
        elif kind == "message_stop":
            self.stopped = True
