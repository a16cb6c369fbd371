"""How the CLI shows the response cache (`tars-opt cache ...`). Formatting only."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from tars_opt.accounting.money import usd
from tars_opt.plural import counted


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    delta = ts - now
    span = abs(delta)
    text = (
        f"{span:.0f}s"
        if span < 120
        else f"{span / 60:.0f}m"
        if span < 7200
        else f"{span / 3600:.1f}h"
    )
    return f"in {text}" if delta >= 0 else f"{text} ago"


def cache_entries(console: Console, rows: list[dict[str, Any]], now: float, title: str) -> None:
    table = Table(
        "id",
        "type",
        "namespace",
        "hits",
        "saved",
        "created",
        "expires",
        "size",
        "prompt",
        title=title,
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["query_type"] + ("" if r["semantic"] else " (exact)"),
            r["namespace"],
            str(r["hits"]),
            usd(r["saved_usd"]),
            _when(r["created"], now),
            _when(r["expires"], now) if r["expires"] > now else "expired",
            _size(r["bytes"]),
            " ".join(str(r["prompt"]).split())[:60],
        )
    console.print(table)


def cache_stats(console: Console, s: dict[str, Any], now: float) -> None:
    console.print(
        f"entries: {s['entries']} ({s['live']} live), {_size(s['bytes'])}; "
        f"since {_when(s['since'], now)}: {s['hits']} of "
        f"{counted(s['answered'], 'answer')} from the "
        f"cache ({s['hit_rate']:.1%}), saved {usd(s['saved_usd'])}; "
        f"tokens saved by stored entries: {s['tokens_saved']:,}"
    )
    table = Table(
        "type",
        "answered",
        "hits",
        "hit rate",
        "exact",
        "normalized",
        "semantic",
        "saved",
        title="hits by query type (ledger)",
    )
    for r in s["ledger_by_type"]:
        table.add_row(
            r["query_type"],
            str(r["answered"]),
            str(r["hits"] or 0),
            f"{r['hit_rate']:.1%}",
            str(r["exact"] or 0),
            str(r["normalized"] or 0),
            str(r["semantic"] or 0),
            usd(r["saved_usd"]),
        )
    console.print(table)
    table = Table(
        "type", "entries", "live", "size", "hits", "tokens saved", title="stored entries by type"
    )
    for r in s["by_type"]:
        table.add_row(
            r["query_type"],
            str(r["entries"]),
            str(r["live"] or 0),
            _size(r["bytes"] or 0),
            str(r["hits"] or 0),
            f"{r['tokens_saved'] or 0:,}",
        )
    console.print(table)
    if s["top"]:
        cache_entries(console, s["top"], now, "top entries")


def cache_entry(console: Console, entry: Any, hits: list[dict[str, Any]], now: float) -> None:
    u = entry.usage
    console.print(
        f"entry {entry.id} | {entry.query_type} | namespace {entry.namespace} | "
        f"model {entry.model} | {'semantic' if entry.semantic else 'exact only'}"
        f"{' | time-sensitive' if entry.time_sensitive else ''}\n"
        f"created {_when(entry.created, now)}, expires {_when(entry.expires, now)}, "
        f"{counted(entry.hits, 'hit')}, saved {usd(entry.saved_usd)}, {_size(entry.bytes)}\n"
        f"tokens per hit: prompt {u.prompt_tokens}, output {u.output_tokens}"
        f"{' (estimated)' if u.estimated else ''} | from request {entry.request_id}",
        markup=False,
    )
    console.print("prompt:", style="bold")
    console.print(entry.prompt, markup=False)
    console.print("answer:", style="bold")
    console.print(entry.reply, markup=False)
    if hits:
        table = Table(
            "request",
            "time (UTC)",
            "match",
            "similarity",
            "saved",
            "prompt",
            title="answers served from this entry",
        )
        for h in hits:
            table.add_row(
                h["request_id"],
                h["ts_iso"][:19],
                h["cache_match"] or "-",
                f"{h['cache_similarity']:.3f}" if h["cache_similarity"] else "-",
                usd(h["baseline_cost"]),
                " ".join(str(h["prompt"] or "").split())[:50],
            )
        console.print(table)


def calibration(console: Console, rows: list[dict[str, Any]], pairs: int) -> None:
    table = Table(
        "type",
        "target",
        "threshold",
        "precision",
        "false-hit rate (95% upper)",
        "recall",
        "hits",
        "false hits",
        title=f"calibration on {pairs} pairs",
    )
    for r in rows:
        t = r["threshold"]
        table.add_row(
            r["type"],
            f"{r['target']:.2%}",
            "none reaches the target (semantic off)" if t is None else f"{t:.4f}",
            "-" if t is None else f"{r['precision']:.2%}",
            "-" if t is None else f"{r['false_hit_rate']:.2%} ({r['false_hit_rate_upper95']:.2%})",
            "-" if t is None else f"{r['recall']:.2%}",
            str(r["hits"]),
            str(r["false_hits"]),
        )
    console.print(table)
