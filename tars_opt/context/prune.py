"""Stage `prune`: shorten long histories by level, keeping what the prompt needs.

Levels (config `prune.levels`): light keeps the last 20 messages, medium the last 10 plus
a summary of what came before, aggressive the last 3 plus a summary. A history within
`budget_tokens` is sent whole. Always kept: the system prompt, the first user turn (it
states the task, if configured), tool_use/tool_result pairs (whole turns are kept or
dropped, see history.py), and the older turns most relevant to the prompt.

Agent loops (requests carrying tools whose history holds tool uses) are not cut by level:
dropping turns rewrites the cached prefix at every step and loses what the tool results
said. Their old tool results are cleared instead (context/clearing.py, `prune.clear_tool_results`).

Prompt caching: the cut between the summarized part and the kept part moves in steps of
`summary_step` messages, not every turn. Between steps the system prompt (with the
summary), the first turn and the kept turns are byte-identical from one turn to the next,
so the cache breakpoints the chain marks on them keep hitting; pruning only ever changes
what comes after them. Once per step the summary is refreshed and the prefix written anew.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tars_opt import tokens
from tars_opt.backends import betas
from tars_opt.config.schema import LEVEL_ORDER, PruneConfig
from tars_opt.context import clearing
from tars_opt.context.history import Turn, message_text, problems, split_turns
from tars_opt.context.relevance import Scorer, default_embedder, held, needles
from tars_opt.context.summaries import (
    SideAsk,
    Summary,
    SummaryStore,
    framed,
    summary_key,
    summary_request,
)
from tars_opt.context.token_counts import TokenCount, TokenCounter
from tars_opt.embeddings.store import open_vector_cache
from tars_opt.errors import BackendError
from tars_opt.plural import counted
from tars_opt.store.database import Database
from tars_opt.types import Decision, Request

log = logging.getLogger("tars_opt.prune")
# Characters of a turn that go into its embedding: ~128 tokens on ShareGPT (median 127),
# the length MiniLM was trained on. 1200 (~256 tokens, the model's limit) took 1.2-1.5x
# the time to embed a history for the same needle check (benchmarks/context_savings.py).
EMBED_CHARS = 600
# How many earlier steps to look back for a summary to roll forward.
PREVIOUS_LOOKUPS = 8


@dataclass
class PrunePlan:
    """What pruning would do to one request, before any summary is made."""

    level: str
    reason: str
    turns: list[Turn] = field(default_factory=list)
    pinned: Turn | None = None
    old: list[Turn] = field(default_factory=list)  # summarized (or dropped) turns
    relevant: list[Turn] = field(default_factory=list)  # old turns kept verbatim anyway
    kept: list[Turn] = field(default_factory=list)  # the recent turns
    summarize: bool = False
    summary_key: str | None = None
    history_tokens: int = 0
    scoring: str = "lexical"
    # Older turns scored by word overlap only: no vector yet, embedded after the request.
    lexical_only: int = 0

    @property
    def acts(self) -> bool:
        return bool(self.old)

    def old_messages(self, messages: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        return messages[self.old[0].start : self.old[-1].end] if self.old else ()

    def dropped(self) -> list[Turn]:
        keep = {t.index for t in self.relevant}
        return [t for t in self.old if t.index not in keep]


def _next_level(level: str) -> str | None:
    i = LEVEL_ORDER.index(level)
    return LEVEL_ORDER[i + 1] if i + 1 < len(LEVEL_ORDER) else None


class PruneStage:
    """Pick a level per request, keep what matters, summarize or drop the rest."""

    name = "prune"

    def __init__(
        self,
        config: PruneConfig,
        db: Database | None = None,
        *,
        side_ask: SideAsk | None = None,
        scorer: Scorer | None = None,
        counter: TokenCounter | None = None,
        count_model: str = "claude-sonnet-5-5",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = SummaryStore(db) if db is not None else None
        self.side_ask = side_ask
        self.scorer = scorer or Scorer(
            default_embedder if config.semantic else None,
            vectors=open_vector_cache(db, config.vector_cache_rows),
        )
        self.counter = counter
        self.count_model = count_model
        self.clock = clock
        # The level a session settled on: kept while the session lasts (budget pressure
        # may still raise it), so prompts of another query type do not flip the level and
        # rewrite the cached prefix.
        self._levels: dict[tuple[str, str], str] = {}
        self._levels_lock = threading.Lock()

    # ---- planning (no API calls) ----------------------------------------------------
    def choose_level(self, request: Request, history_tokens: int) -> tuple[str, str]:
        """The level for this request and why."""
        cfg = self.config
        if history_tokens <= cfg.budget_tokens:
            return (
                "none",
                f"history ~{history_tokens} tokens is within the {cfg.budget_tokens} budget",
            )
        if request.priority in cfg.by_priority:
            return cfg.by_priority[request.priority], f"priority {request.priority}"
        if request.session is not None:
            kept = self._levels.get((request.namespace, request.session))
            if kept is not None:
                return kept, f"session {request.session} level (kept for the prompt cache)"
        if request.query_type in cfg.by_query_type:
            return cfg.by_query_type[request.query_type or ""], f"query type {request.query_type}"
        return cfg.default_level, "default level"

    def plan(self, request: Request, level: str | None = None) -> PrunePlan:
        """What pruning would do; `level` forces one (no budget check, no escalation)."""
        plan = self._plan(request, level)
        if plan.acts and self._background(request):
            # Every turn lacking a vector is embedded after this request, the recent ones
            # too: they are the older turns of the next requests.
            self.scorer.later(self._texts(request, plan.turns).values())
        return plan

    def _background(self, request: Request) -> bool:
        """Whether turns without a vector wait for the background (not for batch work)."""
        return self.config.embed_in_background and not request.defer and not request.dry_run

    @staticmethod
    def _texts(request: Request, turns: list[Turn]) -> dict[int, str]:
        """The text of each turn, as it is embedded (its first EMBED_CHARS characters)."""
        msgs = request.history
        return {
            t.index: "\n".join(message_text(m) for m in msgs[t.start : t.end])[:EMBED_CHARS]
            for t in turns
        }

    def _plan(self, request: Request, level: str | None) -> PrunePlan:
        turns = split_turns(request.history)
        total = sum(t.tokens for t in turns)
        if level is None:
            level, reason = self.choose_level(request, total)
            escalate = True
        else:
            reason, escalate = "level forced", False
        while True:
            plan = self._plan_level(request, turns, total, level, reason)
            if level == "none" or not escalate:
                return plan
            after = self.estimate_after(request, plan)
            nxt = _next_level(level)
            if nxt is None or after <= self.config.budget_tokens * self.config.escalate_over:
                if request.session is not None and request.priority not in self.config.by_priority:
                    with self._levels_lock:
                        if len(self._levels) > 10_000:
                            self._levels.clear()
                        self._levels[(request.namespace, request.session)] = level
                return plan
            reason = f"{reason}; still ~{after} tokens at {level}: budget pressure"
            level = nxt

    def _plan_level(
        self, request: Request, turns: list[Turn], total: int, level: str, reason: str
    ) -> PrunePlan:
        plan = PrunePlan(level, reason, turns=turns, history_tokens=total)
        if level == "none" or len(turns) < 2:
            plan.kept = turns
            return plan
        cfg = self.config.levels[level]
        msgs = request.history
        pinned = (
            turns[0]
            if self.config.keep_first_user and msgs and msgs[0].get("role") == "user"
            else None
        )
        first = 1 if pinned else 0
        tail, count = len(turns), 0
        while tail > first and count < cfg.keep_last:
            tail -= 1
            count += turns[tail].size
        # The cut moves in steps (see the module docstring): stable prefix, stable summary.
        step = max(1, self.config.summary_step // 2)
        cut = first + ((tail - first) // step) * step
        plan.pinned, plan.old, plan.kept = pinned, turns[first:cut], turns[cut:]
        plan.summarize = cfg.summarize
        if not plan.old:
            plan.reason += f"; nothing older than the last {counted(cfg.keep_last, 'message')}"
            return plan
        plan.relevant = self._relevant(request, plan)
        if plan.summarize:
            plan.summary_key = summary_key(plan.old_messages(msgs), request.namespace)
        return plan

    def _relevant(self, request: Request, plan: PrunePlan) -> list[Turn]:
        """Old turns to keep verbatim: first those holding the prompt's names, numbers and
        identifiers that the kept part lacks, then the best scored, within the limits."""
        cfg = self.config
        if cfg.relevant_top_k == 0 or not plan.old:
            return []
        msgs = request.history
        text = {
            t.index: "\n".join(message_text(m) for m in msgs[t.start : t.end]) for t in plan.old
        }
        kept_text = "\n".join(
            message_text(m)
            for t in ([plan.pinned] if plan.pinned else []) + plan.kept
            for m in msgs[t.start : t.end]
        )
        wanted = needles(tokens.read_ends(request.prompt))
        missing = wanted - held(kept_text, wanted)
        embedded = {i: t[:EMBED_CHARS] for i, t in text.items()}
        background = self._background(request)
        scored = self.scorer.scores(
            request.prompt, list(embedded.values()), defer_missing=background
        )
        scores = dict(zip(embedded, scored, strict=True))
        plan.scoring = "semantic+lexical" if self.scorer.semantic else "lexical"
        if self.scorer.semantic and background:
            plan.lexical_only = sum(1 for t in embedded.values() if not self.scorer.has_vector(t))
        chosen: list[Turn] = []
        budget = cfg.relevant_tokens
        by_index = {t.index: t for t in plan.old}
        # Needles first: greedy cover; among turns holding as many, the best scored (the
        # one that also has the prompt's other words), then the newest.
        has = {t.index: held(text[t.index], missing) for t in plan.old}
        while missing and len(chosen) < cfg.relevant_top_k:
            best = max(
                (t for t in plan.old if t not in chosen and t.tokens <= budget),
                key=lambda t: (len(has[t.index] & missing), scores[t.index], t.index),
                default=None,
            )
            if best is None or not has[best.index] & missing:
                break
            chosen.append(best)
            budget -= best.tokens
            missing -= has[best.index]
        for i in sorted(scores, key=lambda i: (-scores[i], -i)):
            if len(chosen) >= cfg.relevant_top_k or scores[i] < cfg.relevant_min_score:
                break
            t = by_index[i]
            if t not in chosen and t.tokens <= budget:
                chosen.append(t)
                budget -= t.tokens
        return sorted(chosen, key=lambda t: t.index)

    def estimate_after(
        self, request: Request, plan: PrunePlan, summary_tokens: int | None = None
    ) -> int:
        """Estimated history + summary tokens after pruning."""
        kept = [t for t in ([plan.pinned] if plan.pinned else []) + plan.relevant + plan.kept]
        after = sum(t.tokens for t in kept)
        if plan.summarize and plan.old:
            after += (
                summary_tokens if summary_tokens is not None else self.config.summary_max_tokens
            )
        return after

    # ---- applying ---------------------------------------------------------------------
    def rewrite(self, request: Request, plan: PrunePlan, summary: Summary | None) -> Request:
        """The request with the plan applied: the summary (if any) ends the system prompt,
        the first and the recent turns stay messages, and the relevant older turns go as
        an excerpt in front of the prompt, after every cache breakpoint, so a selection
        that changes from turn to turn never disturbs the cached prefix."""
        msgs = request.history
        keep = ([plan.pinned] if plan.pinned else []) + plan.kept
        new_msgs = tuple(m for t in keep for m in msgs[t.start : t.end])
        system = request.system
        if summary is not None:
            blocks: list[dict[str, Any]] = []
            if isinstance(system, str) and system:
                blocks.append({"type": "text", "text": system})
            elif isinstance(system, tuple):
                blocks.extend(system)
            covered = plan.old[-1].end - plan.old[0].start
            blocks.append({"type": "text", "text": framed(summary.text, covered)})
            system = tuple(blocks)
        last = request.messages[-1]
        if plan.relevant:
            last = with_excerpt(last, excerpt(msgs, plan.relevant))
        return replace(request, messages=(*new_msgs, last), system=system)

    def _count(self, request: Request) -> TokenCount:
        params: dict[str, Any] = {"model": self.count_model, "messages": request.api_messages()}
        if request.system:
            params["system"] = (
                request.system if isinstance(request.system, str) else list(request.system)
            )
        if self.counter is not None and not request.dry_run:
            return self.counter.count(params)
        return TokenCount(tokens.estimate_params(params), exact=False)

    def _previous_summary(self, request: Request, plan: PrunePlan) -> tuple[Summary | None, int]:
        """The stored summary of a shorter old part (an earlier step of this conversation)
        and how many of the old messages it covers, so a summary rolls forward."""
        if self.store is None:
            return None, 0
        msgs = request.history
        start = plan.old[0].start
        step = max(1, self.config.summary_step // 2)
        for cut in range(len(plan.old) - step, 0, -step)[:PREVIOUS_LOOKUPS]:
            end = plan.old[cut - 1].end
            found = self.store.peek(summary_key(msgs[start:end], request.namespace))
            if found is not None:
                return found, end - start
        return None, 0

    def _dry_summary(self, plan: PrunePlan) -> Summary:
        """For a dry run: the stored summary if there is one, else a placeholder counted at
        the most tokens a summary may have (none is made)."""
        assert plan.summary_key is not None
        found = self.store.peek(plan.summary_key) if self.store is not None else None
        if found is not None:
            return found
        text = f"[summary to be made by the {self.config.summary_tier} tier]"
        return Summary(plan.summary_key, text, self.config.summary_max_tokens, False, None)

    def _summary(self, request: Request, plan: PrunePlan) -> Summary:
        """The stored summary for the plan's old part, or a new one from the cheap tier."""
        assert plan.summary_key is not None
        now = self.clock()
        if self.store is not None:
            found = self.store.get(plan.summary_key, now)
            if found is not None:
                return found
        if self.side_ask is None:
            raise BackendError("no way to call the API for a summary", kind="unavailable")
        old = plan.old_messages(request.history)
        previous, done = self._previous_summary(request, plan)
        reply = self.side_ask(
            summary_request(
                old[done:],
                request,
                self.config.summary_max_tokens,
                previous=previous.text if previous else None,
            )
        )
        if not reply.text.strip():
            raise BackendError("the summary came back empty", kind="empty_summary")
        source = sum(t.tokens for t in plan.old)
        if self.store is None:
            return Summary(
                plan.summary_key,
                reply.text,
                tokens.estimate_text(reply.text),
                False,
                reply.request_id,
            )
        return self.store.put(
            plan.summary_key,
            text=reply.text,
            namespace=request.namespace,
            source_tokens=source,
            messages=len(old),
            model=reply.model,
            request_id=reply.request_id,
            now=now,
        )

    def apply(self, request: Request) -> tuple[Request, Decision]:
        """Prune the request's history; the Decision says what was kept and why."""
        # Vectors of an earlier request that never reached after() (it failed): keep what
        # its thread made, drop what it never started (this plan asks again if needed).
        self.scorer.settle(embed_rest=False)
        if not request.history:
            return request, Decision("prune", "none", "no history")
        if request.tools and clearing.tool_uses(request.history):
            return self.clear_tool_results(request)
        plan = self.plan(request)
        if not plan.acts:
            # A dry run (`context inspect`) shows the whole plan; a ledger row needs less.
            data = {**plan_data(plan), "plan_reason": plan.reason} if request.dry_run else {}
            return request, Decision("prune", "none", plan.reason, {"level": plan.level, **data})
        summary: Summary | None = None
        if plan.summarize and request.dry_run:
            summary = self._dry_summary(plan)
        elif plan.summarize:
            try:
                summary = self._summary(request, plan)
            except BackendError as exc:
                # Never drop history we could not summarize: send it whole instead.
                log.warning("summary failed; history sent whole", extra={"error": str(exc)})
                return request, Decision(
                    "prune", "none", f"{plan.reason}; summary failed ({exc}): history kept"
                )
        pruned = self.rewrite(request, plan, summary)
        original_ok = not problems(list(request.api_messages()))
        if original_ok and problems(list(pruned.api_messages())):
            # Cannot happen with whole turns; refuse rather than send what the API rejects.
            return request, Decision("prune", "none", "pruning would break the conversation")
        before, after = self._count(request), self._count(pruned)
        removed = before.tokens - after.tokens
        if removed <= 0:
            return request, Decision(
                "prune", "none", f"{plan.reason}; pruning would not save tokens"
            )
        data = plan_data(plan)
        if request.dry_run:
            data["plan_reason"] = plan.reason
        data.update(
            tokens_before=before.tokens,
            tokens_after=after.tokens,
            tokens_exact=before.exact and after.exact,
        )
        if summary is not None:
            data["summary"] = {
                "key": summary.key[:16],
                "reused": summary.reused,
                "tokens": summary.tokens,
                "request_id": summary.request_id,
            }
        reason = f"{plan.reason}: ~{before.tokens} -> ~{after.tokens} tokens"
        return (
            replace(pruned, removed_tokens=request.removed_tokens + removed),
            Decision("prune", plan.level, reason, data),
        )

    def clear_tool_results(self, request: Request) -> tuple[Request, Decision]:
        """An agent loop: old tool results cleared past the trigger (or the API's context
        editing asked to do it, for the models configured), never cut by level."""
        cfg = self.config.clear_tool_results
        if not cfg.enabled:
            why = "agent loop: not cut by level; clearing off (prune.clear_tool_results)"
            return request, Decision("prune", "none", why)
        if clearing.client_clears(request.extra):
            why = "agent loop: the client's own context_management clears tool uses; kept"
            return request, Decision("prune", "none", why)
        model = request.model or request.client_model or ""
        if cfg.mode == "api" and model in cfg.api_models:
            extra = clearing.with_api_edit(request.extra, cfg)
            why = (
                f"agent loop: the API's context editing ({clearing.API_EDIT}) clears old tool "
                f"results past {cfg.trigger_tokens} tokens for {model}; sent with the "
                f"anthropic-beta {betas.CONTEXT_MANAGEMENT} header"
            )
            data: dict[str, Any] = {
                "edit": clearing.api_edit(cfg),
                "mode": "api",
                "beta": betas.CONTEXT_MANAGEMENT,
            }
            return replace(request, extra=extra), Decision("prune", "api_clearing", why, data)
        total = tokens.estimate_params(request.to_body())
        done = clearing.clear(request.messages, cfg, total)
        if done is None:
            _, why = clearing.plan(request.messages, cfg, total)
            return request, Decision("prune", "none", f"agent loop: {why}")
        data = {**done.data(), "tokens_before": total, "tokens_after": total - done.removed_tokens}
        cleared = replace(
            request,
            messages=done.messages,
            removed_tokens=request.removed_tokens + done.removed_tokens,
        )
        return cleared, Decision("prune", "cleared", f"agent loop: {done.reason}", data)

    def before_send(self, prepared: Any) -> None:
        """The request is about to be sent: embed the turns left for later meanwhile."""
        self.scorer.start_background()

    def after(self, prepared: Any, reply: Any) -> None:
        """The answer is in: keep the vectors embedded meanwhile for the next request."""
        self.scorer.settle()


