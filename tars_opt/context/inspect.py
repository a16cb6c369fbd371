"""`context inspect`: what the chain would send, read off a dry run of its stages.

The Optimizer runs `prepare` on the request marked `dry_run` (nothing answered, queued,
summarized by the API or recorded); this module turns the request as prepared and the
stages' decisions into the report.
"""

from __future__ import annotations

from typing import Any

from tars_opt import tokens
from tars_opt.config.schema import Config
from tars_opt.types import Decision, Prepared, Request


def _body_tokens(request: Request) -> int:
    body = request.to_body()
    body.pop("model", None)
    return tokens.estimate_params(body)


def _last(decisions: list[Decision], stage: str) -> Decision | None:
    return next((d for d in reversed(decisions) if d.stage == stage), None)


def inspect_report(config: Config, original: Request, prepared: Prepared) -> dict[str, Any]:
    """A report of what would be kept, summarized, dropped, routed and cached.

    A summary already stored for this history is shown as reused; otherwise the report
    says one would be made and counts it at `prune.summary_max_tokens`.
    """
    out = prepared.request
    before = _body_tokens(original)
    report: dict[str, Any] = {
        "query_type": out.query_type,
        "messages": len(original.history),
        "tokens_before": before,
        "tokens_estimated": True,
    }
    summary_tokens = 0
    prune = _last(prepared.decisions, "prune")
    if prune is not None and "level" in prune.data and "kept" in prune.data:
        data = dict(prune.data)
        data["reason"] = data.pop("plan_reason", prune.reason)
        summary = data.get("summary")
        if summary is not None:
            if summary.get("reused"):
                state = "stored, would be reused"
            else:
                tier = config.prune.summary_tier
                state = (
                    f"would be made by the {tier} tier ({config.tier_model(tier)}), at most "
                    f"{config.prune.summary_max_tokens} tokens"
                )
                summary_tokens = config.prune.summary_max_tokens
            data["summary"] = {"state": state, "tokens": summary["tokens"]}
        data["messages_after"] = len(out.history)
        report["prune"] = data
    route = _last(prepared.decisions, "route")
    if route is not None and route.action != "forced":
        report["route"] = {"tier": out.tier, "model": out.model, "reason": route.reason}
    tools = _last(prepared.decisions, "tools")
    if tools is not None and original.tools:
        report["tools"] = {"action": tools.action, "reason": tools.reason, **tools.data}
    after = _body_tokens(out) + summary_tokens
    report["tokens_after"] = after
    report["saved_share"] = round(1 - after / before, 4) if before else 0.0
    caching = _last(prepared.decisions, "prompt_cache")
    report["cache"] = {
        "model": out.model,
        "reason": caching.reason if caching is not None else "prompt caching off",
        "breakpoints": list(caching.data.get("breakpoints", [])) if caching is not None else [],
    }
    report["scoring"] = (
        prune.data.get("scoring", "lexical")
        if prune is not None
        else ("semantic+lexical" if config.prune.semantic else "lexical")
    )
    return report
