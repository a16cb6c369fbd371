"""Conversations: which agent run a call belongs to, and what is decided once for it.

A conversation is the `session` control; else a session id the client sends (Claude Code
puts one in `metadata.user_id`); else the chain of calls: a call belongs to the
conversation of the most recent earlier call whose messages are a proper prefix of its
own. Two runs of the same task start alike but each extends its own latest call, so they
stay apart. Only hashes of messages are stored, never their text.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

from tars_opt.hashing import canonical, sha256_text
from tars_opt.store.conversation_state import ConversationState
from tars_opt.store.database import Database
from tars_opt.types import Request

# Prefix hashes older than this are forgotten: a conversation idle for a week starts anew.
KEEP_S = 7 * 86_400.0
_SESSION = re.compile(r"session_([0-9A-Za-z-]{8,})")


def client_session(metadata: Any) -> str | None:
    """The session id a client put in `metadata.user_id`, if any (a JSON object with a
    session_id, or text holding `session_<id>`)."""
    if not isinstance(metadata, dict):
        return None
    user = metadata.get("user_id")
    if not isinstance(user, str) or not user:
        return None
    try:
        parsed = json.loads(user)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("session_id"), str):
        return str(parsed["session_id"])
    found = _SESSION.search(user)
    return found.group(1) if found else None


def prefix_hashes(request: Request) -> list[str]:
    """The hash of messages[:k] for every k (1..n), each chained on the one before
    (cache_control marks move from call to call: they are not part of what was said)."""
    out: list[str] = []
    running = hashlib.sha256(f"{request.namespace}\x1f{request.key_id or ''}".encode())
    for message in request.messages:
        running.update(canonical(message).encode("utf-8", "surrogatepass"))
        out.append(running.copy().hexdigest()[:32])
    return out


class Conversations:
    """Names the conversation of each call (table `conversation_prefixes`); `state` keeps
    what the stages decided for each one (table `conversations`, its own owner)."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.state = ConversationState(db, clock)

    def recognise(self, request: Request) -> str:
        """The conversation id of `request`, recording its messages for the calls after."""
        if request.session:
            return "s:" + _short(f"{request.namespace}\x1f{request.session}")
        client = client_session(request.extra.get("metadata"))
        if client:
            return "c:" + _short(f"{request.namespace}\x1f{client}")
        hashes = prefix_hashes(request)
        # A new conversation is named after its first call, so a seeded run (simulate)
        # names - and draws for the holdout - the same conversations each time.
        first = "k:" + _short(request.request_id)
        if not hashes:
            return first
        now = self.clock()
        earlier = hashes[:-1]
        found: str | None = None
        if earlier:
            marks = ", ".join("?" for _ in earlier)
            rows = self.db.query(
                f"SELECT hash, conversation FROM conversation_prefixes WHERE hash IN ({marks})",
                earlier,
            )
            known = {r["hash"]: r["conversation"] for r in rows}
            found = next((known[h] for h in reversed(earlier) if h in known), None)
        conversation = found or first
        with self.db.transaction() as tx:
            tx.insert(
                "conversation_prefixes",
                {"hash": hashes[-1], "conversation": conversation, "ts": now},
                on_conflict="replace",
            )
            tx.execute("DELETE FROM conversation_prefixes WHERE ts < ?", [now - KEEP_S])
        return conversation


def _short(text: str) -> str:
    return sha256_text(text)[:24]
