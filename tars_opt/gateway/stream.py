"""Reading the server-sent events a streamed answer is relayed as: the Message they build
(content blocks, stop reason, usage), so the ledger and the response cache see the same
answer the client did, without holding the stream back."""

from __future__ import annotations

import json
from typing import Any

from tars_opt.backends.messages import MESSAGE_FIELDS
from tars_opt.tokens import estimate_text
from tars_opt.types import BackendResult, Usage


class StreamReader:
    """Fed the bytes of an SSE body as they pass; builds the Message they carry.

    `faithful` turns False when a delta of a kind this version does not rebuild arrives:
    the answer is still relayed and billed, but not kept by the response cache.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self.message: dict[str, Any] | None = None
        self.blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, str] = {}
        self.usage: dict[str, Any] = {}
        self.delta: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}
        self.error: dict[str, Any] | None = None
        self.stopped = False
        self.faithful = True
        self._relayed: list[str] = []  # text, thinking and tool input relayed so far

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while True:
            cut = _event_end(self._buffer)
            if cut is None:
                return
            raw, self._buffer = self._buffer[: cut[0]], self._buffer[cut[1] :]
            self._event(raw)

    def _event(self, raw: bytes) -> None:
        name, data = "", []
        for line in raw.decode("utf-8", "replace").splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        if not data:
            return
        try:
            payload = json.loads("\n".join(data))
        except ValueError:
            self.faithful = False
            return
        if isinstance(payload, dict):
            self._apply(name or str(payload.get("type", "")), payload)

    def _apply(self, name: str, event: dict[str, Any]) -> None:
        if name == "message_start":
            self.message = dict(event.get("message") or {})
            self.usage = dict(self.message.get("usage") or {})
        elif name == "content_block_start":
            self.blocks[int(event.get("index", 0))] = dict(event.get("content_block") or {})
        elif name == "content_block_delta":
            self._block_delta(int(event.get("index", 0)), event.get("delta") or {})
        elif name == "content_block_stop":
            index = int(event.get("index", 0))
            if index in self._json:
                raw = self._json.pop(index)
                try:
                    self.blocks[index]["input"] = json.loads(raw) if raw else {}
                except (ValueError, KeyError):
                    self.faithful = False
        elif name == "message_delta":
            self.delta.update(event.get("delta") or {})
            self.usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
            self.extra.update(
                {k: v for k, v in event.items() if k not in ("type", "delta", "usage")}
            )
        elif name == "message_stop":
            self.stopped = True
        elif name == "error":
            self.error = dict(event.get("error") or {})

    def _block_delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self.blocks.setdefault(index, {})
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + str(delta.get("text", ""))
            self._relayed.append(str(delta.get("text", "")))
        elif kind == "input_json_delta":
            part = str(delta.get("partial_json", ""))
            self._json[index] = self._json.get(index, "") + part
            self._relayed.append(part)
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
            self._relayed.append(str(delta.get("thinking", "")))
        elif kind == "signature_delta":
            block["signature"] = block.get("signature", "") + str(delta.get("signature", ""))
        elif kind == "citations_delta":
            block.setdefault("citations", []).append(delta.get("citation"))
        else:
            self.faithful = False

    def result(self, api_request_id: str | None) -> BackendResult:
        """The finished answer as the backend would have returned it."""
        return self._result(api_request_id, Usage.from_api(self.usage))

    def partial(self, api_request_id: str | None, prompt_tokens: int = 0) -> BackendResult:
        """What was relayed before the stream stopped early: message_start's usage (or
        `prompt_tokens`, an estimate, when none came) and the output so far (the API's count
        when a message_delta said it, else an estimate), marked estimated."""
        usage = dict(self.usage) if self.message is not None else {"input_tokens": prompt_tokens}
        counted = int(usage.get("output_tokens") or 0)
        relayed = estimate_text("".join(self._relayed)) if self._relayed else 0
        usage["output_tokens"] = max(counted, relayed)
        return self._result(api_request_id, Usage.from_api(usage, estimated=True))

    def _result(self, api_request_id: str | None, usage: Usage) -> BackendResult:
        message = self.message or {}
        blocks = tuple(self.blocks[i] for i in sorted(self.blocks))
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        extra = {k: v for k, v in message.items() if k not in MESSAGE_FIELDS}
        extra.update(
            {k: v for k, v in self.delta.items() if k not in MESSAGE_FIELDS and v is not None}
        )
        extra.update(self.extra)
        return BackendResult(
            text=text,
            model=str(message.get("model") or ""),
            usage=usage,
            stop_reason=self.delta.get("stop_reason"),
            content=blocks,
            api_request_id=api_request_id,
            message_id=message.get("id"),
            stop_sequence=self.delta.get("stop_sequence"),
            message_extra=extra,
        )


def _event_end(buffer: bytes) -> tuple[int, int] | None:
    """Where the first complete event in `buffer` ends and the next begins."""
    ends = [(buffer.find(sep), len(sep)) for sep in (b"\n\n", b"\r\n\r\n", b"\r\r")]
    found = [(i, i + n) for i, n in ends if i >= 0]
    return min(found) if found else None
