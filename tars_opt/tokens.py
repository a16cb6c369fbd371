"""Local token estimates, for when the API's own count is not at hand.

Claude's tokenizer is not public. English prose averages about 4 characters a token and
code or non-Latin text fewer, so we take the larger of a character and a word estimate.
Counts made here are always marked as estimates wherever they reach the ledger.

Error margin, measured (benchmarks/token_estimate.py) against the last public Claude
tokenizer (Claude 2 era) on 6,933 ShareGPT messages: the estimate is 10% high in total,
median +16%, 90% of messages between -18% and +47%, 56% within +-20%. It errs high on
purpose (code, numbers and non-Latin text run short of 4 characters a token), so budgets
prune a little early rather than late. Newer tokenizers are not public: for exact counts
set `prune.count_tokens: api` (the API's count_tokens, cached by content hash).
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tars_opt.errors import BackendError
from tars_opt.hashing import canonical, sha256_text

_WORDISH = re.compile(r"\w+|[^\w\s]")
# Per-message framing (role markers) the API adds around each turn.
MESSAGE_OVERHEAD = 4

log = logging.getLogger("tars_opt.tokens")


def estimate_text(text: str) -> int:
    """Estimated tokens in a piece of text."""
    if not text:
        return 0
    by_chars = math.ceil(len(text) / 4)
    by_pieces = math.ceil(len(_WORDISH.findall(text)) * 0.75)
    return max(by_chars, by_pieces, 1)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    parts.append(_content_text(block.get("content", "")))
                else:
                    parts.append(
                        json.dumps({k: v for k, v in block.items() if k != "cache_control"})
                    )
            else:
                parts.append(str(block))
        return "\n".join(parts)
    return str(content)


def estimate_message(message: dict[str, Any]) -> int:
    """Estimated tokens of one {role, content} message."""
    return estimate_text(_content_text(message.get("content", ""))) + MESSAGE_OVERHEAD


def estimate_system(system: Any) -> int:
    """Estimated tokens of a system prompt given as text or as text blocks."""
    if not system:
        return 0
    if isinstance(system, str):
        return estimate_text(system)
    return sum(estimate_text(str(b.get("text", ""))) for b in system if isinstance(b, dict))


def estimate_tool(tool: dict[str, Any]) -> int:
    """Estimated tokens of one tool schema."""
    return estimate_text(json.dumps({k: v for k, v in tool.items() if k != "cache_control"}))


def estimate_params(params: dict[str, Any]) -> int:
    """Estimated input tokens of a Messages API request body."""
    total = sum(estimate_message(m) for m in params.get("messages", []))
    total += estimate_text(_content_text(params.get("system") or ""))
    total += sum(estimate_tool(t) for t in params.get("tools") or [])
    return total


# --- Counting through the API -------------------------------------------------------------


@dataclass(frozen=True)
class TokenCount:
    """A token count and whether it came from the API (exact) or the local estimate."""

    tokens: int
    exact: bool


def params_key(params: dict[str, Any]) -> str:
    """Content hash of what count_tokens counts: model, system, tools and messages."""
    fields = {k: params.get(k) for k in ("model", "system", "tools", "messages")}
    return sha256_text(canonical(fields))


class TokenCounter:
    """Counts a request's input tokens: the backend's count_tokens when it has a real one,
    else (and whenever the API cannot be asked) the local estimate.

    Exact counts are cached by content hash, in memory and in the `token_counts` table
    when a database is given, so a prompt is counted once. The endpoint is free but rate
    limited: at most `per_minute` calls in any 60 s, and after a rate-limit error none for
    a minute; estimates fill the gaps and say so (`exact=False`).
    """

    def __init__(
        self,
        backend: Any | Callable[[], Any] | None,
        *,
        db: Any | None = None,
        per_minute: int = 50,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # `backend` may be a factory, so a stage can hold a counter before the backend
        # (and its API key) is needed.
        self._source = backend
        self._backend_obj: Any = None
        self._db = db
        self._per_minute = max(1, per_minute)
        self._clock = clock
        self._memory: dict[str, int] = {}
        self._calls: deque[float] = deque()
        self._quiet_until = 0.0

    @property
    def _backend(self) -> Any:
        if self._backend_obj is None and self._source is not None:
            found = (
                self._source()
                if callable(self._source) and not hasattr(self._source, "count_tokens")
                else self._source
            )
            # The offline backend only estimates: asking it would mark estimates as exact.
            self._backend_obj = found if getattr(found, "name", "offline") != "offline" else False
            self._source = None
        return self._backend_obj or None

    def count(self, params: dict[str, Any]) -> TokenCount:
        """The input tokens of a Messages request body."""
        if self._backend is None:
            return TokenCount(estimate_params(params), exact=False)
        key = params_key(params)
        found = self._memory.get(key)
        if found is None and self._db is not None:
            row = self._db.execute(
                "SELECT tokens FROM token_counts WHERE key = ?", [key]
            ).fetchone()
            found = int(row[0]) if row else None
        if found is not None:
            self._memory[key] = found
            return TokenCount(found, exact=True)
        if not self._may_call():
            return TokenCount(estimate_params(params), exact=False)
        try:
            tokens = int(self._backend.count_tokens(params))
        except BackendError as exc:
            if exc.kind == "rate_limit_error":
                self._quiet_until = self._clock() + 60.0
            log.info("count_tokens failed, using the estimate", extra={"error": exc.kind})
            return TokenCount(estimate_params(params), exact=False)
        self._memory[key] = tokens
        if self._db is not None:
            self._db.execute(
                "INSERT OR REPLACE INTO token_counts (key, model, tokens, created) "
                "VALUES (?, ?, ?, ?)",
                [key, str(params.get("model") or ""), tokens, self._clock()],
            )
        return TokenCount(tokens, exact=True)

    def _may_call(self) -> bool:
        now = self._clock()
        if now < self._quiet_until:
            return False
        while self._calls and self._calls[0] <= now - 60.0:
            self._calls.popleft()
        if len(self._calls) >= self._per_minute:
            return False
        self._calls.append(now)
        return True
