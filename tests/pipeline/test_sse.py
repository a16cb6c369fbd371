"""A finished Message streamed back as SSE must be read by the real SDK as the same Message."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx2 as httpx

from tars_opt.pipeline.sse import message_stream

MESSAGE: dict[str, Any] = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-5-5",
    "content": [
        {"type": "thinking", "thinking": "Let me look it up.", "signature": "c2ln"},
        {"type": "text", "text": "Checking the booking ✓"},
        {
            "type": "tool_use",
            "id": "toolu_1",
            "name": "get_reservation",
            "input": {"reservation_id": "ABC123", "nested": {"a": [1, 2]}},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 120,
        "output_tokens": 37,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 2048,
    },
}


def _client() -> anthropic.Anthropic:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-type": "text/event-stream"},
            content=b"".join(message_stream(MESSAGE)),
        )

    return anthropic.Anthropic(
        api_key="sk-test",
        base_url="http://sse.test",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def test_the_sdk_accumulates_the_stream_into_the_same_message() -> None:
    body = {
        "model": "claude-haiku-5-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with _client().messages.stream(**body) as stream:
        final = stream.get_final_message()
    got = final.model_dump(mode="json", exclude_none=True)
    assert got["content"] == MESSAGE["content"]
    assert got["stop_reason"] == "tool_use"
    assert got["usage"]["output_tokens"] == 37
    assert got["usage"]["cache_read_input_tokens"] == 2048


def test_the_events_of_a_message_add_up_to_it_whatever_the_chunking() -> None:
    from tars_opt.pipeline.sse import EventReader, MessageBuilder

    raw = b"".join(message_stream(MESSAGE)).replace(b"\n", b"\r\n", 3)
    for size in (1, 7, len(raw)):
        reader, builder = EventReader(), MessageBuilder()
        for start in range(0, len(raw), size):
            for name, data in reader.feed(raw[start : start + size]):
                builder.add(name, data)
        assert builder.stopped and builder.error is None
        assert builder.message == MESSAGE


def test_an_error_event_is_kept() -> None:
    from tars_opt.pipeline.sse import EventReader, MessageBuilder

    reader, builder = EventReader(), MessageBuilder()
    wire = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
    wire += b'"message":"Overloaded"}}\n\n'
    for name, data in reader.feed(wire):
        builder.add(name, data)
    assert builder.error == {"type": "overloaded_error", "message": "Overloaded"}
    assert not builder.stopped
