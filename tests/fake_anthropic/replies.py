"""What the fake model says: deterministic replies, Message JSON and SSE events.

A responder's script (see `build_reply`) may ask for any mix of the blocks an agent meets:
thinking (signed), redacted thinking, server tool calls with their results, text and several
parallel tool calls, with any stop reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .thinking import redacted_data, sign_thinking
from .tokens import CacheUsage, canonical, text_tokens
from .validate import message_params_error

__all__ = [
    "Reply",
    "build_reply",
    "default_text",
    "last_user_text",
    "message_json",
    "message_params_error",
    "sse_events",
]

_VOCABULARY = (
    "the agent checks each step before it acts and keeps plan short cost latency "
    "quality cache batch prompt answer result careful clear simple stable model "
    "token budget route retry measure compare review summary evidence test because "
    "therefore however first second finally overall likely correct option"
)
_WORDS = _VOCABULARY.split()
# Server tools whose calls the usage object counts.
_SERVER_TOOL_USAGE = {"web_search": "web_search_requests", "web_fetch": "web_fetch_requests"}


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


def _sentence(seed: str, low: int, spread: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    n = low + digest[0] % spread
    words = [_WORDS[b % len(_WORDS)] for b in digest[1 : 1 + n]]
    return " ".join(words).capitalize() + "."


def default_text(body: dict[str, Any]) -> str:
    """ "Answer: " + a 8-16 word sentence chosen by a hash of the last user message.

    Only the prompt feeds the hash (not the model), so every model gives the same answer to
    the same question unless a test scripts it otherwise.
    """
    return "Answer: " + _sentence(last_user_text(body), 8, 9)


def default_thinking(body: dict[str, Any]) -> str:
    """ "Thinking: " + two sentences derived from the last user message."""
    seed = last_user_text(body)
    return "Thinking: " + _sentence("think:" + seed, 10, 9) + " " + _sentence("plan:" + seed, 8, 9)


def thinking_mode(body: dict[str, Any]) -> dict[str, Any] | None:
    """The request's thinking config when it lets the model think (enabled / adaptive)."""
    thinking = body.get("thinking")
    if isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive"):
        return thinking
    return None


@dataclass
class Reply:
    """The model's side of one answer, before usage is attached."""

    content: list[dict[str, Any]]
    stop_reason: str
    output_tokens: int
    stop_sequence: str | None = None
    delay: float = 0.0
    error: tuple[int, str, str] | None = None
    stop_details: dict[str, Any] | None = None
    thinking_tokens: int = 0
    server_tool_use: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. context_management


def _spec_tokens(spec: dict[str, Any]) -> int:
    """Output tokens of one block (thinking counts its full text, even when not displayed)."""
    kind = spec["type"]
    if kind == "text":
        return text_tokens(spec.get("text", ""))
    if kind == "thinking":
        return text_tokens(spec.get("thinking", ""))
    if kind in ("tool_use", "server_tool_use"):
        return text_tokens(str(spec.get("name", ""))) + text_tokens(
            canonical(spec.get("input", {}))
        )
    if kind == "redacted_thinking":
        return 16
    return 0  # server tool results are produced by the tool, not generated


def _web_search_results(results: list[dict[str, Any]] | None, query: str) -> list[dict[str, Any]]:
    if results is None:
        results = [{"url": f"https://example.com/{n}", "title": f"{query} ({n})"} for n in (1, 2)]
    return [
        {
            "type": "web_search_result",
            "url": r["url"],
            "title": r.get("title", r["url"]),
            "encrypted_content": r.get("encrypted_content")
            or "enc_" + hashlib.sha256(r["url"].encode()).hexdigest()[:32],
            "page_age": r.get("page_age"),
        }
        for r in results
    ]


