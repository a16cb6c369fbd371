"""What is decided once per conversation and kept (table `conversations`): its owner.

The stages that decide for a whole conversation keep their decision here, by conversation
id, so a restarted gateway, a second gateway process or host on one database, and `ask`
calls of one session in separate processes all continue it instead of deciding again:
- `route`: `tier`, the model tier the conversation was given (an escalation moves it up);
- `tools`: `tool_catalogue` (a hash of the tool names the client sent, in order) and
  `tools_sent` (the indexes sent at the conversation's first call; null: all of them). A
  different catalogue is a new selection.

Not kept here, on purpose:
- prompt-cache breakpoints: where they go is a function of the request's shape (last tool,
  end of system, end of history, tail) and of when this prefix and this conversation were
  last sent, which `prefix_sends` (context/prompt_cache.py) already keeps for every process
  and host. The tail and history marks move on every call, so storing them would cost a
  write per call for a value no decision reads back;
- relevance vectors: they belong to a text, not a conversation. The vector table keeps them
  by text hash (float32, shared by every conversation and process) and each scorer keeps an
  in-process memo in front of it; a copy per conversation would only duplicate them.

Reads go through a small in-process cache: a tool loop's calls, seconds apart, cost no
database round trip while nothing changed. What this process read or wrote is trusted for
FRESH_S seconds, so a change another process or host made (an escalation there) is seen
within that time. Writes happen only when a value changes, merged into the stored state
under the conversation's lock, so two hosts deciding different fields lose neither.
The `calls` column counts those writes (calls per conversation are in the ledger).
A database that cannot be read or written costs only the continuity: the stage decides as
for a first call and the request goes on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tars_opt.errors import DatabaseError
from tars_opt.store.database import Database

log = logging.getLogger("tars_opt.conversations")
# Seconds a state this process read or wrote is used without reading it again.
FRESH_S = 30.0
# Conversations whose state is cached in memory (the least recently used are dropped).
MAX_CACHED = 20_000
# A conversation whose state has not changed for this long is deleted (its calls' prefix
# hashes expire after the same time: it would start anew anyway).
KEEP_S = 7 * 86_400.0


class ConversationState:
    """The state of each conversation: read through and written through a bounded memory
    cache. With `db=None` it lives in memory only (a stage built on its own)."""

    def __init__(
        self,
        db: Database | None,
        clock: Callable[[], float] = time.time,
        *,
        fresh_s: float = FRESH_S,
        max_cached: int = MAX_CACHED,
    ) -> None:
        self.db = db
        self.clock = clock
        self.fresh_s = fresh_s
        self.max_cached = max_cached
        # conversation -> (state, when it was read or written); least recent first.
        self._cache: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, conversation: str) -> dict[str, Any]:
        """What was decided for `conversation` so far ({} for a new one); a copy."""
        cached = self._cached(conversation)
        if cached is not None:
            return dict(cached)
        if self.db is None:
            return {}
        try:
            value = self.db.scalar("SELECT state FROM conversations WHERE id = ?", [conversation])
        except DatabaseError as exc:
            log.warning("conversation state unreadable", extra={"error": str(exc)})
            return {}
        state = _loads(value)
        self._keep(conversation, state)
        return dict(state)

    def update(self, conversation: str, namespace: str, **fields: Any) -> None:
        """Merge `fields` (JSON values) into the conversation's state; nothing is written
        when they are what is kept already."""
        cached = self._cached(conversation)
        if cached is not None and all(k in cached and cached[k] == v for k, v in fields.items()):
            return
        if self.db is None:
            self._keep(conversation, {**(cached or {}), **fields})
            return
        try:
            merged = self._write(conversation, namespace, fields)
        except DatabaseError as exc:
            log.warning("conversation state not written", extra={"error": str(exc)})
            merged = {**(cached or {}), **fields}
        self._keep(conversation, merged)

    def _write(self, conversation: str, namespace: str, fields: dict[str, Any]) -> dict[str, Any]:
        assert self.db is not None
        now = self.clock()
        with self.db.transaction() as tx:
            tx.lock(f"conversation:{conversation}")  # two calls of one conversation at once
            value = tx.scalar("SELECT state FROM conversations WHERE id = ?", [conversation])
            stored = _loads(value)
            merged = {**stored, **fields}
            if value is None:
                text = json.dumps(merged, separators=(",", ":"))
                row = {"id": conversation, "namespace": namespace, "started": now,
                       "updated": now, "calls": 1, "state": text}  # fmt: skip
                tx.insert("conversations", row, on_conflict="replace")
                tx.execute("DELETE FROM conversations WHERE updated < ?", [now - KEEP_S])
            elif merged != stored:
                tx.execute(
                    "UPDATE conversations SET state = ?, updated = ?, calls = calls + 1 "
                    "WHERE id = ?",
                    [json.dumps(merged, separators=(",", ":")), now, conversation],
                )
        return merged

    def _cached(self, conversation: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._cache.get(conversation)
            if found is None:
                return None
            state, at = found
            if self.db is not None and not 0 <= self.clock() - at < self.fresh_s:
                return None
            self._cache.move_to_end(conversation)
            return state

    def _keep(self, conversation: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._cache[conversation] = (state, self.clock())
            self._cache.move_to_end(conversation)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)


def _loads(value: Any) -> dict[str, Any]:
    if not value:
        return {}
    try:
        state = json.loads(value)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}
