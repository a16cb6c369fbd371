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
import math
import re
import threading
from collections import OrderedDict
from typing import Any

_WORDISH = re.compile(r"\w+|[^\w\s]")
# Per-message framing (role markers) the API adds around each turn.
MESSAGE_OVERHEAD = 4

# What the stages read of a very long prompt (routing's score, the relevance of turns and
# tools to it): its first READ_HEAD_CHARS and last READ_TAIL_CHARS characters. Regexes,
# tokenizers and needle searches cost time in proportion to what they read (a pasted 2 MB
# log took seconds to route and minutes to prune: thousands of numbers and names, each a
# needle to look for in every turn and tool); what is asked and the output wanted sit at
# the start and the end, every factor the heuristic router counts is saturated long before
# 16,000 characters, and an embedding reads the first 256 tokens anyway. Prompts of the
# routers' benchmark and calibration sets (8,637 characters at most) are read whole.
READ_HEAD_CHARS = 12_000
READ_TAIL_CHARS = 4_000
_ENDS_JOIN = "\n\n"
READ_MAX_CHARS = READ_HEAD_CHARS + len(_ENDS_JOIN) + READ_TAIL_CHARS


def read_ends(text: str) -> str:
    """The part of a prompt the stages read: all of it up to READ_MAX_CHARS, else its head
    and tail joined by a blank line (READ_MAX_CHARS long, so reading it again gives the
    same text)."""
    if len(text) <= READ_MAX_CHARS:
        return text
    return text[:READ_HEAD_CHARS] + _ENDS_JOIN + text[-READ_TAIL_CHARS:]


def _estimate(text: str) -> int:
    by_chars = math.ceil(len(text) / 4)
    by_pieces = math.ceil(len(_WORDISH.findall(text)) * 0.75)
    return max(by_chars, by_pieces, 1)


class _Memo:
    """Estimates of recent texts, bounded by their total length. An agent re-sends its
    whole conversation on every call; the word scan costs ~70 us per KB, a lookup (hash
    and compare in C) a hundredth of that, so each call pays only for its new turns."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self.counts: OrderedDict[str, int] = OrderedDict()
        self.lock = threading.Lock()

    def estimate(self, text: str) -> int:
        with self.lock:
            found = self.counts.get(text)
            if found is not None:
                self.counts.move_to_end(text)
                return found
        count = _estimate(text)
        if len(text) * 4 > self.max_chars:
            return count
        with self.lock:
            if text not in self.counts:
                self.counts[text] = count
                self.chars += len(text)
                while self.chars > self.max_chars:
                    old, _ = self.counts.popitem(last=False)
                    self.chars -= len(old)
        return count


_MEMO = _Memo(max_chars=8_000_000)


def estimate_text(text: str) -> int:
    """Estimated tokens in a piece of text."""
    if not text:
        return 0
    if len(text) < 256:  # a scan this short costs less than the lookup's lock
        return _estimate(text)
    return _MEMO.estimate(text)


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
