"""Exact input-token counts from the API's count_tokens, for pruning to a real budget:
cached by content hash in memory and in the `token_counts` table (this module owns it),
rate limited, and the local estimate (tars_opt.tokens) whenever the API cannot be asked."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tars_opt.errors import BackendError
from tars_opt.hashing import canonical, sha256_text
from tars_opt.store.database import Database
from tars_opt.tokens import estimate_params

log = logging.getLogger("tars_opt.tokens")


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
        db: Database | None = None,
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
        # The rate limit is checked and spent by many threads at once.
        self._lock = threading.Lock()

    @property
    def _backend(self) -> Any:
        if self._backend_obj is None:
            # Resolved once, under the lock: a second thread must not read the source
            # after the first has consumed it.
            with self._lock:
                source = self._source
                if self._backend_obj is None and source is not None:
                    found = (
                        source()
                        if callable(source) and not hasattr(source, "count_tokens")
                        else source
                    )
                    # The offline backend only estimates: asking it would mark estimates
                    # as exact.
                    offline = getattr(found, "name", "offline") == "offline"
                    self._backend_obj = False if offline else found
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
            row = {"key": key, "model": str(params.get("model") or ""), "tokens": tokens,
                   "created": self._clock()}  # fmt: skip
            self._db.insert("token_counts", row, on_conflict="replace")
        return TokenCount(tokens, exact=True)

    def _may_call(self) -> bool:
        now = self._clock()
        with self._lock:
            if now < self._quiet_until:
                return False
            while self._calls and self._calls[0] <= now - 60.0:
                self._calls.popleft()
            if len(self._calls) >= self._per_minute:
                return False
            self._calls.append(now)
            return True
