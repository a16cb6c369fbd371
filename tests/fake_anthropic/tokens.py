"""Deterministic token counting and a prompt-cache simulation for the fake Messages API.

The numbers are not Claude's tokenizer; they only need to be stable, easy to predict in tests
and self-consistent: `count_input_tokens(body)` == what count_tokens returns == the sum of
`input_tokens + cache_creation_input_tokens + cache_read_input_tokens` in a Message's usage.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 3  # role markers: charged on the first block of every message
IMAGE_TOKENS = 1_000  # flat price for an image or a base64 document
MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20  # the API looks this many blocks back from a breakpoint for a cache hit
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


def text_tokens(text: str) -> int:
    """Tokens for a piece of text: ceil(len / 4), so "" costs 0 and any non-empty text >= 1."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def canonical(obj: Any) -> str:
    """Stable JSON used for hashing and for counting structured blocks."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _strip_cache_control(block: Any) -> Any:
    # cache_control marks where to cache; it is not part of the cached content itself.
    if isinstance(block, dict):
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def block_tokens(block: Any) -> int:
    """Tokens for one content block of a request (text, image, tool_use, tool_result, ...)."""
    if isinstance(block, str):
        return text_tokens(block)
    if not isinstance(block, dict):
        return text_tokens(canonical(block))
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind in ("image", "document"):
        source = block.get("source") or {}
        if kind == "document" and source.get("type") == "text":
            return text_tokens(str(source.get("data", "")))
        return IMAGE_TOKENS
    if kind == "tool_use":
        return text_tokens(str(block.get("name", ""))) + text_tokens(canonical(block.get("input")))
    if kind == "tool_result":
        content = block.get("content", "")
        if isinstance(content, list):
            return 1 + sum(block_tokens(b) for b in content)
        return 1 + text_tokens(str(content))
    if kind == "thinking":
        return text_tokens(str(block.get("thinking", "")))
    return text_tokens(canonical(_strip_cache_control(block)))


@dataclass
class Segment:
    """One cacheable unit of the prompt in API order: a tool, a system block or a message block."""

    tokens: int
    key: str  # canonical content, hashed into the running prefix hash
    cache_control: dict[str, Any] | None = None
    cacheable: bool = True  # may carry a breakpoint (not thinking, not an empty text block)


def _cacheable(block: Any) -> bool:
    if not isinstance(block, dict):
        return True
    if block.get("type") in ("thinking", "redacted_thinking"):
        return False
    return not (block.get("type") == "text" and block.get("text") == "")


def segments(body: dict[str, Any]) -> list[Segment]:
    """Split a request into tools, then system, then messages (the order the API caches in)."""
    out: list[Segment] = []
    for tool in body.get("tools") or []:
        plain = _strip_cache_control(tool)
        out.append(
            Segment(
                text_tokens(canonical(plain)),
                "tool:" + canonical(plain),
                tool.get("cache_control") if isinstance(tool, dict) else None,
            )
        )
    system = body.get("system")
    # A string is the same prompt as one text block, so both spellings share cache entries.
    if isinstance(system, str):
        system = [{"type": "text", "text": system}] if system else []
    if isinstance(system, list):
        for block in system:
            out.append(
                Segment(
                    block_tokens(block),
                    "system:" + canonical(_strip_cache_control(block)),
                    block.get("cache_control") if isinstance(block, dict) else None,
                )
            )
    for index, message in enumerate(body.get("messages") or []):
        role = message.get("role", "") if isinstance(message, dict) else ""
        content = message.get("content", "") if isinstance(message, dict) else ""
        blocks = (
            [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
        )
        if not blocks:
            blocks = [{"type": "text", "text": ""}]
        for position, block in enumerate(blocks):
            overhead = MESSAGE_OVERHEAD if position == 0 else 0
            # The message index and role are part of the key: the same text in another turn differs.
            key = f"msg{index}:{role}:{position}:" + canonical(_strip_cache_control(block))
            cc = block.get("cache_control") if isinstance(block, dict) else None
            out.append(Segment(block_tokens(block) + overhead, key, cc, _cacheable(block)))
    return out


def count_input_tokens(body: dict[str, Any]) -> int:
    """Total input tokens of a request: what count_tokens returns, before any caching split."""
    return sum(s.tokens for s in segments(body))


def breakpoints(body: dict[str, Any], segs: list[Segment]) -> list[tuple[int, str]]:
    """(segment index, ttl) of every cache breakpoint, incl. top-level automatic caching."""
    points = [
        (i, (s.cache_control or {}).get("ttl", "5m")) for i, s in enumerate(segs) if s.cache_control
    ]
    auto = body.get("cache_control")
    cacheable = [i for i, s in enumerate(segs) if s.cacheable]
    if isinstance(auto, dict) and cacheable:
        # Automatic caching puts the breakpoint on the last cacheable block.
        last = cacheable[-1]
        points = [p for p in points if p[0] != last] + [(last, auto.get("ttl", "5m"))]
    return sorted(points)


def cache_control_error(body: dict[str, Any]) -> str | None:
    """The API's complaint about cache_control markers, or None when they are acceptable."""
    found = [s.cache_control for s in segments(body) if s.cache_control]
    if isinstance(body.get("cache_control"), dict):
        found.append(body["cache_control"])
    for cc in found:
        if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
            return "cache_control.type: Input should be 'ephemeral'"
        if cc.get("ttl", "5m") not in TTL_SECONDS:
            return "cache_control.ttl: Input should be '5m' or '1h'"
    if len(found) > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(found)}."
        )
    # Longer-lived entries first: a 1h breakpoint may not follow a 5m one (tools, system,
    # messages order).
    ttls = [cc.get("ttl", "5m") for cc in found if isinstance(cc, dict)]
    if "5m" in ttls and "1h" in ttls[ttls.index("5m") :]:
        return "cache_control: a breakpoint with ttl '1h' must not come after one with ttl '5m'"
    return None


