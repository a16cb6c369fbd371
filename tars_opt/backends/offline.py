"""A deterministic offline backend: no network, no key, realistic usage and latency.

Answers are placeholders that say so, unless `answers` holds the recorded answer to the
turn being answered (a replayed conversation): then that answer, its content blocks and
its length, is given. What is realistic is the accounting: input tokens
estimated from the request, prompt caching of marked prefixes (writes, then reads while the
TTL lasts), output lengths that vary by prompt, truncation at max_tokens, per-model latency,
and Message Batches at the batch tier. The same request always gets the same answer.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tars_opt import tokens
from tars_opt.backends import BatchInfo, BatchItem
from tars_opt.errors import BackendError
from tars_opt.hashing import canonical, sha256_text
from tars_opt.types import BackendResult, Usage

# (time to first token s, output tokens per second): rough public figures per family.
SPEEDS: dict[str, tuple[float, float]] = {"haiku": (0.35, 160.0), "sonnet": (0.7, 75.0)}
DEFAULT_SPEED = (1.0, 45.0)
# The same minimums as the shipped prompt_cache.min_tokens.
MIN_CACHEABLE = {"haiku": 4096, "sonnet": 1024, "opus": 4096}
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
# The API looks for a cache hit at each breakpoint and up to 20 blocks before it.
LOOKBACK = 20


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def _family(model: str) -> str:
    return next((f for f in SPEEDS if f in model), "other")


class RecordedAnswers:
    """Recorded answers by the turn they answer (the request's last message, cache marks
    left out): a replay says what each call's answer was before it asks, and the backend
    answers with it whatever model the chain chose. A turn recorded twice keeps the
    latest answer."""

    def __init__(self) -> None:
        self._by_turn: dict[str, tuple[dict[str, Any], ...]] = {}

    def expect(self, messages: Sequence[dict[str, Any]], content: Sequence[dict[str, Any]]) -> None:
        """The answer to the request whose messages are `messages`."""
        self._by_turn[_turn_key(messages[-1])] = tuple(content)

    def __call__(self, params: dict[str, Any]) -> tuple[dict[str, Any], ...] | None:
        messages = params.get("messages") or []
        return self._by_turn.get(_turn_key(messages[-1])) if messages else None


def _turn_key(message: dict[str, Any]) -> str:
    return sha256_text(canonical(_unmarked(message)))


@dataclass
class _Batch:
    info: BatchInfo
    items: list[BatchItem] = field(default_factory=list)


class OfflineBackend:
    """Answers every request locally and deterministically.

    `clock` drives prompt-cache expiry, so simulations can run on a simulated clock.
    Message Batches live in this process, or in `store` (an OfflineBatchStore on the
    SQLite file) so that a later process - the next cron `drain` - can collect them;
    prompt-cache entries likewise, in `prompt_cache` (an OfflinePromptCache).
    """

    name = "offline"

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        store: Any = None,
        prompt_cache: Any = None,
        key_env: str = "ANTHROPIC_API_KEY",
        answers: Callable[[dict[str, Any]], Sequence[dict[str, Any]] | None] | None = None,
    ) -> None:
        self._clock = clock
        self._answers = answers
        self._key_env = key_env  # named in the placeholder text, never read for its value
        # Prefix hash -> (expiry, lifetime s): in memory, or an OfflinePromptCache on the
        # SQLite file so separate processes share it.
        self._prefixes: Any = prompt_cache if prompt_cache is not None else {}
        self._batches: dict[str, _Batch] = {}
        self._store = store

    def send(self, params: dict[str, Any]) -> BackendResult:
        """Answer one request."""
        return self._answer(params, tier="standard")

    def stream(self, params: dict[str, Any], on_text: Callable[[str], None]) -> BackendResult:
        """Answer one request, handing the text over in word-sized pieces."""
        result = self._answer(params, tier="standard")
        for piece in result.text.split(" "):
            on_text(piece + " ")
        return result

    def _live(self, key: str, now: float) -> bool:
        entry = self._prefixes.get(key)
        return entry is not None and entry[0] > now

    def count_tokens(self, params: dict[str, Any]) -> int:
        return tokens.estimate_params(params)

    def _answer(self, params: dict[str, Any], *, tier: str) -> BackendResult:
        model = str(params.get("model") or "")
        if not model or not params.get("messages"):
            raise BackendError(
                "invalid request: model and messages are required",
                kind="invalid_request_error",
                status=400,
            )
        # Marks change billing, not the answer: the seed sees the request unmarked (no
        # cache_control, text as a text block, as marking rewrites it).
        system = params.get("system") or []
        blocks = [_unmarked(b) for b in (system if isinstance(system, list) else [system])]
        seed = _digest(
            model,
            canonical(blocks or None),
            canonical([_unmarked(m) for m in params.get("messages") or []]),
        )
        recorded = tuple(self._answers(params) or ()) if self._answers is not None else ()
        if recorded:
            wanted = tokens.estimate_message({"role": "assistant", "content": list(recorded)})
            done = "tool_use" if any(b.get("type") == "tool_use" for b in recorded) else "end_turn"
        else:
            wanted = 60 + seed % 540  # 60-600 output tokens, fixed per request
            done = "end_turn"
        max_tokens = int(params.get("max_tokens") or 1024)
        output = min(wanted, max_tokens)
        stop = done if wanted <= max_tokens else "max_tokens"
        usage = self._usage(params, model, output, tier)
        ttft, tps = SPEEDS.get(_family(model), DEFAULT_SPEED)
        text = (
            "".join(str(b.get("text", "")) for b in recorded if b.get("type") == "text")
            if recorded
            else self._text(model, params, output)
        )
        return BackendResult(
            text=text,
            model=model,
            usage=usage,
            stop_reason=stop,
            content=recorded,
            api_request_id=f"offline_{seed:016x}",
            message_id=f"msg_offline_{seed:016x}",
            latency_ms=(ttft + output / tps) * 1000.0,
        )

    def _text(self, model: str, params: dict[str, Any], output_tokens: int) -> str:
        last = params["messages"][-1].get("content", "")
        if not isinstance(last, str):
            last = " ".join(b.get("text", "") for b in last if isinstance(b, dict))
        # `--backend anthropic` is right whether offline came from a flag or the config.
        if os.environ.get(self._key_env):
            real = f"{self._key_env} is set: use --backend anthropic for real answers"
        else:
            real = f"for real answers set {self._key_env} and use --backend anthropic"
        return (
            f"[offline {model}] A placeholder answer to: {last.strip()[:200]}\n"
            f"(The offline backend models {output_tokens} output tokens, their cost and "
            f"latency, calling no API; {real}.)"
        )

    def _usage(self, params: dict[str, Any], model: str, output: int, tier: str) -> Usage:
        """Usage with the API's prompt caching: a cache entry per breakpoint (prefixes of
        at least the model's minimum), a hit on the longest live entry at a breakpoint or
        up to LOOKBACK blocks before one, writes for the rest up to the last breakpoint."""
        total = tokens.estimate_params(params)
        points = _prefix_points(params)
        marks = [i for i, p in enumerate(points) if p[2] is not None]
        w5 = w1 = read = 0
        if marks:
            minimum = MIN_CACHEABLE.get(_family(model), 4096)
            now = self._clock()
            window = {j for m in marks for j in range(max(0, m - LOOKBACK), m + 1)}
            live = [j for j in window if self._live(f"{model}:{points[j][1]}", now)]
            hit = max(live, default=None)
            read = points[hit][0] if hit is not None else 0
            # Each breakpoint writes the stretch since the previous cached one at its own
            # TTL (1h entries before 5m ones, as the API requires), and its entry lives
            # that long; a read renews the entry it read for its own lifetime.
            done = read
            for j in marks:
                if points[j][0] < minimum or points[j][0] <= done:
                    continue
                ttl = str(points[j][2].get("ttl", "5m"))  # type: ignore[union-attr]
                if ttl == "1h":
                    w1 += points[j][0] - done
                else:
                    w5 += points[j][0] - done
                done = points[j][0]
                self._prefixes[f"{model}:{points[j][1]}"] = (
                    now + TTL_SECONDS.get(ttl, 300.0),
                    TTL_SECONDS.get(ttl, 300.0),
                )
            if hit is not None:
                key = f"{model}:{points[hit][1]}"
                self._prefixes[key] = (now + self._prefixes[key][1], self._prefixes[key][1])
        return Usage(
            input_tokens=max(0, total - w5 - w1 - read),
            output_tokens=output,
            cache_write_5m=w5,
            cache_write_1h=w1,
            cache_read=read,
            service_tier=tier,
            estimated=True,
        )

    # Message Batches: every batch is answered when it is made and ends at once.
    def submit_batch(self, requests: list[dict[str, Any]]) -> BatchInfo:
        ids = [r["custom_id"] for r in requests]
        if len(set(ids)) != len(ids):
            raise BackendError(
                "custom_id values in a batch must be unique",
                kind="invalid_request_error",
                status=400,
            )
        now = self._clock()
        batch_id = f"msgbatch_offline_{_digest(*ids, repr(now), uuid.uuid4().hex):016x}"
        items = [
            BatchItem(r["custom_id"], "succeeded", result=self._answer(r["params"], tier="batch"))
            for r in requests
        ]
        created = datetime.fromtimestamp(now, UTC).isoformat()
        info = BatchInfo(
            batch_id,
            "ended",
            {"succeeded": len(items), "processing": 0, "errored": 0, "canceled": 0, "expired": 0},
            created_at=created,
            ended_at=created,
        )
        if self._store is not None:
            self._store.save(info, items, now)
        else:
            self._batches[batch_id] = _Batch(info, items)
        return info

    def _batch(self, batch_id: str) -> _Batch:
        found = self._batches.get(batch_id)
        if found is None and self._store is not None:
            info = self._store.info(batch_id)
            if info is not None:
                return _Batch(info, self._store.items(batch_id) or [])
        if found is None:
            raise BackendError(
                f"no batch {batch_id} in this offline session", kind="not_found_error", status=404
            )
        return found

    def poll_batch(self, batch_id: str) -> BatchInfo:
        return self._batch(batch_id).info

    def cancel_batch(self, batch_id: str) -> BatchInfo:
        return self._batch(batch_id).info

    def list_batches(self, limit: int = 100) -> list[BatchInfo]:
        if self._store is not None:
            return self._store.recent(limit)
        return [b.info for b in list(self._batches.values())[::-1][:limit]]

    def batch_results(self, batch_id: str) -> Iterator[BatchItem]:
        yield from self._batch(batch_id).items


def _prefix_points(params: dict[str, Any]) -> list[tuple[int, str, dict[str, Any] | None]]:
    """For each block boundary (tool, system block, message): the prefix's tokens, its
    hash (cache_control marks left out, as the API ignores them) and the mark there."""
    points: list[tuple[int, str, dict[str, Any] | None]] = []
    digest = hashlib.sha256()
    count = 0
    system = params.get("system")
    system_blocks = system if isinstance(system, list) else [system] if system else []
    sections = [("tool", params.get("tools") or []), ("system", system_blocks)]
    sections += [("message", [m]) for m in params.get("messages", [])]
    for kind, items in sections:
        for item in items:
            if kind == "tool":
                count += tokens.estimate_tool(item)
            elif kind == "message":
                count += tokens.estimate_message(item)
            else:
                count += tokens.estimate_text(
                    item if isinstance(item, str) else str(item.get("text", ""))
                )
            digest.update(canonical(_unmarked(item)).encode("utf-8", "surrogatepass"))
            points.append((count, digest.copy().hexdigest(), _marker(item)))
    return points


def _unmarked(item: Any) -> Any:
    """The item as the cache sees it: no cache_control, text content as a text block
    (the API reads "text" and [{"type": "text", "text": "text"}] alike)."""
    if isinstance(item, str):
        item = {"type": "text", "text": item}
    elif isinstance(item.get("content"), str) and "role" in item:
        item = {**item, "content": [{"type": "text", "text": item["content"]}]}
    return _strip_marks(item)


def _strip_marks(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: _strip_marks(v) for k, v in item.items() if k != "cache_control"}
    if isinstance(item, list):
        return [_strip_marks(v) for v in item]
    return item


def _marker(item: Any) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("cache_control"), dict):
        return item["cache_control"]
    content = item.get("content")
    if isinstance(content, list):
        marks = [
            b["cache_control"]
            for b in content
            if isinstance(b, dict) and isinstance(b.get("cache_control"), dict)
        ]
        return marks[-1] if marks else None
    return None
