"""How `costs` and `log` show spend and recent calls from the ledger."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tars_opt.accounting.ledger import source_label
from tars_opt.accounting.money import usd
from tars_opt.monitor.metrics import SpendSummary


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
    month = s.periods["month"]
    if month.get("cost_unknown"):
        console.print(
            f"warning: {month['cost_unknown']} call(s) this month used a model with no price: "
            "their cost is unknown and not counted above; add the model under pricing.models",
            style="bold red",
        )
    if month.get("escalations"):
        console.print(
            f"escalations this month: {month['escalations']} re-asks on a stronger tier cost "
            f"{usd(month['escalation_cost'])} (counted against routing's savings)"
        )
    if s.shadow["calls"]:
        console.print(
            f"shadow: {s.shadow['calls']} call(s) this month were forwarded unchanged; the "
            f"stages would have saved ~{usd(s.shadow['would_save'])} (an estimate from their "
            "usage)"
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
            source_label(r["source"], r.get("backend")),
            (r["model"] or "-").removeprefix("claude-"),
            f"{prompt_tokens}/{r['output_tokens']}",
            usd(r["cost"]),
            usd(r["baseline_cost"] - r["cost"]),
            f"{r['latency_ms'] or 0:.0f}",
            (r["error"] or "")[:40],
            r["request_id"],
        )
    console.print(table)
