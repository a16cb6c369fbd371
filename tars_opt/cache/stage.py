"""The response-cache stage: first in the chain, it answers repeats without an API call.

Lookup order: the exact key (any request), then - only for single-turn, non-time-sensitive
prompts of a type with a calibrated threshold - the same prompt up to case and punctuation,
then the nearest earlier prompt by embedding within the same namespace, context and model,
vetted by the guards. The embedding model loads only when that last step is reached.
`after` stores good answers (never errors, refusals, empty or truncated ones).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from tars_opt.accounting.pricing import PriceBook
from tars_opt.cache import guards as cache_guards
from tars_opt.cache.keys import context_fingerprint, exact_key, model_selector, norm_key
from tars_opt.cache.semantic import EmbedderFactory, Partition, SemanticIndex
from tars_opt.cache.store import CacheStore, Entry, NewEntry
from tars_opt.config.schema import Config
from tars_opt.hashing import sha256_text
from tars_opt.store.database import Database
from tars_opt.tokens import estimate_text
from tars_opt.types import Decision, Prepared, Reply, Request, Usage

log = logging.getLogger("tars_opt.cache")

STORABLE_STOPS = {"end_turn", "stop_sequence"}
_PENDING_MAX = 256  # prompts/vectors of in-flight misses kept for `after`
# The embedding model reads at most 256 tokens: two long prompts that differ after that
# would look identical, so longer prompts get exact matches only (with a safety margin).
SEMANTIC_MAX_TOKENS = 200


def _plain(text: str) -> tuple[dict[str, Any], ...]:
    """A text-only answer's blocks: stored as its text alone."""
    return ({"type": "text", "text": text},)


def unstorable_reason(reply: Reply, config: Config) -> str | None:
    """Why an answer must not be cached, or None if it may be (refusals as escalation
    detects them: routing.escalation.refusal_patterns)."""
    if not reply.text.strip():
        return "empty answer"
    if reply.stop_reason not in STORABLE_STOPS:
        return f"stop_reason {reply.stop_reason}"
    if config.routing.escalation.refused(reply.text):
        return "refusal"
    return None