@dataclass
class CacheUsage:
    """How a request's input tokens split into the usage buckets."""

    input_tokens: int
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    @property
    def cache_write(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    def usage(self, output_tokens: int, service_tier: str) -> dict[str, Any]:
        """A complete Usage object as the API returns it."""
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": service_tier,
            "inference_geo": "global",
            "server_tool_use": None,
            "output_tokens_details": None,
        }


@dataclass
class PromptCache:
    """Prefix cache keyed by (model, prefix hash) with TTLs; not thread-safe, callers lock."""

    clock: Callable[[], float]
    entries: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (expiry, ttl)

    def clear(self) -> None:
        self.entries.clear()

    def apply(self, body: dict[str, Any], min_tokens: int) -> CacheUsage:
        """Split a request's input into read / written / uncached tokens and update the cache.

        A breakpoint whose prefix is shorter than `min_tokens` is ignored (silently, like the
        API). For each usable breakpoint the cache is searched up to LOOKBACK_BLOCKS blocks back;
        the longest hit is read, everything after it up to the last usable breakpoint is
        written, each stretch at the TTL of the breakpoint that ends it. Reading an entry
        restarts its TTL, and so does writing one; a breakpoint inside the read prefix renews
        its own entry if it has one. Entries are per model and per exact content (without the
        cache_control markers).
        """
        segs = segments(body)
        total = sum(s.tokens for s in segs)
        now = self.clock()
        cumulative: list[int] = []
        hashes: list[str] = []
        running = hashlib.sha256(str(body.get("model", "")).encode())
        acc = 0
        for seg in segs:
            running.update(seg.key.encode() + b"\x00")
            acc += seg.tokens
            cumulative.append(acc)
            hashes.append(running.hexdigest())
        usable = [(i, ttl) for i, ttl in breakpoints(body, segs) if cumulative[i] >= min_tokens]
        if not usable:
            return CacheUsage(input_tokens=total)
        # Each breakpoint looks back over its own block and the LOOKBACK_BLOCKS - 1 before it
        # for the longest live entry; the longest hit over all breakpoints is read.
        hit = -1
        for index, _ttl in usable:
            for j in range(index, max(-1, index - LOOKBACK_BLOCKS), -1):
                if self._alive(hashes[j], now):
                    hit = max(hit, j)
                    break
        result = CacheUsage(input_tokens=0, cache_read=cumulative[hit] if hit >= 0 else 0)
        if hit >= 0:  # a read restarts the entry's TTL
            self._touch(hashes[hit], now, self.entries[hashes[hit]][1])
        start = hit
        for index, ttl in usable:
            if index > start:
                # Written from the end of what was read or written before, at this breakpoint's TTL.
                written = cumulative[index] - (cumulative[start] if start >= 0 else 0)
                if ttl == "1h":
                    result.cache_write_1h += written
                else:
                    result.cache_write_5m += written
                start = index
                self._touch(hashes[index], now, TTL_SECONDS.get(ttl, 300.0))
            elif self._alive(hashes[index], now):  # inside the read prefix: renewed
                self._touch(hashes[index], now, TTL_SECONDS.get(ttl, 300.0))
        result.input_tokens = total - result.cache_read - result.cache_write
        return result

    def _alive(self, key: str, now: float) -> bool:
        return self.entries.get(key, (-1.0, 0.0))[0] > now

    def _touch(self, key: str, now: float, ttl: float) -> None:
        old_expiry, old_ttl = self.entries.get(key, (0.0, 0.0))
        ttl = max(ttl, old_ttl)
        self.entries[key] = (max(old_expiry, now + ttl), ttl)
