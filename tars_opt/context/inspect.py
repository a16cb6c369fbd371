"""`context inspect`: what the prune and tools stages would send, without calling the API."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from tars_opt import tokens
from tars_opt.config.schema import Config
from tars_opt.context.prompt_cache import PrefixLog, mark_breakpoints
from tars_opt.context.prune import PruneStage, plan_data
from tars_opt.context.relevance import Scorer, default_embedder
from tars_opt.context.summaries import Summary, SummaryStore
from tars_opt.embeddings.store import open_vector_cache
from tars_opt.pipeline.classify import guess_query_type
from tars_opt.pipeline.optimizer import build_params, tool_stage
from tars_opt.store.database import Database
from tars_opt.types import Request

PLACEHOLDER = "[summary to be made by the {tier} tier]"


def _request_tokens(request: Request) -> int:
    params: dict[str, Any] = {"messages": request.api_messages(), "tools": list(request.tools)}
    if request.system:
        params["system"] = (
            request.system if isinstance(request.system, str) else list(request.system)
        )
    return tokens.estimate_params(params)


def inspect(config: Config, db: Database | None, request: Request) -> dict[str, Any]:
    """A report of what would be kept, summarized, dropped and cached; no API call.

    A summary already stored for this history is shown as reused; otherwise the report
    says one would be made and counts it at `prune.summary_max_tokens`.
    """
    if request.query_type is None:
        request = replace(request, query_type=guess_query_type(request.prompt))
    ctx = config.prune
    vectors = open_vector_cache(db, ctx.vector_cache_rows)
    scorer = Scorer(default_embedder if ctx.semantic else None, vectors=vectors)
    # Turns without a stored vector are embedded (and stored) now rather than in the
    # background: the report then shows what the next real request will send.
    pruner = PruneStage(ctx.model_copy(update={"embed_in_background": False}), db, scorer=scorer)
    before = _request_tokens(request)
    report: dict[str, Any] = {
        "query_type": request.query_type,
        "messages": len(request.messages),
        "tokens_before": before,
        "tokens_estimated": True,
    }
    out = request
    plan = pruner.plan(request) if ctx.enabled and request.messages else None
    if plan is not None:
        prune = plan_data(plan)
        prune["reason"] = plan.reason
        summary_tokens = 0
        if plan.acts and plan.summarize and plan.summary_key:
            store = SummaryStore(db) if db is not None else None
            found = store.peek(plan.summary_key) if store is not None else None
            if found is not None:
                prune["summary"] = {"state": "stored, would be reused", "tokens": found.tokens}
                summary = found
            else:
                prune["summary"] = {
                    "state": f"would be made by the {ctx.summary_tier} tier "
                    f"({config.tier_model(ctx.summary_tier)}), at most "
                    f"{ctx.summary_max_tokens} tokens",
                    "tokens": ctx.summary_max_tokens,
                }
                summary = Summary(
                    plan.summary_key, PLACEHOLDER.format(tier=ctx.summary_tier), 0, False
                )
                summary_tokens = ctx.summary_max_tokens
            out = pruner.rewrite(request, plan, summary)
        elif plan.acts:
            out = pruner.rewrite(request, plan, None)
        prune["messages_after"] = len(out.messages)
        report["prune"] = prune
        report["_summary_tokens"] = summary_tokens
    if out.model is None and config.routing.enabled:
        # The model decides the cache minimum, so whether the tool list stays whole.
        from tars_opt.routing.stage import RouteStage

        out, decision = RouteStage(config).apply(out)
        report["route"] = {"tier": out.tier, "model": out.model, "reason": decision.reason}
    if config.tools.enabled and request.tools:
        out, decision = tool_stage(config, db, scorer=scorer).apply(out)
        report["tools"] = {"action": decision.action, "reason": decision.reason, **decision.data}
    after = _request_tokens(out) + report.pop("_summary_tokens", 0)
    report["tokens_after"] = after
    report["saved_share"] = round(1 - after / before, 4) if before else 0.0
    model = out.model or config.tier_model(config.models.default_tier)
    params = build_params(replace(out, model=model))
    since = PrefixLog(db).times(params, time.time()) if db is not None else (None, None)
    _, marks, why = mark_breakpoints(
        params, config.prompt_cache, since_sent=since[0], since_turn=since[1]
    )
    report["cache"] = {"model": model, "reason": why, "breakpoints": [m.to_dict() for m in marks]}
    report["scoring"] = "semantic+lexical" if scorer.semantic else "lexical"
    return report
