"""A Messages API Message, as JSON, read into a BackendResult: one reading for every
front door that receives the API's raw answer (the gateway, the in-process SDK client)."""

from __future__ import annotations

from typing import Any

from tars_opt.types import BackendResult, Usage

# The Message's own fields; anything else it carries is kept and sent back as it came.
MESSAGE_FIELDS = frozenset(
    {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
)


def message_result(message: Any, api_request_id: str | None) -> BackendResult:
    """`message` (the API's JSON answer) as a BackendResult.

    Raises ValueError when it is not a Message or its usage cannot be read.
    """
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise ValueError("the answer is not a Message")
    blocks = tuple(b for b in message["content"] if isinstance(b, dict))
    return BackendResult(
        text="".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text"),
        model=str(message.get("model") or ""),
        usage=Usage.from_api(message.get("usage")),
        stop_reason=message.get("stop_reason"),
        content=blocks,
        api_request_id=api_request_id,
        message_id=message.get("id"),
        stop_sequence=message.get("stop_sequence"),
        message_extra={k: v for k, v in message.items() if k not in MESSAGE_FIELDS},
    )
