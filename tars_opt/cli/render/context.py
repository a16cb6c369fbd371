"""How `context inspect` shows what would be sent."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tars_opt.plural import counted


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
        f"({share:.0%} fewer) | {counted(r['messages'], 'message')} | "
        f"query type {r['query_type']} | "
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
    route = r.get("route")
    if route:
        console.print(f"route: {route['tier']} ({route['model']})")
    tools = r.get("tools")
    if tools:
        console.print(f"tools: {tools['reason']}")
        if tools.get("selected"):
            console.print(f"  sent: {', '.join(tools['selected'])}")
        if tools.get("dropped"):
            verb = "deferred" if tools["action"] == "deferred" else "not sent"
            console.print(f"  {verb}: {counted(len(tools['dropped']), 'tool')}")
    cache = r["cache"]
    marks = cache["breakpoints"]
    console.print(f"cache breakpoints ({cache['model']}): {cache['reason']}")
    for m in marks:
        console.print(f"  {m['where']}: prefix ~{m['prefix_tokens']} tokens")
