"""The route stage: pick the tier that answers, and the escalation to the next one.

Order of rules: a pinned keyword, then a pinned query type, else the router's score against
the thresholds (calibrated from `routing.strong_share` / `quality_target` when set); then
tools raise the tier to `tools_min_tier`; and the model the client named is the ceiling
(routing goes no dearer unless `routing.above_client_model`). Every decision carries the
score, router, threshold, tier and why, so the ledger's decision trace can be audited. A
model the caller pinned (`--model`, routing off for the request) passes untouched.

Conversations (`request.conversation`): the prompt cache is per model, so a switch of
model mid-conversation throws the cached prefix away and pays a new write. A conversation's
model is chosen at its first call and kept: calls that hand tool results back (the same
task going on) keep it without being scored; a call answering a new user turn is scored,
and a switch happens when the router asks for a stronger tier (a harder task) or when a
cheaper one saves more on this call than the rewrite of the prefix costs. An escalation
moves the rest of the conversation up. Tool-using conversations are not routed unless
`routing.tool_conversations` is on: they go to the client's model. The conversation's tier
is kept in the conversation state (store/conversation_state.py), so a restart or another
process or host on the same database goes on with it; a dry run reads it, never writes it.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import replace
from typing import Any

from tars_opt import tokens
from tars_opt.accounting.pricing import PriceBook
from tars_opt.config.schema import Config
from tars_opt.errors import LearnedUnavailable, UnknownModelPrice
from tars_opt.routing import Router, RouteScore
from tars_opt.routing.heuristic import HeuristicRouter
from tars_opt.store.conversation_state import ConversationState
from tars_opt.tokens import READ_HEAD_CHARS, READ_TAIL_CHARS, read_ends
from tars_opt.types import BackendResult, Decision, Prepared, Request, new_request_id

log = logging.getLogger("tars_opt.route")


def tier_order(config: Config) -> list[str]:
    """Tiers from cheapest to strongest (the order of models.tiers)."""
    return list(config.models.tiers)


class RouteStage:
    """Chooses `request.tier` and `request.model` from the routing config."""

    name = "route"
    chooses_model = True  # a model the caller pinned skips it

    def __init__(
        self,
        config: Config,
        router: Router | None = None,
        *,
        state: ConversationState | None = None,
    ) -> None:
        """`state` keeps each conversation's tier (in memory only when not given)."""
        self.config = config
        self.routing = config.routing
        self.tiers = tier_order(config)
        self._router = router
        self._fallback: str | None = None
        self._thresholds: dict[str, float] | None = None
        self._threshold_source = "config"
        # The router (the learned one loads a model) and thresholds are made once, by
        # whichever thread needs them first.
        self._lock = threading.RLock()
        self._keywords = [(k.lower(), t) for k, t in self.routing.pinned_keywords.items()]
        self.prices = PriceBook(config.pricing)
        self.state = state if state is not None else ConversationState(None)

    @property
    def router(self) -> Router:
        """The configured router, made on first use (the learned one loads a model)."""
        if self._router is None:
            with self._lock:
                if self._router is None:
                    self._router = self._make_router()
        return self._router

    def _make_router(self) -> Router:
        heuristic = HeuristicRouter(self.routing.heuristic)
        if self.routing.router == "heuristic":
            return heuristic
        from tars_opt.routing.learned import load_learned

        try:
            return load_learned(self.routing.learned.path, heuristic=heuristic)
        except LearnedUnavailable as exc:
            # Routing must keep working: fall back, and say so in every decision.
            self._fallback = f"learned router unavailable ({exc}); heuristic used"
            log.warning(self._fallback)
            return heuristic

    def thresholds(self) -> dict[str, float]:
        """Tier -> lowest score sent there, with the calibrated knob applied."""
        if self._thresholds is not None:
            return self._thresholds
        with self._lock:
            if self._thresholds is None:
                self._thresholds = self._make_thresholds()
            return self._thresholds

    def _make_thresholds(self) -> dict[str, float]:
        router = self.router
        configured = getattr(self.routing, router.name).thresholds
        thresholds = {t: float(configured[t]) for t in self.tiers if t in configured}
        share, target = self.routing.strong_share, self.routing.quality_target
        if (share is not None or target is not None) and thresholds:
            from tars_opt.routing.calibration import pick_threshold

            rows, source = self.calibration(router)
            row = pick_threshold(rows, strong_share=share, quality_target=target)
            first = next(iter(thresholds))  # the lowest tier above the cheapest
            thresholds[first] = float(row["threshold"])
            # Stronger tiers stay above it, else they would take every routed call.
            for tier in list(thresholds)[1:]:
                thresholds[tier] = max(thresholds[tier], thresholds[first])
            knob = f"strong_share {share}" if share is not None else f"quality_target {target}"
            self._threshold_source = (
                f"{knob} -> {row['threshold']:.2f} (calibration: {row['strong_share']:.0%} "
                f"strong, PGR {row['pgr']:.2f}, {source})"
            )
        return thresholds

    def calibration(self, router: Router) -> tuple[list[dict[str, float]], str]:
        """The calibration rows of `router` and where they came from."""
        from tars_opt.routing import tables as store

        if router.name == "heuristic":
            return store.heuristic_table(self.config)
        return store.learned_table(
            self.config, getattr(router, "model_id", ""), getattr(router, "table", [])
        )

    def tier_for(self, score: float) -> tuple[str, float | None]:
        """The strongest tier whose threshold `score` reaches, and that threshold."""
        chosen, used = self.tiers[0], None
        for tier, threshold in self.thresholds().items():
            if score >= threshold:
                chosen, used = tier, threshold
        if used is None and self.thresholds():
            used = next(iter(self.thresholds().values()))  # the bar it did not reach
        return chosen, used

    def apply(self, request: Request) -> tuple[Request, Decision | None]:
        """The tier for `request`: its conversation's when it has one (see the module
        docstring), else the router's."""
        if (request.tools or request.ends_with_tool_result) and not self.routing.tool_conversations:
            return self._client_model(request)
        key = request.conversation
        kept = self.state.get(key).get("tier") if key else None
        if kept is not None and kept in self.tiers and request.ends_with_tool_result:
            model = self.config.tier_model(kept)
            why = f"conversation's model kept ({kept}, {model}): a tool loop goes on with it"
            data = {"tier": kept, "why": why, "conversation": "kept"}
            return replace(request, tier=kept, model=model), Decision("route", kept, why, data)
        routed, decision = self._route(request)
        if kept is not None and kept in self.tiers and routed.tier != kept:
            routed, decision = self._switch_or_keep(request, routed, decision, kept)
        if key and routed.tier:
            self._remember(request, routed.tier)
        return routed, decision

    def _remember(self, request: Request, tier: str) -> None:
        if request.conversation and not request.dry_run:
            self.state.update(request.conversation, request.namespace, tier=tier)

    def _client_model(self, request: Request) -> tuple[Request, Decision]:
        model = request.client_model or self.config.tier_model(self.config.models.default_tier)
        tier = next((t for t in self.tiers if self.config.tier_model(t) == model), None)
        why = (
            f"tool-using conversation: not routed, sent to {model} (routing.tool_conversations "
            "is off: no labelled data says a cheaper model does agent work as well)"
        )
        data = {"tier": tier, "why": why, "conversation": "not routed"}
        return replace(request, tier=tier, model=model), Decision(
            "route", tier or "client", why, data
        )

    def _switch_or_keep(
        self, request: Request, routed: Request, decision: Decision, kept: str
    ) -> tuple[Request, Decision]:
        """A conversation the router would move from `kept`: up when it asks for a stronger
        tier, down only when this call saves more than the prefix rewrite costs."""
        old, new = self.config.tier_model(kept), routed.model or ""
        prefix = _prefix_tokens(request)
        turn = tokens.estimate_message(request.messages[-1]) if request.messages else 0
        data = dict(decision.data)
        up = self.tiers.index(routed.tier or kept) > self.tiers.index(kept)
        try:
            a, b = self.prices.rates(old), self.prices.rates(new)
        except UnknownModelPrice:  # the chain refuses the request with the price error
            return routed, decision
        stay = (prefix * a.cache_read + turn * a.cache_write_5m) / 1e6
        move = (prefix + turn) * b.cache_write_5m / 1e6
        data.update(conversation_tier=kept, stay_usd=round(stay, 6), switch_usd=round(move, 6))
        if up:
            why = (
                f"{decision.reason}; conversation moved up from {kept}: the prefix (~{prefix} "
                f"tokens) is written again on {new} (${move:.4f} against ${stay:.4f} staying)"
            )
            data["conversation"] = "moved up"
            return routed, Decision("route", routed.tier or kept, why, data)
        if move < stay:
            why = (
                f"{decision.reason}; conversation moved down from {kept}: this call costs "
                f"${move:.4f} on {new} with the prefix rewritten, ${stay:.4f} on {old}"
            )
            data["conversation"] = "moved down"
            return routed, Decision("route", routed.tier or kept, why, data)
        why = (
            f"conversation's model kept ({kept}, {old}): the router says {routed.tier}, but "
            f"rewriting the ~{prefix}-token prefix on {new} (${move:.4f}) costs more than "
            f"this call on the cached {old} (${stay:.4f})"
        )
        data.update(tier=kept, why=why, conversation="kept")
        return replace(request, tier=kept, model=old), Decision("route", kept, why, data)

    def _route(self, request: Request) -> tuple[Request, Decision]:
        read = read_ends(request.prompt)
        seen = request
        if read is not request.prompt:
            capped = {"role": "user", "content": read}
            seen = replace(request, messages=(*request.history, capped))
        scored: RouteScore = self.router.route_score(seen)
        data: dict[str, Any] = {
            "router": scored.router,
            "score": round(scored.score, 2),
            **scored.details,
        }
        if seen is not request:
            data["prompt_chars_read"] = len(read)
        prompt = request.prompt.lower()
        pinned = next(((k, t) for k, t in self._keywords if k in prompt), None)
        if pinned is not None:
            tier, why = pinned[1], f"keyword {pinned[0]!r} pinned to {pinned[1]}"
            data["threshold"] = None
        elif request.query_type in self.routing.pinned_types:
            tier = self.routing.pinned_types[request.query_type]
            why = f"query type {request.query_type} pinned to {tier}"
            data["threshold"] = None
        else:
            tier, threshold = self.tier_for(scored.score)
            data["threshold"] = threshold
            rel = ">=" if threshold is not None and scored.score >= threshold else "<"
            bar = f"{rel} {threshold:.2f}" if threshold is not None else "(no thresholds)"
            why = f"{scored.router} score {scored.score:.1f} {bar} -> {tier}; {scored.explain}"
            if self._threshold_source != "config":
                why += f"; threshold from {self._threshold_source}"
            if seen is not request:
                why += (
                    f"; scored on the first {READ_HEAD_CHARS:,} and last {READ_TAIL_CHARS:,} "
                    f"of {len(request.prompt):,} characters"
                )
        minimum = self.routing.tools_min_tier
        if request.tools and minimum and self.tiers.index(tier) < self.tiers.index(minimum):
            why += f"; tools present -> at least {minimum}"
            tier = minimum
        if self._fallback:
            why += f"; {self._fallback}"
            data["fallback"] = self._fallback
        model = self.config.tier_model(tier)
        ceiling = request.client_model
        if ceiling and not self.routing.above_client_model and self._dearer(model, ceiling):
            why += f"; {tier} ({model}) costs more than the requested {ceiling}: kept {ceiling}"
            tier = next((t for t in self.tiers if self.config.tier_model(t) == ceiling), tier)
            model = ceiling
        data["tier"] = tier
        data["why"] = why
        routed = replace(request, tier=tier, model=model)
        return routed, Decision("route", tier, why, data)

    def _dearer(self, model: str, than: str) -> bool:
        """Whether `model` costs more per token than `than` (input first, then output)."""
        if model == than or not (self.prices.known(model) and self.prices.known(than)):
            return False
        a, b = self.prices.rates(model), self.prices.rates(than)
        return (a.input, a.output) > (b.input, b.output)

    def retry(self, prepared: Prepared, result: BackendResult) -> tuple[Request, Decision] | None:
        """Escalation: the same request on the next tier up when the answer trips a
        trigger (see `escalate`)."""
        retry = escalate(self.config, prepared, result)
        ceiling = prepared.request.client_model
        if retry is not None and ceiling and not self.routing.above_client_model:
            # Not above the model the client asked for.
            retry = None if self._dearer(retry[0].model or "", ceiling) else retry
        if retry is not None and retry[0].tier:
            self._remember(prepared.request, retry[0].tier)  # the rest of it goes up too
        return retry


