"""Stage `tools`: with more tools than `tools.max_per_request`, send the relevant ones.

Relevance is scored over each tool's name and description against the prompt and the last
turn (embedding similarity when the model is installed, word overlap otherwise). Tools the
conversation already uses, or that the prompt names, are always sent. The order of the
catalogue is kept, so the tool list - the start of the cached prefix - changes only when
the selection does. In `tool_search` mode every tool is sent, the unselected ones with
`defer_loading: true` and the API's BM25 tool search tool added, so the model can still
load any of them (their schemas are not billed until it does).

Tools are the very start of the prompt-cache prefix: a selection that follows each prompt
changes it, and the system prompt cached after it is written again instead of read. So,
when prompt caching can hold the whole list with the system prompt for the routed model
(this stage runs after `route`), the whole list is sent when reading it (with the system
prompt) from the cache costs less than half of sending the selection uncached
(CACHE_MARGIN), and the selection otherwise. (A session's
sticky selection would be stable within the session, but the agent's system prompt after
it is shared by every session and single call: only the whole list keeps that prefix.)

Within a conversation the list sent at its first call is kept (while it holds every tool
the conversation used), in the conversation state (store/conversation_state.py): the
catalogue's hash and the indexes sent, so a restart or another process or host goes on with
the same bytes. A different catalogue is selected anew; a dry run never writes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from tars_opt import tokens
from tars_opt.accounting.pricing import PriceBook
from tars_opt.config.schema import PromptCacheConfig, ToolsConfig
from tars_opt.context.history import message_text, tool_names_used
from tars_opt.context.relevance import Scorer, default_embedder
from tars_opt.embeddings.store import VectorCache
from tars_opt.errors import UnknownModelPrice
from tars_opt.hashing import canonical, sha256_text
from tars_opt.plural import counted
from tars_opt.store.conversation_state import ConversationState
from tars_opt.types import Decision, Request

TOOL_SEARCH = {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"}
# The whole list must be this many times cheaper read from the cache than the selection
# sent uncached: its writes (1.25-2x) and the calls that find the entry lapsed cost too.
CACHE_MARGIN = 2.0
# How much of the recent conversation joins the prompt as the query.
QUERY_CONTEXT_CHARS = 600


def tool_text(tool: dict[str, Any]) -> str:
    """What a tool is scored on: its name (words split) and description."""
    name = str(tool.get("name", ""))
    spaced = re.sub(r"[_\-.]+", " ", re.sub(r"([a-z])([A-Z])", r"\1 \2", name))
    return f"{spaced}: {tool.get('description', '')}"


def named_in(text: str, names: list[str]) -> set[str]:
    """Tool names that appear as whole words in `text`."""
    return {n for n in names if re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)}


class ToolStage:
    """Send the top tools by relevance; never drop one the conversation uses."""

    name = "tools"

    def __init__(
        self,
        config: ToolsConfig,
        scorer: Scorer | None = None,
        *,
        vectors: VectorCache | None = None,
        caching: PromptCacheConfig | None = None,
        prices: PriceBook | None = None,
        model_of: Callable[[Request], str | None] | None = None,
        state: ConversationState | None = None,
    ) -> None:
        """`caching`, `prices` and `model_of` (the model that will answer a request: its
        own, or its tier's) let the stage keep a cacheable tool list whole; without them
        it always selects. `state` keeps each conversation's list (in memory only when not
        given)."""
        self.config = config
        self.caching = caching
        self.prices = prices
        self.model_of = model_of
        self.scorer = scorer or Scorer(
            default_embedder if config.semantic else None, vectors=vectors
        )
        # The last selection per (namespace, session, catalogue): reused while it still
        # holds the tools that matter now, so the tool list (the very start of the cached
        # prefix) stays the same bytes from turn to turn.
        self._last: dict[tuple[str, str, str], list[int]] = {}
        self._last_lock = threading.Lock()
        self.state = state if state is not None else ConversationState(None)

    def select(self, request: Request) -> tuple[list[int], dict[str, Any]]:
        """Indexes of the tools to send (catalogue order) and the facts behind the choice."""
        tools = list(request.tools)
        k = self.config.max_per_request
        # Server tools (typed, e.g. web_search) have no schema to trim: always sent.
        client = [i for i, t in enumerate(tools) if "type" not in t or t.get("type") == "custom"]
        names = [str(tools[i].get("name")) for i in client]
        recent = " ".join(message_text(m) for m in request.history[-2:])[-QUERY_CONTEXT_CHARS:]
        used = tool_names_used(request.messages) & set(names)
        prompt = tokens.read_ends(request.prompt)  # a pasted 2 MB log is read at its ends
        named = named_in(prompt + "\n" + recent, names) - used
        query = f"{prompt}\n{recent}".strip()
        scores = self.scorer.scores(query, [tool_text(tools[i]) for i in client])
        by_score = sorted(range(len(client)), key=lambda j: (-scores[j], j))
        chosen = {i for i in range(len(tools)) if i not in client}
        chosen |= {client[j] for j, n in enumerate(names) if n in used or n in named}
        for j in by_score:
            if len(chosen) >= max(k, len(used) + len(named)):
                break
            chosen.add(client[j])
        facts = {
            "used": sorted(used),
            "named": sorted(named),
            "scoring": "semantic+lexical" if self.scorer.semantic else "lexical",
            "scores": {names[j]: round(scores[j], 3) for j in by_score[: k + 5]},
        }
        return sorted(chosen), facts

    def _sticky(self, request: Request, keep: list[int], facts: dict[str, Any]) -> list[int]:
        if not self.config.sticky or request.session is None:
            return keep
        names = [str(t.get("name")) for t in request.tools]
        catalogue = sha256_text(canonical(names))[:16]
        key = (request.namespace, request.session, catalogue)
        previous = self._last.get(key)
        top = [n for n in facts["scores"]][: self.config.sticky_top]
        must = {*facts["used"], *facts["named"], *top}
        if previous is not None and must <= {names[i] for i in previous}:
            facts["sticky"] = True
            return previous
        with self._last_lock:
            if len(self._last) > 10_000:
                self._last.clear()
            self._last[key] = keep
        facts["sticky"] = False
        return keep

    def cache_keeps_whole(
        self, request: Request, keep: list[int], facts: dict[str, Any]
    ) -> str | None:
        """Why the whole list is cheaper than the selection, or None when it is not.

        Compared per call once the cache is warm: the whole list and the system prompt
        read at the model's cache-read rate, against the selection and the system prompt
        at the input rate (a selection that follows the prompt is never read back); the
        whole list must win by CACHE_MARGIN.
        """
        model = self.model_of(request) if self.model_of is not None else request.model
        if (
            self.caching is None
            or self.prices is None
            or not model
            or not self.caching.enabled
            or self.config.mode != "select"
        ):
            return None
        try:
            rates = self.prices.rates(model)
        except UnknownModelPrice:
            return None  # the chain refuses the request with the price error itself
        tools = list(request.tools)
        whole = sum(tokens.estimate_tool(t) for t in tools)
        chosen = sum(tokens.estimate_tool(tools[i]) for i in keep)
        system = tokens.estimate_system(request.system)
        minimum = self.caching.minimum(model)
        if whole + system < minimum:
            return None
        cached = (whole + system) * rates.cache_read / 1e6
        uncached = (chosen + system) * rates.input / 1e6
        facts["cache_compare"] = {
            "model": model,
            "whole_tokens": whole,
            "selected_tokens": chosen,
            "system_tokens": system,
            "whole_cached_usd": round(cached, 7),
            "selected_uncached_usd": round(uncached, 7),
        }
        if cached * CACHE_MARGIN >= uncached:
            return None
        return (
            f"all {counted(len(tools), 'tool')}: with the system prompt (~{whole + system} "
            "tokens) they "
            f"stay one cached prefix for {model}, read at ${rates.cache_read:g}/MTok; a "
            f"selection of {len(keep)} (~{chosen + system} tokens) would change that prefix "
            f"and be paid at ${rates.input:g}/MTok"
        )

    @staticmethod
    def catalogue(request: Request) -> str:
        """A hash of the tool names the client sent, in order: which catalogue this is."""
        return sha256_text(canonical([str(t.get("name")) for t in request.tools]))[:16]

    def _kept(self, request: Request) -> tuple[Request, Decision] | None:
        """The tool list the conversation was sent at its first call, while it still holds
        every tool the conversation used: the start of the cached prefix stays the same."""
        if not request.conversation:
            return None
        state = self.state.get(request.conversation)
        if "tools_sent" not in state or state.get("tool_catalogue") != self.catalogue(request):
            return None
        tools = list(request.tools)
        kept = state["tools_sent"]
        if kept is None:
            why = (
                f"all {len(tools)} tools, as at this conversation's first call (kept for the cache)"
            )
            return request, Decision("tools", "all", why, {"conversation": "kept"})
        if not isinstance(kept, list) or not all(
            isinstance(i, int) and 0 <= i < len(tools) for i in kept
        ):
            return None  # not a list of this catalogue's indexes: select again
        names = {str(tools[i].get("name")) for i in kept}
        if not tool_names_used(request.messages) <= names:
            return None  # a tool outside the list was used: select again
        return self._send(request, list(kept), {"conversation": "kept", "scoring": "kept"})

    def _remember(self, request: Request, keep: list[int] | None) -> None:
        if request.conversation and not request.dry_run:
            self.state.update(
                request.conversation,
                request.namespace,
                tool_catalogue=self.catalogue(request),
                tools_sent=keep,
            )

    def apply(self, request: Request) -> tuple[Request, Decision]:
        """Trim (or defer) the tool list; the Decision names what was sent and why."""
        tools = list(request.tools)
        k = self.config.max_per_request
        if len(tools) <= k:
            return request, Decision("tools", "all", f"{counted(len(tools), 'tool')}, limit {k}")
        kept = self._kept(request)
        if kept is not None:
            return kept
        # Whole list cheaper even than the smallest possible selection: no scoring needed.
        smallest = sorted(range(len(tools)), key=lambda i: tokens.estimate_tool(tools[i]))[:k]
        facts: dict[str, Any] = {}
        whole = self.cache_keeps_whole(request, sorted(smallest), facts)
        if whole is None:
            keep, facts = self.select(request)
            keep = self._sticky(request, keep, facts)
            whole = self.cache_keeps_whole(request, keep, facts)
        if whole is not None:
            facts["selected"] = [str(t.get("name")) for t in tools]
            facts["dropped"] = []
            self._remember(request, None)
            return request, Decision("tools", "all", whole, facts)
        self._remember(request, keep)
        return self._send(request, keep, facts)

    def _send(
        self, request: Request, keep: list[int], facts: dict[str, Any]
    ) -> tuple[Request, Decision]:
        """The request with the tools at `keep` (or the rest deferred) and its Decision."""
        tools = list(request.tools)
        dropped = [t for i, t in enumerate(tools) if i not in keep]
        removed = sum(tokens.estimate_tool(t) for t in dropped)
        facts["selected"] = [str(tools[i].get("name")) for i in keep]
        facts["dropped"] = [str(t.get("name")) for t in dropped]
        facts["removed_tokens"] = removed
        if self.config.mode == "tool_search":
            sent = tuple(
                t if i in keep else {**t, "defer_loading": True} for i, t in enumerate(tools)
            ) + (dict(TOOL_SEARCH),)
            action, how = "deferred", "the rest deferred to tool search"
            removed -= tokens.estimate_tool(TOOL_SEARCH)
        else:
            sent = tuple(tools[i] for i in keep)
            action, how = "selected", "the rest not sent"
        of_all = f"{len(keep)} of {counted(len(tools), 'tool')}"
        reason = f"{of_all} by relevance ({facts['scoring']}); {how}"
        if facts.get("conversation") == "kept":
            reason = f"{of_all}, as at this conversation's first call; {how}"
        if facts.get("sticky"):
            reason += "; the session's previous selection still fits, kept for the cache"
        return (
            replace(request, tools=sent, removed_tokens=request.removed_tokens + max(0, removed)),
            Decision("tools", action, reason, facts),
        )