def excerpt(messages: tuple[dict[str, Any], ...], turns: list[Turn]) -> str:
    """Older turns as quoted text for the final user message."""
    parts = [
        f"{m.get('role', 'user').upper()} (message {i}): {message_text(m)}"
        for t in turns
        for i, m in enumerate(messages[t.start : t.end], start=t.start)
    ]
    return (
        "Earlier messages of this conversation that relate to my next request "
        "(quoted for reference):\n\n" + "\n\n".join(parts) + "\n\nMy request:"
    )


def plan_data(plan: PrunePlan) -> dict[str, Any]:
    """The plan as message ranges, for the Decision and `context inspect`."""

    def ranges(turns: list[Turn]) -> list[list[int]]:
        return [[t.start, t.end - 1] for t in turns]

    return {
        "level": plan.level,
        "history_tokens": plan.history_tokens,
        "pinned": ranges([plan.pinned]) if plan.pinned else [],
        "kept": ranges(plan.kept),
        "relevant": ranges(plan.relevant),
        "summarized": ranges(plan.old) if plan.summarize else [],
        "dropped": ranges(plan.dropped()) if not plan.summarize else [],
        "scoring": plan.scoring,
        "scored_lexically": plan.lexical_only,
    }


def with_excerpt(turn: dict[str, Any], text: str) -> dict[str, Any]:
    """The turn being answered with an excerpt of older turns added: before its own text,
    after any tool results (the API wants those first in a user turn)."""
    content = turn.get("content")
    blocks = (
        [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    )
    results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
    rest = [b for b in blocks if not (isinstance(b, dict) and b.get("type") == "tool_result")]
    return {**turn, "content": [*results, {"type": "text", "text": text}, *rest]}