class CacheStage:
    """Exact and semantic response cache (see the module docstring)."""

    name = "cache"
    answers = True

    def __init__(
        self,
        config: Config,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        embedder_factory: EmbedderFactory | None = None,
    ) -> None:
        self.config = config
        self.cfg = config.cache
        self.clock = clock
        self.store = CacheStore(db)
        self.semantic = SemanticIndex(self.store, embedder_factory)
        self.prices = PriceBook(config.pricing)
        self._time_patterns = [
            re.compile(p, re.IGNORECASE) for p in self.cfg.time_sensitive_patterns
        ]
        # Shared by every thread answering through this stage.
        self._pending: OrderedDict[str, tuple[str, np.ndarray | None]] = OrderedDict()
        self._pending_lock = threading.Lock()

    def time_sensitive(self, prompt: str) -> bool:
        """Whether the answer depends on when it is asked ("today", "latest", prices ...)."""
        return any(p.search(prompt) for p in self._time_patterns)

    def semantic_block(self, request: Request, time_sensitive: bool) -> str | None:
        """Why this request may not get a semantic hit (or be found by one), or None."""
        sem = self.cfg.semantic
        kind = request.query_type or "other"
        if not sem.enabled:
            return "semantic cache disabled in the config"
        if request.tools or request.ends_with_tool_result:
            return "agent request (tools or a tool result): exact match only"
        if request.history and not sem.fixed_history:
            return "multi-turn: exact match only"
        if time_sensitive:
            return "time-sensitive prompt: exact match only"
        if estimate_text(request.prompt) > SEMANTIC_MAX_TOKENS:
            return "prompt longer than the embedding window: exact match only"
        if kind not in sem.types:
            return f"no semantic matching for {kind} prompts"
        if sem.thresholds.get(kind) is None:
            return f"no threshold for {kind} (run `tars-opt cache calibrate`)"
        return None

    def apply(self, request: Request) -> tuple[Request, Decision] | Reply:
        """Answer from the cache, or pass the request on with what `after` needs to store."""
        started = time.perf_counter()
        if request.cache_mode == "off":
            return request, Decision("cache", "skip", "--no-cache: no lookup, no store")
        now = self.clock()
        selector = model_selector(request, self.config)
        fingerprint = context_fingerprint(
            request, with_history=bool(request.history) and self.cfg.semantic.fixed_history
        )
        kind = request.query_type or "other"
        ts = self.time_sensitive(request.prompt)
        data: dict[str, Any] = {
            "key": exact_key(request, selector),
            "fingerprint": fingerprint,
            "selector": selector,
            "query_type": kind,
            "prompt_sha256": sha256_text(request.prompt),
            "time_sensitive": ts,
        }
        block = self.semantic_block(request, ts)
        data["semantic"] = block or "allowed"
        if request.cache_mode == "refresh":
            return request, Decision("cache", "refresh", "--refresh: fresh answer, stored", data)
        entry = self.store.by_key(data["key"], now)
        if entry is not None:
            return self._hit(request, entry, "exact", 1.0, started, now)
        if block is not None:
            return request, Decision("cache", "miss", f"no exact match; {block}", data)
        partition: Partition = (request.namespace, fingerprint, selector, kind)
        entry = self.store.by_norm_key(partition, norm_key(request.prompt), now)
        if entry is not None and entry.usage.output_tokens <= request.max_tokens:
            return self._hit(request, entry, "normalized", 1.0, started, now)
        vec = self.semantic.embed(request.prompt)
        if vec is None:
            # The model is missing or broken: exact and normalised matching go on.
            data["warning"] = self.semantic.problem
            return request, Decision("cache", "miss", f"no match; {self.semantic.problem}", data)
        self._remember(request.request_id, request.prompt, vec)
        threshold = float(self.cfg.semantic.thresholds[kind] or 1.0)
        vetoes: list[dict[str, Any]] = []
        for cand, score in self.semantic.search(
            partition, vec, self.cfg.semantic.candidates, threshold, now
        ):
            if cand.usage.output_tokens > request.max_tokens:
                vetoes.append(
                    {"entry_id": cand.id, "similarity": round(score, 4), "guard": "max_tokens"}
                )
                continue
            veto = (
                cache_guards.check(cand.prompt, request.prompt)
                if self.cfg.semantic.guards
                else None
            )
            if veto is not None:
                vetoes.append(
                    {
                        "entry_id": cand.id,
                        "similarity": round(score, 4),
                        "guard": veto.guard,
                        "detail": veto.detail,
                    }
                )
                continue
            return self._hit(request, cand, "semantic", score, started, now, vetoes=vetoes)
        data["vetoes"] = vetoes
        why = f"no match at similarity >= {threshold:.3f}"
        if vetoes:
            why += f" ({len(vetoes)} vetoed: {', '.join(sorted({v['guard'] for v in vetoes}))})"
        return request, Decision("cache", "miss", why, data)

    def _remember(self, request_id: str, prompt: str, vec: np.ndarray | None) -> None:
        with self._pending_lock:
            self._pending[request_id] = (prompt, vec)
            while len(self._pending) > _PENDING_MAX:
                self._pending.popitem(last=False)

    def _hit(
        self,
        request: Request,
        entry: Entry,
        match: str,
        similarity: float,
        started: float,
        now: float,
        vetoes: list[dict[str, Any]] | None = None,
    ) -> Reply:
        money = self.prices.attribute(
            entry.usage,
            entry.model,
            request.client_model or self.config.models.baseline,
            entry.removed_tokens,
            response_cache_hit=True,
        )
        self.store.record_hit(entry.id, money.baseline, now)
        data: dict[str, Any] = {
            "entry_id": entry.id,
            "similarity": round(similarity, 4),
            "match": match,
            "entry_created": entry.created,
            "entry_expires": entry.expires,
            "avoided_prompt_tokens": entry.usage.prompt_tokens,
            "avoided_output_tokens": entry.usage.output_tokens,
        }
        if vetoes:
            data["vetoes"] = vetoes
        reason = f"{match} match of entry {entry.id}"
        if match == "semantic":
            reason += f" (similarity {similarity:.3f})"
        return Reply(
            text=entry.reply,
            model=entry.model,
            source="cache",
            request_id=request.request_id,
            usage=Usage(),  # nothing was sent: the avoided tokens are in the decision
            cost=money.actual,
            baseline_cost=money.baseline,
            saved_by_strategy=money.saved,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            decisions=[Decision("cache", "hit", reason, data)],
            stop_reason=entry.stop_reason,
            content=entry.content,
        )

    def after(self, prepared: Prepared, reply: Reply) -> None:
        """Store an answered miss, unless the answer must not be reused."""
        found = [d for d in prepared.decisions if d.stage == "cache"]
        req = prepared.request
        with self._pending_lock:
            pending = self._pending.pop(req.request_id, None)
        if not found or found[-1].action not in ("miss", "refresh"):
            return
        data = found[-1].data
        if reply.source not in ("api", "batch"):
            return
        why = unstorable_reason(reply, self.config)
        if why is not None:
            log.info("not cached", extra={"request_id": req.request_id, "reason": why})
            return
        now = self.clock()
        kind = data["query_type"]
        ttl = self.cfg.ttl_for(kind)
        if data["time_sensitive"]:
            ttl = min(ttl, self.cfg.time_sensitive_ttl_s)
        if ttl <= 0:
            return
        prompt, vec = pending if pending is not None else (req.prompt, None)
        semantic = data["semantic"] == "allowed" and sha256_text(prompt) == data["prompt_sha256"]
        if semantic and vec is None:
            vec = self.semantic.embed(prompt)
        partition: Partition = (req.namespace, data["fingerprint"], data["selector"], kind)
        from tars_opt.embeddings.index import to_blob

        entry_id = self.store.put(
            NewEntry(
                key=data["key"],
                norm_key=norm_key(prompt) if semantic else None,
                namespace=req.namespace,
                fingerprint=data["fingerprint"],
                selector=data["selector"],
                query_type=kind,
                semantic=semantic,
                time_sensitive=bool(data["time_sensitive"]),
                prompt=prompt,
                embedding=to_blob(vec) if semantic and vec is not None else None,
                embed_model=self.semantic.model_name if semantic and vec is not None else None,
                reply=reply.text,
                content=() if reply.blocks == _plain(reply.text) else reply.blocks,
                model=reply.model or req.model or "",
                stop_reason=reply.stop_reason,
                max_tokens=req.max_tokens,
                usage=reply.usage,
                removed_tokens=req.removed_tokens,
                request_id=req.request_id,
                created=now,
                expires=now + ttl,
            )
        )
        if semantic and vec is not None:
            self.semantic.add(partition, entry_id, vec)
        self.store.evict(self.cfg.max_entries, self.cfg.max_bytes, now)