def _prefix_tokens(request: Request) -> int:
    """Estimated tokens before the turn being answered: what the cache holds for it."""
    return (
        sum(tokens.estimate_tool(t) for t in request.tools)
        + tokens.estimate_system(request.system)
        + sum(tokens.estimate_message(m) for m in request.history)
    )


def escalation_trigger(config: Config, result: BackendResult) -> str | None:
    """Why a routed answer should be re-asked on the next tier, or None if it is fine."""
    esc = config.routing.escalation
    triggers = set(esc.triggers)
    if "max_tokens" in triggers and result.stop_reason == "max_tokens":
        return "stopped at max_tokens"
    if "empty" in triggers and is_empty(result):
        return "empty answer"
    if "refusal" in triggers and (result.stop_reason == "refusal" or esc.refused(result.text)):
        return "refused"
    if (
        "check" in triggers
        and esc.require_pattern is not None
        and not re.search(esc.require_pattern, result.text, re.IGNORECASE)
    ):
        return f"failed check {esc.require_pattern!r}"
    return None


def is_empty(result: BackendResult) -> bool:
    """An answer with nothing in it: no text and no block that does something (a tool
    call, a server tool call). A reply that calls tools is a full answer."""
    if result.text.strip():
        return False
    doing = {"tool_use", "server_tool_use", "mcp_tool_use"}
    return not any(b.get("type") in doing for b in result.content) and (
        result.stop_reason not in ("tool_use", "pause_turn")
    )


def escalate(
    config: Config, prepared: Prepared, result: BackendResult
) -> tuple[Request, Decision] | None:
    """The same request on the next tier up when the answer trips a trigger, else None.

    Only routed requests escalate (not forced models, not streamed ones: their text already
    reached the user), once, and never above the strongest tier. The new request has its own
    id; the chain links the two ledger rows through `escalated_from`.
    """
    req = prepared.request
    if not config.routing.enabled or not config.routing.escalation.enabled:
        return None
    if req.forced_model or req.stream or req.tier is None or getattr(req, "holdout", False):
        return None
    if any(d.stage == "escalate" for d in prepared.decisions):
        return None  # at most once
    tiers = tier_order(config)
    if req.tier not in tiers or req.tier == tiers[-1]:
        return None
    why = escalation_trigger(config, result)
    if why is None:
        return None
    upper = tiers[tiers.index(req.tier) + 1]
    bigger = replace(req, tier=upper, model=config.tier_model(upper), request_id=new_request_id())
    decision = Decision(
        "escalate",
        upper,
        f"{req.tier} answer {why}: re-asked on {upper}",
        {"escalated_from": req.request_id, "from_tier": req.tier, "tier": upper, "why": why},
    )
    return bigger, decision
