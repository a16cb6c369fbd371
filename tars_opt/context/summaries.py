"""Summaries of old history: a fixed structured prompt, made by the cheap tier, stored.

A summary is keyed by the hash of the exact messages it replaces (and the prompt version),
so it is reused for as long as that part of the history is unchanged and made again the
moment it changes. Each one is a real API call with its own ledger row (query type
`summary`, request id `<parent request id>.summary`): its cost is charged to pruning.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tars_opt import tokens
from tars_opt.context.history import message_text
from tars_opt.hashing import sha256_text
from tars_opt.store.database import Database
from tars_opt.types import Reply, Request

PROMPT_VERSION = "summary-v1"
SUMMARY_SYSTEM = (
    "You compress part of a conversation between a user and an AI assistant so that it can "
    "replace those messages in later requests. Write only the summary, under these four "
    "headings, as short bullet points:\n"
    "Topic:\n"
    "Key decisions:\n"
    "Open items:\n"
    "Facts and numbers to keep:\n"
    "Under the last heading copy verbatim every name, number, date, file name, command, "
    "code identifier and value the conversation settled on. Do not add anything that is "
    "not in the messages. Stay under {words} words."
)
# The cut-off per message in the transcript sent for summarizing; very long pastes
# (logs, files) are summarized from their beginning and end.
TRANSCRIPT_MESSAGE_CHARS = 6000

# Runs a request through the optimizer on the cheap tier with no stages (see
# Optimizer.side_ask); the stage gets it from the chain, never from a global.
SideAsk = Callable[[Request], Reply]


@dataclass(frozen=True)
class Summary:
    key: str
    text: str
    tokens: int
    reused: bool
    request_id: str | None = None


def summary_key(messages: Any, namespace: str) -> str:
    """The hash that identifies a summary: prompt version, namespace, the exact messages."""
    # Not hashing.canonical: stored summaries are found by this key, and another form would
    # pay for every one of them again.
    body = json.dumps([PROMPT_VERSION, namespace, list(messages)], sort_keys=True, default=str)
    return sha256_text(body)


def transcript(messages: Any) -> str:
    """Messages as role-labelled text for the summary prompt."""
    lines = []
    for m in messages:
        text = message_text(m)
        if len(text) > TRANSCRIPT_MESSAGE_CHARS:
            half = TRANSCRIPT_MESSAGE_CHARS // 2
            text = f"{text[:half]}\n[... {len(text) - 2 * half} characters cut ...]\n{text[-half:]}"
        lines.append(f"{m.get('role', 'user').upper()}: {text}")
    return "\n\n".join(lines)


def summary_request(
    messages: Any, parent: Request, max_tokens: int, previous: str | None = None
) -> Request:
    """The Request that asks the cheap tier for a summary of `messages`; with `previous`
    (the summary of the messages before them) it is rolled forward instead of re-read."""
    if previous:
        prompt = (
            "Here is the summary of the conversation so far:\n\n"
            f"{previous.strip()}\n\nUpdate it with these newer messages, keeping the same "
            "four headings:\n\n" + transcript(messages)
        )
    else:
        prompt = "Summarize this part of the conversation:\n\n" + transcript(messages)
    return Request.from_prompt(
        prompt,
        system=SUMMARY_SYSTEM.format(words=int(max_tokens * 0.7)),
        query_type="summary",
        priority=parent.priority,
        urgent=True,
        max_tokens=max_tokens,
        namespace=parent.namespace,
        session=parent.session or parent.request_id,
        request_id=f"{parent.request_id}.summary",
        overhead_for="pruning",
    )


def framed(text: str, covered: int) -> str:
    """The summary as it is put into the system prompt."""
    return (
        f"Summary of {covered} earlier messages of this conversation (they are not "
        f"repeated below):\n{text.strip()}"
    )


class SummaryStore:
    """The `summaries` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, key: str, now: float) -> Summary | None:
        row = self.db.execute(
            "SELECT text, tokens, request_id FROM summaries WHERE key = ?", [key]
        ).fetchone()
        if row is None:
            return None
        self.db.execute("UPDATE summaries SET used = ?, uses = uses + 1 WHERE key = ?", [now, key])
        return Summary(key, row[0], int(row[1]), reused=True, request_id=row[2])

    def peek(self, key: str) -> Summary | None:
        """Like get, without counting a use (for `context inspect`)."""
        row = self.db.execute(
            "SELECT text, tokens, request_id FROM summaries WHERE key = ?", [key]
        ).fetchone()
        return Summary(key, row[0], int(row[1]), reused=True, request_id=row[2]) if row else None

    def put(
        self,
        key: str,
        *,
        text: str,
        namespace: str,
        source_tokens: int,
        messages: int,
        model: str | None,
        request_id: str,
        now: float,
    ) -> Summary:
        count = tokens.estimate_text(text)
        row = {"key": key, "namespace": namespace, "text": text, "tokens": count,
               "source_tokens": source_tokens, "messages": messages, "model": model,
               "request_id": request_id, "created": now, "used": now, "uses": 0}  # fmt: skip
        self.db.insert("summaries", row, on_conflict="replace")
        return Summary(key, text, count, reused=False, request_id=request_id)
