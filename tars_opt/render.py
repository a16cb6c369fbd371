"""How the CLI shows library results with rich. Formatting only."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tars_opt.metrics import SpendSummary
from tars_opt.types import Decision, Reply


def usd(value: float) -> str:
    """Dollars with enough digits to show a single cheap call."""
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.6f}"


def reply_line(reply: Reply) -> str:
    """The one dim line after an answer: model, tokens, money, latency, stages."""
    u = reply.usage
    est = " (estimated)" if u.estimated else ""
    stages = ", ".join(sorted({d.stage for d in reply.decisions})) or "none"
    where = reply.source if reply.source == "api" else f"{reply.source}"
    return (
        f"{reply.model or '-'} via {where} | tokens in {u.input_tokens} / cache write "
        f"{u.cache_write} / cache read {u.cache_read} / out {u.output_tokens}{est} | "
        f"cost {usd(reply.cost)} baseline {usd(reply.baseline_cost)} "
        f"saved {usd(reply.baseline_cost - reply.cost)} | {reply.latency_ms:.0f} ms | "
        f"stages: {stages} | {reply.request_id}"
    )


def decisions(console: Console, items: list[Decision]) -> None:
    table = Table("stage", "action", "why", title="decisions")
    for d in items:
        table.add_row(d.stage, d.action, d.reason)
    console.print(table)


def spend(console: Console, s: SpendSummary) -> None:
    table = Table("period", "calls", "cost", "baseline", "saved", "errors", title="spend (UTC)")
    for name, p in s.periods.items():
        table.add_row(
            name,
            str(p["calls"]),
            usd(p["cost"]),
            usd(p["baseline_cost"]),
            usd(p["baseline_cost"] - p["cost"]),
            str(p["errors"]),
        )
    console.print(table)
    console.print(
        f"budget: {usd(s.periods['month']['cost'])} of {usd(s.budget_usd)} this month "
        f"({s.month_used_share:.1%}); at this pace {usd(s.month_pace_usd)} by month end"
    )
    for title, rows in (("this month by model", s.by_model), ("this month by source", s.by_source)):
        if rows:
            console.print(_breakdown(title, rows))


def _breakdown(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table("", "calls", "prompt tokens", "output tokens", "cost", "baseline", title=title)
    for r in rows:
        table.add_row(
            str(r["key"]),
            str(r["calls"]),
            str(r["prompt_tokens"] or 0),
            str(r["output_tokens"] or 0),
            usd(r["cost"] or 0),
            usd(r["baseline_cost"] or 0),
        )
    return table


def calls(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(
        "time (UTC)",
        "source",
        "model",
        "in/out",
        "cost",
        "saved",
        "ms",
        "error",
        title="recent calls",
    )
    # The request id is what a user copies into `feedback` or a query: never cut it.
    table.add_column("request", no_wrap=True, min_width=28)
    for r in rows:
        prompt_tokens = (
            r["input_tokens"] + r["cache_write_5m"] + r["cache_write_1h"] + r["cache_read"]
        )
        table.add_row(
            r["ts_iso"][5:19].replace("T", " "),
            r["source"],
            (r["model"] or "-").removeprefix("claude-"),
            f"{prompt_tokens}/{r['output_tokens']}",
            usd(r["cost"]),
            usd(r["baseline_cost"] - r["cost"]),
            f"{r['latency_ms'] or 0:.0f}",
            (r["error"] or "")[:40],
            r["request_id"],
        )
    console.print(table)


def _ranges(items: list[list[int]]) -> str:
    """Message ranges with adjacent ones merged: [[2, 3], [4, 5], [8, 9]] -> "2-5, 8-9"."""
    merged: list[list[int]] = []
    for a, b in items:
        if merged and merged[-1][1] + 1 == a:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in merged) or "-"


def context_report(console: Console, r: dict[str, Any]) -> None:
    """`context inspect`: tokens, the prune plan, tools and cache breakpoints."""
    share = r.get("saved_share", 0.0)
    console.print(
        f"tokens (estimated): {r['tokens_before']} -> {r['tokens_after']} "
        f"({share:.0%} fewer) | {r['messages']} messages | query type {r['query_type']} | "
        f"relevance scoring: {r.get('scoring', '-')}"
    )
    if "system_sections" in r:
        console.print(f"system sections sent: {', '.join(r['system_sections']) or '-'}")
    prune = r.get("prune")
    if prune:
        table = Table("part", "messages", title=f"pruning: {prune['level']} ({prune['reason']})")
        table.add_row("first turn (kept)", _ranges(prune["pinned"]))
        table.add_row("relevant (quoted before the prompt)", _ranges(prune["relevant"]))
        table.add_row("recent (kept)", _ranges(prune["kept"]))
        table.add_row("summarized", _ranges(prune["summarized"]))
        table.add_row("dropped", _ranges(prune["dropped"]))
        console.print(table)
        if prune.get("summary"):
            console.print(f"summary: {prune['summary']['state']}")
    tools = r.get("tools")
    if tools:
        console.print(f"tools: {tools['reason']}")
        if tools.get("selected"):
            console.print(f"  sent: {', '.join(tools['selected'])}")
        if tools.get("dropped"):
            verb = "deferred" if tools["action"] == "deferred" else "not sent"
            console.print(f"  {verb}: {len(tools['dropped'])} tools")
    cache = r["cache"]
    marks = cache["breakpoints"]
    console.print(f"cache breakpoints ({cache['model']}): {cache['reason']}")
    for m in marks:
        console.print(f"  {m['where']}: prefix ~{m['prefix_tokens']} tokens")
