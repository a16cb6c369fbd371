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


def queued(console: Console, reply: Reply) -> None:
    """What `ask` prints when the request went to the queue."""
    data = next((d.data for d in reply.decisions if d.action == "queued"), {})
    reason = next((d.reason for d in reply.decisions if d.action == "queued"), "")
    console.print(
        f"queued as {reply.ticket} ({reason}); the {data.get('window', 'off-peak')} window "
        f"opens {data.get('window_opens_at', '?')}, answer expected by "
        f"{data.get('expected_at', '?')}",
        markup=False,
    )
    console.print(
        f"get it with: tars-opt result {reply.ticket}   (or wait: tars-opt ask --wait ...)",
        style="dim",
        markup=False,
    )


def tasks(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(
        "ticket",
        "state",
        "priority",
        "created (UTC)",
        "expected",
        "tries",
        "batch",
        "prompt",
        title="queue",
    )
    for r in rows:
        table.add_row(
            r["ticket"],
            r["state"],
            r["priority"],
            (r["created_at"] or "")[:16].replace("T", " "),
            (r["expected_at"] or "-")[5:16].replace("T", " "),
            str(r["attempts"]),
            (r["batch_id"] or "-")[-12:],
            (r["prompt"] or "")[:40].replace("\n", " "),
        )
    console.print(table)


def task(console: Console, view: dict[str, Any]) -> None:
    """Every field of one task, then its answer if it has one."""
    table = Table("field", "value", title=f"task {view['ticket']}")
    for key, value in view.items():
        if key != "result" and value is not None:
            table.add_row(key, str(value))
    console.print(table)


def result(console: Console, view: dict[str, Any]) -> None:
    """`tars-opt result`: the answer when done, the state otherwise."""
    res = view.get("result") or {}
    if view["state"] == "done":
        console.print(res.get("answer") or "", markup=False)
        console.print(
            f"{res.get('model') or '-'} via {res.get('source')} | cost {usd(res.get('cost') or 0)}"
            f" baseline {usd(res.get('baseline_cost') or 0)} | {view['request_id']}",
            style="dim",
            markup=False,
        )
        return
    detail = {
        "queued": f"waiting for the off-peak drain; expected by {view.get('expected_at')}",
        "claimed": "a drain is preparing it",
        "submitted": f"in batch {view.get('batch_id')}; the next drain collects it",
    }.get(view["state"], view.get("error") or "")
    console.print(f"{view['ticket']} is {view['state']}: {detail}", markup=False)


def drain_report(console: Console, report: Any, now: float) -> None:
    """What one `drain` did, in a few lines."""
    from tars_opt.ledger import iso
    from tars_opt.window import human_duration

    if not report.in_window and report.opens_at is not None and not report.submitted:
        console.print(
            f"outside the off-peak window {report.window}: it opens at "
            f"{iso(report.opens_at)[:16]}Z (in {human_duration(report.opens_at - now)}); "
            "nothing submitted (use --now to submit anyway)",
            markup=False,
        )
    rec = report.to_dict()["recovered"]
    if any(rec.values()):
        console.print(
            f"recovered: {rec['released_claims']} claims released, "
            f"{len(rec['adopted_batches'])} unrecorded batches found again, "
            f"{rec['abandoned_submissions']} lost submissions requeued, "
            f"{rec['uncertain_submissions']} still uncertain",
            markup=False,
        )
    if report.outcomes:
        parts = ", ".join(f"{n} {k}" for k, n in sorted(report.outcomes.items()))
        console.print(f"collected: {parts}", markup=False)
    if report.claimed:
        console.print(
            f"claimed {report.claimed} tasks: {report.answered_in_prepare} answered by the chain, "
            f"{sum(b['requests'] for b in report.submitted)} submitted in "
            f"{len(report.submitted)} batch(es)",
            markup=False,
        )
    for b in report.submitted:
        console.print(f"  {b['batch_id']}  {b['model']}  {b['requests']} requests", markup=False)
    for err in report.submit_errors:
        console.print(f"submit failed: {err}", style="red", markup=False)
    console.print(f"batches in flight: {report.in_flight}", style="dim", markup=False)