def _server_specs(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """server_tool_use blocks, each followed by its result block unless `result` is False."""
    specs: list[dict[str, Any]] = []
    for call in calls:
        use = {"type": "server_tool_use", "name": call["name"], "input": call.get("input", {})}
        if call.get("id"):
            use["id"] = call["id"]
        specs.append(use)
        result = call.get("result")
        if result is False:
            continue  # a paused turn: the tool has not answered yet
        if isinstance(result, dict):
            specs.append({**result, "_answers": len(specs) - 1})
        elif call["name"] == "web_search":
            query = str((call.get("input") or {}).get("query", "result"))
            specs.append(
                {
                    "type": "web_search_tool_result",
                    "content": _web_search_results(call.get("results"), query),
                    "_answers": len(specs) - 1,
                }
            )
        else:
            raise ValueError(f"server tool {call['name']!r} needs an explicit `result` block")
    return specs


def _scripted_specs(body: dict[str, Any], script: dict[str, Any]) -> list[dict[str, Any]]:
    """Block specs in answer order."""
    mode = thinking_mode(body)
    if "content" in script:
        return [dict(s) for s in script["content"]]
    specs: list[dict[str, Any]] = []
    if mode is not None:
        thought = script.get("thinking")
        if thought is None:
            thought = default_thinking(body)
        if thought is not False:
            specs.append({"type": "thinking", "thinking": str(thought)})
        for _ in range(int(script.get("redacted_thinking") or 0)):
            specs.append({"type": "redacted_thinking"})
    specs.extend(_server_specs(list(script.get("server_tool_use") or [])))
    tools = list(script.get("tool_use") or [])
    text = script.get("text")
    if text is None and not tools and not script.get("server_tool_use"):
        text = default_text(body)
    if text:
        specs.append({"type": "text", "text": str(text)})
    specs.extend({"type": "tool_use", **tool} for tool in tools)
    return specs


def _cut_at_stop_sequence(
    body: dict[str, Any], specs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], str | None]:
    sequences = [s for s in body.get("stop_sequences") or [] if isinstance(s, str) and s]
    for n, spec in enumerate(specs):
        if spec["type"] != "text" or not sequences:
            continue
        found = [(spec["text"].find(s), s) for s in sequences if s in spec["text"]]
        if found:
            index, sequence = min(found)
            return [*specs[:n], {**spec, "text": spec["text"][:index]}], sequence
    return specs, None


def _fit_budget(specs: list[dict[str, Any]], budget: int) -> tuple[list[dict[str, Any]], int, bool]:
    """Blocks that fit `budget` output tokens (text and thinking are cut), tokens used, cut?"""
    kept: list[dict[str, Any]] = []
    used = 0
    for spec in specs:
        cost = _spec_tokens(spec)
        if used + cost <= budget:
            kept.append(spec)
            used += cost
            continue
        room = (budget - used) * 4
        if spec["type"] == "text" and room > 0:
            kept.append({**spec, "text": spec["text"][:room]})
            used += text_tokens(spec["text"][:room])
        elif spec["type"] == "thinking" and room > 0:
            kept.append({**spec, "thinking": spec["thinking"][:room]})
            used += text_tokens(spec["thinking"][:room])
        return kept, used, True
    return kept, used, False


def _finish_blocks(
    specs: list[dict[str, Any]], message_id: str, display_omitted: bool
) -> tuple[list[dict[str, Any]], int, dict[str, int] | None]:
    """Blocks as the API returns them: ids, signatures, callers; thinking tokens; server usage."""
    blocks: list[dict[str, Any]] = []
    thinking_tokens = 0
    server_usage: dict[str, int] = {}
    for n, spec in enumerate(specs):
        kind = spec["type"]
        seed = f"{message_id}:{n}"
        block = {k: v for k, v in spec.items() if not k.startswith("_")}
        if kind == "text":
            block.setdefault("citations", None)
        elif kind == "thinking":
            thinking_tokens += text_tokens(block["thinking"])
            shown = "" if display_omitted else block["thinking"]
            block = {"type": "thinking", "thinking": shown, "signature": sign_thinking(shown, seed)}
        elif kind == "redacted_thinking":
            block = {"type": "redacted_thinking", "data": block.get("data") or redacted_data(seed)}
        elif kind in ("tool_use", "server_tool_use"):
            prefix = "toolu_" if kind == "tool_use" else "srvtoolu_"
            block = {
                "type": kind,
                "id": block.get("id") or prefix + hashlib.sha256(seed.encode()).hexdigest()[:24],
                "name": block["name"],
                "input": block.get("input", {}),
                "caller": block.get("caller", {"type": "direct"}),
            }
            if kind == "server_tool_use":
                counter = _SERVER_TOOL_USAGE.get(block["name"])
                if counter:
                    server_usage[counter] = server_usage.get(counter, 0) + 1
        elif "_answers" in spec:
            block.setdefault("tool_use_id", blocks[spec["_answers"]]["id"])
            block.setdefault("caller", {"type": "direct"})
        blocks.append(block)
    usage = None
    if server_usage:
        usage = {"web_search_requests": 0, "web_fetch_requests": 0, **server_usage}
    return blocks, thinking_tokens, usage


def build_reply(body: dict[str, Any], scripted: Any, message_id: str) -> Reply:
    """Turn a responder's answer (None, str or dict) into content, stop_reason and usage.

    A dict script may hold:
      text; tool_use: [{name, input, id?}] (parallel calls, after the text);
      thinking: str | False (only when the request enables thinking; default: a generated
        thought); redacted_thinking: n blocks;
      server_tool_use: [{name, input, id?, results?: [{url, title}], result?: block | False}]
        (web_search gets a web_search_tool_result by default; False: no result, pause_turn);
      content: [block specs] to set every block and its order yourself;
      stop_reason, stop_details, output_tokens, delay, error: (status, type, message).
    Honours stop_sequences and max_tokens (0 answers no content): text is cut at the first
    stop sequence; thinking and text are cut to max_tokens * 4 characters, and blocks that no
    longer fit are dropped. With `thinking.display: "omitted"` thinking blocks come back with
    empty text, still signed, and still billed as output.
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
    specs = _scripted_specs(body, script)
    specs, stop_sequence = _cut_at_stop_sequence(body, specs)
    budget = int(body.get("max_tokens", 1 << 30))
    specs, used, cut = _fit_budget(specs, budget)
    display_omitted = (thinking_mode(body) or {}).get("display") == "omitted"
    blocks, thinking_tokens, server_usage = _finish_blocks(specs, message_id, display_omitted)
    if cut:
        stop_reason, stop_sequence = "max_tokens", None
    elif stop_sequence is not None:
        stop_reason = "stop_sequence"
    elif any(b["type"] == "tool_use" for b in blocks):
        stop_reason = "tool_use"
    else:
        stop_reason = "end_turn"
    output_tokens = used
    if script.get("output_tokens") is not None:
        output_tokens = min(int(script["output_tokens"]), budget)
        if int(script["output_tokens"]) > budget:
            stop_reason = "max_tokens"
    if script.get("stop_reason"):
        stop_reason = script["stop_reason"]
    stop_details = script.get("stop_details")
    if stop_details is None and stop_reason == "refusal":
        stop_details = {"type": "refusal", "category": None, "explanation": None}
    return Reply(
        blocks,
        stop_reason,
        output_tokens,
        stop_sequence,
        float(script.get("delay", 0)),
        stop_details=stop_details,
        thinking_tokens=thinking_tokens,
        server_tool_use=server_usage,
    )


def message_json(
    message_id: str, model: str, reply: Reply, cache: CacheUsage, service_tier: str
) -> dict[str, Any]:
    """A complete Message object (every field the OpenAPI document requires)."""
    usage = cache.usage(reply.output_tokens, service_tier)
    if reply.thinking_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": reply.thinking_tokens}
    usage["server_tool_use"] = reply.server_tool_use
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": reply.stop_sequence,
        "stop_details": reply.stop_details,
        "container": None,
        "usage": usage,
        **reply.extra,
    }


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _block_events(block: dict[str, Any], chunk_chars: int) -> tuple[dict[str, Any], list[Any]]:
    """The content_block_start payload of `block` and its deltas."""
    kind = block["type"]
    if kind == "text":
        parts = _chunks(block["text"], chunk_chars)
        return {**block, "text": ""}, [{"type": "text_delta", "text": p} for p in parts]
    if kind == "thinking":
        deltas: list[dict[str, Any]] = []
        if block["thinking"]:
            deltas = [
                {"type": "thinking_delta", "thinking": p}
                for p in _chunks(block["thinking"], chunk_chars)
            ]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
        return {**block, "thinking": "", "signature": ""}, deltas
    if kind in ("tool_use", "server_tool_use"):
        raw = json.dumps(block["input"])
        return {**block, "input": {}}, [
            {"type": "input_json_delta", "partial_json": p} for p in _chunks(raw, chunk_chars)
        ]
    return block, []  # redacted thinking and server tool results arrive whole


def sse_events(message: dict[str, Any], chunk_chars: int = 24) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events that stream `message`: start, ping, blocks with deltas, delta, stop."""
    usage = message["usage"]
    start_usage = {**usage, "output_tokens": min(1, usage["output_tokens"])}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "stop_details": None,
        "usage": start_usage,
    }
    start.pop("context_management", None)  # reported with the final message_delta
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        empty, deltas = _block_events(block, chunk_chars)
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
            "stop_reason": message["stop_reason"],
            "stop_sequence": message["stop_sequence"],
            "stop_details": message["stop_details"],
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
    }
    if "context_management" in message:
        delta["context_management"] = message["context_management"]
    events.append(("message_delta", delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return events
